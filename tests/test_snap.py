"""The snap rule in-graph against a plain Python reading of it, on hand cases and on random tag sequences."""
import random
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_bio import invalid

from mtl_tagger import tagger as tagger_module
from mtl_tagger.conll import Sentence, bio_tags, chunks, read_conll
from mtl_tagger.corpus import load_task
from mtl_tagger.params import Params
from mtl_tagger.pipeline import encode, pad
from mtl_tagger.saved_model import signature_keys, write_saved_model
from mtl_tagger.snap import Snapper
from mtl_tagger.tagger import Tagger
from mtl_tagger.vocab import fold, known_values

TAGS = ["O", "B-brand", "I-brand", "B-color", "I-color", "B-plating", "I-plating", "B-type", "I-type"]


def reference(tokens: list[str], tags: list[str], values: dict[str, list[list[str]]]) -> list[str]:
    """The rule as the module docstring states it, one occurrence at a time; values no snap reaches stay as they
    were."""
    low = [fold(w) for w in tokens]
    known = {attr: {tuple(v) for v in vs} for attr, vs in values.items()}
    found = sorted((-len(v), i, attr) for attr, vs in known.items() for v in vs if len(v) > 1
                   for i in range(len(low)) if tuple(low[i:i + len(v)]) == v)
    tags, done = list(tags), []
    for minus_length, a, attr in found:
        b = a - minus_length
        hit = [c for c in chunks(tags) if c[1] < b and a < c[2]]
        if (any(c[0] == attr for c in hit) and hit != [(attr, a, b)] and not any(d[0] < b and a < d[1] for d in done)
                and all(tuple(low[c[1]:c[2]]) not in known.get(c[0], ()) for c in hit)):
            for _, c, d in hit:
                tags[c:d] = ["O"] * (d - c)
            tags[a:b] = bio_tags(b - a, [(attr, 0, b - a)])
            if tags[b:b + 1] == [f"I-{attr}"]:  # a value of its own that began there stays one
                tags[b] = f"B-{attr}"
            done.append((a, b))
    return tags


def run(snapper: Snapper, sentences: list[tuple[list[str], list[str]]]) -> list[list[str]]:
    """The graph rule on a padded batch of (tokens, tags)."""
    width = max(len(t) for t, _ in sentences)
    tokens = tf.constant([t + ["PAD"] * (width - len(t)) for t, _ in sentences])
    ids = tf.constant([[TAGS.index(g) for g in tags] + [0] * (width - len(tags)) for _, tags in sentences], tf.int32)
    lengths = tf.constant([len(t) for t, _ in sentences], tf.int32)
    out = snapper(tokens, lengths, ids).numpy()
    assert (out[[r for r, (t, _) in enumerate(sentences) for _ in range(width - len(t))],
                [k for t, _ in sentences for k in range(len(t), width)]] == 0).all()
    return [[TAGS[i] for i in row[:len(t)]] for row, (t, _) in zip(out, sentences)]


def snapped(tokens: list[str], tags: list[str], values: dict[str, set[tuple[str, ...]]]) -> list[str]:
    """The graph rule's tags for one sentence, checked against the reference's."""
    listed = {attr: [list(v) for v in sorted(vs)] for attr, vs in values.items()}
    out = run(Snapper(TAGS, listed), [(tokens, tags)])[0] if tokens else []
    assert out == reference(tokens, tags, listed)
    return out


