"""tf.data input pipelines: encoded sentences → shuffled, length-bucketed, padded task minibatches.

Bucketing by length is the main speed lever here (padding falls from ~68% to a few % of token slots
on catalog descriptions, whose lengths vary from a handful to hundreds of tokens).
"""
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from mtl_tagger.conll import Sentence
from mtl_tagger.shortlist import Contexts
from mtl_tagger.vocab import Vocab

Example = dict[str, np.ndarray]

SIGNATURE = {
    "words": tf.TensorSpec([None], tf.int32),
    "chars": tf.TensorSpec([None, None], tf.int32),
    "tags": tf.TensorSpec([None], tf.int32),
    "length": tf.TensorSpec([], tf.int32),
    "index": tf.TensorSpec([], tf.int32),
}
BATCH_SIGNATURE = {k: tf.TensorSpec([None, *v.shape], v.dtype) for k, v in SIGNATURE.items()}


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
            "tags": tags,
            "length": np.int32(len(tokens)),
            "index": np.int32(i),
        })
    return out


def encode_sentences(sentences: Sequence[Sentence], vocab: Vocab, task: str, max_word_len: int) -> list[Example]:
    """`encode` for gold-tagged sentences of `task`."""
    return encode([s.tokens for s in sentences], vocab, max_word_len, task, [s.tags for s in sentences])


def _from_examples(examples: list[Example], order: Sequence[int]) -> tf.data.Dataset:
    def gen() -> Iterator[Example]:
        for i in order:
            yield examples[i]

    return tf.data.Dataset.from_generator(gen, output_signature=SIGNATURE)


def bucket_boundaries(max_len: int, growth: float = 1.2, start: int = 4) -> list[int]:
    """Geometric length boundaries up to max_len: buckets stay narrow, so padding stays small."""
    bounds, b = [], float(start)
    while b < max_len:
        bounds.append(int(b))
        b = max(b * growth, b + 1)
    return sorted(set(bounds))


def train_batches(examples: list[Example], batch_size: int, seed: int, epoch: int, max_len: int) -> tf.data.Dataset:
    """One epoch of shuffled, length-bucketed padded batches; the order depends only on (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(len(examples))
    bounds = bucket_boundaries(max_len)
    ds = _from_examples(examples, order).bucket_by_sequence_length(
        lambda e: e["length"], bounds, [batch_size] * (len(bounds) + 1), drop_remainder=False,
    )
    # Buckets fill at different rates: shuffle the finished batches so short and long ones interleave.
    return ds.shuffle(64, seed=seed * 1000 + epoch, reshuffle_each_iteration=False).prefetch(2)


def eval_batches(examples: list[Example], batch_size: int) -> tf.data.Dataset:
    """Padded batches in length order (little padding); `index` gives each row's place in `examples`."""
    order = sorted(range(len(examples)), key=lambda i: int(examples[i]["length"]))
    return _from_examples(examples, order).padded_batch(batch_size).prefetch(2)


def _pad(examples: Sequence[Example]) -> dict[str, np.ndarray]:
    """Pad examples' words/chars into one batch (numpy), as padded_batch would."""
    t = max(int(e["length"]) for e in examples)
    c = max(e["chars"].shape[1] for e in examples)
    words = np.zeros((len(examples), t), np.int32)
    chars = np.zeros((len(examples), t, c), np.int32)
    for r, e in enumerate(examples):
        n = int(e["length"])
        words[r, :n] = e["words"]
        chars[r, :n, : e["chars"].shape[1]] = e["chars"]
    return {"words": words, "chars": chars, "length": np.array([int(e["length"]) for e in examples], np.int32)}


@dataclass
class ShortlistData:
    """The shortlist resolved against the training examples: what coupling minibatches are cut from.

    Side 0 is task a, side 1 task b. `anchors` lists (direction, context index) of every anchor with at
    least one neighbour: direction 0 = anchor in task a with neighbours in b (CCE, LCE), 1 = reverse.
    """

    contexts: tuple[Contexts, Contexts]
    gold: tuple[np.ndarray, np.ndarray]  # gold tag id of every context, per side
    neighbors: tuple[np.ndarray, np.ndarray]  # [N_side, K] indices into the other side, -1 = padding
    anchors: np.ndarray  # [M, 2] int32

    @classmethod
    def build(cls, contexts: tuple[Contexts, Contexts], examples: tuple[list[Example], list[Example]],
              neighbors: tuple[np.ndarray, np.ndarray]) -> "ShortlistData":
        """Attach gold tags to the contexts and list the anchors that have neighbours."""
        gold = tuple(np.array([ex[int(j)]["tags"][int(i)] for j, i in zip(c.sentence, c.position)], np.int32)
                     for c, ex in zip(contexts, examples))
        anchors = np.concatenate([
            np.stack([np.full(len(n), d), np.arange(len(n))], axis=1)[n[:, 0] >= 0] for d, n in enumerate(neighbors)
        ]).astype(np.int32)
        return cls(contexts, gold, neighbors, anchors)


