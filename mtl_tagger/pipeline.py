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


LENGTH_GROUPS = 2  # a coupling minibatch's sentences are padded in this many length-sorted groups
_SENTENCES = {k: BATCH_SIGNATURE[k] for k in ("words", "chars", "length")}
COUPLING_SIGNATURE = {
    # Sentences of both tasks (the encoder is shared), in LENGTH_GROUPS groups to limit padding;
    # lookup_<g><side>: (row in group g, position, gold tag) of the contexts scored by task <side>'s head.
    **{f"sentences_{g}": _SENTENCES for g in range(LENGTH_GROUPS)},
    **{f"lookup_{g}{side}": tf.TensorSpec([None, 3], tf.int32) for g in range(LENGTH_GROUPS) for side in "ab"},
    "anchor_ref": tf.TensorSpec([None], tf.int32),  # index into the concatenated scores of the lookups
    "neighbor_ref": tf.TensorSpec([None, None], tf.int32),
    "direction": tf.TensorSpec([None], tf.int32),
    "mask": tf.TensorSpec([None, None], tf.bool),
    "anchor_tag": tf.TensorSpec([None], tf.int32),
    "neighbor_tag": tf.TensorSpec([None, None], tf.int32),
    "anchor_window": tf.TensorSpec([None, None], tf.int32),
    "neighbor_window": tf.TensorSpec([None, None, None], tf.int32),
}


def _length_groups(lengths: Sequence[int], groups: int) -> list[list[int]]:
    """Split indices, sorted by length, into `groups` non-empty runs with the fewest padded slots."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    ls = [lengths[i] for i in order]
    cuts: list[int] = []
    for _ in range(groups - 1):  # greedy: the cut that saves most padding given the earlier cuts
        bounds = [0, *cuts, len(ls)]

        def slots(bs: list[int]) -> int:
            return sum((b - a) * ls[b - 1] for a, b in zip(bs, bs[1:]))

        best = min((c for c in range(1, len(ls)) if c not in cuts), key=lambda c: slots(sorted([*bounds, c])))
        cuts = sorted([*cuts, best])
    bounds = [0, *cuts, len(ls)]
    return [order[a:b] for a, b in zip(bounds, bounds[1:])]


def coupling_batch(data: ShortlistData, examples: tuple[list[Example], list[Example]],
                   anchors: np.ndarray) -> dict:
    """One coupling minibatch for `anchors` ([B, 2] direction, index): every sentence it touches once.

    Each sentence an anchor or a neighbour lies in is encoded once per step, however many pairs share
    it; the sentences of both tasks are padded together in LENGTH_GROUPS length-sorted groups.
    """
    k = data.neighbors[0].shape[1]
    b = len(anchors)
    members = np.zeros((b, 1 + k, 2), np.int64)  # (side, context index) of anchor + neighbours
    mask = np.zeros((b, k), bool)
    for r, (d, ctx) in enumerate(anchors):
        nb = data.neighbors[d][ctx]
        nb = nb[nb >= 0]
        members[r, 0] = (d, ctx)
        members[r, 1:1 + len(nb)] = np.stack([np.full(len(nb), 1 - d), nb], axis=1)
        mask[r, : len(nb)] = True
    real = np.concatenate([np.ones((b, 1), bool), mask], axis=1)
    side, ctx = members[..., 0], members[..., 1]
    sentence = np.where(side == 0, data.contexts[0].sentence[np.where(side == 0, ctx, 0)],
                        data.contexts[1].sentence[np.where(side == 1, ctx, 0)])
    position = np.where(side == 0, data.contexts[0].position[np.where(side == 0, ctx, 0)],
                        data.contexts[1].position[np.where(side == 1, ctx, 0)])
    gold = np.where(side == 0, data.gold[0][np.where(side == 0, ctx, 0)], data.gold[1][np.where(side == 1, ctx, 0)])
    windows = np.where((side == 0)[..., None], data.contexts[0].windows[np.where(side == 0, ctx, 0)],
                       data.contexts[1].windows[np.where(side == 1, ctx, 0)])

    sentences = sorted({(int(si), int(j)) for si, j in zip(side[real], sentence[real])})
    lengths = [int(examples[si][j]["length"]) for si, j in sentences]
    out: dict[str, object] = {}
    place: dict[tuple[int, int], tuple[int, int]] = {}  # (side, sentence) → (group, row)
    for g, idx in enumerate(_length_groups(lengths, LENGTH_GROUPS)):
        out[f"sentences_{g}"] = _pad([examples[sentences[i][0]][sentences[i][1]] for i in idx])
        place.update({sentences[i]: (g, row) for row, i in enumerate(idx)})
    lookups: dict[tuple[int, int], dict[tuple[int, int, int], int]] = {
        (g, si): {} for g in range(LENGTH_GROUPS) for si in (0, 1)}
    where = np.zeros((*real.shape, 2), np.int64)  # (lookup table, index in it) of every member
    for r, c in zip(*np.nonzero(real)):
        si = int(side[r, c])
        g, row = place[(si, int(sentence[r, c]))]
        table = lookups[(g, si)]
        where[r, c] = (2 * g + si, table.setdefault((row, int(position[r, c]), int(gold[r, c])), len(table)))
    offsets = np.cumsum([0] + [len(lookups[(g, si)]) for g in range(LENGTH_GROUPS) for si in (0, 1)])
    keys = np.where(real, offsets[where[..., 0]] + where[..., 1], 0).astype(np.int32)
    for g in range(LENGTH_GROUPS):
        for si, name in ((0, "a"), (1, "b")):
            out[f"lookup_{g}{name}"] = np.array(list(lookups[(g, si)]), np.int32).reshape(-1, 3)
    out.update({
        "anchor_ref": keys[:, 0],
        "neighbor_ref": keys[:, 1:],
        "direction": anchors[:, 0].astype(np.int32),
        "mask": mask,
        "anchor_tag": gold[:, 0].astype(np.int32),
        "neighbor_tag": np.where(mask, gold[:, 1:], 0).astype(np.int32),
        "anchor_window": windows[:, 0].astype(np.int32),
        "neighbor_window": np.where(mask[..., None], windows[:, 1:], 0).astype(np.int32),
    })
    return out


def coupling_batches(data: ShortlistData, examples: tuple[list[Example], list[Example]], batch_size: int,
                     seed: int, epoch: int) -> Iterator[dict]:
    """Endless coupling minibatches of `batch_size` anchors, fixed by (seed, epoch).

    Each pass visits every anchor once, in an order shuffled by sentence: the anchors of one
    (direction, sentence) stay together, so a minibatch's anchors lie in a few sentences and the
    encoder runs over a few anchor sentences instead of up to `batch_size` (see BUILD_NOTES).
    """
    side = data.anchors[:, 0]
    sentence = np.where(side == 0, data.contexts[0].sentence[np.where(side == 0, data.anchors[:, 1], 0)],
                        data.contexts[1].sentence[np.where(side == 1, data.anchors[:, 1], 0)])
    groups = side.astype(np.int64) * (1 + int(sentence.max())) + sentence  # one id per (direction, sentence)
    for k in range(1_000_000):
        rank = np.random.default_rng([seed, epoch, k, 7]).permutation(int(groups.max()) + 1)
        order = np.lexsort((data.anchors[:, 1], rank[groups]))
        for s in range(0, len(order), batch_size):
            yield coupling_batch(data, examples, data.anchors[order[s:s + batch_size]])