def test_a_value_cut_split_or_run_on_is_replaced_by_the_known_value_it_overlaps() -> None:
    train = [Sentence(["GAJ", "IMPEX", "Blue", "Bangle"], ["B-brand", "I-brand", "B-color", "O"], 1),
             Sentence(["Zaveri", "Pearls", "Gold"], ["B-brand", "I-brand", "B-plating"], 6)]
    values = {attr: {tuple(v) for v in vs} for attr, vs in known_values(train).items()}
    assert values == {"brand": {("gaj", "impex"), ("zaveri", "pearls")}, "color": {("blue",)},
                      "plating": {("gold",)}}
    tokens = ["Buy", "gaj", "Impex", "Zaveri", "Pearls", "Gold", "Ring"]
    cases = {  # decoded → snapped
        ("O", "O", "B-brand", "O", "O", "O", "O"): ("O", "B-brand", "I-brand", "O", "O", "O", "O"),  # cut short
        ("O", "B-brand", "B-brand", "O", "O", "O", "O"): ("O", "B-brand", "I-brand", "O", "O", "O", "O"),  # split
        ("O", "O", "O", "B-brand", "I-brand", "I-brand", "O"):  # run on; Gold goes back to O
            ("O", "O", "O", "B-brand", "I-brand", "O", "O"),
        ("B-brand", "I-brand", "O", "O", "O", "B-plating", "O"):  # run on into "Buy"
            ("O", "B-brand", "I-brand", "O", "O", "B-plating", "O"),
        ("O", "O", "O", "B-color", "I-color", "O", "O"): ("O", "O", "O", "B-color", "I-color", "O", "O"),  # no
        # known brand of that attribute: left alone
    }
    for decoded, expected in cases.items():
        assert snapped(tokens, list(decoded), values) == list(expected), decoded
    known = ["O", "O", "O", "B-brand", "I-brand", "B-brand", "O"]  # a known value already decoded: left alone
    assert snapped(tokens, known, values) == known
    assert snapped(["gaj", "impex", "blue"], ["O", "B-brand", "O"], {"brand": {("gaj", "impex"), ("impex", "blue")}}
                   ) == ["B-brand", "I-brand", "O"]  # of two known values as long, the leftmost
    colour = {"color": {("rose", "gold")}, "plating": {("gold", "plated")}}  # a snap is not undone by a later one
    assert snapped(["rose", "gold", "plated"], ["B-color", "O", "B-plating"], colour) == [
        "B-color", "I-color", "B-plating"]
    inside = {"brand": {("gaj", "gold")}, "plating": {("gold",)}}  # a known value of another attribute inside stays
    assert snapped(["gaj", "gold"], ["B-brand", "B-plating"], inside) == ["B-brand", "B-plating"]
    assert snapped(["x", "y"], ["O", "I-color"], values) == ["O", "I-color"]  # nothing snapped: the tags as they came
    assert snapped([], [], values) == []
    run_on = ["O", "O", "O", "B-brand", "I-brand", "I-brand", "O"]
    for also in ("zaveri", "pearls", "gold"), ("gaj",):  # the decoded value is itself a training value
        cut = ["O", "B-brand", "O", "O", "O", "O", "O"] if also == ("gaj",) else run_on
        assert snapped(tokens, cut, {**values, "brand": values["brand"] | {also}}) == cut


VALUES = {"brand": [["jewels", "galaxy"], ["park", "avenue"], ["sukkhi"]], "color": [["rose", "gold"], ["gold"]],
          "type": [["gold"], ["rose", "gold", "chain"]]}


@pytest.mark.parametrize("tokens, tags, expected", [
    # A brand split in two is joined, in any case.
    ("JEWELS Galaxy chain", "B-brand B-brand B-type", "B-brand I-brand B-type"),
    # A brand cut short is completed; one run on is cut back, the extra word left O.
    ("Park Avenue shirt", "B-brand O O", "B-brand I-brand O"),
    ("Park Avenue shirt", "B-brand I-brand I-brand", "B-brand I-brand O"),
    # Only where a decoded value of the attribute overlaps it.
    ("Park Avenue shirt", "O O O", "O O O"),
    ("Park Avenue shirt", "B-color I-color O", "B-color I-color O"),
    # A value that is itself known for its attribute blocks the snap (gold is a known colour).
    ("rose gold", "O B-color", "O B-color"),
    # Longest first: the type "rose gold chain" wins over the colour "rose gold" inside it.
    ("rose gold chain x", "B-type B-color I-color O", "B-type I-type I-type O"),
    # Snaps do not overlap: the colour inside the snapped type is not snapped afterwards.
    ("rose gold chain rose gold", "B-type I-type B-color B-color O", "B-type I-type I-type B-color I-color"),
])
def test_hand_cases(tokens: str, tags: str, expected: str) -> None:
    """Joins, completes and cuts back values as the rule says, and leaves what the rule does not reach."""
    sentence = (tokens.split(), tags.split())
    assert run(Snapper(TAGS, VALUES), [sentence])[0] == expected.split()
    assert reference(*sentence, VALUES) == expected.split()


