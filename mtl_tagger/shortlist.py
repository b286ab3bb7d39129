"""Shortlist L of similar context pairs across the two tasks (paper §3.4, first step).

A context is (sentence j, position i) of a task's training split; u(i, j) is the concatenation of the
word vectors of the window [i − w, i + w] (zero vectors past the edges). L keeps the pairs with
cosine(u, u′) > threshold, each anchor's list capped to its `max_neighbors` most similar, in both
directions. The result is exact (cosines rechecked in float64); three things make it fast, see BUILD_NOTES
"Shortlist": identical windows are computed once; an exact prefix filter (a necessary condition for
cosine > threshold, proven there) restricts the products to pairs that share a rare window slot; the
remaining products run as blocked float32 GEMMs with a bounded pool of the best pairs.
"""
import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from absl import logging
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from mtl_tagger.files import atomic_file

# Word-similarity levels τ tried by the prefix filter, as fractions of the threshold (see _plan).
_TAU_FRACTIONS = (0.5, 0.7, 0.8, 0.9)
_MAX_WORD_EDGES = 5_000_000  # word pairs kept for the components; lower τ levels are dropped beyond it
_BLOCK_OVERHEAD_PAIRS = 2000  # cost of one GEMM call in the planner, counted in pair-products
_MASS_MARGIN = 1e-9  # the suffix-mass allowance (float64) is shrunk by this against rounding


def _f32_error(dim: int) -> float:
    """Bound on the error of a float32 product of two unit vectors of `dim` entries (2× the worst case
    d·2⁻²⁴). Word pairs within it of τ are linked anyway; cosines within it of the threshold or of a row's
    K-th best are kept until the float64 recheck decides."""
    return dim * float(np.finfo(np.float32).eps)


@dataclass
class Contexts:
    """One task's contexts entering the shortlist."""

    sentence: np.ndarray  # [N] int32 index of the sentence in that task's train list
    position: np.ndarray  # [N] int32 token position
    windows: np.ndarray  # [N, 2w+1] int32 word ids of the window, 0 (padding, zero vector) past edges

    def __len__(self) -> int:
        return len(self.sentence)


def make_contexts(sentences: Sequence[np.ndarray], keep: Sequence[np.ndarray], window: int) -> Contexts:
    """Contexts at the tokens where `keep` is True; windows of half-width `window`, padded with id 0."""
    if len(sentences) != len(keep):
        raise ValueError(f"{len(sentences)} sentences but {len(keep)} keep masks")
    width = 2 * window + 1
    sentence_ids, positions, windows = [], [], []
    for j, (words, mask) in enumerate(zip(sentences, keep)):
        words = np.asarray(words, np.int32)
        mask = np.asarray(mask, bool)
        if words.shape != mask.shape:
            raise ValueError(f"sentence {j}: {words.shape[0]} words but {mask.shape[0]} keep flags")
        where = np.flatnonzero(mask).astype(np.int32)
        padded = np.concatenate([np.zeros(window, np.int32), words, np.zeros(window, np.int32)])
        sentence_ids.append(np.full(len(where), j, np.int32))
        positions.append(where)
        windows.append(padded[where[:, None] + np.arange(width)])
    if not sentence_ids:
        return Contexts(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros((0, width), np.int32))
    return Contexts(np.concatenate(sentence_ids), np.concatenate(positions), np.concatenate(windows))


