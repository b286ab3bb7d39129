"""The blocked, deduplicated, prefix-filtered shortlist equals a brute-force cosine shortlist."""
import numpy as np
import pytest

from mtl_tagger import shortlist
from mtl_tagger.shortlist import (
    Contexts,
    Shortlist,
    build_shortlist,
    load_shortlist,
    make_contexts,
    save_shortlist,
    threshold_hint,
)


def _brute(a: Contexts, b: Contexts, embeddings: np.ndarray, threshold: float,
           k: int) -> Shortlist:
    """Every pair in float64; neighbours by (cosine desc, index asc); row 0 counts as a zero vector."""
    emb = embeddings.astype(np.float64).copy()
    emb[0] = 0.0

    def unit(c: Contexts) -> np.ndarray:
        u = emb[c.windows].reshape(len(c), -1)
        n = np.linalg.norm(u, axis=1, keepdims=True)
        return u / np.where(n > 0, n, 1.0)

    sims = np.round(unit(a) @ unit(b).T, 9)  # BLAS may round equal rows differently: keep true ties tied

    def table(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        neighbors = np.full((len(s), k), -1, np.int32)
        cosine = np.zeros((len(s), k), np.float32)
        for i, row in enumerate(s):
            hits = np.flatnonzero(row > threshold)
            hits = hits[np.lexsort((hits, -row[hits]))][:k]
            neighbors[i, :len(hits)] = hits
            cosine[i, :len(hits)] = row[hits]
        return neighbors, cosine

    (an, ac), (bn, bc) = table(sims), table(sims.T)
    return Shortlist(an, bn, ac, bc)


def _data(seed: int, vocab: int = 40, sentences: int = 30,
          dim: int = 8) -> tuple[Contexts, Contexts, np.ndarray]:
    """Zipf-ish words, repeated phrases (so identical windows and exact ties), near-synonym word pairs,
    a zero-vector word, rows of very unequal norms and a non-zero padding row that must be ignored."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(vocab, dim)) * rng.lognormal(0.0, 0.6, size=(vocab, 1))
    emb[5:10] = emb[10:15] * 1.3 + rng.normal(scale=0.05, size=(5, dim))  # near-synonyms of 10..14
    emb[3] = 0.0
    emb[0] = 5.0
    weights = 1.0 / np.arange(1, vocab)
    phrases = [rng.choice(np.arange(1, vocab), size=rng.integers(2, 6), p=weights / weights.sum())
               for _ in range(max(8, vocab // 10))]

    def task() -> Contexts:
        sents, keep = [], []
        for _ in range(sentences):
            parts = [phrases[i] for i in rng.integers(0, len(phrases), size=rng.integers(1, 4))]
            words = np.concatenate(parts).astype(np.int32)
            sents.append(words)
            keep.append(rng.random(len(words)) < 0.7)
        return make_contexts(sents, keep, window=2)

    return task(), task(), emb.astype(np.float32)


def _assert_same(got: Shortlist, want: Shortlist) -> None:
    np.testing.assert_array_equal(got.a_neighbors, want.a_neighbors)
    np.testing.assert_array_equal(got.b_neighbors, want.b_neighbors)
    np.testing.assert_allclose(got.a_cosine, want.a_cosine, atol=1e-5)
    np.testing.assert_allclose(got.b_cosine, want.b_cosine, atol=1e-5)


# plan 0: dense; 1-4: prefix filter at each τ (only for positive thresholds: no filter exists below)
PLANS = [(t, plan) for t in (0.95, 0.8, 0.5, 0.1, -0.3) for plan in ("auto", 0, 1, 2, 3, 4)
         if t > 0 or plan in ("auto", 0)]


@pytest.mark.parametrize("threshold, plan", PLANS)
@pytest.mark.parametrize("k", [1, 3, 1000])
def test_equals_brute_force(k: int, threshold: float, plan: str | int, monkeypatch) -> None:
    if plan != "auto":
        def forced(*args) -> shortlist._Plan:
            plans = shortlist._plans(*args)
            assert len(plans) == 5 if threshold > 0 else len(plans) == 1
            return plans[plan]
        monkeypatch.setattr(shortlist, "_plan", forced)
    for seed in range(3):
        a, b, emb = _data(seed)
        want = _brute(a, b, emb, threshold, k)
        got = build_shortlist(a, b, emb, threshold, k, block_size=7)  # many tiles and pool reductions
        _assert_same(got, want)
        if k == 3 and threshold == 0.8:
            assert got.num_pairs > 0 and (got.a_neighbors[:, 2] >= 0).any()  # caps bind in this case


def test_planner_picks_the_prefix_filter_on_sparse_data() -> None:
    """Larger vocabulary, high threshold: far fewer products than dense, and still exact."""
    a, b, emb = _data(7, vocab=3000, sentences=300, dim=64)
    emb0 = emb.copy()
    emb0[0] = 0
    sq = (emb0.astype(np.float64) ** 2).sum(axis=1)
    side_a, side_b = shortlist._side(a, sq), shortlist._side(b, sq)
    plan = shortlist._plan(side_a, side_b, emb0, sq, 0.9, 256)
    assert plan.tau is not None and plan.products < 0.05 * len(side_a.windows) * len(side_b.windows)
    got = build_shortlist(a, b, emb, 0.9, 5, block_size=256)
    assert got.num_pairs > 0
    _assert_same(got, _brute(a, b, emb, 0.9, 5))


def test_make_contexts_pads_and_keeps() -> None:
    keep = [np.array([1, 0, 1], bool), np.array([1], bool)]
    got = make_contexts([np.array([4, 5, 6]), np.array([7])], keep, window=1)
    np.testing.assert_array_equal(got.sentence, [0, 0, 1])
    np.testing.assert_array_equal(got.position, [0, 2, 0])
    np.testing.assert_array_equal(got.windows, [[0, 4, 5], [5, 6, 0], [0, 7, 0]])
    with pytest.raises(ValueError):
        make_contexts([np.array([1, 2])], [np.array([True])], window=1)


def test_empty_side_gives_padding_rows() -> None:
    a, b, emb = _data(0)
    empty = make_contexts([], [], window=2)
    got = build_shortlist(empty, b, emb, 0.5, 4)
    assert got.a_neighbors.shape == (0, 4) and got.num_pairs == 0
    assert got.b_neighbors.shape == (len(b), 4) and np.all(got.b_neighbors == -1)
    assert "no contexts" in threshold_hint(empty, b, emb)


def test_threshold_hint_suggests_a_threshold_that_gives_pairs() -> None:
    a, b, emb = _data(1)
    hint = threshold_hint(a, b, emb, sample=50)
    suggested = float(hint.split("--shortlist_threshold=")[1].split()[0])
    assert "median" in hint and -1.0 <= suggested < 1.0
    got = build_shortlist(a, b, emb, suggested, 3)
    has = np.concatenate([(got.a_neighbors >= 0).any(axis=1), (got.b_neighbors >= 0).any(axis=1)])
    assert has.mean() >= 0.5


def test_cache_is_keyed_and_survives_damage(tmp_path) -> None:
    a, b, emb = _data(2)
    first = build_shortlist(a, b, emb, 0.5, 3)
    key = {"data": "abc", "threshold": 0.5}
    assert load_shortlist(tmp_path, key) is None and not list(tmp_path.iterdir())
    save_shortlist(tmp_path, key, first)
    _assert_same(load_shortlist(tmp_path, dict(reversed(key.items()))), first)  # same key, other order
    assert load_shortlist(tmp_path, {**key, "threshold": 0.6}) is None
    save_shortlist(tmp_path, {**key, "threshold": 0.6}, first)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2 and all(f.suffix == ".npz" for f in files)
    for f in files:
        f.write_bytes(b"damaged")
    assert load_shortlist(tmp_path, key) is None
    save_shortlist(tmp_path, key, first)
    _assert_same(load_shortlist(tmp_path, key), first)