def test_random_sequences_match_the_reference() -> None:
    """Random sentences over a small vocabulary, with random tags (mostly valid BIO), in batches of mixed lengths:
    the graph gives the reference's tags for every one."""
    rng = random.Random(7)
    words = ["Rose", "gold", "chain", "park", "AVENUE", "jewels", "galaxy", "sukkhi", "x"]
    values = {"brand": [["park", "avenue"], ["jewels", "galaxy"], ["sukkhi"], ["park", "avenue", "x"]],
              "color": [["rose", "gold"], ["gold"], ["gold", "chain"]],
              "type": [["chain"], ["rose", "gold", "chain"], ["gold", "chain"]]}
    snapper = Snapper(TAGS, values)
    changed = 0
    for _ in range(80):
        batch = []
        for _ in range(8):
            n = rng.randint(1, 9)
            tokens = [rng.choice(words) for _ in range(n)]
            spans, k = [], 0
            while k < n:
                if rng.random() < 0.5:
                    width = rng.randint(1, 3)
                    spans.append((rng.choice(["brand", "color", "type"]), k, min(n, k + width)))
                    k += width
                else:
                    k += 1
            tags = bio_tags(n, spans)
            if rng.random() < 0.2:  # any tags at all, I-x after O included, as decoding without constraints gives
                tags = [rng.choice(TAGS) for _ in range(n)]
            batch.append((tokens, tags))
        got = run(snapper, batch)
        for (tokens, tags), out in zip(batch, got):
            assert out == reference(tokens, tags, values), (tokens, tags)
            assert invalid([tags]) or not invalid([out]), "valid BIO stays valid"
            changed += out != tags
    assert changed > 25  # the cases exercise the rule, not only its refusals


def test_known_values_fold_and_sort() -> None:
    """Values per attribute, ASCII-folded (other letters kept), each once, in order."""
    sentences = [Sentence(["Park", "AVENUE", "Ésprit"], ["B-brand", "I-brand", "B-brand"], 1),
                 Sentence(["park", "avenue"], ["B-brand", "I-brand"], 3)]
    assert known_values(sentences) == {"brand": [["park", "avenue"], ["Ésprit"]]}


def test_known_values_come_from_whole_sentences(tmp_path: Path) -> None:
    """A value that max_len cuts in two is known whole, and a held-out dev sentence stays whole with all its pieces."""
    rows = [("x", "O"), ("Zaveri", "B-brand"), ("Pearls", "I-brand"), ("ring", "O")]
    (tmp_path / "V").mkdir()
    text = "".join(f"{t}\t{g}\n" for t, g in rows) + "\n"
    for k in range(40):  # enough sentences that some are held out as dev
        text += "".join(f"w{k}\tO\n" for _ in range(k % 3 + 1)) + "\n"
    (tmp_path / "V" / "train.conll").write_text(text)
    (tmp_path / "V" / "test.conll").write_text("a\tO\n")
    data = load_task(tmp_path, "V", strict_bio=False, max_len=2)
    assert data.values == {"brand": [["zaveri", "pearls"]]}
    assert [s.tags for s in data.train[:2]] == [("O", "B-brand"), ("B-brand", "O")], "training is still cut"
    assert data.dev_held_out and any(len(s.tokens) == 3 for s in data.dev), "dev sentences are not cut"


def test_no_multi_word_values_leaves_tags() -> None:
    """A vertical without multi-word values returns the tags it was given."""
    ids = tf.constant([[1, 1, 0]], tf.int32)
    out = Snapper(TAGS, {"brand": [["sukkhi"]]})(tf.constant([["a", "b", "c"]]), tf.constant([3]), ids)
    np.testing.assert_array_equal(out.numpy(), ids.numpy())


