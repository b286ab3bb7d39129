"""Coupling loss between verticals (paper §3.4): TCE = CCE + CCE′ + LCE + LCE′ over shortlist pairs.

This module builds the coupling inputs and consumes them, for any number of coupled pairs:

- `CouplingData` holds every coupled pair's shortlist L as gather tables over one run's contexts. An
  *anchor* is a context with at least one neighbour in the other vertical of its pair; direction 0 = anchor
  in the pair's first vertical (CCE with a, LCE), 1 = in its second (CCE′ with a′, LCE′). Its `plan` fixes
  which anchors each step uses, and `batch` gathers a step's anchors, their neighbours and every sentence
  they lie in, in-graph (each sentence once, padded in GROUPS length groups).
- `Coupler` holds the attention vectors a, a′ of every pair and the label k-gram table, and turns a
  batch into the loss: scores of the gold tags (`--coupling_score`), the context attention A (Luong,
  α = uᵀ diag(a) u′ over the anchor's neighbours), the label attention (softmax of v·v′) and
  Σ A·|s − s′| per anchor.
"""
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from mtl_tagger import crf
from mtl_tagger.labels import HASH_BUCKETS, kgram_ids
from mtl_tagger.model import TaggerNet, fold_in
from mtl_tagger.pipeline import BATCH_SIGNATURE, SentenceTable
from mtl_tagger.shortlist import Contexts

LABEL_DIM = 32
GROUPS = 4  # the scored sentences of a coupling minibatch are padded in this many length groups
COUPLING_SIGNATURE = {
    **{f"sentences_{g}": BATCH_SIGNATURE for g in range(GROUPS)},  # each scored sentence once, by length group
    # The scored contexts [S, 1+M]: each anchor (column 0) and the neighbours chosen for it: which group, row and
    # position its context is at, its vertical and its gold tag (global id).
    **{k: tf.TensorSpec([None, None], tf.int32) for k in ("group", "row", "position", "task", "gold")},
    "chosen": tf.TensorSpec([None, None], tf.int32),  # [S, M] the chosen neighbours' places in the list, −1 = none
    # The anchor's whole list L(j,i), over which both attentions normalise: windows [S, 1+K, W] and gold tags.
    "window": tf.TensorSpec([None, None, None], tf.int32),
    "labels": tf.TensorSpec([None, None], tf.int32),
    "mask": tf.TensorSpec([None, None], tf.bool),  # [S, K] real neighbours
    "direction": tf.TensorSpec([None], tf.int32),
    "pair": tf.TensorSpec([None], tf.int32),
}


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Softmax over the last axis within `mask`; 0 at padding and on rows with no real entry (no NaN)."""
    peak = tf.reduce_max(tf.where(mask, logits, logits.dtype.min), axis=-1, keepdims=True)
    # Padding is set to 0 before exp so that neither the value nor its gradient can overflow.
    weights = tf.where(mask, tf.exp(tf.where(mask, logits - tf.stop_gradient(peak), 0.0)), 0.0)
    total = tf.reduce_sum(weights, axis=-1, keepdims=True)  # ≥ 1 if the row has a real entry, else 0
    return weights / tf.where(total > 0, total, 1.0)


def length_groups(lengths: tf.Tensor, groups: int) -> tf.Tensor:
    """Cuts [groups + 1] (0 first, n last) of n ascending lengths into runs padded to their longest, chosen
    greedily: each new cut is the one that saves the most padded slots. Fewer lengths than groups leave empty
    runs at the end."""
    n = tf.size(lengths)
    padded = tf.concat([lengths, [0]], 0)
    cuts = tf.stack([0, n])
    candidates = tf.range(1, tf.maximum(n, 1))
    for _ in range(groups - 1):
        b = tf.gather(cuts, tf.searchsorted(cuts, candidates, side="right"))
        a = tf.gather(cuts, tf.searchsorted(cuts, candidates, side="right") - 1)
        # Cutting the run [a, b) at c saves (c − a) × (its longest − the longest of [a, c)) padded slots.
        saving = (candidates - a) * (tf.gather(padded, b - 1) - tf.gather(padded, candidates - 1))
        saving = tf.where(tf.reduce_any(cuts[None, :] == candidates[:, None], axis=1), -1, saving)
        best = tf.gather(tf.concat([candidates, [n]], 0), tf.argmax(tf.concat([saving, [0]], 0),
                                                                     output_type=tf.int32))
        cuts = tf.sort(tf.concat([cuts, [best]], 0))
    return cuts


def context_scores(kind: str, emissions: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor) -> tf.Tensor:
    """The score s_i(y|x) the coupling loss compares, for every position and tag [B, T, N].

    emission: the head's emission score (the paper's); log_softmax: the emissions normalised over the tags
    at each position; marginal: the CRF's log P(y_i = y | x) under the learned transitions (the tag prior is for
    decoding, and training does not see it). The last two do not move when a constant is
    added to every tag's emission at a position, which the CRF cannot see either (BUILD_NOTES).
    """
    if kind == "emission":
        return emissions
    if kind == "log_softmax":
        return tf.nn.log_softmax(emissions, axis=-1)
    return crf.log_marginals(emissions, lengths, transitions)


@dataclass
class PairShortlist:
    """One coupled pair (a, b) and both directions of its L: neighbours as indices into the other's contexts."""

    a: str
    b: str
    a_neighbors: np.ndarray  # [Na, K] int, −1 = padding
    b_neighbors: np.ndarray  # [Nb, K]