COUPLING_SIGNATURE = {
    "sentences_a": {k: BATCH_SIGNATURE[k] for k in ("words", "chars", "length")},
    "sentences_b": {k: BATCH_SIGNATURE[k] for k in ("words", "chars", "length")},
    "lookup_a": tf.TensorSpec([None, 3], tf.int32),  # (row in sentences_a, position, gold tag)
    "lookup_b": tf.TensorSpec([None, 3], tf.int32),
    "anchor_ref": tf.TensorSpec([None], tf.int32),  # index into concat(scores of lookup_a, lookup_b)
    "neighbor_ref": tf.TensorSpec([None, None], tf.int32),
    "direction": tf.TensorSpec([None], tf.int32),
    "mask": tf.TensorSpec([None, None], tf.bool),
    "anchor_tag": tf.TensorSpec([None], tf.int32),
    "neighbor_tag": tf.TensorSpec([None, None], tf.int32),
    "anchor_window": tf.TensorSpec([None, None], tf.int32),
    "neighbor_window": tf.TensorSpec([None, None, None], tf.int32),
}


def coupling_batch(data: ShortlistData, examples: tuple[list[Example], list[Example]],
                   anchors: np.ndarray) -> dict:
    """One coupling minibatch for `anchors` ([B, 2] direction, index): every sentence it touches once.

    Each sentence an anchor or a neighbour lies in enters its side's sentence batch once, so the
    encoder runs once per sentence per step however many pairs share it.
    """
    k = data.neighbors[0].shape[1]
    b = len(anchors)
    rows: tuple[dict, dict] = ({}, {})  # sentence index → row in that side's sentence batch
    lookups: tuple[dict, dict] = ({}, {})  # (sentence, position, tag) → index in that side's lookups

    def ref(side: int, ctx: int) -> int:
        c = data.contexts[side]
        j = int(c.sentence[ctx])
        row = rows[side].setdefault(j, len(rows[side]))
        return lookups[side].setdefault((row, int(c.position[ctx]), int(data.gold[side][ctx])), len(lookups[side]))

    refs = np.zeros((b, 1 + k), np.int64)
    sides = np.zeros((b, 1 + k), np.int64)
    mask = np.zeros((b, k), bool)
    tags = np.zeros((b, 1 + k), np.int32)
    width = data.contexts[0].windows.shape[1]
    windows = np.zeros((b, 1 + k, width), np.int32)
    for r, (d, ctx) in enumerate(anchors):
        d, ctx = int(d), int(ctx)
        members = [(d, ctx)] + [(1 - d, int(n)) for n in data.neighbors[d][ctx] if n >= 0]
        mask[r, : len(members) - 1] = True
        for c, (side, idx) in enumerate(members):
            refs[r, c], sides[r, c] = ref(side, idx), side
            tags[r, c] = data.gold[side][idx]
            windows[r, c] = data.contexts[side].windows[idx]
    offset = np.where(sides == 1, len(lookups[0]), 0)
    flat = (refs + offset).astype(np.int32)
    return {
        "sentences_a": _pad([examples[0][j] for j in rows[0]]),
        "sentences_b": _pad([examples[1][j] for j in rows[1]]),
        "lookup_a": np.array(list(lookups[0]), np.int32).reshape(-1, 3),
        "lookup_b": np.array(list(lookups[1]), np.int32).reshape(-1, 3),
        "anchor_ref": flat[:, 0],
        "neighbor_ref": np.where(mask, flat[:, 1:], 0).astype(np.int32),
        "direction": anchors[:, 0].astype(np.int32),
        "mask": mask,
        "anchor_tag": tags[:, 0],
        "neighbor_tag": np.where(mask, tags[:, 1:], 0).astype(np.int32),
        "anchor_window": windows[:, 0],
        "neighbor_window": windows[:, 1:],
    }


def coupling_batches(data: ShortlistData, examples: tuple[list[Example], list[Example]], batch_size: int,
                     seed: int, epoch: int) -> Iterator[dict]:
    """Endless coupling minibatches of `batch_size` anchors, reshuffled each pass, fixed by (seed, epoch)."""
    for k in range(1_000_000):
        order = np.random.default_rng([seed, epoch, k, 7]).permutation(len(data.anchors))
        for s in range(0, len(order), batch_size):
            yield coupling_batch(data, examples, data.anchors[order[s:s + batch_size]])
