"""Coupling loss between the two tasks (paper §3.4): TCE = CCE + CCE′ + LCE + LCE′ on shortlist pairs.

One minibatch holds B shortlist anchors, each with up to K neighbours from the other task (padded,
masked). Direction 0 = anchor in task a, neighbours in task b (CCE with `a`, LCE); direction 1 = anchor
in task b, neighbours in task a (CCE′ with `a′`, LCE′). Both directions may be mixed in one batch.
"""
import zlib
from collections.abc import Sequence

import numpy as np
import tensorflow as tf


def label_kgrams(name: str, k: int) -> list[str]:
    """Character k-grams of a tag name with boundary markers ("<B-color>"); the marked name if shorter."""
    marked = f"<{name}>"
    if len(marked) <= k:
        return [marked]
    return [marked[i:i + k] for i in range(len(marked) - k + 1)]


def kgram_ids(names: Sequence[str], k: int, hash_buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """[len(names), max_kgrams] int32 hashed k-gram rows (zlib.crc32: stable across runs) and float mask."""
    grams = [[zlib.crc32(g.encode("utf-8")) % hash_buckets for g in label_kgrams(n, k)] for n in names]
    width = max(len(g) for g in grams)
    ids = np.zeros((len(names), width), np.int32)
    mask = np.zeros((len(names), width), np.float32)
    for r, g in enumerate(grams):
        ids[r, :len(g)] = g
        mask[r, :len(g)] = 1.0
    return ids, mask


def _masked_softmax(logits: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Softmax over the last axis within `mask`; 0 at padding and on rows with no real entry (no NaN)."""
    peak = tf.reduce_max(tf.where(mask, logits, logits.dtype.min), axis=-1, keepdims=True)
    # Padding is set to 0 before exp so that neither the value nor its gradient can overflow.
    weights = tf.where(mask, tf.exp(tf.where(mask, logits - tf.stop_gradient(peak), 0.0)), 0.0)
    total = tf.reduce_sum(weights, axis=-1, keepdims=True)  # ≥ 1 if the row has a real entry, else 0
    return weights / tf.where(total > 0, total, 1.0)


class CouplingLoss(tf.keras.layers.Layer):
    """Attention-weighted |s − s′| between shortlist anchors and their neighbours in the other task.

    Weights: `a`, `a_prime` [window_dim] (the Luong diag(a) of α = uᵀ diag(a) u′, one per direction) and
    `label_kgrams` [hash_buckets, label_dim] (a tag's label vector v = mean of its hashed k-gram rows;
    the table is shared by both tasks so equal or similar tag names get equal or similar vectors).

    `attention_init`: initial value of every entry of a and a′; None = 1/sqrt(window_dim) (scaled dot
    product, so the softmax over neighbours does not start saturated with GloVe-sized vectors; see
    BUILD_NOTES "Coupling loss"). 1.0 makes α the plain dot product at the start.
    """

    def __init__(self, tag_names_a: Sequence[str], tag_names_b: Sequence[str], window_dim: int,
                 label_kgram: int = 3, label_dim: int = 32, hash_buckets: int = 4096,
                 attention_init: float | None = None, **kw) -> None:
        super().__init__(**kw)
        self.tag_names_a = list(tag_names_a)
        self.tag_names_b = list(tag_names_b)
        self.window_dim = window_dim
        self.label_kgram = label_kgram
        self.label_dim = label_dim
        self.hash_buckets = hash_buckets
        self.attention_init = attention_init
        ids, mask = kgram_ids(self.tag_names_a + self.tag_names_b, label_kgram, hash_buckets)
        # Rows [0, num_a) are task a's tags, rows [num_a, num_a + num_b) task b's.
        self._gram_ids = tf.constant(ids)
        self._gram_mask = tf.constant(mask)
        self._num_a = len(self.tag_names_a)

    def build(self, input_shape: object) -> None:
        init = self.attention_init if self.attention_init is not None else 1.0 / np.sqrt(self.window_dim)
        self.a = self.add_weight(name="a", shape=(self.window_dim,),
                                 initializer=tf.keras.initializers.Constant(init))
        self.a_prime = self.add_weight(name="a_prime", shape=(self.window_dim,),
                                       initializer=tf.keras.initializers.Constant(init))
        # Unit-variance rows: a name of n k-grams gets |v|² ≈ label_dim / n (≈ 2 for typical tags) and
        # unrelated names v·v′ ≈ 0 ± sqrt(label_dim) / n, so the label softmax starts informative, not flat.
        self.label_kgrams = self.add_weight(name="label_kgrams", shape=(self.hash_buckets, self.label_dim),
                                            initializer=tf.keras.initializers.RandomNormal(stddev=1.0))
        super().build(input_shape)

    def label_vectors(self) -> tf.Tensor:
        """[num_a + num_b, label_dim]: every tag's label vector (task a's tags first)."""
        rows = tf.gather(self.label_kgrams, self._gram_ids)
        mask = self._gram_mask[:, :, None]
        return tf.reduce_sum(rows * mask, axis=1) / tf.reduce_sum(mask, axis=1)

    def call(self, inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The four errors (each summed over its anchors), their `total`, and both attentions [B, K].

        Values of `neighbor_*` at padding (mask False) are ignored, whatever they hold (e.g. −1 tags).
        """
        direction = tf.cast(inputs["direction"], tf.int32)
        mask = tf.cast(inputs["mask"], tf.bool)
        backward = tf.equal(direction, 1)  # [B] anchor in task b
        anchor_u = tf.cast(inputs["anchor_u"], self.compute_dtype)
        neighbor_u = tf.cast(inputs["neighbor_u"], self.compute_dtype)

        diag = tf.where(backward[:, None], self.a_prime[None, :], self.a[None, :])  # [B, D]
        alpha = tf.einsum("bd,bkd->bk", anchor_u * diag, neighbor_u)
        attention = _masked_softmax(alpha, mask)

        labels = self.label_vectors()
        offset_anchor = tf.where(backward, self._num_a, 0)
        offset_neighbor = self._num_a - offset_anchor
        anchor_v = tf.gather(labels, tf.cast(inputs["anchor_tag"], tf.int32) + offset_anchor)  # [B, L]
        neighbor_tag = tf.where(mask, tf.cast(inputs["neighbor_tag"], tf.int32), 0)
        neighbor_v = tf.gather(labels, neighbor_tag + offset_neighbor[:, None])  # [B, K, L]
        label_attention = _masked_softmax(tf.einsum("bl,bkl->bk", anchor_v, neighbor_v), mask)

        anchor_score = tf.cast(inputs["anchor_score"], self.compute_dtype)
        neighbor_score = tf.where(mask, tf.cast(inputs["neighbor_score"], self.compute_dtype), 0.0)
        gap = tf.where(mask, tf.abs(anchor_score[:, None] - neighbor_score), 0.0)  # [B, K]

        context_error = tf.reduce_sum(attention * gap, axis=1)  # [B]
        label_error = tf.reduce_sum(label_attention * gap, axis=1)
        forward = tf.cast(tf.logical_not(backward), self.compute_dtype)
        backward_f = 1.0 - forward
        out = {
            "cce": tf.reduce_sum(context_error * forward),
            "cce_prime": tf.reduce_sum(context_error * backward_f),
            "lce": tf.reduce_sum(label_error * forward),
            "lce_prime": tf.reduce_sum(label_error * backward_f),
        }
        out["total"] = out["cce"] + out["cce_prime"] + out["lce"] + out["lce_prime"]
        out["attention"] = attention
        out["label_attention"] = label_attention
        return out

    def get_config(self) -> dict:
        return {**super().get_config(), "tag_names_a": self.tag_names_a, "tag_names_b": self.tag_names_b,
                "window_dim": self.window_dim, "label_kgram": self.label_kgram, "label_dim": self.label_dim,
                "hash_buckets": self.hash_buckets, "attention_init": self.attention_init}
