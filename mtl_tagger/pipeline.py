"""tf.data input pipelines: encoded sentences → shuffled, length-bucketed, padded task minibatches.

Bucketing by length is the main speed lever here (padding falls from ~68% to a few % of token slots
on catalog descriptions, whose lengths vary from a handful to hundreds of tokens).
"""
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from mtl_tagger.conll import Sentence
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
