"""FusedBiLSTM computes what Keras' Bidirectional(LSTM(return_sequences=True)) computes, gradients included."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mtl_tagger.bilstm import FusedBiLSTM

UNITS, DIM = 6, 5
LENGTHS = [7, 1, 4, 7, 2, 5]  # varied, with a length-1 row and full-length rows


def _pair(seed: int) -> tuple[tf.keras.layers.Layer, FusedBiLSTM, tf.Tensor, tf.Tensor]:
    """A Keras BiLSTM with random weights (biases too), a FusedBiLSTM holding the same weights, a padded batch."""
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(len(LENGTHS), max(LENGTHS), DIM)).astype(np.float32))  # garbage in padding
    mask = tf.constant(np.arange(max(LENGTHS))[None] < np.array(LENGTHS)[:, None])
    keras = tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(UNITS, return_sequences=True))
    keras(x, mask=mask)
    keras.set_weights([w + rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in keras.get_weights()])
    fused = FusedBiLSTM(UNITS)
    fused(x, mask=mask)
    fused.set_weights(keras.get_weights())
    return keras, fused, x, mask


def test_outputs_match_keras_on_a_padded_batch() -> None:
    keras, fused, x, mask = _pair(0)
    want = keras(x, mask=mask).numpy()
    got = fused(x, mask=mask).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not got[~mask.numpy()].any()  # padded positions are zero, as Keras gives
    assert fused.compute_mask(x, mask) is mask


def test_dynamic_shapes_and_no_mask() -> None:
    keras, fused, x, mask = _pair(1)
    spec = [tf.TensorSpec([None, None, DIM]), tf.TensorSpec([None, None], tf.bool)]
    traced = tf.function(lambda a, m: fused(a, mask=m), input_signature=spec)  # as the decoder traces it
    np.testing.assert_allclose(traced(x, mask).numpy(), keras(x, mask=mask).numpy(), atol=1e-5)
    np.testing.assert_allclose(fused(x).numpy(), keras(x).numpy(), atol=1e-5)


@pytest.mark.parametrize("seed", [2, 3])
def test_gradients_match_keras(seed: int) -> None:
    keras, fused, x, mask = _pair(seed)
    weight = tf.constant(np.random.default_rng(seed).normal(size=(len(LENGTHS), max(LENGTHS), 2 * UNITS)),
                         tf.float32)

    def grads(layer: tf.keras.layers.Layer) -> list[np.ndarray]:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.tanh(layer(x, mask=mask)) * weight)
        return [g.numpy() for g in tape.gradient(loss, [x, *layer.trainable_variables])]

    want, got = grads(keras), grads(fused)
    assert len(got) == 7  # inputs + kernel, recurrent kernel, bias of each direction
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert not got[0][~mask.numpy()].any()  # padding gets no gradient


def test_checkpoints_interchange_with_keras(tmp_path: Path) -> None:
    keras, _, x, mask = _pair(4)
    path = tf.train.Checkpoint(bilstm=keras).save(str(tmp_path / "ckpt"))
    fresh = FusedBiLSTM(UNITS)
    fresh(x, mask=mask)
    tf.train.Checkpoint(bilstm=fresh).restore(path).assert_consumed()
    np.testing.assert_allclose(fresh(x, mask=mask).numpy(), keras(x, mask=mask).numpy(), atol=1e-5)
