"""Linear-chain CRF (paper §3.2) in plain TensorFlow ops, no Keras: C(x, y) = Σ s_i(y_i) + Σ T(y_i, y_{i+1}).

Shapes: emissions [B, T, N] (T ≥ 1), tags [B, T], lengths [B] (0 ≤ length ≤ T), transitions [N, N] with
transitions[y, y′] scoring y → y′ as in tfa; no start/stop transitions (the `CRF` module's decoding adds start
scores to the first position's emissions). Positions at or past a length never influence a result or gradient.
Recursions are `tf.while_loop`s masked by t < length, with no branching on tensor values, so everything compiles
under XLA (jit_compile=True).
"""
import math
import warnings
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from mtl_tagger.errors import InputError
from mtl_tagger.params import CRF_IMPLS as IMPLS

# The score of a tag pair or start the BIO scheme forbids: finite, so a logsumexp over forbidden paths alone is
# still a number (-inf there would give NaN), and far beyond what emission and transition scores make up for.
FORBIDDEN = -1e4

_tfa_module: ModuleType | None = None
_tfa_error: str | None = None


def _prepare(emissions: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor
             ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Cast inputs; zero the emissions past each length (so garbage there, even inf/NaN, cannot leak); [B, T] mask."""
    emissions = tf.convert_to_tensor(emissions)
    lengths = tf.cast(lengths, tf.int32)
    transitions = tf.cast(transitions, emissions.dtype)
    mask = tf.sequence_mask(lengths, tf.shape(emissions)[1])
    emissions = tf.where(mask[:, :, None], emissions, tf.zeros_like(emissions))
    return emissions, lengths, transitions, mask


def _loop_bound(max_len: tf.Tensor) -> tf.Tensor:
    """maximum_iterations of a T-1 step loop: at least 1, as XLA cannot size a gradient accumulator of 0 (T == 1)."""
    return tf.maximum(max_len - 1, 1)


def _shift(scores: tf.Tensor) -> tf.Tensor:
    """Log-scores [B, N] minus their logsumexp: same per-position ratios, magnitudes kept near 0 along a sentence."""
    return scores - tf.reduce_logsumexp(scores, [1], keepdims=True)


def _forward(emissions: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor, keep_all: bool
             ) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Forward algorithm alpha_t = logsumexp_y(alpha_{t-1}[y] + T[y, y′]) + s_t[y′] (as tfa): alpha at each last
    position [B, N]; with keep_all every alpha [T, B, N], each shifted to logsumexp 0 so magnitudes stay small."""
    steps = tf.transpose(emissions, [1, 0, 2])
    max_len = tf.shape(steps)[0]
    inputs = tf.TensorArray(steps.dtype, size=max_len).unstack(steps)
    trans = tf.expand_dims(transitions, 0)
    alpha0 = _shift(steps[0]) if keep_all else steps[0]
    history = tf.TensorArray(steps.dtype, size=max_len if keep_all else 1, element_shape=alpha0.shape)
    history = history.write(0, alpha0)

    def body(t: tf.Tensor, alpha: tf.Tensor, history: tf.TensorArray) -> tuple:
        new = inputs.read(t) + tf.reduce_logsumexp(tf.expand_dims(alpha, 2) + trans, [1])
        alpha = tf.where(tf.expand_dims(t < lengths, 1), _shift(new) if keep_all else new, alpha)
        if keep_all:
            history = history.write(t, alpha)
        return t + 1, alpha, history

    _, alpha, history = tf.while_loop(lambda t, *_: t < max_len, body, (tf.constant(1), alpha0, history),
                                      maximum_iterations=_loop_bound(max_len))
    return alpha, (history.stack() if keep_all else None)


def _backward(emissions: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor) -> tf.Tensor:
    """Backward algorithm: beta_t[y] = log Σ of the continuations of y at t to the sentence's end, [T, B, N], each
    shifted to logsumexp 0 (as in _forward); 0 from the last real position on."""
    steps = tf.transpose(emissions, [1, 0, 2])
    max_len = tf.shape(steps)[0]
    inputs = tf.TensorArray(steps.dtype, size=max_len).unstack(steps)
    trans = tf.expand_dims(transitions, 0)
    beta_last = tf.zeros_like(steps[0])
    history = tf.TensorArray(steps.dtype, size=max_len, element_shape=beta_last.shape)
    history = history.write(max_len - 1, beta_last)

    def body(t: tf.Tensor, beta: tf.Tensor, history: tf.TensorArray) -> tuple:
        new = tf.reduce_logsumexp(trans + tf.expand_dims(inputs.read(t + 1) + beta, 1), [2])
        beta = tf.where(tf.expand_dims(t + 1 < lengths, 1), _shift(new), tf.zeros_like(new))
        return t - 1, beta, history.write(t, beta)

    _, _, history = tf.while_loop(lambda t, *_: t >= 0, body, (max_len - 2, beta_last, history),
                                  maximum_iterations=_loop_bound(max_len))
    return history.stack()


def sequence_score(emissions: tf.Tensor, tags: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor) -> tf.Tensor:
    """C(x, y) of the given tags per sentence, [B]: emission scores plus transition scores within each length."""
    emissions, lengths, transitions, mask = _prepare(emissions, lengths, transitions)
    tags = tf.where(mask, tf.cast(tags, tf.int32), tf.zeros_like(mask, tf.int32))
    unary = tf.gather(emissions, tf.expand_dims(tags, 2), batch_dims=2)[:, :, 0]
    unary = tf.reduce_sum(tf.where(mask, unary, tf.zeros_like(unary)), 1)
    num_tags = tf.shape(transitions)[0]
    binary = tf.gather(tf.reshape(transitions, [-1]), tags[:, :-1] * num_tags + tags[:, 1:])
    binary = tf.reduce_sum(tf.where(mask[:, 1:], binary, tf.zeros_like(binary)), 1)
    return unary + binary


def log_norm(emissions: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor) -> tf.Tensor:
    """log Σ_y exp C(x, y) per sentence, [B], by the forward algorithm; 0 for length 0."""
    emissions, lengths, transitions, _ = _prepare(emissions, lengths, transitions)
    alpha, _ = _forward(emissions, lengths, transitions, keep_all=False)
    norm = tf.reduce_logsumexp(alpha, [1])
    return tf.where(lengths > 0, norm, tf.zeros_like(norm))


def log_likelihood(emissions: tf.Tensor, tags: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor) -> tf.Tensor:
    """log P(tags | x) = C(x, tags) − log Z(x) per sentence, [B]; 0 for length 0 (as tfa)."""
    return sequence_score(emissions, tags, lengths, transitions) - log_norm(emissions, lengths, transitions)


def viterbi_decode(emissions: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Best tag sequence per sentence, [B, T] int32 (0 at and past the length), and its score C(x, y), [B]
    (0 for length 0). Ties go to the lowest tag index, as tf.argmax (and so tfa) breaks them."""
    emissions, lengths, transitions, mask = _prepare(emissions, lengths, transitions)
    steps = tf.transpose(emissions, [1, 0, 2])
    max_len = tf.shape(steps)[0]
    inputs = tf.TensorArray(steps.dtype, size=max_len).unstack(steps)
    trans = tf.expand_dims(transitions, 0)
    score0 = steps[0]
    # Past the length the backpointers are the identity, so backtracking from T-1 reaches length-1 unchanged.
    identity = tf.zeros_like(score0, tf.int32) + tf.range(tf.shape(score0)[1])
    pointers = tf.TensorArray(tf.int32, size=max_len, element_shape=identity.shape).write(0, identity)

    def forward(t: tf.Tensor, score: tf.Tensor, pointers: tf.TensorArray) -> tuple:
        candidates = tf.expand_dims(score, 2) + trans
        new = inputs.read(t) + tf.reduce_max(candidates, [1])
        live = tf.expand_dims(t < lengths, 1)
        best = tf.argmax(candidates, 1, output_type=tf.int32)
        return t + 1, tf.where(live, new, score), pointers.write(t, tf.where(live, best, identity))

    _, score, pointers = tf.while_loop(lambda t, *_: t < max_len, forward, (tf.constant(1), score0, pointers),
                                       maximum_iterations=_loop_bound(max_len))
    last = tf.argmax(score, 1, output_type=tf.int32)
    path = tf.TensorArray(tf.int32, size=max_len, element_shape=last.shape).write(max_len - 1, last)

    def backward(t: tf.Tensor, tag: tf.Tensor, path: tf.TensorArray) -> tuple:
        previous = tf.gather(pointers.read(t), tf.expand_dims(tag, 1), batch_dims=1)[:, 0]
        return t - 1, previous, path.write(t - 1, previous)

    _, _, path = tf.while_loop(lambda t, *_: t > 0, backward, (max_len - 1, last, path),
                               maximum_iterations=_loop_bound(max_len))
    tags = tf.where(mask, tf.transpose(path.stack()), tf.zeros_like(mask, tf.int32))
    best = tf.reduce_max(score, [1])
    return tags, tf.where(lengths > 0, best, tf.zeros_like(best))


def log_marginals(emissions: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor) -> tf.Tensor:
    """log P(y_i = y | x), [B, T, N], by log-space forward–backward, each real position normalised by its own
    logsumexp(alpha + beta) (= log Z up to rounding); exactly 0.0 at and past the length, for callers to mask."""
    emissions, lengths, transitions, mask = _prepare(emissions, lengths, transitions)
    _, alphas = _forward(emissions, lengths, transitions, keep_all=True)
    scores = tf.transpose(alphas + _backward(emissions, lengths, transitions), [1, 0, 2])
    log_probs = scores - tf.reduce_logsumexp(scores, [2], keepdims=True)
    return tf.where(mask[:, :, None], log_probs, tf.zeros_like(log_probs))


def marginals(emissions: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor) -> tf.Tensor:
    """P(y_i = y | x), [B, T, N]: each real position sums to 1, positions at and past the length are exactly 0."""
    emissions, lengths, _, mask = _prepare(emissions, lengths, transitions)
    probs = tf.exp(log_marginals(emissions, lengths, transitions))
    return tf.where(mask[:, :, None], probs, tf.zeros_like(probs))


def bigram_pmi(tag_ids: Iterable[Sequence[int] | np.ndarray], num_tags: int) -> np.ndarray:
    """[N, N] log (n(y, y′) + 1) / (E(y, y′) + 1) for adjacent tags in gold sequences: the count of the pair against
    the count independent tags would give (row total × column total / all pairs). Negative where the data shows a
    pair less often than chance and has enough of both tags to tell (never seen: log 1 / (E + 1)), near 0 where
    the tags are too rare to tell, positive where the pair is more common than chance."""
    counts = np.zeros((num_tags, num_tags))
    for seq in tag_ids:
        ids = np.asarray(seq, np.int64)
        np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    expected = np.outer(counts.sum(1), counts.sum(0)) / max(counts.sum(), 1.0)
    return np.log((counts + 1.0) / (expected + 1.0)).astype(np.float32)


class Penalty(NamedTuple):
    """Fixed scores decoding adds: `transitions` [N, N] to the transition scores, `start` [N] to the first
    position's emissions."""

    transitions: np.ndarray
    start: np.ndarray


def bio_penalty(tags: Sequence[str]) -> Penalty:
    """FORBIDDEN for what the BIO scheme forbids among these tag names, 0 elsewhere: an I-x at the start, or after
    any tag but B-x and I-x (so an I-x whose B-x is not among the tags is never decoded)."""
    transitions = np.zeros((len(tags), len(tags)), np.float32)
    start = np.zeros(len(tags), np.float32)
    for j, tag in enumerate(tags):
        if tag.startswith("I-"):
            start[j] = FORBIDDEN
            for i, before in enumerate(tags):
                if before not in ("B" + tag[1:], tag):
                    transitions[i, j] = FORBIDDEN
    return Penalty(transitions, start)


def _import_tfa() -> ModuleType | None:
    """tensorflow_addons if it imports (once, its end-of-life and version UserWarnings silenced), else None."""
    global _tfa_module, _tfa_error
    if _tfa_module is None and _tfa_error is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                import tensorflow_addons
            _tfa_module = tensorflow_addons
        except Exception as error:  # any failure means "not usable here"; the reason goes into the message
            _tfa_error = " ".join(f"{type(error).__name__}: {error}".split())
    return _tfa_module


def tfa_available() -> bool:
    """Whether tensorflow-addons imports beside this TensorFlow (it does not for TF ≥ 2.16)."""
    return _import_tfa() is not None


def _require_tfa() -> ModuleType:
    """tensorflow_addons, or the user-facing error saying why --crf_impl=tfa cannot be used here."""
    module = _import_tfa()
    if module is None:
        raise InputError(f"--crf_impl=tfa: tensorflow-addons does not import here ({_tfa_error}); use --crf_impl=own")
    return module


class CRF(tf.Module):
    """One task's transition scores T(y, y′) with likelihood, decoding and marginals; impl="tfa" routes the
    likelihood and decoding through tensorflow-addons (marginals are always the own ones).

    With `prior`, it also holds a fixed [N, N] score (zero until set, e.g. to a weighted `bigram_pmi`) that
    decoding and the marginals add to the learned transitions; with `penalty` (e.g. `bio_penalty`), decoding and
    the marginals add its constant scores too. Training's likelihood sees neither, except the penalty with
    `constrained_likelihood`: then it is the likelihood among the tag sequences the penalty allows.
    """

    def __init__(self, num_tags: int, seed: tuple[int, int] | list[int], impl: str = "own",
                 name: str | None = None, prior: bool = False, penalty: Penalty | None = None,
                 constrained_likelihood: bool = False) -> None:
        super().__init__(name=name)
        if impl not in IMPLS:
            raise InputError(f"--crf_impl={impl}: unknown; use one of {', '.join(IMPLS)}")
        if impl == "tfa":
            _require_tfa()
        self.num_tags = num_tags
        self.impl = impl
        limit = math.sqrt(6.0 / (num_tags + num_tags))  # Glorot uniform, stateless so the seed alone fixes it
        with self.name_scope:
            self.transitions = tf.Variable(
                tf.random.stateless_uniform([num_tags, num_tags], seed=seed, minval=-limit, maxval=limit,
                                            dtype=tf.float32),
                name="transitions")
            self.prior = (tf.Variable(tf.zeros([num_tags, num_tags]), trainable=False, name="prior") if prior
                          else None)
        # numpy constants, not variables: checkpoints hold what they held without them.
        self.penalty_transitions = None if penalty is None else penalty.transitions
        self.penalty_start = None if penalty is None else penalty.start
        self.constrained_likelihood = constrained_likelihood and penalty is not None

    @property
    def decoding_transitions(self) -> tf.Tensor | tf.Variable:
        """The transition scores decoding and the marginals use: the learned ones plus the prior and the penalty,
        if any."""
        fused = self.transitions if self.prior is None else self.transitions + self.prior
        return fused if self.penalty_transitions is None else fused + self.penalty_transitions

    def decoding_emissions(self, emissions: tf.Tensor) -> tf.Tensor:
        """The emissions decoding and the marginals use: the penalty's start scores, if any, added at the first
        position."""
        if self.penalty_start is None:
            return emissions
        emissions = tf.convert_to_tensor(emissions)
        return tf.concat([emissions[:, :1] + tf.cast(self.penalty_start, emissions.dtype), emissions[:, 1:]], 1)

    def log_likelihood(self, emissions: tf.Tensor, tags: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """log P(tags | x) per sentence, [B] (with `constrained_likelihood`, among the sequences the penalty
        allows: the normaliser leaves out the others, and an allowed sequence's own score is unchanged)."""
        transitions = self.transitions
        if self.constrained_likelihood:
            emissions = self.decoding_emissions(emissions)
            transitions = transitions + self.penalty_transitions
        if self.impl == "tfa":
            return _require_tfa().text.crf_log_likelihood(emissions, tags, lengths, transitions)[0]
        return log_likelihood(emissions, tags, lengths, transitions)

    def decode(self, emissions: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """Viterbi tags, [B, T] int32, 0 past the length."""
        emissions = self.decoding_emissions(emissions)
        if self.impl == "tfa":
            return _require_tfa().text.crf_decode(emissions, self.decoding_transitions, lengths)[0]
        return viterbi_decode(emissions, lengths, self.decoding_transitions)[0]

    def marginals(self, emissions: tf.Tensor, lengths: tf.Tensor, temperature: tf.Tensor | float = 1.0) -> tf.Tensor:
        """P(y_i = y | x), [B, T, N], 0 past the length; with every decoding score divided by `temperature`
        (calibration: the Viterbi path is the same at any temperature)."""
        return marginals(self.decoding_emissions(emissions) / temperature, lengths,
                         self.decoding_transitions / temperature)

    def log_marginals(self, emissions: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """log P(y_i = y | x), [B, T, N], 0.0 past the length."""
        return log_marginals(self.decoding_emissions(emissions), lengths, self.decoding_transitions)