def test_tagger_and_saved_model_snap(pair_model: Path, data_dir: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A trained model given a known value that extends one of its decoded values by the next word: the Tagger's
    tags are the reference rule's on its unsnapped tags, a snapped token's confidence is its new tag's marginal, the
    rule traced (after the eager batches, or from `warm`) gives what it gives run eagerly, and the SavedModel tags and
    scores as the Tagger."""
    task = "Chain x"
    plain = Tagger.load(pair_model, decoding={"snap_values": False})
    sentences = [list(s.tokens) for s in read_conll(data_dir / task / "test.conll")]
    before = plain.predict(sentences, task)
    attr, a, tokens = next((attr, a, s) for s, tags in zip(sentences, before) for attr, a, b in chunks(tags)
                           if b == a + 1 < len(s) and f"I-{attr}" in plain.vocab.tags[task] and tags[b] == "O")
    values = {attr: [[fold(tokens[a]), fold(tokens[a + 1])]]}
    tagger = Tagger.load(pair_model)
    tagger.vocab.values = {**tagger.vocab.values, task: values}
    after, confidence = tagger.tag(sentences, task)
    assert after == [reference(s, t, values) for s, t in zip(sentences, before)]
    changed = [i for i, (x, y) in enumerate(zip(before, after)) if x != y]
    assert changed
    raw, _ = plain.tag(sentences, task, temperature=tagger.calibration[task].temperature)
    i = changed[0]
    k = next(k for k, (x, y) in enumerate(zip(before[i], after[i])) if x != y)
    net = tagger.nets[task]
    batch = pad(encode([sentences[i]], tagger.vocab, tagger.params.max_word_len))
    _, [marginals] = net.decode_with_marginals(task, batch, [tagger.calibration[task].temperature], every_tag=True)
    assert confidence[i][k] == pytest.approx(float(marginals[0, k, tagger.vocab.tags[task].index(after[i][k])]))
    assert raw[i][k] != pytest.approx(confidence[i][k]), "the confidence of the new tag, not of the decoded one"
    monkeypatch.setattr(tagger_module, "EAGER_SNAPS", 0)
    traced = Tagger.load(pair_model)
    traced.vocab.values = tagger.vocab.values
    assert traced.tag(sentences, task) == (after, confidence)
    assert (task, "snap") in traced._decoders and (task, "snap") not in tagger._decoders
    monkeypatch.undo()
    warmed = Tagger.load(pair_model)
    warmed.vocab.values = tagger.vocab.values
    warmed.warm([task])  # a long run (extract) traces the rule before its first batch
    assert (task, "snap") in warmed._decoders and warmed.tag(sentences, task) == (after, confidence)
    write_saved_model(tagger, tmp_path / "saved")
    serve = tf.saved_model.load(str(tmp_path / "saved")).signatures[signature_keys(tagger.tasks)[task]]
    width = max(map(len, sentences))
    out = serve(tokens=tf.constant([s + [""] * (width - len(s)) for s in sentences]),
                lengths=tf.constant([len(s) for s in sentences], tf.int32))
    got = [[t.decode() for t in row[:len(s)]] for row, s in zip(out["tags"].numpy(), sentences)]
    assert got == after
    np.testing.assert_allclose(out["confidence"].numpy()[i, :len(sentences[i])], confidence[i], atol=1e-5)


def test_training_keeps_each_vertical_s_known_values(pair_model: Path, data_dir: Path) -> None:
    """vocab.json holds each training split's values, and a plain train decodes with the rule on."""
    tagger = Tagger.load(pair_model)
    assert tagger.vocab.values == {t: known_values(read_conll(data_dir / t / "train.conll")) for t in tagger.tasks}
    assert Params().snap_values and tagger.snap_rule("Chain x") is not None
    assert Tagger.load(pair_model, decoding={"snap_values": False}).snap_rule("Chain x") is None
