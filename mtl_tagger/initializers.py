"""Deterministic weight initialisers (stateless RNG): the same seed gives the same weights on every stack.

Keras' defaults, written out: Glorot-uniform kernels, orthogonal recurrent kernels, uniform embeddings.
Each variable gets its own seed pair from a `SeedSequence`, so adding a variable never shifts the others.
"""
from collections.abc import Sequence

import numpy as np
import tensorflow as tf


class SeedSequence:
    """Hands out distinct stateless seed pairs (run seed, k) for k = 0, 1, 2, …"""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.k = 0

    def __call__(self) -> tuple[int, int]:
        """The next seed pair."""
        self.k += 1
        return self.seed, self.k


def uniform(shape: Sequence[int], limit: float, seed: tuple[int, int]) -> tf.Tensor:
    """U(−limit, limit) float32."""
    return tf.random.stateless_uniform(shape, seed, minval=-limit, maxval=limit)


def glorot_uniform(shape: Sequence[int], seed: tuple[int, int]) -> tf.Tensor:
    """Glorot/Xavier uniform for a kernel [..., fan_in, fan_out] (receptive field folded in, as Keras)."""
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    return uniform(shape, float(np.sqrt(6.0 / (fan_in + fan_out))), seed)


def orthogonal(shape: Sequence[int], seed: tuple[int, int]) -> tf.Tensor:
    """An orthogonal [rows, cols] matrix (QR of a normal one, signs fixed), as Keras' recurrent initialiser."""
    rows, cols = shape
    normal = tf.random.stateless_normal((max(rows, cols), min(rows, cols)), seed)
    q, r = tf.linalg.qr(normal)
    q *= tf.sign(tf.linalg.diag_part(r))
    return tf.transpose(q) if rows < cols else q
