"""A fused bidirectional LSTM for CPU in plain TensorFlow: the function of Keras' Bidirectional(LSTM), faster.

Keras runs each direction as its own while loop whose every step multiplies the step's input by the
input kernel and the previous output by the recurrent kernel, and whose gradient loop does four
skinny matmuls per step (dh, dx, and the accumulated kernel gradients). Here:

- the input projections of all time steps of both directions are one batched matmul
  [2, T·B, in] × [2, in, 4u] before the loops;
- the backward direction reads each sentence reversed by its length (`tf.reverse_sequence`), so it
  starts at the sentence's true last token and padding (at the end of each row, as the pipeline pads)
  only ever follows the real steps: no masking inside the loops;
- the gradient is a hand-written BPTT loop with one matmul per step (dh through the recurrent kernel)
  that only carries dh and dc; the gate derivatives are computed for all steps at once before it, and
  the kernels' and inputs' gradients are single big matmuls over all steps after it.

The two directions stay two independent loops, which TensorFlow's executor runs concurrently on the
two cores (BUILD_NOTES "Speed"). With `matmul_dtype` bfloat16 (`auto`'s choice where the CPU has bfloat16
instructions) the matrix products take bfloat16 factors and round their results to bfloat16, cast back to
float32; the gates, the cell state and the weights stay float32. Gate order (i, f, c, o), sigmoid gates, tanh,
zero initial state and a unit forget-gate bias at initialisation, as Keras' LSTM defaults; outputs at padded
positions are 0.
"""
import functools
import os
from pathlib import Path

import tensorflow as tf

from mtl_tagger.initializers import SeedSequence, glorot_uniform, orthogonal


class LSTMWeights(tf.Module):
    """One direction's kernel [in, 4u], recurrent_kernel [u, 4u] and bias [4u] (Keras' LSTMCell layout), and the
    dtype its matrix products take their factors in."""

    def __init__(self, inputs: int, units: int, seeds: SeedSequence, name: str | None = None,
                 matmul_dtype: tf.DType = tf.float32) -> None:
        super().__init__(name=name)
        self.units, self.matmul_dtype = units, matmul_dtype
        self.kernel = tf.Variable(glorot_uniform((inputs, 4 * units), seeds()), name="kernel")
        self.recurrent_kernel = tf.Variable(orthogonal((units, 4 * units), seeds()), name="recurrent_kernel")
        self.bias = tf.Variable(tf.concat([tf.zeros([units]), tf.ones([units]), tf.zeros([2 * units])], 0),
                                name="bias")


BFLOAT16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bfloat16 products


