"""tf.data batches and coupling minibatches: every context's score is looked up where it was encoded."""
import numpy as np
import pytest

from mtl_tagger import pipeline
from mtl_tagger.shortlist import make_contexts
from mtl_tagger.vocab import Vocab


def _corpus(rng: np.random.Generator, sizes: dict[str, int], tags: dict[str, list[str]]) -> tuple:
    """Sentences whose every token is unique (so a window identifies its context), encoded per task."""
    tokens = {t: [[f"{t}{j}_{i}" for i in range(rng.integers(1, 30))] for j in range(n)] for t, n in sizes.items()}
    gold = {t: [[tags[t][rng.integers(0, len(tags[t]))] for _ in s] for s in tokens[t]] for t in sizes}
    vocab = Vocab.build([s for t in sizes for s in tokens[t]], gold)
    return tuple(pipeline.encode(tokens[t], vocab, 5, t, gold[t]) for t in sizes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coupling_batch_refs_point_at_each_contexts_own_sentence_position_and_tag(seed: int) -> None:
    rng = np.random.default_rng(seed)
    examples = _corpus(rng, {"A": 12, "B": 9}, {"A": ["O", "B-x", "I-x"], "B": ["O", "B-y", "B-z", "I-z"]})
    contexts = tuple(make_contexts([e["words"] for e in ex], [e["tags"] > 0 for e in ex], 1) for ex in examples)
    k = 4
    neighbors = tuple(np.where(rng.random((len(contexts[s]), k)) < 0.6,
                               rng.integers(0, len(contexts[1 - s]), (len(contexts[s]), k)), -1) for s in (0, 1))
    neighbors = tuple(-np.sort(-n, axis=1) for n in neighbors)  # real neighbours first, as the shortlist gives
    data = pipeline.ShortlistData.build(contexts, examples, neighbors)
    batch = next(pipeline.coupling_batches(data, examples, 7, seed, 0))

    def value(side: int, sentence: int, pos: int, tag: int) -> float:
        return 10000 * side + 100 * sentence + 10 * pos + tag + 0.5

    # Fake emissions: each head scores (row, position, tag) by a code of the row's own sentence.
    scores = []
    for g in range(pipeline.LENGTH_GROUPS):
        sent = batch[f"sentences_{g}"]
        ids = [next((si, j) for si in (0, 1) for j, e in enumerate(examples[si])
                    if int(e["length"]) == n and np.array_equal(e["words"], w[:n]))
               for w, n in zip(sent["words"], sent["length"])]
        for side, name in ((0, "a"), (1, "b")):
            for row, pos, tag in batch[f"lookup_{g}{name}"]:
                si, j = ids[row]
                assert si == side, "a context is scored by its own task's head"
                scores.append(value(side, j, pos, tag))
    scores = np.array(scores)
    for r, (d, ctx) in enumerate(batch_anchors(data, batch)):
        c = data.contexts[d]
        assert scores[batch["anchor_ref"][r]] == value(d, c.sentence[ctx], c.position[ctx], data.gold[d][ctx])
        assert batch["anchor_tag"][r] == data.gold[d][ctx]
        assert np.array_equal(batch["anchor_window"][r], c.windows[ctx])
        nb = data.neighbors[d][ctx]
        nb = nb[nb >= 0]
        assert batch["mask"][r].sum() == len(nb)
        o = data.contexts[1 - d]
        for m, n in enumerate(nb):
            want = value(1 - d, o.sentence[n], o.position[n], data.gold[1 - d][n])
            assert scores[batch["neighbor_ref"][r, m]] == want
            assert np.array_equal(batch["neighbor_window"][r, m], o.windows[n])


def batch_anchors(data: pipeline.ShortlistData, batch: dict) -> list[tuple[int, int]]:
    """Recover each batch row's (direction, context) from its window (unique: every token is unique)."""
    out = []
    for d, win in zip(batch["direction"], batch["anchor_window"]):
        (hit,) = np.flatnonzero((data.contexts[d].windows == win).all(axis=1))
        out.append((int(d), int(hit)))
    return out


def test_coupling_batches_visit_every_anchor_once_per_pass() -> None:
    rng = np.random.default_rng(0)
    examples = _corpus(rng, {"A": 10, "B": 10}, {"A": ["O", "B-x"], "B": ["O", "B-y"]})
    contexts = tuple(make_contexts([e["words"] for e in ex], [e["tags"] >= 0 for e in ex], 0) for ex in examples)
    neighbors = tuple(np.zeros((len(contexts[s]), 1), np.int64) for s in (0, 1))
    data = pipeline.ShortlistData.build(contexts, examples, neighbors)
    gen = pipeline.coupling_batches(data, examples, 5, 0, 0)
    n_batches = -(-len(data.anchors) // 5)
    seen = sorted(a for _ in range(n_batches) for a in batch_anchors(data, next(gen)))
    assert seen == sorted(map(tuple, data.anchors.tolist())), "each anchor exactly once per pass"


def test_length_groups_minimise_padding() -> None:
    groups = pipeline._length_groups([3, 50, 4, 48, 5], 2)
    assert sorted(map(sorted, groups)) == [[0, 2, 4], [1, 3]]
