"""The CRF head (paper §3.2) against brute force, and padding independence of its likelihood and decoding."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from mtl_tagger.crf import CRF


def _crf(num_tags: int, seed: int) -> CRF:
    """A built CRF with random transitions, set explicitly so the tests do not depend on the initializer."""
    tf.random.set_seed(seed)
    crf = CRF(num_tags)
    crf.build(tf.TensorShape([None, None, num_tags]))
    crf.transitions.assign(np.random.default_rng(seed).normal(size=(num_tags, num_tags)).astype(np.float32))
    return crf


def _padded_batch(rng: np.random.Generator, lengths: list[int], num_tags: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Random emissions and tags [batch, max_len, ...]; padding holds garbage too, which must not count."""
    shape = (len(lengths), max(lengths))
    emissions = rng.normal(scale=2.0, size=(*shape, num_tags)).astype(np.float32)
    tags = rng.integers(0, num_tags, size=shape).astype(np.int32)
    return emissions, tags


def _ll(crf: CRF, emissions: np.ndarray, tags: np.ndarray, lengths: list[int]) -> np.ndarray:
    """Per-sentence log-likelihood as numpy."""
    ll = crf.log_likelihood(tf.constant(emissions), tf.constant(tags), tf.constant(lengths, tf.int32))
    return ll.numpy()


def _brute_force(emissions: np.ndarray, transitions: np.ndarray) -> tuple[dict[tuple, float], float]:
    """C(x, y) = Σ s_i(y_i) + Σ T(y_i, y_{i+1}) for every y, and log Σ_y exp C(x, y)."""
    n, k = emissions.shape
    scores = {}
    for y in itertools.product(range(k), repeat=n):
        scores[y] = sum(emissions[i, y[i]] for i in range(n)) + sum(
            transitions[y[i], y[i + 1]] for i in range(n - 1))
    values = np.array(list(scores.values()), dtype=np.float64)
    log_z = values.max() + np.log(np.exp(values - values.max()).sum())
    return scores, float(log_z)


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_likelihood_equals_sentences_alone(seed: int) -> None:
    rng = np.random.default_rng(seed)
    crf = _crf(5, seed)
    lengths = [1, 7, 3, 12, 1, 5]
    emissions, tags = _padded_batch(rng, lengths, 5)
    batch = _ll(crf, emissions, tags, lengths)
    alone = np.array([_ll(crf, emissions[i:i + 1, :n], tags[i:i + 1, :n], [n])[0]
                      for i, n in enumerate(lengths)])
    np.testing.assert_allclose(batch, alone, atol=1e-4)
    assert -batch.sum() == pytest.approx(-alone.sum(), abs=1e-3)  # batch loss = sum of the losses alone


def test_length_one_likelihood_is_a_log_probability() -> None:
    rng = np.random.default_rng(3)
    crf = _crf(4, 3)
    emissions, tags = _padded_batch(rng, [1, 1, 1], 4)
    ll = _ll(crf, emissions, tags, [1, 1, 1])
    assert np.all(ll <= 0)
    # With one token the CRF is a softmax over the emissions: transitions play no part.
    log_softmax = emissions[:, 0] - np.log(np.exp(emissions[:, 0]).sum(-1, keepdims=True))
    np.testing.assert_allclose(ll, log_softmax[np.arange(3), tags[:, 0]], atol=1e-4)


@pytest.mark.parametrize("length", [1, 2, 3, 4])
def test_likelihood_and_viterbi_match_brute_force(length: int) -> None:
    rng = np.random.default_rng(10 + length)
    crf = _crf(3, length)
    emissions = rng.normal(scale=2.0, size=(length, 3)).astype(np.float32)
    scores, log_z = _brute_force(emissions.astype(np.float64), crf.transitions.numpy().astype(np.float64))
    seqs = list(scores)
    batch = np.repeat(emissions[None], len(seqs), axis=0)
    ll = _ll(crf, batch, np.array(seqs, np.int32), [length] * len(seqs))
    np.testing.assert_allclose(ll, [scores[y] - log_z for y in seqs], atol=1e-4)
    assert np.exp(ll).sum() == pytest.approx(1.0, abs=1e-4)
    decoded = crf(tf.constant(emissions[None]), tf.constant([length], tf.int32)).numpy()[0]
    assert tuple(decoded) == max(scores, key=scores.get)


def test_decode_alone_equals_decode_in_padded_batch() -> None:
    rng = np.random.default_rng(4)
    crf = _crf(6, 4)
    lengths = [3, 40, 1]
    emissions, _ = _padded_batch(rng, lengths, 6)
    batch = crf(tf.constant(emissions), tf.constant(lengths, tf.int32)).numpy()
    for i, n in enumerate(lengths):
        alone = crf(tf.constant(emissions[i:i + 1, :n]), tf.constant([n], tf.int32)).numpy()[0]
        np.testing.assert_array_equal(batch[i, :n], alone)


def test_transition_gradients_are_finite_and_non_zero() -> None:
    rng = np.random.default_rng(5)
    crf = _crf(4, 5)
    lengths = [6, 2, 9]
    emissions, tags = _padded_batch(rng, lengths, 4)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_sum(crf.log_likelihood(
            tf.constant(emissions), tf.constant(tags), tf.constant(lengths, tf.int32)))
    grad = tape.gradient(loss, crf.transitions).numpy()
    assert np.all(np.isfinite(grad))
    assert np.all(grad != 0)  # every transition has some expected count in the partition function