@dataclass
class Shortlist:
    """Both directions of L: each anchor's neighbours in the other task, most similar first."""

    a_neighbors: np.ndarray  # [Na, K] int32 indices into contexts_b, -1 = padding, by cosine desc
    b_neighbors: np.ndarray  # [Nb, K] int32 indices into contexts_a
    a_cosine: np.ndarray  # [Na, K] float32, 0 where padding
    b_cosine: np.ndarray  # [Nb, K] float32

    @property
    def num_pairs(self) -> int:
        """(anchor, neighbour) terms over both directions: the terms the coupling loss sums over."""
        return int((self.a_neighbors >= 0).sum() + (self.b_neighbors >= 0).sum())

    def summary(self) -> str:
        """One line: pairs, anchors with a neighbour, neighbours per such anchor, cosine range."""
        parts = [f"{self.num_pairs} pairs"]
        for name, neighbors, cosine in (("a→b", self.a_neighbors, self.a_cosine),
                                        ("b→a", self.b_neighbors, self.b_cosine)):
            per_anchor = (neighbors >= 0).sum(axis=1)
            has = per_anchor > 0
            text = f"{name}: {int(has.sum())}/{len(neighbors)} anchors with neighbours"
            if has.any():
                real = cosine[neighbors >= 0]
                text += (f", neighbours per anchor mean {per_anchor[has].mean():.2f} median "
                         f"{np.median(per_anchor[has]):g} max {per_anchor.max()}, cosine {real.min():.3f}"
                         f"–{real.max():.3f}")
            parts.append(text)
        return "; ".join(parts)


@dataclass
class _Side:
    """One task's contexts with identical windows merged: products are computed once per distinct window."""

    windows: np.ndarray  # [U, W] distinct word-id tuples (ids of zero vectors mapped to 0)
    inverse: np.ndarray  # [N] context → row of `windows`
    order: np.ndarray  # [N] contexts grouped by row, in index order within a row
    starts: np.ndarray  # [U] where each row's contexts start in `order`
    counts: np.ndarray  # [U] contexts per row
    norm: np.ndarray  # [U] float64 |u|
    mass: np.ndarray  # [U, W] float64 share of |u|² carried by each slot

    @property
    def first(self) -> np.ndarray:
        """[U] the smallest context index of each row (tie-break between rows of equal cosine)."""
        return self.order[self.starts]


def _side(contexts: Contexts, sq_norms: np.ndarray) -> _Side:
    windows = np.where(sq_norms[contexts.windows] > 0, contexts.windows, 0).astype(np.int32)
    if len(windows) == 0:
        unique, inverse = windows, np.zeros(0, np.int64)
    else:
        unique, inverse = np.unique(windows, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(unique))
    starts = np.cumsum(counts) - counts
    slot_sq = sq_norms[unique]
    total = np.sort(slot_sq, axis=1).sum(axis=1)  # canonical order: windows of the same words tie exactly
    mass = slot_sq / np.where(total > 0, total, 1.0)[:, None]
    return _Side(unique, inverse, order, starts, counts, np.sqrt(total), mass)


