"""Valid BIO output everywhere: freshly initialised models, whose random transitions decode many an I-x after O or
at the start without the constraints, decode every test sentence of every Flipkart vertical single-task, and of
several verticals in one shared model through Tagger and through its SavedModel, with no I-x that continues no
value; with --nobio_constraints decoding is the plain Viterbi of the learned transitions plus the prior, as
before."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, SMOKE
from test_catalog import shared_file
from test_export import padded

from mtl_tagger import crf
from mtl_tagger.corpus import load_data
from mtl_tagger.modeldir import restore
from mtl_tagger.params import Params, read_flagfile
from mtl_tagger.pipeline import encode, eval_batches
from mtl_tagger.prepare import prepare
from mtl_tagger.run import build
from mtl_tagger.saved_model import write_saved_model
from mtl_tagger.tagger import EVAL_BATCH, Tagger

SHARED = ["Bangle", "Necklace", "Ring", "Top"]  # most of the test sentences, jewellery and clothing; each vertical
# costs a trace of its decoder and of its SavedModel signature


@pytest.fixture(scope="module")
def flipkart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Flipkart sample of ../shared prepared as BIO data, every vertical."""
    out = tmp_path_factory.mktemp("flipkart") / "data"
    prepare(shared_file("data/flipkart/products.jsonl.gz"), out)
    return out


def verticals(data_dir: Path) -> list[str]:
    """Every vertical of a data dir."""
    return sorted(p.name for p in data_dir.iterdir() if p.is_dir())


def untrained(data_dir: Path, tasks: list[str], **overrides: object) -> tuple[Tagger, dict[str, list[list[str]]]]:
    """A Tagger over a freshly initialised smoke network of `tasks` (shared when several; each vertical's tag prior
    set from its training split, as training sets it), and each vertical's test sentences. Snapping keeps BIO valid
    (test_snap), so it is left off here, as in every smoke run."""
    p = Params(**{**SMOKE, "tasks": ",".join(tasks), "mtl_mode": "shared" if len(tasks) > 1 else "",
                  "data_dir": str(data_dir), "model_dir": str(data_dir / "unused"), **overrides}).validate()
    data = load_data(p)
    net = build(p, data, Path(p.model_dir), write=False).net
    return Tagger(p, data.vocab, {t: net for t in tasks}), {t: [list(s.tokens) for s in data.tasks[t].test]
                                                            for t in tasks}


def invalid(tag_lists: list[list[str]]) -> list[list[str]]:
    """The tag sequences with an I-x that continues no value: first, or after a tag other than B-x and I-x."""
    return [tags for tags in tag_lists
            if any(t.startswith("I-") and (i == 0 or tags[i - 1] not in ("B" + t[1:], t)) for i, t in enumerate(tags))]


def test_single_task_models_decode_valid_bio(flipkart: Path) -> None:
    for vertical in verticals(flipkart):
        tagger, test = untrained(flipkart, [vertical])
        predicted = tagger.predict(test[vertical], vertical)
        assert len(predicted) == len(test[vertical]) and not invalid(predicted), vertical


@pytest.fixture(scope="module")
def shared(flipkart: Path) -> tuple[Tagger, dict[str, list[list[str]]], dict[str, list[list[str]]]]:
    """A shared model over SHARED, their test sentences and tags by Tagger.tag with marginals (what extract decodes
    with; predict's decoder is the single-task test's)."""
    tagger, test = untrained(flipkart, SHARED)
    return tagger, test, {v: tagger.tag(sentences, v)[0] for v, sentences in test.items()}


def test_shared_model_decodes_valid_bio(shared: tuple[Tagger, dict, dict]) -> None:
    tagger, test, tagged = shared
    for vertical, sentences in test.items():
        assert not invalid(tagged[vertical]), vertical
        records = tagger.extract([" ".join(tokens) for tokens in sentences], vertical)
        assert not invalid([r["tags"] for r in records]), vertical
        assert all(0 <= v["confidence"] <= 1 for r in records for v in r["values"]), vertical


def test_saved_model_decodes_valid_bio(shared: tuple[Tagger, dict, dict], tmp_path: Path) -> None:
    tagger, test, tagged = shared
    info = write_saved_model(tagger, tmp_path / "saved")
    model = tf.saved_model.load(str(tmp_path / "saved"))
    for vertical, sentences in test.items():
        tokens, lengths = padded(sentences)
        out = model.signatures[info["verticals"][vertical]["signature"]](
            tokens=tf.constant(tokens), lengths=tf.constant(lengths, tf.int32))
        tags = [[t.decode() for t in row[:n]] for row, n in zip(out["tags"].numpy(), lengths)]
        assert tags == tagged[vertical] and not invalid(tags), vertical


def test_without_constraints_decoding_is_plain_viterbi(flipkart: Path) -> None:
    """--nobio_constraints (flags/paper.cfg): tags and marginals under the learned transitions plus the prior alone,
    which on these weights break BIO (so the tests above can fail)."""
    assert read_flagfile(REPO / "flags" / "paper.cfg")["bio_constraints"] is False
    tagger, test = untrained(flipkart, ["Top"], bio_constraints=False)
    net = tagger.nets["Top"]
    head = net.heads["Top"]
    fused = head.crf.transitions + head.crf.prior
    for _, batch in eval_batches(encode(test["Top"], tagger.vocab, tagger.params.max_word_len), EVAL_BATCH):
        emissions = head.emissions(net.encoder(batch))
        tags, [confidence] = net.decode_with_marginals("Top", batch, [1.0])
        np.testing.assert_array_equal(tags.numpy(), crf.viterbi_decode(emissions, batch["length"], fused)[0].numpy())
        np.testing.assert_array_equal(net.decode("Top", batch).numpy(), tags.numpy())
        marginals = crf.marginals(emissions, batch["length"], fused)
        np.testing.assert_allclose(confidence.numpy(), tf.gather(marginals, tags, batch_dims=2).numpy(), atol=1e-6)
    assert len(invalid(tagger.predict(test["Top"], "Top"))) > 5


def test_models_written_before_the_constraints_decode_as_before(flipkart: Path, tmp_path: Path) -> None:
    """A params.json without the field reads as unconstrained, as such a model was trained and selected; the
    constraints add no variable: a checkpoint written without them restores into a constrained model."""
    assert not Params.from_json({"tasks": "Chain"}).bio_constraints and Params().bio_constraints
    old, _ = untrained(flipkart, ["Chain"], bio_constraints=False)
    new, _ = untrained(flipkart, ["Chain"], seed=7)
    restore(new.nets["Chain"], tf.train.Checkpoint(net=old.nets["Chain"]).write(str(tmp_path / "ckpt")), tmp_path)
    for a, b in zip(old.nets["Chain"].variables, new.nets["Chain"].variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
