"""The own linear-chain CRF (paper §3.2) against brute-force enumeration, tfa, XLA and padding garbage."""
import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mtl_tagger import crf
from mtl_tagger.errors import InputError


def _batch(rng: np.random.Generator, lengths: list[int], num_tags: int, max_len: int | None = None,
           garbage: str = "finite") -> tuple[np.ndarray, np.ndarray]:
    """Emissions (normal, std 2, as a trained tagger's) and tags [B, T, ...]; the padding holds garbage, which
    must not count: large finite values, or with garbage="nonfinite" also inf/NaN and out-of-range tags."""
    shape = (len(lengths), max_len or max(max(lengths), 1))
    emissions = rng.normal(scale=2.0, size=(*shape, num_tags)).astype(np.float32)
    tags = rng.integers(0, num_tags, size=shape).astype(np.int32)
    pad = np.arange(shape[1])[None, :] >= np.array(lengths)[:, None]
    emissions[pad] = rng.normal(scale=300.0, size=(pad.sum(), num_tags))
    tags[pad] = rng.integers(0, num_tags, size=pad.sum())
    if garbage == "nonfinite":
        emissions[pad] = rng.choice([np.inf, -np.inf, np.nan, 1e30], size=(pad.sum(), num_tags))
        tags[pad] = rng.choice([-1, num_tags, 10 ** 6], size=pad.sum())
    return emissions, tags


def _transitions(rng: np.random.Generator, num_tags: int) -> np.ndarray:
    return rng.normal(size=(num_tags, num_tags)).astype(np.float32)


def _brute_force(emissions: np.ndarray, transitions: np.ndarray) -> tuple[dict[tuple, float], float]:
    """C(x, y) = Σ s_i(y_i) + Σ T(y_i, y_{i+1}) for every y of one sentence [n, N] (float64), and log Σ_y exp C."""
    n, k = emissions.shape
    scores = {y: sum(emissions[i, y[i]] for i in range(n)) + sum(transitions[y[i], y[i + 1]] for i in range(n - 1))
              for y in itertools.product(range(k), repeat=n)}
    values = np.array(list(scores.values()))
    return scores, float(values.max() + np.log(np.exp(values - values.max()).sum()))


def _brute_marginals(scores: dict[tuple, float], log_z: float, n: int, k: int) -> np.ndarray:
    """P(y_i = y | x), [n, N], by summing exp(C - log Z) over all paths."""
    probs = np.zeros((n, k))
    for y, score in scores.items():
        probs[np.arange(n), y] += math.exp(score - log_z)
    return probs


def _tf_version() -> tuple[int, int]:
    return tuple(int(part) for part in tf.__version__.split(".")[:2])


def _tfa_or_skip() -> object:
    """tensorflow_addons; skip only where it genuinely cannot import (TF ≥ 2.16), fail if it is missing before."""
    if crf.tfa_available():
        return crf._import_tfa()
    if _tf_version() < (2, 16):
        pytest.fail(f"tensorflow-addons must import beside TensorFlow {tf.__version__}: {crf._tfa_error}")
    pytest.skip(f"tensorflow-addons does not import beside TensorFlow {tf.__version__}")


