"""Minibatch plans and the one tf.data pipeline: fixed by (seed, step), every sentence once per epoch, in-graph
gathers equal to padding in numpy, and a pipeline started at step s equal to the tail of one started at 0."""
import numpy as np
import tensorflow as tf

from mtl_tagger import pipeline
from mtl_tagger.vocab import Vocab


def _examples(rng: np.random.Generator, n: int) -> list[pipeline.Example]:
    tokens = [[f"w{rng.integers(0, 50)}" for _ in range(rng.integers(1, 40))] for _ in range(n)]
    tags = [["O" if rng.random() < 0.7 else "B-x" for _ in s] for s in tokens]
    return pipeline.encode(tokens, Vocab.build(tokens, {"T": tags}), 6, "T", tags)


def test_every_sentence_once_per_epoch_and_batches_share_a_length_bucket() -> None:
    lengths = np.random.default_rng(0).integers(1, 120, 97)
    per_epoch = pipeline.batches_per_epoch(lengths, 8, 200)
    plan = pipeline.batch_plan(lengths, 8, 200, seed=1, stream=0, steps=3 * per_epoch)
    bounds = pipeline.bucket_boundaries(200)
    for e in range(3):
        rows = plan[e * per_epoch:(e + 1) * per_epoch]
        assert sorted(rows[rows >= 0]) == list(range(97))
        for row in rows:
            assert len(set(np.searchsorted(bounds, lengths[row[row >= 0]], side="right"))) == 1


def test_plan_depends_on_seed_and_step_only() -> None:
    lengths = np.random.default_rng(1).integers(1, 60, 40)
    long = pipeline.batch_plan(lengths, 6, 200, seed=3, stream=2, steps=50)
    np.testing.assert_array_equal(pipeline.batch_plan(lengths, 6, 200, seed=3, stream=2, steps=20), long[:20])
    assert not np.array_equal(pipeline.batch_plan(lengths, 6, 200, seed=4, stream=2, steps=50), long)
    assert not np.array_equal(pipeline.batch_plan(lengths, 6, 200, seed=3, stream=1, steps=50), long)


def test_in_graph_batch_equals_numpy_padding() -> None:
    examples = _examples(np.random.default_rng(2), 12)
    table = pipeline.SentenceTable(examples)
    rows = [7, 0, 11, 3]
    got = table.batch(tf.constant(rows))
    want = pipeline.pad([examples[r] for r in rows])
    for key in pipeline.BATCH_KEYS:
        np.testing.assert_array_equal(got[key].numpy(), want[key])


def test_in_graph_batch_of_no_rows_or_one_short_word_equals_numpy_padding() -> None:
    """No rows, and one sentence of one one-letter word, are laid out as `pad` lays them out: at least one word
    slot of at least one character slot, so the BiLSTMs never run over zero steps."""
    tokens = [["a"], ["bb", "c"]]
    examples = pipeline.encode(tokens, Vocab.build(tokens, {"T": [["O"], ["O", "O"]]}), 6, "T", [["O"], ["O", "O"]])
    table = pipeline.SentenceTable(examples)
    for rows in ([], [0]):
        got = table.batch(tf.constant(rows, tf.int32))
        want = pipeline.pad([examples[r] for r in rows])
        for key in pipeline.BATCH_KEYS:
            assert got[key].shape == want[key].shape
            np.testing.assert_array_equal(got[key].numpy(), want[key])


def test_pipeline_from_a_later_step_is_the_tail_of_the_whole() -> None:
    examples = _examples(np.random.default_rng(3), 30)
    table = pipeline.SentenceTable(examples)
    lengths = np.array([int(e["length"]) for e in examples])
    plans = {"T": pipeline.batch_plan(lengths, 4, 200, seed=0, stream=0, steps=12)}
    whole = list(pipeline.step_dataset(table, plans, {"T": 0}, start=0))
    tail = list(pipeline.step_dataset(table, plans, {"T": 0}, start=5))
    assert [int(x["step"]) for x in tail] == list(range(5, 12))
    for a, b in zip(whole[5:], tail):
        np.testing.assert_array_equal(a["T"]["words"].numpy(), b["T"]["words"].numpy())


def test_eval_batches_cover_every_sentence_in_length_order() -> None:
    examples = _examples(np.random.default_rng(4), 23)
    batches = pipeline.eval_batches(examples, 5)
    positions = np.concatenate([p for p, _ in batches])
    assert sorted(positions) == list(range(23))
    lengths = [int(examples[i]["length"]) for i in positions]
    assert lengths == sorted(lengths)
    for p, batch in batches:
        assert batch["length"].tolist() == [int(examples[i]["length"]) for i in p]
