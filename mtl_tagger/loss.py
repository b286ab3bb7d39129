"""The loss of one training step, summed in one place (`step_loss`): every vertical's CRF loss (weight 1 each, or
by its size with --size_weight), the L2 penalty on its spelling-feature weights (weight --lexical_l2, shared among
the replicas whose losses the step sums) and, in coupled mode, the coupling loss TCE = CCE + CCE′ + LCE + LCE′ over
shortlist pairs (paper §3.4; weight --coupling_weight). Every term is also returned by name for TensorBoard
(crf/<vertical>, coupling/tce and TCE's parts per coupled pair).

`Coupler` holds the attention vectors a, a′ of every coupled pair and the label k-gram table, and turns a coupling
minibatch (mtl_tagger.pipeline.CouplingData) into TCE: scores of the gold tags (`--coupling_score`), the context
attention A (Luong, α = uᵀ diag(a) u′ over the anchor's neighbours), the label attention (softmax of v·v′) and
Σ A·|s − s′| per anchor.
"""
import functools
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from mtl_tagger import crf
from mtl_tagger.labels import HASH_BUCKETS, kgram_ids
from mtl_tagger.model import TaggerNet, fold_in
from mtl_tagger.pipeline import GROUPS

COUPLING_PARTS = ("cce", "cce_prime", "lce", "lce_prime")
LABEL_DIM = 32
# A score the coupling loss compares: (emissions [B, T, N], lengths [B], transitions [N, N]) → s_i(y|x) [B, T, N].
ScoreFn = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def step_loss(net: TaggerNet, names: list[str], coupler: "Coupler | None", pairs: list[tuple[str, str]],
              coupling_weight: float, inputs: dict, seed: tf.Tensor,
              lexical_l2: float = 0.0, within: bool = False, replicas: int = 1,
              task_weights: dict[str, float] | None = None) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The step's loss and its named terms. `inputs`: a step of `pipeline.step_dataset` (a minibatch per
    vertical of `names`, `count` per vertical for the divisor, and the coupling minibatch in coupled mode);
    dropout is drawn from `seed` folded with the vertical's place in `names` (the coupling minibatch's: after
    them). `within` (--coupling_within): the coupling minibatch's contexts lie in the vertical minibatches,
    whose encodings it reuses. `replicas`: the workers whose losses the step sums; each counts its share of the
    penalty, so that the step counts it once. `task_weights`: each vertical's CRF loss weight (default 1;
    --size_weight)."""
    weights = {t: 1.0 for t in names} | (task_weights or {})
    hidden = {t: net.encode(t, inputs[t], fold_in(seed, i)) for i, t in enumerate(names)} if within else {}
    terms = {f"crf/{t}": net.crf_loss(t, inputs[t], fold_in(seed, i), inputs["count"][t], hidden.get(t))
             for i, t in enumerate(names)}
    loss = tf.add_n([weights[t] * terms[f"crf/{t}"] for t in names])
    if lexical_l2 and net.buckets:
        weights["lexical_l2"] = lexical_l2 / replicas
        for t in names:
            terms[f"l2/{t}"] = tf.reduce_sum(tf.square(net.heads[t].lexical))
            loss += weights["lexical_l2"] * terms[f"l2/{t}"]
    if coupler is not None:
        weights["coupling"] = coupling_weight
        c, anchors = inputs["coupling"], inputs["count"]["coupling"]
        out = (coupler.loss(net, c, [hidden[t] for t in names], [inputs[t]["length"] for t in names], anchors)
               if within else coupler(net, c, fold_in(seed, len(names)), anchors))
        loss += weights["coupling"] * out["total"]
        terms["coupling/tce"] = out["total"]
        for i, (a, b) in enumerate(pairs):
            for j, part in enumerate(COUPLING_PARTS):
                terms[f"coupling/{a}:{b}/{part}"] = out["parts"][i, j]
    return loss, terms


def masked_softmax(logits: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Softmax over the last axis within `mask`; 0 at padding and on rows with no real entry (no NaN)."""
    peak = tf.reduce_max(tf.where(mask, logits, logits.dtype.min), axis=-1, keepdims=True)
    # Padding is set to 0 before exp so that neither the value nor its gradient can overflow.
    weights = tf.where(mask, tf.exp(tf.where(mask, logits - tf.stop_gradient(peak), 0.0)), 0.0)
    total = tf.reduce_sum(weights, axis=-1, keepdims=True)  # ≥ 1 if the row has a real entry, else 0
    return weights / tf.where(total > 0, total, 1.0)


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

    def scores(self, net: TaggerNet, c: dict[str, tf.Tensor], hs: list[tf.Tensor], lengths: list[tf.Tensor],
               score: ScoreFn | None = None) -> tf.Tensor:
        """[S, 1+K]: each context's score of its gold tag under its own vertical's head (`score`, by default the
        coupler's `--coupling_score`), from the encoded groups `hs` and their sentences' `lengths`.

        Each head scores only the sentences its vertical's contexts lie in, from every length group at once, so a
        CRF forward–backward (`marginal`) runs once per scored sentence and once over the longest.
        """
        score = score or functools.partial(context_scores, self.score)
        out = tf.zeros(tf.shape(c["gold"]))
        for i, task in enumerate(self.tasks):
            head = net.heads[task]
            mine = c["task"] == i
            place, offset, scored_lengths, vectors = tf.zeros_like(c["row"]), 0, [], []
            for g, h in enumerate(hs):
                in_group = mine & (c["group"] == g)
                ids, at = tf.unique(tf.boolean_mask(c["row"], in_group))
                # Each of my contexts' row in the table below: its group's offset + its sentence's place in the group.
                place = tf.tensor_scatter_nd_update(place, tf.where(in_group), at + offset)
                offset += tf.size(ids)
                scored_lengths.append(tf.gather(lengths[g], ids))
                vectors.append(tf.gather(h, ids))
            longest = tf.reduce_max(tf.concat([*scored_lengths, [1]], 0))
            padded = [tf.pad(v[:, :longest], [[0, 0], [0, longest - tf.minimum(tf.shape(v)[1], longest)], [0, 0]])
                      for v in vectors]
            table = score(head.emissions(tf.concat(padded, 0)), tf.concat(scored_lengths, 0), head.crf.transitions)
            idx = tf.stack([tf.boolean_mask(place, mine), tf.boolean_mask(c["position"], mine),
                            tf.boolean_mask(c["gold"], mine) - int(self.tag_offsets[i])], axis=-1)
            out = tf.tensor_scatter_nd_update(out, tf.where(mine), tf.gather_nd(table, idx))
        return out

    def __call__(self, net: TaggerNet, c: dict[str, tf.Tensor], seed: tf.Tensor | None,
                 anchors: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """The coupling minibatch's TCE (summed per anchor, divided by `anchors`, default the batch's anchors), its
        parts per pair [pairs, 4] (cce, cce′, lce, lce′; summing to TCE), and both attentions [S, K]; the
        sentences are encoded with dropout drawn from `seed`."""
        groups = [c[f"sentences_{g}"] for g in range(GROUPS)]
        hs = [net.encoder(b, fold_in(seed, 1000 + g)) for g, b in enumerate(groups)]
        return self.loss(net, c, hs, [b["length"] for b in groups], anchors)

    def loss(self, net: TaggerNet, c: dict[str, tf.Tensor], hs: list[tf.Tensor], lengths: list[tf.Tensor],
             anchors: tf.Tensor | None = None, score: ScoreFn | None = None) -> dict[str, tf.Tensor]:
        """`__call__` from encoded groups: `hs` and their sentences' `lengths` (the coupling minibatch's length
        groups, or the step's vertical minibatches); `score` replaces `--coupling_score` (an analysis's own score).

        An anchor's error is Σ over its list of (A + label attention) × |s − s′|; when only some neighbours are
        scored (`chosen`), their terms are scaled by (list length / scored neighbours), which keeps the anchor's
        error unbiased under the uniform draw.
        """
        s = self.scores(net, c, hs, lengths, score)
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
        # A step without anchors (possible with --coupling_within) adds nothing rather than 0 / 0.
        parts = tf.math.unsorted_segment_sum(each, c["pair"], tf.shape(self.attention)[0]) / tf.maximum(anchors, 1.0)
        return {"total": tf.reduce_sum(parts), "parts": parts, "attention": attention,
                "label_attention": label_attention}