def _ll_and_grads(fn: object, emissions: np.ndarray, tags: np.ndarray, lengths: list[int], transitions: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sentence log-likelihood from fn, and the gradients of its sum w.r.t. emissions and transitions."""
    emissions, transitions = tf.constant(emissions), tf.Variable(transitions)
    with tf.GradientTape() as tape:
        tape.watch(emissions)
        ll = fn(emissions, tf.constant(tags), tf.constant(lengths, tf.int32), transitions)
        total = tf.reduce_sum(ll)
    d_emissions, d_transitions = tape.gradient(total, [emissions, transitions])
    return ll.numpy(), d_emissions.numpy(), d_transitions.numpy()


def _tfa_ll(emissions: tf.Tensor, tags: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor) -> tf.Tensor:
    return _tfa_or_skip().text.crf_log_likelihood(emissions, tags, lengths, transitions)[0]


# --- brute force ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_likelihood_and_viterbi_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths, k = [1, 2, 3, 4, 2], 3
    emissions, tags = _batch(rng, lengths, k, max_len=5)
    transitions = _transitions(rng, k)
    score = crf.sequence_score(emissions, tags, lengths, transitions).numpy()
    norm = crf.log_norm(emissions, lengths, transitions).numpy()
    ll = crf.log_likelihood(emissions, tags, lengths, transitions).numpy()
    best_tags, best_score = (x.numpy() for x in crf.viterbi_decode(emissions, lengths, transitions))
    for i, n in enumerate(lengths):
        scores, log_z = _brute_force(emissions[i, :n].astype(np.float64), transitions.astype(np.float64))
        given = tuple(tags[i, :n])
        assert score[i] == pytest.approx(scores[given], abs=1e-5)
        assert norm[i] == pytest.approx(log_z, abs=1e-5)
        assert ll[i] == pytest.approx(scores[given] - log_z, abs=1e-5)
        best = max(scores, key=scores.get)
        assert tuple(best_tags[i, :n]) == best and not best_tags[i, n:].any()
        assert best_score[i] == pytest.approx(scores[best], abs=1e-5)


@pytest.mark.parametrize("length", [1, 2, 3, 4])
def test_likelihoods_of_all_paths_sum_to_one(length: int) -> None:
    rng = np.random.default_rng(10 + length)
    emissions, _ = _batch(rng, [length], 3)
    transitions = _transitions(rng, 3)
    paths = np.array(list(itertools.product(range(3), repeat=length)), np.int32)
    batch = np.repeat(emissions, len(paths), axis=0)
    ll = crf.log_likelihood(batch, paths, [length] * len(paths), transitions).numpy()
    assert np.exp(ll.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-5)


def test_marginals_match_brute_force() -> None:
    rng = np.random.default_rng(20)
    lengths, k = [1, 4, 2, 3], 3
    emissions, _ = _batch(rng, lengths, k, max_len=6)
    transitions = _transitions(rng, k)
    probs = crf.marginals(emissions, lengths, transitions).numpy()
    log_probs = crf.log_marginals(emissions, lengths, transitions).numpy()
    assert np.all(np.isfinite(log_probs))
    real = np.arange(6)[None, :] < np.array(lengths)[:, None]
    np.testing.assert_allclose(probs.sum(-1), real.astype(np.float32), atol=1e-6)
    assert np.all(probs[~real] == 0) and np.all(log_probs[~real] == 0)
    np.testing.assert_allclose(np.exp(log_probs[real]), probs[real], rtol=1e-6)
    for i, n in enumerate(lengths):
        scores, log_z = _brute_force(emissions[i, :n].astype(np.float64), transitions.astype(np.float64))
        np.testing.assert_allclose(probs[i, :n], _brute_marginals(scores, log_z, n, k), atol=1e-6)


# --- padding, invariance, edge cases --------------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", ["finite", "nonfinite"])
def test_batch_results_equal_sentences_alone(garbage: str) -> None:
    rng = np.random.default_rng(30)
    lengths, k = [1, 7, 3, 12, 1, 5], 5
    emissions, tags = _batch(rng, lengths, k, max_len=14, garbage=garbage)
    transitions = _transitions(rng, k)

    def run(e: np.ndarray, t: np.ndarray, n: list[int]) -> list[np.ndarray]:
        decoded, best = crf.viterbi_decode(e, n, transitions)
        return [x.numpy() for x in (crf.sequence_score(e, t, n, transitions), crf.log_norm(e, n, transitions),
                                    crf.log_likelihood(e, t, n, transitions), best, decoded,
                                    crf.marginals(e, n, transitions), crf.log_marginals(e, n, transitions))]

    batch = run(emissions, tags, lengths)
    for i, n in enumerate(lengths):
        alone = run(emissions[i:i + 1, :n], tags[i:i + 1, :n], [n])
        for got, want in zip(batch[:4], alone[:4]):
            assert got[i] == pytest.approx(want[0], abs=1e-5)
        for got, want in zip(batch[4:], alone[4:]):
            np.testing.assert_allclose(got[i, :n], want[0], atol=1e-6)
            assert not got[i, n:].any()  # tags 0, marginals and log-marginals exactly 0 past the length
    _, d_emissions, d_transitions = _ll_and_grads(crf.log_likelihood, emissions, tags, lengths, transitions)
    assert np.all(np.isfinite(d_emissions)) and np.all(np.isfinite(d_transitions))
    pad = np.arange(14)[None, :] >= np.array(lengths)[:, None]
    assert not d_emissions[pad].any()


def test_constant_shift_at_one_position_changes_nothing() -> None:
    rng = np.random.default_rng(40)
    lengths, k = [6, 1, 9, 4], 6
    emissions, tags = _batch(rng, lengths, k)
    transitions = _transitions(rng, k)
    shifted = emissions.copy()
    for i, n in enumerate(lengths):
        shifted[i, rng.integers(n)] += 7.5
    np.testing.assert_allclose(crf.log_likelihood(shifted, tags, lengths, transitions).numpy(),
                               crf.log_likelihood(emissions, tags, lengths, transitions).numpy(), atol=1e-4)
    np.testing.assert_array_equal(crf.viterbi_decode(shifted, lengths, transitions)[0].numpy(),
                                  crf.viterbi_decode(emissions, lengths, transitions)[0].numpy())
    np.testing.assert_allclose(crf.marginals(shifted, lengths, transitions).numpy(),
                               crf.marginals(emissions, lengths, transitions).numpy(), atol=1e-5)


def test_length_zero_gives_zeros_and_finite_gradients() -> None:
    rng = np.random.default_rng(50)
    lengths, k = [0, 3, 0], 4
    emissions, tags = _batch(rng, lengths, k, max_len=3)
    transitions = _transitions(rng, k)
    for fn in (crf.sequence_score, crf.log_likelihood):
        assert fn(emissions, tags, lengths, transitions).numpy()[[0, 2]].tolist() == [0.0, 0.0]
    assert crf.log_norm(emissions, lengths, transitions).numpy()[[0, 2]].tolist() == [0.0, 0.0]
    decoded, best = crf.viterbi_decode(emissions, lengths, transitions)
    assert not decoded.numpy()[[0, 2]].any() and best.numpy()[[0, 2]].tolist() == [0.0, 0.0]
    assert not crf.marginals(emissions, lengths, transitions).numpy()[[0, 2]].any()
    assert not crf.log_marginals(emissions, lengths, transitions).numpy()[[0, 2]].any()
    ll, d_emissions, d_transitions = _ll_and_grads(crf.log_likelihood, emissions, tags, lengths, transitions)
    assert np.all(np.isfinite(d_emissions)) and np.all(np.isfinite(d_transitions))
    assert not d_emissions[[0, 2]].any() and np.any(d_transitions != 0)


def test_single_position_is_a_softmax() -> None:
    """T == 1: every recursion runs zero iterations; the CRF is then a softmax over the emissions."""
    rng = np.random.default_rng(60)
    emissions, tags = _batch(rng, [1, 1, 1], 4)
    transitions = _transitions(rng, 4)
    log_softmax = emissions[:, 0] - np.log(np.exp(emissions[:, 0]).sum(-1, keepdims=True))
    ll = crf.log_likelihood(emissions, tags, [1, 1, 1], transitions).numpy()
    np.testing.assert_allclose(ll, log_softmax[np.arange(3), tags[:, 0]], atol=1e-5)
    decoded, best = crf.viterbi_decode(emissions, [1, 1, 1], transitions)
    np.testing.assert_array_equal(decoded.numpy()[:, 0], emissions[:, 0].argmax(-1))
    np.testing.assert_allclose(best.numpy(), emissions[:, 0].max(-1))
    np.testing.assert_allclose(crf.log_marginals(emissions, [1, 1, 1], transitions).numpy()[:, 0], log_softmax,
                               atol=1e-5)


def test_marginal_gradients_are_finite_and_compile_under_xla() -> None:
    """Log-marginals and the gradients of their entropy (as a loss on marginals would use) are finite, also for
    length 0 and 1, and equal under jit_compile=True."""
    rng = np.random.default_rng(70)
    lengths, k = [5, 0, 1, 8], 4
    emissions, _ = _batch(rng, lengths, k)
    emissions, transitions = tf.constant(emissions), tf.Variable(_transitions(rng, k))

    def grads(e: tf.Tensor, n: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(e)
            log_probs = crf.log_marginals(e, n, transitions)
            entropy = -tf.reduce_sum(tf.exp(log_probs) * log_probs)
        return [log_probs, *tape.gradient(entropy, [e, transitions])]

    eager = grads(emissions, tf.constant(lengths))
    compiled = tf.function(grads, jit_compile=True)(emissions, tf.constant(lengths))
    for got, want in zip(compiled, eager):
        assert np.all(np.isfinite(want.numpy())) and np.abs(got.numpy() - want.numpy()).max() <= 1e-5


# --- tfa ------------------------------------------------------------------------------------------------------------

TFA_CASES = {
    "random": ([1, 30, 7, 1, 2, 19, 1, 25, 11, 30], 7),
    "short_and_long": ([1, 2, 150, 1, 80], 41),
}


@pytest.mark.parametrize("case", sorted(TFA_CASES))
def test_equals_tfa(case: str) -> None:
    tfa = _tfa_or_skip()
    lengths, k = TFA_CASES[case]
    rng = np.random.default_rng(80)
    emissions, tags = _batch(rng, lengths, k)
    transitions = _transitions(rng, k)
    own = _ll_and_grads(crf.log_likelihood, emissions, tags, lengths, transitions)
    ref = _ll_and_grads(_tfa_ll, emissions, tags, lengths, transitions)
    for got, want in zip(own, ref):
        assert np.abs(got - want).max() <= 1e-5
    decoded = crf.viterbi_decode(emissions, lengths, transitions)[0].numpy()
    np.testing.assert_array_equal(decoded, tfa.text.crf_decode(emissions, transitions, lengths)[0].numpy())


def test_length_zero_likelihood_equals_tfa() -> None:
    _tfa_or_skip()
    rng = np.random.default_rng(90)
    lengths = [0, 4, 0, 1]
    emissions, tags = _batch(rng, lengths, 5)
    transitions = _transitions(rng, 5)
    own = _ll_and_grads(crf.log_likelihood, emissions, tags, lengths, transitions)
    ref = _ll_and_grads(_tfa_ll, emissions, tags, lengths, transitions)
    for got, want in zip(own, ref):
        assert np.abs(got - want).max() <= 1e-5


# --- XLA ------------------------------------------------------------------------------------------------------------

XLA_CASES = {"short_and_long": ([1, 2, 150, 1, 80], 41), "single_position": ([1, 0, 1], 4)}


@pytest.mark.parametrize("case", sorted(XLA_CASES))
def test_training_step_and_viterbi_compile_under_xla(case: str) -> None:
    """Loss and gradients and decoding under jit_compile=True equal eager execution; T == 1 runs
    zero-iteration loops. The loss and log-likelihoods may differ by float32 rounding of their own magnitude
    (one ulp of 282 is 3e-5), no more."""
    rng = np.random.default_rng(100)
    lengths, k = XLA_CASES[case]
    emissions, tags = _batch(rng, lengths, k)
    transitions = tf.Variable(_transitions(rng, k))
    emissions, tags, lengths = tf.constant(emissions), tf.constant(tags), tf.constant(lengths, tf.int32)

    def step(e: tf.Tensor, t: tf.Tensor, n: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            tape.watch(e)
            ll = crf.log_likelihood(e, t, n, transitions)
            loss = -tf.reduce_mean(ll)
        return (loss, ll, *tape.gradient(loss, [e, transitions]), *crf.viterbi_decode(e, n, transitions))

    compiled = tf.function(step, jit_compile=True)(emissions, tags, lengths)
    eager = step(emissions, tags, lengths)
    for got, want in zip(compiled[:2], eager[:2]):
        assert np.all(np.abs(got.numpy() - want.numpy()) <= np.maximum(1e-5, 2 * np.spacing(np.abs(want.numpy()))))
    for got, want in zip(compiled[2:4], eager[2:4]):
        assert np.all(np.isfinite(got.numpy())) and np.abs(got.numpy() - want.numpy()).max() <= 1e-5
    np.testing.assert_array_equal(compiled[4].numpy(), eager[4].numpy())
    np.testing.assert_allclose(compiled[5].numpy(), eager[5].numpy(), rtol=1e-6)


# --- the CRF module -------------------------------------------------------------------------------------------------

def test_module_init_is_deterministic_and_glorot() -> None:
    a, b, c = crf.CRF(6, seed=(3, 4)), crf.CRF(6, seed=[3, 4]), crf.CRF(6, seed=(3, 5))
    np.testing.assert_array_equal(a.transitions.numpy(), b.transitions.numpy())
    assert not np.array_equal(a.transitions.numpy(), c.transitions.numpy())
    assert a.transitions.shape == (6, 6) and a.transitions.dtype == tf.float32
    assert np.abs(a.transitions.numpy()).max() <= math.sqrt(6 / 12)
    assert a.trainable_variables == a.variables == (a.transitions,) and a.prior is None
    assert crf.CRF(3, seed=(0, 0), name="crf_1").transitions.name.startswith("crf_1/")


@pytest.mark.parametrize("with_prior", [False, True])
def test_module_methods_call_the_functions(with_prior: bool) -> None:
    """Decoding and the marginals use the learned transitions plus the prior, if any; the likelihood never sees it."""
    rng = np.random.default_rng(110)
    lengths, k = [3, 1, 5], 4
    emissions, tags = _batch(rng, lengths, k)
    module = crf.CRF(k, seed=(1, 2), prior=with_prior)
    t = fused = module.transitions
    if with_prior:
        prior = rng.normal(size=(k, k)).astype(np.float32) * 3
        module.prior.assign(prior)
        fused = t + prior
    assert module.trainable_variables == (module.transitions,)
    np.testing.assert_array_equal(module.log_likelihood(emissions, tags, lengths).numpy(),
                                  crf.log_likelihood(emissions, tags, lengths, t).numpy())
    np.testing.assert_array_equal(module.decode(emissions, lengths).numpy(),
                                  crf.viterbi_decode(emissions, lengths, fused)[0].numpy())
    np.testing.assert_array_equal(module.marginals(emissions, lengths).numpy(),
                                  crf.marginals(emissions, lengths, fused).numpy())
    np.testing.assert_array_equal(module.log_marginals(emissions, lengths).numpy(),
                                  crf.log_marginals(emissions, lengths, fused).numpy())


def test_prior_of_an_unseen_pair_flips_a_close_decision() -> None:
    # tags O, B, I; gold data never shows B -> B. Emissions favour B, B by a little: the prior makes it B, I.
    pmi = crf.bigram_pmi([[0, 1, 2, 0], [1, 2, 2, 0], [0, 0, 1, 2]], 3)
    assert pmi[1, 1] < 0 < pmi[1, 2]
    module = crf.CRF(3, seed=(0, 0), prior=True)
    module.transitions.assign(np.zeros((3, 3), np.float32))
    emissions = np.array([[[0.0, 2.0, 0.0], [0.0, 1.1, 1.0]]], np.float32)
    assert module.decode(emissions, [2]).numpy().tolist() == [[1, 1]]
    module.prior.assign(0.5 * pmi)
    assert module.decode(emissions, [2]).numpy().tolist() == [[1, 2]]


BIO_TAG_SETS = {"two_attributes": ["O", "B-a", "I-a", "B-b", "I-b"], "I_without_B": ["O", "B-a", "I-a", "I-c"]}


def _continues_a_value(names: list[str], path: tuple) -> bool:
    """Whether every I-x of the path follows a B-x or an I-x (the BIO scheme)."""
    tags = [names[y] for y in path]
    return all(not t.startswith("I-") or (i > 0 and tags[i - 1] in ("B" + t[1:], t)) for i, t in enumerate(tags))


@pytest.mark.parametrize("impl", crf.IMPLS)
@pytest.mark.parametrize("tag_set", sorted(BIO_TAG_SETS))
def test_bio_penalty_decodes_the_best_valid_path_and_its_marginals(impl: str, tag_set: str) -> None:
    """With the BIO penalty, Viterbi is the argmax and the marginals the distribution over the paths BIO allows
    (C(x, y) under the learned transitions plus the prior); the likelihood and the variables are the plain ones."""
    if impl == "tfa":
        _tfa_or_skip()
    names = BIO_TAG_SETS[tag_set]
    rng = np.random.default_rng(130)
    lengths, k = [1, 2, 3, 4, 4, 1], len(names)
    emissions, tags = _batch(rng, lengths, k, max_len=5)
    emissions[:, :, [i for i, n in enumerate(names) if n.startswith("I-")]] += 2.0  # tempt an I- everywhere
    module = crf.CRF(k, seed=(5, 6), impl=impl, prior=True, penalty=crf.bio_penalty(names))
    assert {id(v) for v in module.variables} == {id(module.transitions), id(module.prior)}, \
        "the penalty is no variable: checkpoints hold what they held"
    module.transitions.assign(_transitions(rng, k))
    module.prior.assign(_transitions(rng, k))
    fused = (module.transitions + module.prior).numpy().astype(np.float64)
    np.testing.assert_array_equal(module.log_likelihood(emissions, tags, lengths).numpy(),
                                  crf.log_likelihood(emissions, tags, lengths, module.transitions).numpy())
    decoded = module.decode(emissions, lengths).numpy()
    probs = module.marginals(emissions, lengths).numpy()
    assert np.all(np.isfinite(module.log_marginals(emissions, lengths).numpy()))
    unconstrained_invalid = 0
    for i, n in enumerate(lengths):
        scores, _ = _brute_force(emissions[i, :n].astype(np.float64), fused)
        unconstrained_invalid += not _continues_a_value(names, max(scores, key=scores.get))
        valid = {y: v for y, v in scores.items() if _continues_a_value(names, y)}
        values = np.array(list(valid.values()))
        log_z = float(values.max() + np.log(np.exp(values - values.max()).sum()))
        assert tuple(decoded[i, :n]) == max(valid, key=valid.get) and not decoded[i, n:].any()
        np.testing.assert_allclose(probs[i, :n], _brute_marginals(valid, log_z, n, k), atol=1e-5)
    assert unconstrained_invalid, "without the penalty some best path breaks BIO, so this test can fail"


@pytest.mark.parametrize("impl", crf.IMPLS)
def test_constrained_likelihood_is_among_the_valid_paths(impl: str) -> None:
    """With constrained_likelihood, log P(y | x) of a valid y is its score less the log-sum over the paths BIO
    allows only (brute force), and the likelihoods of the valid paths sum to one."""
    if impl == "tfa":
        _tfa_or_skip()
    names = ["O", "B-a", "I-a", "B-b", "I-b"]
    rng = np.random.default_rng(131)
    lengths, k = [1, 2, 3, 4], len(names)
    emissions, _ = _batch(rng, lengths, k, max_len=4)
    module = crf.CRF(k, seed=(5, 6), impl=impl, penalty=crf.bio_penalty(names), constrained_likelihood=True)
    module.transitions.assign(_transitions(rng, k))
    learned = module.transitions.numpy().astype(np.float64)
    for i, n in enumerate(lengths):
        scores, _ = _brute_force(emissions[i, :n].astype(np.float64), learned)
        valid = {y: v for y, v in scores.items() if _continues_a_value(names, y)}
        values = np.array(list(valid.values()))
        log_z = float(values.max() + np.log(np.exp(values - values.max()).sum()))
        paths = np.array(list(valid), np.int32)
        ll = module.log_likelihood(np.repeat(emissions[i:i + 1, :n], len(paths), 0), paths,
                                   np.full(len(paths), n, np.int32)).numpy()
        np.testing.assert_allclose(ll, [valid[tuple(y)] - log_z for y in paths], atol=1e-4)
        assert math.fsum(np.exp(ll.astype(np.float64))) == pytest.approx(1.0, abs=1e-4)
        plain = crf.CRF(k, seed=(5, 6), impl=impl, penalty=crf.bio_penalty(names))  # the default: unconstrained
        plain.transitions.assign(module.transitions)
        unconstrained = plain.log_likelihood(np.repeat(emissions[i:i + 1, :n], len(paths), 0), paths,
                                             np.full(len(paths), n, np.int32)).numpy()
        assert np.all(unconstrained < ll), "the invalid paths take their share of the plain likelihood's mass"


def test_bio_penalty_forbids_exactly_what_bio_forbids() -> None:
    """An I-x only after B-x or I-x and never first; every other pair and start allowed (0)."""
    names = ["O", "B-a", "I-a", "I-b", "B-a-b", "I-a-b"]
    penalty = crf.bio_penalty(names)
    allowed_before = {"I-a": {"B-a", "I-a"}, "I-b": {"I-b"}, "I-a-b": {"B-a-b", "I-a-b"}}  # I-b: never reached
    for j, tag in enumerate(names):
        assert penalty.start[j] == (crf.FORBIDDEN if tag.startswith("I-") else 0.0)
        for i, before in enumerate(names):
            allowed = before in allowed_before[tag] if tag.startswith("I-") else True
            assert penalty.transitions[i, j] == (0.0 if allowed else crf.FORBIDDEN), (before, tag)


def test_bigram_pmi_is_log_count_over_independent_count_both_plus_one() -> None:
    sequences = [[0, 1, 2, 0], [2], [1, 1]]
    counts = np.zeros((3, 3))
    for a, b in [(0, 1), (1, 2), (2, 0), (1, 1)]:
        counts[a, b] += 1
    expected = np.outer(counts.sum(1), counts.sum(0)) / 4
    np.testing.assert_allclose(crf.bigram_pmi(sequences, 3), np.log((counts + 1) / (expected + 1)), rtol=1e-6)
    np.testing.assert_array_equal(crf.bigram_pmi([], 2), np.zeros((2, 2), np.float32))


def test_bigram_pmi_penalises_unseen_pairs_only_as_far_as_the_data_can_tell() -> None:
    # tags O, B-a, I-a, B-r: B-a is frequent and never followed by B-a; B-r occurs twice, never after itself.
    sequences = [[0, 1, 2, 0]] * 50 + [[1, 0, 1, 2]] * 50 + [[0, 3, 0, 3, 0]]
    pmi = crf.bigram_pmi(sequences, 4)
    counts = np.zeros((4, 4))
    for s in sequences:
        np.add.at(counts, (np.array(s[:-1]), np.array(s[1:])), 1)
    assert (pmi[counts == 0] <= 0).all(), "a pair the data never shows is never favoured"
    assert pmi[1, 1] < -2 and -0.1 < pmi[3, 3] <= 0, "frequent B-a B-a: clearly rare; B-r B-r: no evidence"
    assert pmi[1, 2] > 0


def test_module_tfa_impl_equals_own() -> None:
    _tfa_or_skip()
    rng = np.random.default_rng(120)
    lengths, k = [4, 1, 9], 5
    emissions, tags = _batch(rng, lengths, k)
    own, tfa = crf.CRF(k, seed=(7, 7)), crf.CRF(k, seed=(7, 7), impl="tfa")
    np.testing.assert_allclose(tfa.log_likelihood(emissions, tags, lengths).numpy(),
                               own.log_likelihood(emissions, tags, lengths).numpy(), atol=1e-5)
    np.testing.assert_array_equal(tfa.decode(emissions, lengths).numpy(), own.decode(emissions, lengths).numpy())


def test_tfa_impl_without_tfa_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where tfa imports (TF < 2.16) this simulates its absence; where it does not, the real import fails."""
    if crf.tfa_available():
        monkeypatch.setattr(crf, "_tfa_module", None)
        monkeypatch.setattr(crf, "_tfa_error", "ModuleNotFoundError: No module named 'tensorflow_addons'")
    elif _tf_version() < (2, 16):
        pytest.fail(f"tensorflow-addons must import beside TensorFlow {tf.__version__}: {crf._tfa_error}")
    assert not crf.tfa_available()
    with pytest.raises(InputError, match=r"^--crf_impl=tfa: tensorflow-addons does not import here \(.+\); "
                                         r"use --crf_impl=own$"):
        crf.CRF(4, seed=(0, 1), impl="tfa")
    with pytest.raises(InputError, match="--crf_impl=bogus"):
        crf.CRF(4, seed=(0, 1), impl="bogus")
    assert crf.IMPLS == ("own", "tfa")


def test_module_does_not_use_keras() -> None:
    assert not re.search(r"\.keras\b|^\s*(import|from)\s+(tf_)?keras\b", Path(crf.__file__).read_text(), re.M)
