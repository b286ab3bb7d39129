"""The network (paper §3.1–3.3): a shared encoder (word + char embeddings → BiLSTM) and one head per vertical.

Plain `tf.Module`s and `tf.Variable`s, no Keras: the same code, weights and checkpoints on every supported
TensorFlow. A head is a Dense layer giving the emission scores s_i(y|x) plus that vertical's CRF.
Dropout is stateless, seeded by (run seed, step), so a resumed run draws the masks an uninterrupted one would.
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from mtl_tagger.bilstm import LSTMWeights, bilstm, bilstm_final, resolve_matmul_dtype
from mtl_tagger.crf import CRF, Penalty, bio_penalty
from mtl_tagger.initializers import SeedSequence, glorot_uniform, uniform
from mtl_tagger.lexical import feature_buckets, lower_char_ids
from mtl_tagger.params import Params
from mtl_tagger.vocab import SHAPES, UNK_ID, Vocab


def dropout(x: tf.Tensor, rate: float, seed: tf.Tensor | None) -> tf.Tensor:
    """Inverted dropout with a stateless mask drawn from `seed` ([2] int); identity when seed is None."""
    if seed is None or rate == 0.0:
        return x
    keep = tf.random.stateless_uniform(tf.shape(x), seed) >= rate
    return tf.where(keep, x / (1.0 - rate), 0.0)


def fold_in(seed: tf.Tensor | None, k: int) -> tf.Tensor | None:
    """A distinct seed for the k-th random draw of one call (None: no randomness)."""
    return None if seed is None else tf.random.experimental.stateless_fold_in(seed, k)


class CharEncoder(tf.Module):
    """Per-word character encoder: BiLSTM final states (Lample et al.) or CNN + max-pool, run on real words only."""

    def __init__(self, num_chars: int, char_dim: int, hidden: int, kind: str, seeds: SeedSequence) -> None:
        super().__init__(name="char_encoder")
        self.kind = kind
        self.embedding = tf.Variable(uniform((num_chars, char_dim), 0.05, seeds()), name="embedding")
        if kind == "lstm":
            self.forward = LSTMWeights(char_dim, hidden, seeds, name="forward")
            self.backward = LSTMWeights(char_dim, hidden, seeds, name="backward")
        else:
            self.kernel = tf.Variable(glorot_uniform((3, char_dim, hidden), seeds()), name="kernel")
            self.bias = tf.Variable(tf.zeros([hidden]), name="bias")
        self.width = 2 * hidden if kind == "lstm" else hidden

    def __call__(self, chars: tf.Tensor, words: tf.Tensor) -> tf.Tensor:
        """[B, T, C] char ids → [B, T, width]; padded word slots (word id 0) stay 0 and cost nothing.

        Each distinct word of the batch is encoded once (a word id has one spelling; unknown words, id 1, are
        each their own), which on catalog text is a fraction of the word slots.
        """
        where = tf.where(words > 0)
        ids = tf.gather_nd(words, where)  # one per real word slot
        keys = tf.where(ids > UNK_ID, ids, -1 - tf.range(tf.shape(ids)[0]))
        distinct, slot = tf.unique(keys)
        first = tf.math.unsorted_segment_min(tf.range(tf.shape(ids)[0]), slot, tf.shape(distinct)[0])
        real = tf.gather(tf.gather_nd(chars, where), first)  # [D, C], one row per distinct word
        lengths = tf.reduce_sum(tf.cast(real > 0, tf.int32), axis=1)
        x = tf.gather(self.embedding, real)
        if self.kind == "lstm":
            out = bilstm_final(x, lengths, self.forward, self.backward)
        else:
            h = tf.tanh(tf.nn.conv1d(x, self.kernel, 1, "SAME") + self.bias)
            out = tf.reduce_max(tf.where((real > 0)[..., None], h, -1.0), axis=1)  # tanh ≥ −1: padding never wins
        shape = tf.shape(words, out_type=tf.int64)
        return tf.scatter_nd(where, tf.gather(out, slot), tf.concat([shape, [self.width]], 0))


class Encoder(tf.Module):
    """Shared word representation (word embedding ⊕ char encoding [⊕ word shape] [⊕ the vertical's embedding]) →
    BiLSTM → context vectors h."""

    def __init__(self, p: Params, num_words: int, num_chars: int, seeds: SeedSequence, verticals: int = 1) -> None:
        super().__init__(name="encoder")
        self.rate, self.word_rate = p.dropout, p.word_dropout
        self.word_embedding = tf.Variable(uniform((num_words, p.word_dim), float(np.sqrt(3.0 / p.word_dim)), seeds()),
                                          name="word_embedding")
        self.chars = CharEncoder(num_chars, p.char_dim, p.char_hidden, p.char_encoder, seeds)
        width = p.word_dim + self.chars.width
        self.shape_embedding = None
        if p.case_dim:
            self.shape_embedding = tf.Variable(uniform((len(SHAPES), p.case_dim), 0.05, seeds()),
                                               name="shape_embedding")
            width += p.case_dim
        self.vertical_embedding = None
        if p.vertical_dim:
            self.vertical_embedding = tf.Variable(uniform((verticals, p.vertical_dim), 0.05, seeds()),
                                                  name="vertical_embedding")
            width += p.vertical_dim
        dtype = resolve_matmul_dtype(p.matmul_dtype)
        self.forward = LSTMWeights(width, p.hidden_size, seeds, name="forward", matmul_dtype=dtype)
        self.backward = LSTMWeights(width, p.hidden_size, seeds, name="backward", matmul_dtype=dtype)
        self.width = 2 * p.hidden_size

    def dropped_words(self, words: tf.Tensor, seed: tf.Tensor | None) -> tf.Tensor:
        """Word ids with word dropout applied in training (`seed` given): some words become the unknown word."""
        if seed is None or not self.word_rate:
            return words
        unknown = tf.random.stateless_uniform(tf.shape(words), fold_in(seed, 2)) < self.word_rate
        return tf.where(unknown & (words > 0), UNK_ID, words)

    def __call__(self, batch: dict[str, tf.Tensor], seed: tf.Tensor | None = None, vertical: int | None = None
                 ) -> tf.Tensor:
        """Context vectors h [B, T, 2·hidden] of a padded batch of one `vertical` (its place among the heads; needed
        with a vertical embedding), 0 past each length; dropout when `seed` is given."""
        words = self.dropped_words(batch["words"], seed)
        parts = [tf.gather(self.word_embedding, words), self.chars(batch["chars"], batch["words"])]
        if self.shape_embedding is not None:
            parts.append(tf.gather(self.shape_embedding, batch["case"]))
        if self.vertical_embedding is not None:
            if vertical is None:
                raise ValueError("this encoder embeds the vertical: say which vertical the batch is of")
            v = self.vertical_embedding[vertical]
            parts.append(tf.broadcast_to(v, tf.concat([tf.shape(words), tf.shape(v)], axis=0)))
        x = dropout(tf.concat(parts, axis=-1), self.rate, fold_in(seed, 0))
        h = bilstm(x, batch["length"], self.forward, self.backward)
        return dropout(h, self.rate, fold_in(seed, 1))


class Head(tf.Module):
    """One vertical's Dense layer (emission scores s_i(y|x) = W h_i + b) and its CRF (with the prior and the
    decoding penalty, if given, in its likelihood too if `constrained`); with `buckets`, a score per (hashed
    spelling feature, tag) besides (lexical.py), times `lexical_scale`."""

    def __init__(self, width: int, num_tags: int, crf_impl: str, seeds: SeedSequence, name: str,
                 tag_prior: bool = False, penalty: Penalty | None = None, buckets: int = 0,
                 constrained: bool = False, lexical_scale: float = 1.0) -> None:
        super().__init__(name=name)
        self.kernel = tf.Variable(glorot_uniform((width, num_tags), seeds()), name="kernel")
        self.bias = tf.Variable(tf.zeros([num_tags]), name="bias")
        self.crf = CRF(num_tags, seeds(), impl=crf_impl, name="crf", prior=tag_prior, penalty=penalty,
                       constrained_likelihood=constrained)
        self.lexical = tf.Variable(tf.zeros([buckets, num_tags]), name="lexical") if buckets else None
        self.lexical_scale = lexical_scale  # with Adam, how much faster the spelling score moves than the rest

    def emissions(self, h: tf.Tensor) -> tf.Tensor:
        """s(·|x) for context vectors h [..., width] → [..., num_tags]."""
        return tf.tensordot(h, self.kernel, 1) + self.bias

    def lexical_scores(self, buckets: tf.Tensor, there: tf.Tensor) -> tf.Tensor:
        """lexical_scale × the summed scores [..., num_tags] of the features in `buckets` [..., F] where `there`
        holds."""
        gathered = tf.gather(self.lexical, buckets) * tf.cast(there, self.lexical.dtype)[..., None]
        return self.lexical_scale * tf.reduce_sum(gathered, axis=-2)


class TaggerNet(tf.Module):
    """Shared encoder + one (Dense → CRF) head per vertical; everything a checkpoint holds about the model.
    With --bio_constraints each head decodes only tag sequences the BIO scheme allows (crf.bio_penalty)."""

    def __init__(self, p: Params, vocab: Vocab) -> None:
        super().__init__(name="tagger_net")
        seeds = SeedSequence(p.seed)
        self.encoder = Encoder(p, len(vocab.words), len(vocab.chars), seeds, len(vocab.tags))
        self.vertical_ids = {t: i for i, t in enumerate(vocab.tags)}
        self.buckets, self.pairs = p.lexical_buckets, p.lexical_pairs
        self.lower_chars = tf.constant(lower_char_ids(vocab.chars)) if self.buckets else None
        self.heads = {t: Head(self.encoder.width, len(names), p.crf_impl, seeds, name=f"head_{i}",
                              tag_prior=p.tag_prior > 0, penalty=bio_penalty(names) if p.bio_constraints else None,
                              buckets=self.buckets, constrained=p.bio_training,
                              lexical_scale=p.lexical_step)
                      for i, (t, names) in enumerate(vocab.tags.items())}

    @property
    def word_embeddings(self) -> tf.Variable:
        """The trainable word embedding table (the coupling attention reads windows from it)."""
        return self.encoder.word_embedding

    def window_vectors(self, ids: tf.Tensor) -> tf.Tensor:
        """u: the concatenated trainable embeddings of word-id windows [..., W] → [..., W·d], zero past edges."""
        table = self.word_embeddings
        vec = tf.gather(table, ids) * tf.cast(ids > 0, table.dtype)[..., None]
        return tf.reshape(vec, tf.concat([tf.shape(ids)[:-1], [-1]], axis=0))

    def encode(self, task: str, batch: dict[str, tf.Tensor], seed: tf.Tensor | None = None) -> tf.Tensor:
        """Context vectors h of a padded batch of `task`'s sentences (the shared encoder, told their vertical)."""
        return self.encoder(batch, seed, self.vertical_ids[task])

    def scores(self, task: str, batch: dict[str, tf.Tensor], seed: tf.Tensor | None = None,
               hidden: tf.Tensor | None = None) -> tf.Tensor:
        """The emission scores [B, T, tags] of `task`'s head for a padded batch (dropout when `seed` is given);
        `hidden`: the batch already encoded with that seed."""
        head = self.heads[task]
        scores = head.emissions(self.encode(task, batch, seed) if hidden is None else hidden)
        if not self.buckets:
            return scores
        words = batch["words"]
        dropped = (self.encoder.dropped_words(words, seed) == UNK_ID) & (words != UNK_ID)
        buckets, there = feature_buckets(batch["chars"], batch["case"], (words > 0) & ~dropped, self.lower_chars,
                                         self.buckets, batch["length"] if self.pairs else None)
        return scores + head.lexical_scores(buckets, there)

    def crf_loss(self, task: str, batch: dict[str, tf.Tensor], seed: tf.Tensor | None = None,
                 count: tf.Tensor | None = None, hidden: tf.Tensor | None = None) -> tf.Tensor:
        """Negative log-likelihood of the gold tags summed over the batch's sentences and divided by `count`
        (default: their number, i.e. the mean; a worker of several divides by the whole step's count)."""
        head = self.heads[task]
        scores = self.scores(task, batch, seed, hidden)
        nll = -tf.reduce_sum(head.crf.log_likelihood(scores, batch["tags"], batch["length"]))
        return nll / (tf.cast(tf.shape(batch["length"])[0], nll.dtype) if count is None else count)

    def decode(self, task: str, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        """Viterbi tag ids [B, T] of a padded batch (0 past each length)."""
        return self.heads[task].crf.decode(self.scores(task, batch), batch["length"])

    def decode_with_marginals(self, task: str, batch: dict[str, tf.Tensor], temperatures: tf.Tensor | Sequence[float],
                              every_tag: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """Viterbi tag ids [B, T], and at each of K `temperatures` (calibration.py) each token's CRF marginal
        P(y_i = decoded tag | x), [K, B, T] (0 past lengths), from one pass of the encoder and Viterbi (the path is
        the same at any temperature). With `every_tag`, the marginals of every tag, [K, B, T, N], for tags that
        change after decoding (snap.py)."""
        head = self.heads[task]
        scores = self.scores(task, batch)
        tags = head.crf.decode(scores, batch["length"])

        def at(t: tf.Tensor) -> tf.Tensor:
            marginals = head.crf.marginals(scores, batch["length"], t)
            return marginals if every_tag else tf.gather(marginals, tags, batch_dims=2)

        return tags, tf.map_fn(at, tf.convert_to_tensor(temperatures, tf.float32), fn_output_signature=tf.float32)