def _vectors(side: _Side, rows: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """[len(rows), W·d] float32 unit window vectors (zero for an all-zero window)."""
    norm = side.norm[rows]
    scale = (1.0 / np.where(norm > 0, norm, 1.0)).astype(np.float32)
    return embeddings[side.windows[rows]].reshape(len(rows), -1) * scale[:, None]


def _tile_products(a: _Side, a_rows: np.ndarray, b: _Side, b_rows: np.ndarray, embeddings: np.ndarray,
                   block: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """float32 cosines of a_rows × b_rows by tiles of at most block × block: (offset in a_rows, in b_rows,
    [ta, tb] cosines)."""
    for i in range(0, len(a_rows), block):
        xa = _vectors(a, a_rows[i:i + block], embeddings)
        for k in range(0, len(b_rows), block):
            yield i, k, xa @ _vectors(b, b_rows[k:k + block], embeddings).T


class _Pool:
    """Pairs (a row, b row, float32 cosine) that may still be in the best K of their a row or b row.

    Ranking here ignores ties: whatever lies within `slack` of a row's K-th best is kept, and the
    float64 recheck decides. Each row's K-th best so far also filters new pairs before they are stored.
    """

    def __init__(self, a: _Side, b: _Side, k: int, limit: int, slack: float) -> None:
        self.num_b, self.k, self.limit, self.slack = len(b.windows), k, limit, slack
        self.kth = tuple(np.full(len(side.windows), -np.inf, np.float32) for side in (a, b))
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.size = 0

    def add(self, rows_a: np.ndarray, rows_b: np.ndarray, cosine: np.ndarray, threshold: float,
            same_group: np.ndarray | None = None) -> None:
        """Store the pairs of a tile of cosines [len(rows_a), len(rows_b)] that are above the threshold and
        could still enter the best K of their a or b row (restricted to `same_group` when given).

        A row's K-th best so far is the larger of the pool's and this tile's own, so even a tile where every
        product passes the threshold stores only about K × (rows + columns) pairs.
        """
        valid = cosine if same_group is None else np.where(same_group, cosine, -np.inf)
        floors = []
        for axis, kth, rows in ((1, self.kth[0], rows_a), (0, self.kth[1], rows_b)):
            floor = kth[rows]
            if valid.shape[axis] >= self.k:
                floor = np.maximum(floor, np.partition(valid, -self.k, axis=axis).take(-self.k, axis=axis))
            floors.append(floor)
        hit = (valid > threshold - self.slack) & (
            valid >= np.minimum(floors[0][:, None], floors[1][None, :]) - self.slack)
        r, c = np.nonzero(hit)
        self.parts.append((rows_a[r].astype(np.int64), rows_b[c].astype(np.int64), cosine[r, c]))
        self.size += len(r)
        if self.size > self.limit:
            self.reduce()
            self.limit = max(self.limit, 2 * self.size)

    def _keep(self, group: np.ndarray, cosine: np.ndarray, kth: np.ndarray) -> np.ndarray:
        """Entries within the slack of their group's K-th best (all of a group with fewer); updates kth."""
        order = np.argsort(group * 4.0 + (1.0 - cosine))  # by group, then cosine desc
        sorted_group, sorted_cos = group[order], cosine[order]
        at = _rank_in_run(sorted_group) == self.k - 1
        kth[sorted_group[at]] = sorted_cos[at]
        keep = np.empty(len(group), bool)
        keep[order] = sorted_cos >= kth[sorted_group] - self.slack
        return keep

    def reduce(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Merge the stored pairs (a pair found twice keeps its larger cosine) and drop the hopeless ones."""
        parts = self.parts or [(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))]
        code = np.concatenate([p * self.num_b + q for p, q, _ in parts])
        cosine = np.concatenate([c for _, _, c in parts])
        order = np.argsort(code, kind="stable")
        starts = np.flatnonzero(_run_starts(code[order]))
        cosine = np.maximum.reduceat(cosine[order], starts) if len(starts) else cosine
        p, q = np.divmod(code[order][starts], self.num_b)
        keep = self._keep(p, cosine, self.kth[0]) | self._keep(q, cosine, self.kth[1])
        p, q, cosine = p[keep], q[keep], cosine[keep]
        self.parts, self.size = [(p, q, cosine)], len(p)
        return p, q, cosine


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Bool: where a run of equal values begins (values sorted)."""
    return np.concatenate([[True], values[1:] != values[:-1]]) if len(values) else np.zeros(0, bool)


def _rank_in_run(values: np.ndarray) -> np.ndarray:
    """Position of each entry within its run of equal values (values sorted)."""
    index = np.arange(len(values))
    return index - np.maximum.accumulate(np.where(_run_starts(values), index, 0))


def _best_k(group: np.ndarray, cosine: np.ndarray, tie: np.ndarray, k: int) -> np.ndarray:
    """Bool mask of the first k entries of each group by (cosine desc, tie asc)."""
    order = np.lexsort((tie, -cosine, group))
    keep = np.zeros(len(group), bool)
    keep[order] = _rank_in_run(group[order]) < k
    return keep


def _exact_cosine(a: _Side, p: np.ndarray, b: _Side, q: np.ndarray, embeddings: np.ndarray,
                  sq_norms: np.ndarray) -> np.ndarray:
    """float64 cosines of window pairs, summed slot by slot in a canonical order (exact ties stay tied)."""
    wa, wb = a.windows[p], b.windows[q]
    terms = np.where(wa == wb, sq_norms[wa], 0.0)
    other = (wa != wb) & (wa > 0) & (wb > 0)
    vocab = len(embeddings)
    codes, inverse = np.unique(wa[other].astype(np.int64) * vocab + wb[other], return_inverse=True)
    dots = np.empty(len(codes))
    for i in range(0, len(codes), 1 << 16):
        chunk = codes[i:i + (1 << 16)]
        dots[i:i + len(chunk)] = np.einsum("nd,nd->n", embeddings[chunk // vocab].astype(np.float64),
                                           embeddings[chunk % vocab].astype(np.float64))
    terms[other] = dots[inverse.reshape(-1)]
    norms = a.norm[p] * b.norm[q]
    return np.sort(terms, axis=1).sum(axis=1) / np.where(norms > 0, norms, 1.0)


def _neighbor_table(anchor: _Side, other: _Side, p: np.ndarray, q: np.ndarray, cosine: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """[N_anchor, k] other-task context indices (-1 padding) and cosines, from pairs of distinct windows.

    Each anchor row takes its best k windows; each window expands to its first k contexts; the best k of
    those by (cosine desc, context index asc) are that row's neighbours, shared by all its contexts.
    """
    neighbors = np.full((len(anchor.windows), k), -1, np.int32)
    table_cos = np.zeros((len(anchor.windows), k), np.float32)
    keep = _best_k(p, cosine, other.first[q], k)
    p, q, cosine = p[keep], q[keep], cosine[keep]
    repeats = np.minimum(other.counts[q], k)
    begin = np.cumsum(repeats) - repeats
    within = np.arange(int(repeats.sum())) - np.repeat(begin, repeats)
    context = other.order[np.repeat(other.starts[q], repeats) + within]
    p, cosine = np.repeat(p, repeats), np.repeat(cosine, repeats)
    keep = _best_k(p, cosine, context, k)
    p, context, cosine = p[keep], context[keep], cosine[keep]
    order = np.lexsort((context, -cosine, p))
    p, context, cosine = p[order], context[order], cosine[order]
    slot = _rank_in_run(p)
    neighbors[p, slot] = context
    table_cos[p, slot] = cosine
    return neighbors[anchor.inverse], table_cos[anchor.inverse]


def _word_edges(a: _Side, b: _Side, unit: np.ndarray, floor: float,
                block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Cross-task word pairs (a-side word, b-side word, cosine) with cosine > floor, and the floor used.

    Past _MAX_WORD_EDGES pairs the floor rises to the median kept cosine (the planner then skips the
    word-similarity levels below it), so memory stays bounded even for a low threshold.
    """
    words_a = np.unique(a.windows[a.windows > 0])
    words_b = np.unique(b.windows[b.windows > 0])
    x, y, sims = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    for i in range(0, len(words_a), block):
        rows = words_a[i:i + block]
        block_sims = unit[rows] @ unit[words_b].T
        r, c = np.nonzero(block_sims > floor)
        x, y, sims = np.concatenate([x, rows[r]]), np.concatenate([y, words_b[c]]), np.concatenate(
            [sims, block_sims[r, c]])
        if len(sims) > _MAX_WORD_EDGES:
            floor = float(np.median(sims))
            keep = sims > floor
            x, y, sims = x[keep], y[keep], sims[keep]
    return x, y, sims, floor


@dataclass
class _Block:
    """One product a_rows × b_rows; when several small groups share it, only pairs of the same group count."""

    a_rows: np.ndarray
    b_rows: np.ndarray
    a_group: np.ndarray | None = None
    b_group: np.ndarray | None = None


@dataclass
class _Plan:
    """The blocks to multiply (tau None: the dense plan), and the window products they cost."""

    blocks: list[_Block]
    tau: float | None

    @property
    def products(self) -> int:
        return sum(len(b.a_rows) * len(b.b_rows) for b in self.blocks)

    @property
    def cost(self) -> int:
        return self.products + _BLOCK_OVERHEAD_PAIRS * len(self.blocks)


def _pack(groups: list[tuple[np.ndarray, np.ndarray]]) -> list[_Block]:
    """Blocks for the groups: a large group alone; small ones side by side while the joint product stays
    under one call's overhead (a 1 × 1 group alone would cost ~1000× its product in call overhead)."""
    blocks: list[_Block] = []
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    size_a = size_b = 0

    def flush() -> None:
        ids = np.arange(len(pending))
        blocks.append(_Block(np.concatenate([g[0] for g in pending]), np.concatenate([g[1] for g in pending]),
                             np.repeat(ids, [len(g[0]) for g in pending]),
                             np.repeat(ids, [len(g[1]) for g in pending])))

    for rows_a, rows_b in sorted(groups, key=lambda g: len(g[0]) * len(g[1])):
        if len(rows_a) * len(rows_b) >= _BLOCK_OVERHEAD_PAIRS:
            blocks.append(_Block(rows_a, rows_b))
            continue
        if pending and (size_a + len(rows_a)) * (size_b + len(rows_b)) > _BLOCK_OVERHEAD_PAIRS:
            flush()
            pending, size_a, size_b = [], 0, 0
        pending.append((rows_a, rows_b))
        size_a, size_b = size_a + len(rows_a), size_b + len(rows_b)
    if pending:
        flush()
    return blocks


def _prefix_plan(a: _Side, b: _Side, edges: tuple[np.ndarray, ...], vocab: int, threshold: float,
                 tau: float, margin: float) -> _Plan:
    """Blocks of the prefix filter at word-similarity level tau (0 ≤ tau < threshold); see BUILD_NOTES.

    Slot features are (slot, component of the word) where components link word pairs with cosine > tau.
    Each window's prefix is its rarest features (rarity: count in a × count in b) until the rest carries at
    most (t² − τ²)/(1 − τ²) of |u|². A pair with cosine > t shares a feature in both prefixes.
    """
    x, y, sims, _ = edges
    linked = sims > tau - margin
    graph = coo_matrix((np.ones(int(linked.sum()), np.int8), (x[linked], y[linked])), shape=(vocab, vocab))
    _, component = connected_components(graph, directed=False)
    width = a.windows.shape[1]
    allowance = (threshold ** 2 - tau ** 2) / (1.0 - tau ** 2) - _MASS_MARGIN

    def features(side: _Side) -> np.ndarray:
        code = component[side.windows].astype(np.int64) * width + np.arange(width)
        return np.where(side.mass > 0, code, -1)

    feat_a, feat_b = features(a), features(b)
    codes, inverse = np.unique(np.concatenate([feat_a.ravel(), feat_b.ravel()]), return_inverse=True)
    inv_a, inv_b = inverse[:feat_a.size].reshape(feat_a.shape), inverse[feat_a.size:].reshape(feat_b.shape)
    count_a = np.bincount(inv_a.ravel(), minlength=len(codes))
    count_b = np.bincount(inv_b.ravel(), minlength=len(codes))
    rarity = count_a.astype(np.int64) * count_b
    rank = np.empty(len(codes), np.int64)
    rank[np.lexsort((np.arange(len(codes)), rarity))] = np.arange(len(codes))
    if codes[0] == -1:  # zero-mass slots go last and never enter a prefix
        rank[0] = len(codes)

    def prefix(side: _Side, inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = rank[inv]
        order = np.argsort(r, axis=1, kind="stable")
        mass = np.take_along_axis(side.mass, order, axis=1)
        rest = mass[:, ::-1].cumsum(axis=1)[:, ::-1] - mass  # mass after each position
        in_prefix = np.concatenate([np.ones((len(mass), 1), bool), rest[:, :-1] > allowance], axis=1)
        in_prefix &= np.take_along_axis(r, order, axis=1) < len(codes)
        rows, pos = np.nonzero(in_prefix)
        return rows, np.take_along_axis(inv, order, axis=1)[rows, pos]

    rows_a, f_a = prefix(a, inv_a)
    rows_b, f_b = prefix(b, inv_b)
    shared = np.intersect1d(f_a, f_b)
    order_a, order_b = np.argsort(f_a, kind="stable"), np.argsort(f_b, kind="stable")
    f_a, rows_a, f_b, rows_b = f_a[order_a], rows_a[order_a], f_b[order_b], rows_b[order_b]
    lo_a, hi_a = np.searchsorted(f_a, shared, "left"), np.searchsorted(f_a, shared, "right")
    lo_b, hi_b = np.searchsorted(f_b, shared, "left"), np.searchsorted(f_b, shared, "right")
    return _Plan(_pack([(rows_a[s:e], rows_b[u:v]) for s, e, u, v in zip(lo_a, hi_a, lo_b, hi_b)]), tau)


def _plans(a: _Side, b: _Side, embeddings: np.ndarray, sq_norms: np.ndarray, threshold: float,
           block: int) -> list[_Plan]:
    """Every exact plan: dense over distinct windows, then the prefix filter at each usable τ."""
    dense = _Plan([_Block(np.arange(len(a.windows)), np.arange(len(b.windows)))], None)
    if threshold <= 0 or len(a.windows) == 0 or len(b.windows) == 0:
        return [dense]
    norms = np.sqrt(sq_norms)
    unit = (embeddings / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
    taus = [f * threshold for f in _TAU_FRACTIONS]
    margin = _f32_error(embeddings.shape[1])
    edges = _word_edges(a, b, unit, min(taus) - margin, block)
    return [dense, *(_prefix_plan(a, b, edges, len(embeddings), threshold, tau, margin) for tau in taus
                     if tau - margin >= edges[3])]


def _plan(a: _Side, b: _Side, embeddings: np.ndarray, sq_norms: np.ndarray, threshold: float,
          block: int) -> _Plan:
    """The cheapest exact plan (products + per-block overhead)."""
    return min(_plans(a, b, embeddings, sq_norms, threshold, block), key=lambda plan: plan.cost)


def build_shortlist(a: Contexts, b: Contexts, embeddings: np.ndarray, threshold: float, max_neighbors: int,
                    block_size: int = 4096) -> Shortlist:
    """L between task a's and task b's contexts: exact cosine > threshold, best `max_neighbors` per anchor.

    `embeddings` [vocab, d] indexes the window ids; row 0 is padding and counts as a zero vector whatever
    it holds. Ties in cosine go to the lower context index. Memory is bounded by the block size and the
    pool of kept pairs (≤ max_neighbors per distinct window and direction), not by Na × Nb.
    """
    if max_neighbors < 1:
        raise ValueError(f"max_neighbors={max_neighbors}: must be ≥ 1")
    start = time.perf_counter()
    embeddings = np.array(embeddings, np.float32)
    embeddings[0] = 0.0
    sq_norms = np.einsum("vd,vd->v", embeddings.astype(np.float64), embeddings.astype(np.float64))
    side_a, side_b = _side(a, sq_norms), _side(b, sq_norms)
    plan = _plan(side_a, side_b, embeddings, sq_norms, threshold, block_size)
    pool = _Pool(side_a, side_b, max_neighbors, 4 * block_size * max_neighbors,
                 _f32_error(embeddings.shape[1] * a.windows.shape[1]))
    for blk in plan.blocks:
        for i, k, cosine in _tile_products(side_a, blk.a_rows, side_b, blk.b_rows, embeddings, block_size):
            same = None if blk.a_group is None else (
                blk.a_group[i:i + block_size, None] == blk.b_group[None, k:k + block_size])
            pool.add(blk.a_rows[i:i + block_size], blk.b_rows[k:k + block_size], cosine, threshold, same)
    p, q, _ = pool.reduce()
    cosine = _exact_cosine(side_a, p, side_b, q, embeddings, sq_norms)
    above = cosine > threshold
    p, q, cosine = p[above], q[above], cosine[above]
    a_neighbors, a_cosine = _neighbor_table(side_a, side_b, p, q, cosine, max_neighbors)
    b_neighbors, b_cosine = _neighbor_table(side_b, side_a, q, p, cosine, max_neighbors)
    shortlist = Shortlist(a_neighbors, b_neighbors, a_cosine, b_cosine)
    all_pairs = len(side_a.windows) * len(side_b.windows)
    logging.info("shortlist built in %.1f s: %d × %d contexts, %d × %d distinct windows, %s plan, %d of %d "
                 "window products (%d blocks)", time.perf_counter() - start, len(a), len(b),
                 len(side_a.windows), len(side_b.windows),
                 "dense" if plan.tau is None else f"prefix-filter τ={plan.tau:.3f}", plan.products, all_pairs,
                 len(plan.blocks))
    return shortlist


def threshold_hint(a: Contexts, b: Contexts, embeddings: np.ndarray, sample: int = 2000) -> str:
    """Quantiles of each anchor's best cosine on a sample of both sides, and a threshold that gives pairs.

    For the caller's error when L is empty, e.g. "no pairs above 0.9; " + this.
    """
    if len(a) == 0 or len(b) == 0:
        return f"task {'a' if len(a) == 0 else 'b'} has no contexts to pair"
    embeddings = np.array(embeddings, np.float32)
    embeddings[0] = 0.0
    sq_norms = np.einsum("vd,vd->v", embeddings.astype(np.float64), embeddings.astype(np.float64))
    side_a, side_b = _side(a, sq_norms), _side(b, sq_norms)
    rng = np.random.default_rng(0)
    best: list[np.ndarray] = []
    for anchor, other in ((side_a, side_b), (side_b, side_a)):
        contexts = rng.choice(len(anchor.inverse), size=min(sample, len(anchor.inverse)), replace=False)
        rows, weight = np.unique(anchor.inverse[contexts], return_counts=True)
        top = np.full(len(rows), -1.0, np.float32)
        everything = np.arange(len(other.windows))
        for i, _, cosine in _tile_products(anchor, rows, other, everything, embeddings, 4096):
            top[i:i + len(cosine)] = np.maximum(top[i:i + len(cosine)], cosine.max(axis=1))
        best.append(np.repeat(top, weight))
    best_all = np.concatenate(best)
    q50, q90, q99 = np.quantile(best_all, [0.5, 0.9, 0.99])
    suggest = max(np.ceil(q50 * 20) / 20 - 0.05, -1.0)  # strictly below the median
    return (f"the best cosine per anchor (sample of {len(best_all)} contexts of both tasks) is max "
            f"{best_all.max():.3f}, 99% {q99:.3f}, 90% {q90:.3f}, median {q50:.3f}; try "
            f"--shortlist_threshold={suggest:.2f} (about half of the anchors would get a neighbour)")


def _cache_file(cache_dir: str | Path, key: dict) -> tuple[Path, str]:
    """The file of `key` in cache_dir (named by a hash of the JSON key) and the key's JSON, which it holds."""
    text = json.dumps(key, sort_keys=True)
    return Path(cache_dir) / f"shortlist-{hashlib.sha256(text.encode()).hexdigest()[:16]}.npz", text


def load_shortlist(cache_dir: str | Path, key: dict) -> Shortlist | None:
    """The shortlist stored under `key` (data fingerprint + flags) in cache_dir; None when there is none.

    The key is stored inside and checked, so a collision or a damaged file counts as none (and is logged).
    """
    path, text = _cache_file(cache_dir, key)
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            if str(data["key"]) == text:
                logging.info("shortlist loaded from %s", path)
                return Shortlist(*(data[f] for f in ("a_neighbors", "b_neighbors", "a_cosine", "b_cosine")))
        logging.warning("shortlist cache %s holds another key; rebuilding", path)
    except (OSError, ValueError, KeyError) as e:
        logging.warning("shortlist cache %s unreadable (%s); rebuilding", path, e)
    return None


def save_shortlist(cache_dir: str | Path, key: dict, shortlist: Shortlist) -> None:
    """Store a shortlist under `key` in cache_dir, atomically, for `load_shortlist`."""
    path, text = _cache_file(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, "wb") as f:
        np.savez(f, key=np.array(text), a_neighbors=shortlist.a_neighbors, b_neighbors=shortlist.b_neighbors,
                 a_cosine=shortlist.a_cosine, b_cosine=shortlist.b_cosine)
    logging.info("shortlist cached in %s", path)
