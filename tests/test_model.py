"""The network's parts: the char encoder (each distinct word encoded once), stateless dropout and the lexical
feature scores."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mtl_tagger.bilstm import bilstm_final
from mtl_tagger.initializers import SeedSequence
from mtl_tagger.lexical import AFFIXES, OFFSETS, PAIR_TEMPLATES, TEMPLATES, feature_buckets, lower_char_ids
from mtl_tagger.model import CharEncoder, TaggerNet, dropout
from mtl_tagger.params import Params
from mtl_tagger.pipeline import encode, pad
from mtl_tagger.vocab import Vocab, shape

SENTENCES = [["Gold", "ring"], ["Silver", "chain", "set"]]  # the loss tests' sentences, every word in the vocabulary


def _vocab(sentences: list[list[str]], words: list[str], tags: dict[str, list[str]]) -> Vocab:
    """A vocabulary of `words` (after <pad> and <unk>), the characters of `sentences`, and `tags`."""
    return Vocab(words=["<pad>", "<unk>", *words], tags=tags,
                 chars=["<pad>", "<unk>"] + sorted({c for s in sentences for w in s for c in w}))


def _batch(sentences: list[list[str]], vocab: Vocab) -> dict[str, tf.Tensor]:
    """`sentences` encoded and padded as one batch of tensors."""
    return {k: tf.constant(v) for k, v in pad(encode(sentences, vocab, 20)).items()}


@pytest.mark.parametrize("kind", ["lstm", "cnn"])
def test_char_encoder_equals_each_word_alone(kind: str) -> None:
    rng = np.random.default_rng(0)
    enc = CharEncoder(30, 6, 5, kind, SeedSequence(3))
    spelling = {w: rng.integers(1, 30, rng.integers(1, 8)) for w in range(2, 9)}
    words = np.array([[3, 5, 3, 1, 1, 0], [5, 8, 2, 3, 0, 0]], np.int32)  # repeats, two unknown words (id 1)
    chars = np.zeros((2, 6, 8), np.int32)
    for (b, t), w in np.ndenumerate(words):
        if w > 1:
            chars[b, t, :len(spelling[w])] = spelling[w]
        elif w == 1:
            chars[b, t, :3] = rng.integers(1, 30, 3)  # unknown words spell differently
    got = enc(tf.constant(chars), tf.constant(words)).numpy()
    for (b, t), w in np.ndenumerate(words):
        if w == 0:
            assert not got[b, t].any()
            continue
        alone = enc(tf.constant(chars[b:b + 1, t:t + 1]), tf.constant(words[b:b + 1, t:t + 1])).numpy()[0, 0]
        np.testing.assert_allclose(got[b, t], alone, atol=1e-6)
    assert not np.allclose(got[0, 3], got[0, 4]), "two unknown words keep their own spellings"
    if kind == "lstm":
        row = tf.gather(enc.embedding, chars[1, 1][None, :len(spelling[8])])
        np.testing.assert_allclose(got[1, 1], bilstm_final(row, tf.constant([len(spelling[8])]), enc.forward,
                                                           enc.backward).numpy()[0], atol=1e-6)


def test_dropout_is_stateless_and_scaled() -> None:
    x = tf.ones([200, 50])
    a, b = dropout(x, 0.5, tf.constant([1, 2], tf.int64)), dropout(x, 0.5, tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert set(np.unique(a.numpy())) == {0.0, 2.0} and abs(float(tf.reduce_mean(a)) - 1.0) < 0.05
    assert not np.array_equal(a.numpy(), dropout(x, 0.5, tf.constant([1, 3], tf.int64)).numpy())
    assert dropout(x, 0.5, None) is x



def _feature_names(tokens: list[str], t: int, pairs: bool = False, gone: int | None = None) -> list[str | None]:
    """The feature CRF's names of token t's features in lexical.py's template order (None: not there); `gone`: a
    token that gives no word features (as word dropout leaves it), though its place still counts."""
    def lower(w: str) -> str:
        return w.lower()

    w = tokens[t]
    own = [f"lower={lower(w)}", f"shape={shape(w)}"] + [f"prefix{n}={lower(w)[:n]}" for n in AFFIXES] + [
        f"suffix{n}={lower(w)[-n:]}" for n in AFFIXES]
    for offset in OFFSETS:
        u = tokens[t + offset] if 0 <= t + offset < len(tokens) and t + offset != gone else None
        own += [None] * 3 if u is None else [f"{offset}:suffix3={lower(u)[-3:]}", f"{offset}:lower={lower(u)}",
                                             f"{offset}:shape={shape(u)}"]
    if pairs:
        left, right = (tokens[t - 1].lower() if t else "BOS"), (tokens[t + 1].lower() if t + 1 < len(tokens) else "EOS")
        own += [f"-1|0={left}|{lower(w)}" if t - 1 != gone else None,
                f"0|+1={lower(w)}|{right}" if t + 1 != gone else None]
    if t == gone:
        own = [None] * len(own)
    if pairs:
        own += [f"start={t + 1}" if t < 2 else None, f"end={len(tokens) - t}" if len(tokens) - t <= 2 else None]
    return own


@pytest.mark.parametrize("pairs", [False, True])
def test_lexical_features_are_the_crf_s_templates_hashed(pairs: bool) -> None:
    sentences = [["Gold", "plated", "Ring", "925"], ["gold", "Plating", "ring", "Sterling", "silver", "ab"],
                 ["Ring", "gold", "plated"], ["Ring", "ab"], ["ab"]]
    gone = {1: 4, 2: 0}  # sentence → a token that gives no word features (word dropout), though its place counts
    chars = ["<pad>", "<unk>"] + sorted({c for s in sentences for w in s for c in w})
    vocab = Vocab(words=["<pad>", "<unk>"] + sorted({w for s in sentences for w in s}), chars=chars, tags={"V": ["O"]})
    batch = pad(encode(sentences, vocab, 20))
    present = batch["words"] > 0
    for b, t in gone.items():
        present[b, t] = False
    args = (tf.constant(batch["chars"]), tf.constant(batch["case"]), tf.constant(present),
            tf.constant(lower_char_ids(chars)), 1 << 20)
    buckets, there = (x.numpy() for x in feature_buckets(*args, tf.constant(batch["length"]) if pairs else None))
    assert buckets.shape[-1] == TEMPLATES + PAIR_TEMPLATES * pairs
    without = [x.numpy() for x in feature_buckets(*args)]
    np.testing.assert_array_equal(buckets[..., :TEMPLATES], without[0])  # the pairs leave the others as they were
    np.testing.assert_array_equal(there[..., :TEMPLATES], without[1])
    slots = {}  # feature name → the buckets it was hashed to
    for b, tokens in enumerate(sentences):
        names = [_feature_names(tokens, t, pairs, gone.get(b)) for t in range(len(tokens))]
        for t, row in enumerate(names):
            for k, name in enumerate(row):
                assert there[b, t, k] == (name is not None), (tokens[t], k)
                if name is not None:
                    slots.setdefault(name, set()).add(int(buckets[b, t, k]))
        assert not there[b, len(tokens):].any()
    assert all(len(v) == 1 for v in slots.values()), "one feature, one bucket"
    assert len({min(v) for v in slots.values()}) == len(slots), "different features, different buckets"
    assert {"lower=gold", "shape=3", "shape=1", "-1:lower=gold", "1:suffix3=ing"} <= set(slots)
    if pairs:
        assert {"-1|0=BOS|gold", "0|+1=gold|plated", "-1|0=gold|plated", "0|+1=plated|EOS", "0|+1=ab|EOS",
                "-1|0=BOS|ab", "start=1", "end=1", "end=2"} <= set(slots)


@pytest.mark.parametrize("pairs,scale", [(False, 1.0), (True, 1.0), (False, 4.0)])
def test_lexical_scores_add_each_feature_s_weight_and_drop_dropped_words(pairs: bool, scale: float) -> None:
    sentences = [["Gold", "plated", "ring", "xyz"], ["Sterling", "925"]]
    vocab = _vocab(sentences, ["Gold", "plated", "ring", "Sterling", "925"], {"V": ["O", "B-a", "I-a"]})
    p = Params(tasks="V", lexical_buckets=64, lexical_pairs=pairs, lexical_step=scale, hidden_size=4, word_dim=4,
               char_dim=2, char_hidden=2, word_dropout=0.5)
    net = TaggerNet(p, vocab)
    batch = _batch(sentences, vocab)
    plain = net.heads["V"].emissions(net.encoder(batch)).numpy()
    np.testing.assert_allclose(net.scores("V", batch).numpy(), plain, atol=1e-6)  # zero weights: no change
    weights = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    net.heads["V"].lexical.assign(weights)
    seed = tf.constant([3, 4], tf.int64)
    kept = (net.encoder.dropped_words(batch["words"], seed) != 1) | (batch["words"] == 1)
    assert not kept.numpy()[batch["words"].numpy() > 0].all(), "the seed drops some word"
    for s, present in ((None, batch["words"] > 0), (seed, (batch["words"] > 0) & kept)):
        buckets, there = feature_buckets(batch["chars"], batch["case"], present, net.lower_chars, 64,
                                         batch["length"] if pairs else None)
        expected = scale * np.einsum("btk,btkn->btn", there.numpy().astype(np.float32), weights[buckets.numpy()])
        got = net.scores("V", batch, s).numpy() - net.heads["V"].emissions(net.encoder(batch, s)).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(expected).sum() > 0


def test_lexical_step_multiplies_the_gradient_the_spelling_weights_train_on() -> None:
    vocab = _vocab(SENTENCES, [w for s in SENTENCES for w in s], {"A": ["O", "B-a", "I-a"]})
    batch = {**_batch(SENTENCES, vocab), "tags": tf.constant([[1, 0, 0], [0, 1, 2]], tf.int32)}
    grads = []
    for scale in (1.0, 4.0):  # zero spelling weights: the same loss at either scale
        net = TaggerNet(Params(tasks="A", lexical_buckets=32, lexical_step=scale, hidden_size=4, word_dim=4,
                               char_dim=2, char_hidden=2), vocab)
        with tf.GradientTape() as tape:
            loss = net.crf_loss("A", batch, tf.constant([1, 2], tf.int64))
        grads.append(tf.convert_to_tensor(tape.gradient(loss, net.heads["A"].lexical)).numpy())
    assert np.abs(grads[0]).sum() > 0
    np.testing.assert_allclose(grads[1], 4.0 * grads[0], rtol=1e-5, atol=1e-7)


def test_lexical_l2_adds_its_weight_times_the_squares_of_each_head_s_spelling_weights() -> None:
    from mtl_tagger.loss import step_loss

    vocab = _vocab(SENTENCES, [w for s in SENTENCES for w in s], {"A": ["O", "B-a", "I-a"], "B": ["O", "B-b"]})
    p = Params(tasks="A,B", lexical_buckets=32, hidden_size=4, word_dim=4, char_dim=2, char_hidden=2)
    net = TaggerNet(p, vocab)
    rng = np.random.default_rng(1)
    for head in net.heads.values():
        head.lexical.assign(rng.normal(size=head.lexical.shape).astype(np.float32))
    inputs = {t: {**_batch(SENTENCES, vocab), "tags": tf.zeros([2, 3], tf.int32)} for t in ("A", "B")}
    inputs["count"] = {"A": tf.constant(2.0), "B": tf.constant(2.0)}
    seed = tf.constant([1, 2], tf.int64)
    plain, _ = step_loss(net, ["A", "B"], None, [], 0.0, inputs, seed)
    penalised, terms = step_loss(net, ["A", "B"], None, [], 0.0, inputs, seed, lexical_l2=0.01)
    squares = sum(float(np.square(net.heads[t].lexical.numpy()).sum()) for t in ("A", "B"))
    np.testing.assert_allclose(float(penalised - plain), 0.01 * squares, rtol=1e-4)
    shared, _ = step_loss(net, ["A", "B"], None, [], 0.0, inputs, seed, lexical_l2=0.01, replicas=2)
    np.testing.assert_allclose(float(shared - plain), 0.005 * squares, rtol=1e-4)  # each of 2 workers counts half
    np.testing.assert_allclose(float(terms["l2/A"]), np.square(net.heads["A"].lexical.numpy()).sum(), rtol=1e-5)


def test_size_weight_weighs_each_vertical_s_crf_loss_by_its_share_of_the_training_sentences() -> None:
    from mtl_tagger.loss import step_loss
    from mtl_tagger.run import size_weights

    assert size_weights({"A": 300, "B": 100}, 0.0) == {"A": 1.0, "B": 1.0}
    assert size_weights({"A": 7}, 1.0) == {"A": 1.0}
    np.testing.assert_allclose(list(size_weights({"A": 300, "B": 100}, 0.5).values()), [1.5 ** 0.5, 0.5 ** 0.5])
    vocab = _vocab(SENTENCES, [w for s in SENTENCES for w in s], {"A": ["O", "B-a"], "B": ["O", "B-b"]})
    net = TaggerNet(Params(tasks="A,B", mtl_mode="shared", hidden_size=4, word_dim=4, char_dim=2, char_hidden=2),
                    vocab)
    inputs = {t: {**_batch(SENTENCES, vocab), "tags": tf.ones([2, 3], tf.int32)} for t in ("A", "B")}
    inputs["count"] = {"A": tf.constant(2.0), "B": tf.constant(2.0)}
    seed = tf.constant([1, 2], tf.int64)
    plain, terms = step_loss(net, ["A", "B"], None, [], 0.0, inputs, seed)
    weighted, _ = step_loss(net, ["A", "B"], None, [], 0.0, inputs, seed, task_weights={"A": 2.0, "B": 0.25})
    np.testing.assert_allclose(float(plain), float(terms["crf/A"] + terms["crf/B"]), rtol=1e-5)
    np.testing.assert_allclose(float(weighted), float(2.0 * terms["crf/A"] + 0.25 * terms["crf/B"]), rtol=1e-5)


def test_the_loop_weighs_each_vertical_by_its_training_sentences(data_dir: Path, tmp_path: Path) -> None:
    from conftest import smoke_params

    from mtl_tagger.corpus import load_data
    from mtl_tagger.run import build
    from mtl_tagger.train import make_loop

    p = smoke_params(data_dir, tmp_path / "m", task_b="Mangal-sutra", mtl_mode="shared", size_weight=1.0)
    data = load_data(p)
    sizes = {t: len(d.train) for t, d in data.tasks.items()}
    assert len(set(sizes.values())) == 2, "the two synthetic verticals differ in size"
    loop, _, _ = make_loop(build(p, data, tmp_path / "m", write=False), tmp_path / "m")
    mean = sum(sizes.values()) / 2
    assert loop.task_weights == pytest.approx({t: n / mean for t, n in sizes.items()})


def test_the_vertical_embedding_gives_each_vertical_its_own_encoding_and_is_trained() -> None:
    from mtl_tagger.loss import step_loss

    vocab = _vocab(SENTENCES, [w for s in SENTENCES for w in s], {"A": ["O", "B-a"], "B": ["O", "B-b"]})
    small = dict(tasks="A,B", mtl_mode="shared", hidden_size=4, word_dim=4, char_dim=2, char_hidden=2)
    batch = _batch(SENTENCES, vocab)
    plain = TaggerNet(Params(**small), vocab)
    assert not [v for v in plain.trainable_variables if "vertical" in v.name], "none without the flag"
    np.testing.assert_array_equal(plain.encoder(batch).numpy(), plain.encoder(batch, vertical=1).numpy())
    net = TaggerNet(Params(**small, vertical_dim=3), vocab)
    a, b = net.encoder(batch, vertical=0).numpy(), net.encoder(batch, vertical=1).numpy()
    assert not np.allclose(a, b), "the same sentences, read as two verticals"
    np.testing.assert_array_equal(a[0, 2:], 0.0)  # still 0 past each length
    with pytest.raises(ValueError, match="say which vertical"):
        net.encoder(batch)
    inputs = {t: {**batch, "tags": tf.ones([2, 3], tf.int32)} for t in ("A", "B")}
    inputs["count"] = {"A": tf.constant(2.0), "B": tf.constant(2.0)}
    with tf.GradientTape() as tape:
        loss, _ = step_loss(net, ["A", "B"], None, [], 0.0, inputs, tf.constant([1, 2], tf.int64))
    grad = tape.gradient(loss, net.encoder.vertical_embedding).numpy()
    assert np.abs(grad).sum(axis=1).min() > 0, "each vertical's row learns from its own minibatch"
