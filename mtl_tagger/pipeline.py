"""Batches: encoded sentences → one tf.data pipeline per run that yields each optimiser step's inputs.

Which sentences a step trains on is a *plan* fixed in advance by (seed, step): every vertical's training
sentences are shuffled per epoch, bucketed by length (padding falls from ~68% to a few % of token slots
on catalog descriptions) and cut into minibatches, epoch after epoch. The tf.data pipeline walks the plan
from any step (so a resumed run sees exactly the batches an uninterrupted one would) and gathers and pads
the sentences in-graph from one `SentenceTable`; nothing in it is a Python generator, so nothing outlives it.
"""
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from mtl_tagger.conll import Sentence
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
                 coupling: object | None = None, coupling_plan: tuple[np.ndarray, np.ndarray] | None = None,
                 shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """Step inputs from `start` to the end of the plans: {"step", "count", vertical: padded batch, ["coupling"]}.

    `plans` hold each vertical's sentence indices; `offsets` its first row in `table`. `coupling` (a
    coupling.CouplingData) turns its plan's anchor rows and chosen neighbours into a coupling minibatch, also
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
        out = {"step": x["step"], "count": {}}
        for t in plans:
            rows = tf.boolean_mask(x[t], x[t] >= 0)
            out["count"][t] = tf.cast(tf.size(rows), tf.float32)
            out[t] = table.batch(rows[worker::workers] + offsets[t])
        if coupling is not None:
            real = x["coupling"] >= 0
            anchors, chosen = tf.boolean_mask(x["coupling"], real), tf.boolean_mask(x["chosen"], real)
            out["count"]["coupling"] = tf.cast(tf.size(anchors), tf.float32)
            out["coupling"] = coupling.batch(table, anchors[worker::workers], chosen[worker::workers])
        return out

    return tf.data.Dataset.from_tensor_slices(slices).map(gather).prefetch(2)