class CouplingData:
    """Every coupled pair's shortlist over the run's contexts, as numpy tables (plans, analysis) and tensors."""

    def __init__(self, tasks: Sequence[str], contexts: dict[str, Contexts], gold: dict[str, np.ndarray],
                 sentence_offsets: dict[str, int], tag_offsets: dict[str, int], pairs: Sequence[PairShortlist]) -> None:
        self.tasks = list(tasks)
        self.pairs = [(p.a, p.b) for p in pairs]
        offset, ctx_offset = 0, {}
        for t in self.tasks:
            ctx_offset[t] = offset
            offset += len(contexts[t])
        order = self.tasks
        self.ctx_task = np.concatenate([np.full(len(contexts[t]), i, np.int32) for i, t in enumerate(order)])
        self.ctx_sentence = np.concatenate([contexts[t].sentence + sentence_offsets[t] for t in order]).astype(np.int32)
        self.ctx_position = np.concatenate([contexts[t].position for t in order]).astype(np.int32)
        self.ctx_window = np.concatenate([contexts[t].windows for t in order]).astype(np.int32)
        self.ctx_local_gold = np.concatenate([gold[t] for t in order]).astype(np.int32)
        self.ctx_gold = np.concatenate([gold[t] + tag_offsets[t] for t in order]).astype(np.int32)
        rows: list[tuple[np.ndarray, ...]] = []
        for p, pair in enumerate(pairs):
            for d, (mine, other, table) in enumerate(((pair.a, pair.b, pair.a_neighbors),
                                                      (pair.b, pair.a, pair.b_neighbors))):
                ids = np.flatnonzero(table[:, 0] >= 0)
                nb = np.where(table[ids] >= 0, table[ids] + ctx_offset[other], -1)
                rows.append((ids + ctx_offset[mine], nb, np.full(len(ids), p), np.full(len(ids), d)))
        k = max(pair.a_neighbors.shape[1] for pair in pairs)
        self.anchor_ctx = np.concatenate([r[0] for r in rows]).astype(np.int32)
        self.anchor_neighbors = np.concatenate(
            [np.pad(r[1], ((0, 0), (0, k - r[1].shape[1])), constant_values=-1) for r in rows]).astype(np.int32)
        self.anchor_pair = np.concatenate([r[2] for r in rows]).astype(np.int32)
        self.anchor_direction = np.concatenate([r[3] for r in rows]).astype(np.int32)
        self._tensors = {name: tf.constant(getattr(self, name)) for name in (
            "ctx_task", "ctx_sentence", "ctx_position", "ctx_window", "ctx_gold", "anchor_ctx", "anchor_neighbors",
            "anchor_pair", "anchor_direction")}

    def anchors(self, pair: int, direction: int | None = None) -> np.ndarray:
        """Anchor rows of one pair (and direction)."""
        keep = self.anchor_pair == pair
        if direction is not None:
            keep &= self.anchor_direction == direction
        return np.flatnonzero(keep).astype(np.int32)

    def _pass(self, pair: int, batch_size: int, seed: int, k: int) -> list[np.ndarray]:
        """The k-th pass over one pair's anchors: every anchor once, the anchors of one (direction, sentence)
        kept together, so a minibatch's anchors lie in a few sentences (BUILD_NOTES "Coupling minibatches")."""
        rows = self.anchors(pair)
        key = self.anchor_direction[rows].astype(np.int64) * (1 + int(self.ctx_sentence.max())) \
            + self.ctx_sentence[self.anchor_ctx[rows]]
        _, group = np.unique(key, return_inverse=True)
        rank = np.random.default_rng([seed, pair, k, 7]).permutation(int(group.max()) + 1)
        order = rows[np.lexsort((self.anchor_ctx[rows], rank[group]))]
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]

    def minibatches(self, num_tasks: int) -> int:
        """Coupling minibatches per step: one per pair up to one per vertical beyond the first, so a step's
        cost grows with the number of verticals, not with the number of pairs."""
        return max(1, min(len(self.pairs), num_tasks - 1))

    def plan(self, batch_size: int, slots: int, seed: int, steps: int, sample: int = 1
             ) -> tuple[np.ndarray, np.ndarray]:
        """[steps, slots × batch_size] anchor rows (−1 = none): the pairs take turns slot by slot, each walking
        its own passes; and [steps, slots × batch_size, M] the neighbours whose scores each anchor compares:
        `sample` of its list drawn without replacement (M = sample), or its whole list (sample 0, M = K).
        Both are fixed by (seed, step) like the vertical minibatch plans."""
        plan = np.full((steps, slots * batch_size), -1, np.int32)
        counts = [-(-len(self.anchors(p)) // batch_size) for p in range(len(self.pairs))]
        passes: dict[tuple[int, int], list[np.ndarray]] = {}
        for u in range(steps * slots):
            pair, use = u % len(self.pairs), u // len(self.pairs)
            k, i = divmod(use, counts[pair])
            if (pair, k) not in passes:
                passes.pop((pair, k - 1), None)
                passes[(pair, k)] = self._pass(pair, batch_size, seed, k)
            step, slot = divmod(u, slots)
            batch = passes[(pair, k)][i]
            plan[step, slot * batch_size: slot * batch_size + len(batch)] = batch
        return plan, self._choose(plan, sample, seed)

    def _choose(self, plan: np.ndarray, sample: int, seed: int) -> np.ndarray:
        """For every planned anchor, the places in its list of the neighbours it is compared with (−1 = none)."""
        k = self.anchor_neighbors.shape[1]
        real = np.where(plan >= 0, (self.anchor_neighbors[np.maximum(plan, 0)] >= 0).sum(axis=-1), 0)
        if sample == 0 or sample >= k:
            places = np.broadcast_to(np.arange(k), (*plan.shape, k))
            return np.where(places < real[..., None], places, -1).astype(np.int32)
        chosen = np.full((*plan.shape, sample), -1, np.int32)
        for step in range(plan.shape[0]):
            keys = np.random.default_rng([seed, step, 11]).random((plan.shape[1], k))
            order = np.argsort(np.where(np.arange(k) < real[step, :, None], keys, 2.0), axis=1)[:, :sample]
            chosen[step] = np.where(np.arange(sample) < real[step, :, None], order, -1)
        return chosen

    def batch(self, table: SentenceTable, rows: tf.Tensor, chosen: tf.Tensor) -> dict[str, tf.Tensor]:
        """The coupling minibatch (COUPLING_SIGNATURE) of anchor rows and chosen places (rows −1 ignored), in-graph.

        Only the anchors' and the chosen neighbours' sentences are encoded; the attention over each anchor's
        whole list needs only word embeddings and gold tags.
        """
        t = self._tensors
        real = rows >= 0
        rows, chosen = tf.boolean_mask(rows, real), tf.boolean_mask(chosen, real)
        anchor = tf.gather(t["anchor_ctx"], rows)
        neighbors = tf.gather(t["anchor_neighbors"], rows)
        mask = neighbors >= 0
        listed = tf.concat([anchor[:, None], tf.where(mask, neighbors, anchor[:, None])], axis=1)  # [S, 1+K]
        picked = tf.gather(neighbors, tf.maximum(chosen, 0), batch_dims=1)
        scored = tf.concat([anchor[:, None], tf.where(chosen >= 0, picked, anchor[:, None])], axis=1)  # [S, 1+M]
        sentence = tf.gather(t["ctx_sentence"], scored)
        unique, where = tf.unique(tf.reshape(sentence, [-1]))
        lengths = tf.gather(table.length, unique)
        order = tf.argsort(lengths, stable=True)
        cuts = length_groups(tf.gather(lengths, order), GROUPS)
        rank = tf.gather(tf.math.invert_permutation(order), where)
        group = tf.searchsorted(cuts[1:-1], rank, side="right")
        shape = tf.shape(scored)
        return {
            **{f"sentences_{g}": table.batch(tf.gather(unique, order[cuts[g]:cuts[g + 1]])) for g in range(GROUPS)},
            "group": tf.reshape(group, shape),
            "row": tf.reshape(rank - tf.gather(cuts, group), shape),
            "position": tf.gather(t["ctx_position"], scored),
            "task": tf.gather(t["ctx_task"], scored),
            "gold": tf.gather(t["ctx_gold"], scored),
            "chosen": chosen,
            "window": tf.gather(t["ctx_window"], listed),
            "labels": tf.gather(t["ctx_gold"], listed),
            "mask": mask,
            "direction": tf.gather(t["anchor_direction"], rows),
            "pair": tf.gather(t["anchor_pair"], rows),
        }


class Coupler(tf.Module):
    """The coupling loss's own weights and its computation from a coupling minibatch.

    `attention` [pairs, 2, D] holds each pair's a (direction 0) and a′ (direction 1), initialised to
    1/sqrt(D) (scaled dot product; BUILD_NOTES "Coupling loss"); `label_kgrams` [buckets, 32] is one table
    for all verticals, so equal or similar tag names get equal or similar label vectors v.
    """

    def __init__(self, tag_names: dict[str, Sequence[str]], num_pairs: int, window_dim: int, label_kgram: int,
                 seed: tuple[int, int], score: str = "emission", stop_lender: bool = False,
                 temperature: float = 1.0) -> None:
        super().__init__(name="coupler")
        self.tasks = list(tag_names)
        names = [n for t in self.tasks for n in tag_names[t]]
        self.tag_offsets = np.cumsum([0] + [len(tag_names[t]) for t in self.tasks])[:-1]
        ids, mask = kgram_ids(names, label_kgram)
        self._gram_ids, self._gram_mask = tf.constant(ids), tf.constant(mask)
        self.attention = tf.Variable(tf.fill([num_pairs, 2, window_dim], float(1.0 / np.sqrt(window_dim))),
                                     name="attention")
        # Unit-variance rows: a name of n k-grams gets |v|² ≈ 32 / n and unrelated names v·v′ ≈ 0 ± sqrt(32) / n,
        # so the label softmax starts informative, neither flat nor saturated.
        self.label_kgrams = tf.Variable(tf.random.stateless_normal((HASH_BUCKETS, LABEL_DIM), seed),
                                        name="label_kgrams")
        self.score, self.stop_lender, self.temperature = score, stop_lender, temperature

    def label_vectors(self) -> tf.Tensor:
        """[all tags, 32]: every tag's label vector (verticals in run order, each its tags in vocabulary order)."""
        rows = tf.gather(self.label_kgrams, self._gram_ids)
        mask = self._gram_mask[:, :, None]
        return tf.reduce_sum(rows * mask, axis=1) / tf.reduce_sum(mask, axis=1)

    def context_attention(self, net: TaggerNet, window: tf.Tensor, mask: tf.Tensor, pair: tf.Tensor,
                          direction: tf.Tensor) -> tf.Tensor:
        """A [S, K]: softmax over each anchor's neighbours of α = uᵀ diag(a) u′ / temperature (0 at padding)."""
        u = net.window_vectors(window)
        diag = tf.gather_nd(self.attention, tf.stack([pair, direction], axis=1))
        alpha = tf.einsum("sd,skd->sk", u[:, 0] * diag, u[:, 1:]) / self.temperature
        return masked_softmax(alpha, mask)

    def scores(self, net: TaggerNet, c: dict[str, tf.Tensor], hs: list[tf.Tensor]) -> tf.Tensor:
        """[S, 1+K]: each context's score of its gold tag under its own vertical's head (`--coupling_score`).

        Each head scores only the sentences its vertical's contexts lie in, from every length group at once, so a
        CRF forward–backward (`marginal`) runs once per scored sentence and once over the longest.
        """
        out = tf.zeros(tf.shape(c["gold"]))
        for i, task in enumerate(self.tasks):
            head = net.heads[task]
            mine = c["task"] == i
            place, offset, lengths, vectors = tf.zeros_like(c["row"]), 0, [], []
            for g, h in enumerate(hs):
                in_group = mine & (c["group"] == g)
                ids, at = tf.unique(tf.boolean_mask(c["row"], in_group))
                # Each of my contexts' row in the table below: its group's offset + its sentence's place in the group.
                place = tf.tensor_scatter_nd_update(place, tf.where(in_group), at + offset)
                offset += tf.size(ids)
                lengths.append(tf.gather(c[f"sentences_{g}"]["length"], ids))
                vectors.append(tf.gather(h, ids))
            longest = tf.reduce_max(tf.concat([*lengths, [1]], 0))
            padded = [tf.pad(v[:, :longest], [[0, 0], [0, longest - tf.minimum(tf.shape(v)[1], longest)], [0, 0]])
                      for v in vectors]
            table = context_scores(self.score, head.emissions(tf.concat(padded, 0)), tf.concat(lengths, 0),
                                   head.crf.transitions)
            idx = tf.stack([tf.boolean_mask(place, mine), tf.boolean_mask(c["position"], mine),
                            tf.boolean_mask(c["gold"], mine) - int(self.tag_offsets[i])], axis=-1)
            out = tf.tensor_scatter_nd_update(out, tf.where(mine), tf.gather_nd(table, idx))
        return out

    def __call__(self, net: TaggerNet, c: dict[str, tf.Tensor], seed: tf.Tensor | None,
                 anchors: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """The coupling minibatch's TCE (summed per anchor, divided by `anchors`, default the batch's anchors), its
        parts per pair [pairs, 4] (cce, cce′, lce, lce′; summing to TCE), and both attentions [S, K]; the
        sentences are encoded with dropout drawn from `seed`."""
        hs = [net.encoder(c[f"sentences_{g}"], fold_in(seed, 1000 + g)) for g in range(GROUPS)]
        return self.loss(net, c, hs, anchors)

    def loss(self, net: TaggerNet, c: dict[str, tf.Tensor], hs: list[tf.Tensor],
             anchors: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """`__call__` from the encoded length groups `hs`.

        An anchor's error is Σ over its list of (A + label attention) × |s − s′|; when only some neighbours are
        scored (`chosen`), their terms are scaled by (list length / scored neighbours), which keeps the anchor's
        error unbiased under the uniform draw.
        """
        s = self.scores(net, c, hs)
        anchor, neighbor = s[:, 0], s[:, 1:]
        if self.stop_lender:
            neighbor = tf.stop_gradient(neighbor)
        mask, chosen = c["mask"], c["chosen"]
        scored = chosen >= 0
        gap = tf.where(scored, tf.abs(anchor[:, None] - neighbor), 0.0)  # [S, M]
        attention = self.context_attention(net, c["window"], mask, c["pair"], c["direction"])
        v = tf.gather(self.label_vectors(), c["labels"])
        label_attention = masked_softmax(tf.einsum("sl,skl->sk", v[:, 0], v[:, 1:]), mask)
        place = tf.maximum(chosen, 0)
        scale = tf.reduce_sum(tf.cast(mask, gap.dtype), axis=1) / tf.maximum(
            tf.reduce_sum(tf.cast(scored, gap.dtype), axis=1), 1.0)
        cce = scale * tf.reduce_sum(tf.gather(attention, place, batch_dims=1) * gap, axis=1)
        lce = scale * tf.reduce_sum(tf.gather(label_attention, place, batch_dims=1) * gap, axis=1)
        if anchors is None:
            anchors = tf.cast(tf.shape(gap)[0], gap.dtype)
        backward = tf.cast(c["direction"], gap.dtype)
        each = tf.stack([cce * (1 - backward), cce * backward, lce * (1 - backward), lce * backward], axis=1)
        parts = tf.math.unsorted_segment_sum(each, c["pair"], tf.shape(self.attention)[0]) / anchors
        return {"total": tf.reduce_sum(parts), "parts": parts, "attention": attention,
                "label_attention": label_attention}
