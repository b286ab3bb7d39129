"""Batches: encoded sentences → one tf.data pipeline per run that yields each optimiser step's inputs.

Which sentences a step trains on is a *plan* fixed in advance by (seed, step): every vertical's training
sentences are shuffled per epoch, bucketed by length (padding falls from ~68% to a few % of token slots
on catalog descriptions) and cut into minibatches, epoch after epoch. The tf.data pipeline walks the plan
from any step (so a resumed run sees exactly the batches an uninterrupted one would) and gathers and pads
the sentences in-graph from one `SentenceTable`; nothing in it is a Python generator, so nothing outlives it.

Coupled mode adds a coupling minibatch per step: `CouplingData` holds every coupled pair's shortlist L as
gather tables over one run's contexts. An *anchor* is a context with at least one neighbour in the other
vertical of its pair; direction 0 = anchor in the pair's first vertical (CCE with a, LCE), 1 = in its second
(CCE′ with a′, LCE′). Its `plan` fixes which anchors each step uses, and `batch` gathers a step's anchors, their
neighbours and every sentence they lie in, in-graph (each sentence once, padded in GROUPS length groups); the
loss module (mtl_tagger.loss) consumes it. With `within` (--coupling_within) the anchors and the neighbours
they are compared with are drawn from the step's own vertical minibatches instead (`plan_within`,
`batch_within`), so the loss scores them from encodings the step already has.
"""
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from mtl_tagger.conll import Sentence
from mtl_tagger.shortlist import Contexts
from mtl_tagger.vocab import Vocab

Example = dict[str, np.ndarray]
BATCH_KEYS = ("words", "chars", "case", "tags", "length")
BATCH_SIGNATURE = {
    "words": tf.TensorSpec([None, None], tf.int32),
    "chars": tf.TensorSpec([None, None, None], tf.int32),
    "case": tf.TensorSpec([None, None], tf.int32),
    "tags": tf.TensorSpec([None, None], tf.int32),
    "length": tf.TensorSpec([None], tf.int32),
}


def encode(
    token_lists: Sequence[Sequence[str]], vocab: Vocab, max_word_len: int,
    task: str | None = None, tag_lists: Sequence[Sequence[str]] | None = None,
) -> list[Example]:
    """Id arrays for each sentence (tags all O when `tag_lists` is None, as for raw text to predict)."""
    out = []
    for i, tokens in enumerate(token_lists):
        tags = vocab.tag_ids(task, tag_lists[i]) if tag_lists is not None else np.zeros(len(tokens), np.int32)
        out.append({
            "words": vocab.word_ids(tokens),
            "chars": vocab.char_ids(tokens, max_word_len),
            "case": vocab.shape_ids(tokens),
            "tags": tags,
            "length": np.int32(len(tokens)),
        })
    return out


def encode_sentences(sentences: Sequence[Sentence], vocab: Vocab, task: str, max_word_len: int) -> list[Example]:
    """`encode` for gold-tagged sentences of `task`."""
    return encode([s.tokens for s in sentences], vocab, max_word_len, task, [s.tags for s in sentences])


def pad(examples: Sequence[Example]) -> dict[str, np.ndarray]:
    """One padded numpy batch of examples (the BATCH_SIGNATURE layout)."""
    t = max([int(e["length"]) for e in examples] + [1])
    c = max([e["chars"].shape[1] for e in examples] + [1])
    out = {k: np.zeros((len(examples), t), np.int32) for k in ("words", "case", "tags")}
    out["chars"] = np.zeros((len(examples), t, c), np.int32)
    for r, e in enumerate(examples):
        n = int(e["length"])
        for k in ("words", "case", "tags"):
            out[k][r, :n] = e[k]
        out["chars"][r, :n, : e["chars"].shape[1]] = e["chars"]
    out["length"] = np.array([int(e["length"]) for e in examples], np.int32)
    return out


