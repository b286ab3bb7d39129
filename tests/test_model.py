"""The network's parts: the char encoder (each distinct word encoded once) and stateless dropout."""
import numpy as np
import pytest
import tensorflow as tf

from mtl_tagger.bilstm import bilstm_final
from mtl_tagger.initializers import SeedSequence
from mtl_tagger.model import CharEncoder, dropout


@pytest.mark.parametrize("kind", ["lstm", "cnn"])
def test_char_encoder_equals_each_word_alone(kind: str) -> None:
    rng = np.random.default_rng(0)
    enc = CharEncoder(30, 6, 5, kind, SeedSequence(3))
    spelling = {w: rng.integers(1, 30, rng.integers(1, 8)) for w in range(2, 9)}
    words = np.array([[3, 5, 3, 1, 1, 0], [5, 8, 2, 3, 0, 0]], np.int32)  # repeats, two unknown words (id 1)
    chars = np.zeros((2, 6, 8), np.int32)
    for (b, t), w in np.ndenumerate(words):
        if w > 1:
            chars[b, t, :len(spelling[w])] = spelling[w]
        elif w == 1:
            chars[b, t, :3] = rng.integers(1, 30, 3)  # unknown words spell differently
    got = enc(tf.constant(chars), tf.constant(words)).numpy()
    for (b, t), w in np.ndenumerate(words):
        if w == 0:
            assert not got[b, t].any()
            continue
        alone = enc(tf.constant(chars[b:b + 1, t:t + 1]), tf.constant(words[b:b + 1, t:t + 1])).numpy()[0, 0]
        np.testing.assert_allclose(got[b, t], alone, atol=1e-6)
    assert not np.allclose(got[0, 3], got[0, 4]), "two unknown words keep their own spellings"
    if kind == "lstm":
        row = tf.gather(enc.embedding, chars[1, 1][None, :len(spelling[8])])
        np.testing.assert_allclose(got[1, 1], bilstm_final(row, tf.constant([len(spelling[8])]), enc.forward,
                                                           enc.backward).numpy()[0], atol=1e-6)


def test_dropout_is_stateless_and_scaled() -> None:
    x = tf.ones([200, 50])
    a, b = dropout(x, 0.5, tf.constant([1, 2], tf.int64)), dropout(x, 0.5, tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert set(np.unique(a.numpy())) == {0.0, 2.0} and abs(float(tf.reduce_mean(a)) - 1.0) < 0.05
    assert not np.array_equal(a.numpy(), dropout(x, 0.5, tf.constant([1, 3], tf.int64)).numpy())
    assert dropout(x, 0.5, None) is x
