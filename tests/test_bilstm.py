"""The fused BiLSTM computes what Keras' Bidirectional(LSTM(return_sequences=True)) computes, gradients included."""
import numpy as np
import pytest
import tensorflow as tf

from mtl_tagger.bilstm import LSTMWeights, bilstm, bilstm_final, cpu_has_bfloat16, resolve_matmul_dtype
from mtl_tagger.initializers import SeedSequence

UNITS, DIM = 6, 5
LENGTHS = [7, 1, 4, 7, 2, 5]  # varied, with a length-1 row and full-length rows


def _pair(seed: int, return_sequences: bool = True) -> tuple:
    """A Keras BiLSTM with random weights (biases too), our two directions holding the same weights, a batch."""
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(len(LENGTHS), max(LENGTHS), DIM)).astype(np.float32))  # garbage in padding
    mask = tf.constant(np.arange(max(LENGTHS))[None] < np.array(LENGTHS)[:, None])
    keras = tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(UNITS, return_sequences=return_sequences))
    keras(x, mask=mask)
    keras.set_weights([w + rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in keras.get_weights()])
    seeds = SeedSequence(seed)
    fw, bw = LSTMWeights(DIM, UNITS, seeds), LSTMWeights(DIM, UNITS, seeds)
    for var, value in zip([fw.kernel, fw.recurrent_kernel, fw.bias, bw.kernel, bw.recurrent_kernel, bw.bias],
                          keras.get_weights()):
        var.assign(value)
    return keras, fw, bw, x, mask


def test_outputs_match_keras_on_a_padded_batch() -> None:
    keras, fw, bw, x, mask = _pair(0)
    want = keras(x, mask=mask).numpy()
    got = bilstm(x, tf.constant(LENGTHS), fw, bw).numpy()
    np.testing.assert_allclose(got[mask.numpy()], want[mask.numpy()], atol=1e-5)
    assert not got[~mask.numpy()].any()  # padded positions are zero


def test_final_states_match_keras() -> None:
    keras, fw, bw, x, mask = _pair(3, return_sequences=False)
    np.testing.assert_allclose(bilstm_final(x, tf.constant(LENGTHS), fw, bw).numpy(), keras(x, mask=mask).numpy(),
                               atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_gradients_match_keras(seed: int) -> None:
    keras, fw, bw, x, mask = _pair(seed)
    weight = tf.constant(np.random.default_rng(9).normal(size=(len(LENGTHS), max(LENGTHS), 2 * UNITS)), tf.float32)
    weight *= tf.cast(mask, tf.float32)[..., None]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        want = tf.reduce_sum(keras(x, mask=mask) * weight)
        got = tf.reduce_sum(bilstm(x, tf.constant(LENGTHS), fw, bw) * weight)
    mine = tape.gradient(got, [x, fw.kernel, fw.recurrent_kernel, fw.bias, bw.kernel, bw.recurrent_kernel, bw.bias])
    theirs = tape.gradient(want, [x, *keras.trainable_weights])
    for a, b in zip(mine, theirs):
        np.testing.assert_allclose(np.asarray(a), np.asarray(tf.convert_to_tensor(b)), atol=2e-5)


def test_traced_with_unknown_shapes_and_padding_ignored() -> None:
    _, fw, bw, x, _ = _pair(1)
    spec = [tf.TensorSpec([None, None, DIM]), tf.TensorSpec([None], tf.int32)]
    traced = tf.function(lambda a, n: bilstm(a, n, fw, bw), input_signature=spec)
    lengths = tf.constant(LENGTHS)
    full = traced(x, lengths).numpy()
    for i, n in enumerate(LENGTHS):  # each row alone, cut to its length, gives the same outputs
        alone = traced(x[i:i + 1, :n], lengths[i:i + 1]).numpy()[0]
        np.testing.assert_allclose(full[i, :n], alone, atol=1e-6)


def test_bfloat16_products_stay_near_float32_with_float32_weights_and_gradients() -> None:
    """--matmul_dtype=bfloat16: the same function to bfloat16's precision (8 bits of mantissa in the factors),
    float32 outputs, and gradients that reach every weight."""
    _, fw, bw, x, mask = _pair(2)
    lengths = tf.constant(LENGTHS)
    exact = bilstm(x, lengths, fw, bw)
    fw.matmul_dtype = bw.matmul_dtype = tf.bfloat16
    weights = [fw.kernel, fw.recurrent_kernel, fw.bias, bw.kernel, bw.recurrent_kernel, bw.bias]
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        fast = bilstm(x, lengths, fw, bw)
        loss = tf.reduce_sum(fast * tf.cast(mask, tf.float32)[..., None])
    assert fast.dtype == tf.float32
    gap = np.abs(fast.numpy() - exact.numpy())[mask.numpy()]
    assert 0 < gap.max() < 0.05, "bfloat16 products differ, but only in the low bits"
    fw.matmul_dtype = bw.matmul_dtype = tf.float32
    with tf.GradientTape(persistent=True) as exact_tape:
        exact_tape.watch(x)
        exact_loss = tf.reduce_sum(bilstm(x, lengths, fw, bw) * tf.cast(mask, tf.float32)[..., None])
    for a, b in zip(tape.gradient(loss, [x, *weights]), exact_tape.gradient(exact_loss, [x, *weights])):
        a, b = np.asarray(tf.convert_to_tensor(a)), np.asarray(tf.convert_to_tensor(b))
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=0.05 * np.abs(b).max())


def test_auto_matmul_dtype_is_bfloat16_only_where_the_cpu_multiplies_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """--matmul_dtype=auto: bfloat16 on a CPU whose flags name AMX or AVX512_BF16, float32 on one without them or
    with oneDNN switched off; the explicit names mean themselves."""
    old = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
    assert not cpu_has_bfloat16(old)
    assert cpu_has_bfloat16(old.replace("avx2", "avx2 avx512_bf16"))
    assert cpu_has_bfloat16(old.replace("avx2", "amx_bf16 amx_tile"))
    assert not cpu_has_bfloat16("model name\t: avx512_bf16 in a name, not a flag\n")
    for off in ("0", "false"):
        with monkeypatch.context() as m:
            m.setenv("TF_ENABLE_ONEDNN_OPTS", off)
            assert not cpu_has_bfloat16(old.replace("avx2", "avx512_bf16"))
    assert resolve_matmul_dtype("auto") == (tf.bfloat16 if cpu_has_bfloat16() else tf.float32)
    assert (resolve_matmul_dtype("float32"), resolve_matmul_dtype("bfloat16")) == (tf.float32, tf.bfloat16)