def eval_batches(examples: Sequence[Example], batch_size: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(positions in `examples`, padded batch) in length order, so batches hold little padding."""
    order = sorted(range(len(examples)), key=lambda i: int(examples[i]["length"]))
    return [(np.array(order[s:s + batch_size]), pad([examples[i] for i in order[s:s + batch_size]]))
            for s in range(0, len(order), batch_size)]


class SentenceTable:
    """Every training sentence of a run (all verticals, one row each) as ragged tensors, for in-graph gathers."""

    def __init__(self, examples: Sequence[Example]) -> None:
        lengths = np.array([int(e["length"]) for e in examples], np.int32)
        self.lengths = lengths

        def ragged(key: str) -> tf.RaggedTensor:
            flat = np.concatenate([e[key] for e in examples]).astype(np.int32)
            return tf.RaggedTensor.from_row_lengths(flat, lengths.astype(np.int64))

        self.words, self.case, self.tags = ragged("words"), ragged("case"), ragged("tags")
        char_rows = [row[row > 0] for e in examples for row in e["chars"]]
        chars = tf.RaggedTensor.from_row_lengths(np.concatenate(char_rows).astype(np.int32),
                                                 np.array([len(r) for r in char_rows], np.int64))
        self.chars = tf.RaggedTensor.from_row_lengths(chars, lengths.astype(np.int64))
        self.length = tf.constant(lengths)

    def batch(self, rows: tf.Tensor) -> dict[str, tf.Tensor]:
        """The padded batch (BATCH_SIGNATURE) of the given table rows, in-graph, laid out as `pad`: every axis past
        the rows at least 1 wide, so that no rows give one padding word of one padding character (the BiLSTMs
        cannot run over zero steps)."""
        def padded(table: tf.RaggedTensor) -> tf.Tensor:
            x = tf.gather(table, rows).to_tensor()
            short = tf.maximum(1 - tf.shape(x)[1:], 0)
            return tf.pad(x, tf.concat([[[0, 0]], tf.stack([tf.zeros_like(short), short], axis=1)], 0))

        return {"words": padded(self.words), "chars": padded(self.chars), "case": padded(self.case),
                "tags": padded(self.tags), "length": tf.gather(self.length, rows)}


def bucket_boundaries(max_len: int, growth: float = 1.2, start: int = 4) -> list[int]:
    """Geometric length boundaries up to max_len: buckets stay narrow, so padding stays small."""
    bounds, b = [], float(start)
    while b < max_len:
        bounds.append(int(b))
        b = max(b * growth, b + 1)
    return sorted(set(bounds))


def batches_per_epoch(lengths: np.ndarray, batch_size: int, max_len: int) -> int:
    """Minibatches in one epoch of sentences of these lengths (each length bucket cut into full batches + rest)."""
    buckets = np.searchsorted(bucket_boundaries(max_len), lengths, side="right")
    return int(sum(-(-n // batch_size) for n in np.bincount(buckets)))


def _epoch(lengths: np.ndarray, batch_size: int, bounds: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch: shuffle, bucket by length (keeping the shuffled order), cut, and shuffle the batches."""
    order = rng.permutation(len(lengths))
    buckets = np.searchsorted(bounds, lengths[order], side="right")
    batches = []
    for b in np.unique(buckets):
        members = order[buckets == b]
        batches += [members[s:s + batch_size] for s in range(0, len(members), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def batch_plan(lengths: np.ndarray, batch_size: int, max_len: int, seed: int, stream: int, steps: int) -> np.ndarray:
    """[steps, batch_size] sentence indices (−1 = none) of one vertical's minibatch at every step.

    Epoch e is shuffled by (seed, stream, e); a vertical with fewer batches than a step count needs simply
    starts its next epoch, so the plan at step s never depends on how many steps the run will take.
    """
    plan = np.full((steps, batch_size), -1, np.int32)
    bounds = bucket_boundaries(max_len)
    step, epoch = 0, 0
    while step < steps:
        for batch in _epoch(lengths, batch_size, bounds, np.random.default_rng([seed, stream, epoch])):
            if step == steps:
                break
            plan[step, :len(batch)] = batch
            step += 1
        epoch += 1
    return plan


def step_dataset(table: SentenceTable, plans: dict[str, np.ndarray], offsets: dict[str, int], start: int,
                 coupling: "CouplingData | None" = None, coupling_plan: tuple[np.ndarray, np.ndarray] | None = None,
                 shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """Step inputs from `start` to the end of the plans: {"step", "count", vertical: padded batch, ["coupling"]}.

    `plans` hold each vertical's sentence indices; `offsets` its first row in `table`. `coupling` (a
    CouplingData) turns its plan's anchor rows and chosen neighbours into a coupling minibatch, also
    in-graph. With
    `shard` = (worker, workers) this worker gets every workers-th sentence and anchor of each step from its
    own position; "count" holds each whole minibatch's size (per vertical, and "coupling" anchors), which
    the losses divide by, so that the workers' summed gradients are those of one worker on the whole step.
    """
    slices: dict[str, np.ndarray] = {t: plan[start:] for t, plan in plans.items()}
    stop = start + len(next(iter(slices.values())))
    slices["step"] = np.arange(start, stop, dtype=np.int64)
    if coupling is not None:
        slices["coupling"], slices["chosen"] = (plan[start:] for plan in coupling_plan)

    worker, workers = shard

    def gather(x: dict) -> dict:
        out, mine = {"step": x["step"], "count": {}}, {}
        for t in plans:
            rows = tf.boolean_mask(x[t], x[t] >= 0)
            out["count"][t] = tf.cast(tf.size(rows), tf.float32)
            mine[t] = rows[worker::workers] + offsets[t]  # this worker's table rows of the vertical's minibatch
            out[t] = table.batch(mine[t])
        if coupling is not None:
            real = x["coupling"] >= 0
            anchors, chosen = tf.boolean_mask(x["coupling"], real), tf.boolean_mask(x["chosen"], real)
            out["count"]["coupling"] = tf.cast(tf.size(anchors), tf.float32)
            if coupling.within:  # the plan put this worker's anchors, and their neighbours, in its share
                out["coupling"] = coupling.batch_within(x["coupling"][worker::workers], x["chosen"][worker::workers],
                                                        [mine[t] for t in coupling.tasks])
            else:
                out["coupling"] = coupling.batch(table, anchors[worker::workers], chosen[worker::workers])
        return out

    return tf.data.Dataset.from_tensor_slices(slices).map(gather).prefetch(2)


GROUPS = 4  # the scored sentences of a coupling minibatch are padded in this many length groups
WITHIN_SIGNATURE = {
    # The scored contexts [S, 1+M]: each anchor (column 0) and the neighbours chosen for it: which group, row and
    # position its context is at, its vertical and its gold tag (global id). A group is a length group of the
    # coupling minibatch's own sentences, or (--coupling_within) a vertical's minibatch of the step.
    **{k: tf.TensorSpec([None, None], tf.int32) for k in ("group", "row", "position", "task", "gold")},
    "chosen": tf.TensorSpec([None, None], tf.int32),  # [S, M] the chosen neighbours' places in the list, −1 = none
    # The anchor's whole list L(j,i), over which both attentions normalise: windows [S, 1+K, W] and gold tags.
    "window": tf.TensorSpec([None, None, None], tf.int32),
    "labels": tf.TensorSpec([None, None], tf.int32),
    "mask": tf.TensorSpec([None, None], tf.bool),  # [S, K] real neighbours
    "direction": tf.TensorSpec([None], tf.int32),
    "pair": tf.TensorSpec([None], tf.int32),
}
COUPLING_SIGNATURE = {**{f"sentences_{g}": BATCH_SIGNATURE for g in range(GROUPS)},  # each scored sentence once
                      **WITHIN_SIGNATURE}


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
                 sentence_offsets: dict[str, int], tag_offsets: dict[str, int], pairs: Sequence[PairShortlist],
                 within: bool = False) -> None:
        self.tasks, self.within, self.sentence_offsets = list(tasks), within, dict(sentence_offsets)
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

    def plan_within(self, plans: dict[str, np.ndarray], size: int, seed: int, sample: int = 1, workers: int = 1
                    ) -> tuple[np.ndarray, np.ndarray]:
        """`plan` drawn from the step's own vertical minibatches (`plans`, as step_dataset takes them): each step
        up to `size` anchors whose sentence is in the step, chosen uniformly among those with a neighbour whose
        sentence is in the step too, and `sample` of those neighbours (0: all of them), fixed by (seed, step).
        With `workers`, an anchor and its chosen neighbours lie in one worker's share of the step (step_dataset's
        `shard`), and worker w's anchors take the places w, w + workers, …"""
        k = self.anchor_neighbors.shape[1]
        m = k if sample == 0 else min(sample, k)
        steps = len(next(iter(plans.values())))
        sentence = self.ctx_sentence[self.anchor_ctx]
        listed = np.where(self.anchor_neighbors >= 0, self.ctx_sentence[np.maximum(self.anchor_neighbors, 0)], -1)
        by_sentence = np.argsort(sentence, kind="stable")
        top = max([int(self.ctx_sentence.max())] + [int(plan.max(initial=-1)) + self.sentence_offsets[t]
                                                     for t, plan in plans.items()])
        bounds = np.searchsorted(sentence[by_sentence], np.arange(top + 2))
        plan, chosen = np.full((steps, size), -1, np.int32), np.full((steps, size, m), -1, np.int32)
        here = np.zeros(len(bounds), bool)
        for step in range(steps):
            rng = np.random.default_rng([seed, step, 13])
            for w in range(workers):
                rows = np.concatenate([plans[t][step][plans[t][step] >= 0][w::workers] + self.sentence_offsets[t]
                                       for t in self.tasks])
                here[rows] = True
                mine = np.concatenate([by_sentence[bounds[r]:bounds[r + 1]] for r in rows] + [np.zeros(0, np.int64)])
                usable = (listed[mine] >= 0) & here[listed[mine]]
                mine, usable = mine[usable.any(axis=1)], usable[usable.any(axis=1)]
                pick = np.sort(rng.permutation(len(mine))[:len(range(w, size, workers))])
                order = np.argsort(np.where(usable[pick], rng.random((len(pick), k)), 2.0), axis=1,
                                   kind="stable")[:, :m]
                places = np.arange(w, size, workers)[:len(pick)]
                plan[step, places] = mine[pick]
                chosen[step, places] = np.where(np.take_along_axis(usable[pick], order, axis=1), order, -1)
                here[rows] = False
        return plan, chosen

    def _contexts(self, rows: tf.Tensor, chosen: tf.Tensor) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """The scored contexts [S, 1+M] of anchor rows and chosen places (rows −1 ignored), and the minibatch's
        entries that do not depend on where their sentences are encoded."""
        t = self._tensors
        real = rows >= 0
        rows, chosen = tf.boolean_mask(rows, real), tf.boolean_mask(chosen, real)
        anchor = tf.gather(t["anchor_ctx"], rows)
        neighbors = tf.gather(t["anchor_neighbors"], rows)
        mask = neighbors >= 0
        listed = tf.concat([anchor[:, None], tf.where(mask, neighbors, anchor[:, None])], axis=1)  # [S, 1+K]
        picked = tf.gather(neighbors, tf.maximum(chosen, 0), batch_dims=1)
        scored = tf.concat([anchor[:, None], tf.where(chosen >= 0, picked, anchor[:, None])], axis=1)  # [S, 1+M]
        return scored, {
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

    def batch(self, table: SentenceTable, rows: tf.Tensor, chosen: tf.Tensor) -> dict[str, tf.Tensor]:
        """The coupling minibatch (COUPLING_SIGNATURE) of anchor rows and chosen places (rows −1 ignored), in-graph.

        Only the anchors' and the chosen neighbours' sentences are encoded; the attention over each anchor's
        whole list needs only word embeddings and gold tags.
        """
        scored, out = self._contexts(rows, chosen)
        unique, where = tf.unique(tf.reshape(tf.gather(self._tensors["ctx_sentence"], scored), [-1]))
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
            **out,
        }

    def batch_within(self, rows: tf.Tensor, chosen: tf.Tensor, batches: Sequence[tf.Tensor]) -> dict[str, tf.Tensor]:
        """The coupling minibatch (WITHIN_SIGNATURE) of a `plan_within` step, in-graph: each scored context's group
        is its vertical and its row the place of its sentence in that vertical's minibatch (`batches`: the table
        rows of each vertical's minibatch, in run order)."""
        scored, out = self._contexts(rows, chosen)
        sentence = tf.gather(self._tensors["ctx_sentence"], scored)
        row = tf.zeros_like(sentence)
        for i, b in enumerate(batches):
            # −1 after the rows: a worker's share of a vertical may be empty, and argmax needs an entry.
            place = tf.argmax(tf.cast(sentence[..., None] == tf.concat([b, [-1]], 0), tf.int32), axis=-1,
                              output_type=tf.int32)
            row = tf.where(out["task"] == i, place, row)
        return {"group": out["task"], "row": row, **out}
