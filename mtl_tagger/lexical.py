"""Spelling features as the feature CRF uses them (experiments/crf_baseline.py), for the neural tagger: each token's
lower case, prefixes and suffixes of 1–4 characters and shape, and the lower case, 3-suffix and shape of the tokens
up to two to either side; with --lexical_pairs also the lower-case word pairs a token forms with each neighbour and
its place among the sentence's first and last two tokens. With --lexical_buckets, each head adds a learned score per
(feature, tag) to its emission scores: a linear CRF over these features inside the neural one, which remembers what
a few training descriptions say about a word and its neighbours, also for words outside the vocabulary.

The features are computed in the graph from the batch's character ids and word shapes (a token's characters as
the char encoder sees them, at most --max_word_len), so they need no input of their own and the SavedModel computes
them as training did. Each (template, value) is hashed into one of the buckets; a word whose word dropout turned it
into the unknown word gives no word features in that step (its place still counts).
"""
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from mtl_tagger.params import MAX_WORD_LEN

PRIME = 2_147_483_629  # the largest prime below 2^31: hashes stay below it, products of two below 2^62
BASE, MIX = 1_000_003, 1_103_515_245
OFFSETS = (-2, -1, 1, 2)  # the neighbours whose lower case, 3-suffix and shape a token sees
AFFIXES = (1, 2, 3, 4)
TEMPLATES = 2 + 2 * len(AFFIXES) + 3 * len(OFFSETS)  # own: lower, shape, prefixes, suffixes; per neighbour: three
PAIR_TEMPLATES = 4  # the pairs with the left and the right neighbour, the place from the start and from the end
EDGE = PRIME - 1  # the word a pair sees beyond the sentence's ends (a string hashes to it with chance 1/PRIME)


def lower_char_ids(chars: Sequence[str]) -> np.ndarray:
    """For each char id of a vocabulary's character list, the id of its lower case (itself when that is not
    listed or not one character)."""
    index = {c: i for i, c in enumerate(chars)}
    return np.array([index.get(c.lower(), i) for i, c in enumerate(chars)], np.int64)


def _powers(n: int) -> np.ndarray:
    """BASE^i mod PRIME for i < n: each character position's weight in a string's hash."""
    powers = np.ones(n, np.int64)
    for i in range(1, n):
        powers[i] = powers[i - 1] * BASE % PRIME
    return powers


POWERS = _powers(MAX_WORD_LEN)  # --max_word_len is at most MAX_WORD_LEN (its check in params.py)


def _string_hashes(codes: tf.Tensor) -> tf.Tensor:
    """[..., C] character codes (0 past the end) → [..., C + 1]: the hash of each prefix of 0..C characters."""
    terms = (codes + 1) * tf.constant(POWERS)[:tf.shape(codes)[-1]] % PRIME * tf.cast(codes > 0, tf.int64)
    sums = tf.math.cumsum(terms, axis=-1) % PRIME
    return tf.concat([tf.zeros_like(sums[..., :1]), sums], axis=-1)


def _at(hashes: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """hashes[..., k] for per-token lengths k [B, T]."""
    return tf.gather(hashes, tf.cast(k, tf.int32)[..., None], batch_dims=2)[..., 0]


def feature_buckets(chars: tf.Tensor, case: tf.Tensor, present: tf.Tensor, lower: tf.Tensor, buckets: int,
                    lengths: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Bucket ids [B, T, TEMPLATES (+ PAIR_TEMPLATES with `lengths`)] of every token's features (each token's own,
    then its neighbours', then its pairs and place), and whether each is there (its token exists and gives
    features; a pair needs both words, a place only the token).

    chars: [B, T, C] char ids; case: [B, T] shape ids; present: [B, T] bool, tokens that give features;
    lower: the char id → lower-case char id table (lower_char_ids); lengths: [B] the sentences' lengths, which
    add the word pairs and places (--lexical_pairs).
    """
    codes = tf.gather(lower, tf.cast(chars, tf.int64))
    length = tf.reduce_sum(tf.cast(chars > 0, tf.int64), axis=-1)
    flat = tf.reshape(codes, [-1, tf.shape(codes)[-1]])
    reverse = tf.reshape(tf.reverse_sequence(flat, tf.reshape(length, [-1]), seq_axis=1, batch_axis=0),
                         tf.shape(codes))
    prefix, suffix = _string_hashes(codes), _string_hashes(reverse)
    shape = tf.cast(case, tf.int64) + 1
    word = _at(prefix, length)
    own = [word, shape] + [_at(prefix, tf.minimum(length, n)) for n in AFFIXES] + [
        _at(suffix, tf.minimum(length, n)) for n in AFFIXES]
    seen = [_at(suffix, tf.minimum(length, 3)), word, shape]  # what a neighbour gives
    steps = tf.range(tf.shape(case)[1])
    values, there = list(own), [present] * len(own)
    for offset in OFFSETS:
        inside = (steps + offset >= 0) & (steps + offset < tf.shape(case)[1])
        values += [tf.roll(v, -offset, axis=1) for v in seen]
        there += [inside & tf.roll(present, -offset, axis=1) & present] * len(seen)
    if lengths is not None:
        place = tf.broadcast_to(tf.cast(steps, tf.int64), tf.shape(word))
        from_end = tf.cast(lengths, tf.int64)[:, None] - place
        exists = from_end > 0
        first, last = place == 0, from_end == 1
        left = tf.where(first, tf.constant(EDGE, tf.int64), tf.roll(word, 1, axis=1))
        right = tf.where(last, tf.constant(EDGE, tf.int64), tf.roll(word, -1, axis=1))
        values += [(left * MIX + word) % PRIME, (word * MIX + right) % PRIME, place + 1, from_end]
        there += [present & (first | tf.roll(present, 1, axis=1)), present & (last | tf.roll(present, -1, axis=1)),
                  exists & (place < 2), exists & (from_end <= 2)]
    templates = tf.range(1, len(values) + 1, dtype=tf.int64)
    mixed = (tf.stack(values, axis=-1) * MIX % PRIME + templates * BASE) % PRIME * MIX % PRIME
    return tf.cast(mixed % buckets, tf.int32), tf.stack(there, axis=-1)