def cpu_has_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 natively (a flag of BFLOAT16_FLAGS in `cpuinfo`, by default
    /proc/cpuinfo), and TensorFlow's oneDNN kernels, which use it, are on. False where the file is missing (not
    Linux): bfloat16 would be emulated there, slower than float32."""
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() in ("0", "false"):
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
    found = {f for line in cpuinfo.splitlines() if line.startswith("flags") for f in line.partition(":")[2].split()}
    return not found.isdisjoint(BFLOAT16_FLAGS)


@functools.cache
def resolve_matmul_dtype(name: str) -> tf.DType:
    """The dtype that --matmul_dtype `name` means on this machine: `auto` is bfloat16 where the CPU has bfloat16
    instructions (`cpu_has_bfloat16`), float32 elsewhere."""
    if name == "auto":
        return tf.bfloat16 if cpu_has_bfloat16() else tf.float32
    return tf.as_dtype(name)


def matmul(a: tf.Tensor, b: tf.Tensor, dtype: tf.DType, **kw: bool) -> tf.Tensor:
    """a × b (tf.matmul's `kw`) with both factors in `dtype`, returned as float32 (in bfloat16, the product is
    accumulated in float32 by oneDNN and rounded to bfloat16 before the cast)."""
    if dtype == tf.float32:
        return tf.matmul(a, b, **kw)
    return tf.cast(tf.matmul(tf.cast(a, dtype), tf.cast(b, dtype), **kw), tf.float32)


def _recurrence(z: tf.Tensor, recurrent: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Run the recurrence on precomputed input projections z [T, B, 4u] (time-major); `recurrent` [u, 4u] in
    the dtype the products take their factors in.

    Returns the outputs h and cell states c [T, B, u], and the gates' pre-activations [T, B, 4u]
    (what the backward pass needs; it recomputes the activations for all steps at once).
    """
    zeros = tf.zeros_like(z[0, :, : tf.shape(recurrent)[0]])

    def step(carry: tuple, z_t: tf.Tensor) -> tuple:
        h, c, _ = carry
        a = z_t + matmul(h, recurrent, recurrent.dtype)
        i, f, g, o = tf.split(a, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        return tf.sigmoid(o) * tf.tanh(c), c, a

    return tf.scan(step, z, initializer=(zeros, zeros, z[0]))


def lstm_recurrence(z: tf.Tensor, recurrent: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """Outputs h [T, B, u] of an LSTM (zero initial state) over input projections z [T, B, 4u] incl. bias.

    recurrent: the [u, 4u] recurrent kernel, cast once to `dtype`, the dtype the products take their factors in.
    The gradient is a fused BPTT (see the module docstring).
    """

    @tf.custom_gradient
    def run(z: tf.Tensor, recurrent: tf.Tensor) -> tuple[tf.Tensor, object]:
        factors = tf.cast(recurrent, dtype)
        h, c, pre = _recurrence(z, factors)

        def grad(dh_out: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # Everything that does not depend on the recurrence is computed for all steps at once, so the
            # loop only carries dh and dc: dc_t = dc_{t+1}·f_{t+1} + dh_t·o_t·(1 − tanh²c_t), and
            # dz_t = [dc_t, dc_t, dc_t, dh_t] * [c̃·i(1−i), c_{t−1}·f(1−f), i(1−c̃²), tanh c_t·o(1−o)].
            i, f, g, o = tf.split(pre, 4, axis=-1)
            i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
            tanh_c = tf.tanh(c)
            c_prev = tf.concat([tf.zeros_like(c[:1]), c[:-1]], 0)
            dc_from_dh = o * (1.0 - tf.square(tanh_c))
            dz_factor = tf.concat([g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - tf.square(g)),
                                   tanh_c * o * (1.0 - o)], -1)
            f_next = tf.concat([f[1:], tf.zeros_like(f[:1])], 0)  # dc flows back through the next step's f
            zeros = tf.zeros_like(c[0])

            def back(carry: tuple, xs: tuple) -> tuple:
                dh_next, dc_next, _ = carry
                dh_t, dc_from_dh_t, dz_factor_t, f_next_t = xs
                dh = dh_t + dh_next
                dc = dc_next * f_next_t + dh * dc_from_dh_t
                dz = tf.concat([dc, dc, dc, dh], -1) * dz_factor_t
                return matmul(dz, factors, dtype, transpose_b=True), dc, dz

            _, _, dz = tf.scan(back, (dh_out, dc_from_dh, dz_factor, f_next), initializer=(zeros, zeros, pre[0]),
                               reverse=True)
            h_prev = tf.concat([tf.zeros_like(h[:1]), h[:-1]], 0)
            units = tf.shape(h)[-1]
            d_recurrent = matmul(tf.reshape(h_prev, [-1, units]), tf.reshape(dz, [-1, 4 * units]), dtype,
                                 transpose_a=True)
            return dz, d_recurrent

        return h, grad

    return run(z, recurrent)


def _directions(x: tf.Tensor, lengths: tf.Tensor, fw: LSTMWeights, bw: LSTMWeights) -> tuple[tf.Tensor, tf.Tensor]:
    """Time-major outputs [T, B, u] of both directions; the backward one still in its reversed order."""
    shape = tf.shape(x)
    batch, time = shape[0], shape[1]
    x = tf.transpose(x, [1, 0, 2])  # time-major [T, B, in]
    x = tf.stack([x, tf.reverse_sequence(x, lengths, seq_axis=0, batch_axis=1)])  # as each direction reads
    dtype = fw.matmul_dtype
    z = matmul(tf.reshape(x, [2, -1, x.shape[-1]]), tf.stack([fw.kernel, bw.kernel]), dtype)
    z = tf.reshape(z + tf.stack([fw.bias, bw.bias])[:, None], [2, time, batch, 4 * fw.units])
    z_fw, z_bw = tf.unstack(z)
    # Two independent loops, which the executor runs concurrently.
    return lstm_recurrence(z_fw, fw.recurrent_kernel, dtype), lstm_recurrence(z_bw, bw.recurrent_kernel, dtype)


def bilstm(x: tf.Tensor, lengths: tf.Tensor, fw: LSTMWeights, bw: LSTMWeights) -> tf.Tensor:
    """[B, T ≥ 1, in] padded at the end of each row → [B, T, 2u]: [forward; backward] per position, 0 past lengths."""
    h_fw, h_bw = _directions(x, lengths, fw, bw)
    h = tf.concat([h_fw, tf.reverse_sequence(h_bw, lengths, seq_axis=0, batch_axis=1)], axis=-1)
    mask = tf.sequence_mask(lengths, tf.shape(x)[1], dtype=h.dtype)
    return tf.transpose(h, [1, 0, 2]) * mask[..., None]


def bilstm_final(x: tf.Tensor, lengths: tf.Tensor, fw: LSTMWeights, bw: LSTMWeights) -> tf.Tensor:
    """[B, T ≥ 1, in] → [B, 2u]: each direction's state after reading the whole row (lengths ≥ 1)."""
    h_fw, h_bw = _directions(x, lengths, fw, bw)
    last = tf.stack([tf.maximum(lengths - 1, 0), tf.range(tf.shape(lengths)[0])], axis=1)
    return tf.concat([tf.gather_nd(h_fw, last), tf.gather_nd(h_bw, last)], axis=-1)
