"""The network (paper §3.1–3.3): a shared encoder (word + char embeddings → BiLSTM) and one head per task.

The encoder is its own Keras functional model so the multi-task model can share it between the two
task heads; a head is a Dense layer giving emission scores s_i(y|x) plus that task's CRF.
"""
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from mtl_tagger.bilstm import FusedBiLSTM
from mtl_tagger.crf import CRF
from mtl_tagger.params import Params


class CharEncoder(tf.keras.layers.Layer):
    """Per-word character encoder: BiLSTM final states (Lample et al.) or CNN + max-pool, [B, T, C] → [B, T, F]."""

    def __init__(self, num_chars: int, char_dim: int, hidden: int, kind: str, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.embedding = tf.keras.layers.Embedding(num_chars, char_dim, name="char_embedding")
        if kind == "lstm":
            self.encoder = tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(hidden), name="char_bilstm")
        else:
            self.encoder = tf.keras.layers.Conv1D(hidden, 3, padding="same", activation="tanh", name="char_cnn")
        self.kind = kind

    def call(self, chars: tf.Tensor) -> tf.Tensor:
        """Encode every word slot's characters; all-padding slots give the encoder's empty output."""
        shape = tf.shape(chars)
        flat = tf.reshape(chars, [-1, shape[2]])  # one row per word slot
        mask = flat > 0
        x = self.embedding(flat)
        if self.kind == "lstm":
            out = self.encoder(x, mask=mask)
        else:
            h = self.encoder(x)
            out = tf.reduce_max(tf.where(mask[..., None], h, -1.0), axis=1)  # tanh ≥ -1: padding never wins
        return tf.reshape(out, [shape[0], shape[1], out.shape[-1]])


def build_encoder(p: Params, num_words: int, num_chars: int) -> tf.keras.Model:
    """Functional encoder: (word ids [B,T], char ids [B,T,C]) → context vectors h [B,T,2·hidden], masked."""
    words = tf.keras.Input([None], dtype=tf.int32, name="words")
    chars = tf.keras.Input([None, None], dtype=tf.int32, name="chars")
    scale = float(np.sqrt(3.0 / p.word_dim))
    word_emb = tf.keras.layers.Embedding(
        num_words, p.word_dim, mask_zero=True, name="word_embedding",
        embeddings_initializer=tf.keras.initializers.RandomUniform(-scale, scale),
    )(words)
    char_vec = CharEncoder(num_chars, p.char_dim, p.char_hidden, p.char_encoder, name="char_encoder")(chars)
    x = tf.keras.layers.Concatenate(name="word_repr")([word_emb, char_vec])
    x = tf.keras.layers.Dropout(p.dropout, name="embedding_dropout")(x)
    if p.lstm_impl == "fused":  # same function, weights and checkpoint paths; faster on CPU (bilstm.py)
        h = FusedBiLSTM(p.hidden_size, name="bilstm")(x)
    else:
        h = tf.keras.layers.Bidirectional(
            tf.keras.layers.LSTM(p.hidden_size, return_sequences=True), name="bilstm")(x)
    h = tf.keras.layers.Dropout(p.dropout, name="context_dropout")(h)
    return tf.keras.Model([words, chars], h, name="encoder")


class TaggerNet(tf.Module):
    """Shared encoder + one (Dense → CRF) head per task; everything a checkpoint holds about the model."""

    def __init__(self, p: Params, num_words: int, num_chars: int, tags: dict[str, Sequence[str]]) -> None:
        super().__init__(name="tagger_net")
        self.encoder = build_encoder(p, num_words, num_chars)
        self.dense = {t: tf.keras.layers.Dense(len(names), name=f"dense_{i}") for i, (t, names) in
                      enumerate(tags.items())}
        self.crf = {t: CRF(len(names), name=f"crf_{i}") for i, (t, names) in enumerate(tags.items())}
        width = 2 * p.hidden_size
        for t, names in tags.items():
            self.dense[t].build([None, None, width])
            self.crf[t].build([None, None, len(names)])

    @property
    def word_embeddings(self) -> tf.Variable:
        """The trainable word embedding table (the coupling attention reads windows from it)."""
        return self.encoder.get_layer("word_embedding").embeddings

    def set_word_embeddings(self, matrix: np.ndarray) -> None:
        """Initialise the word embedding table (e.g. from pretrained vectors)."""
        self.word_embeddings.assign(matrix)

    def window_vectors(self, ids: tf.Tensor) -> tf.Tensor:
        """u: the concatenated trainable embeddings of word-id windows [..., W] → [..., W·d], zero past edges."""
        table = self.word_embeddings
        vec = tf.gather(table, ids) * tf.cast(ids > 0, table.dtype)[..., None]
        return tf.reshape(vec, tf.concat([tf.shape(ids)[:-1], [-1]], axis=0))

    def encode(self, batch: dict[str, tf.Tensor], training: bool) -> tf.Tensor:
        """Context vectors h for a padded batch."""
        return self.encoder([batch["words"], batch["chars"]], training=training)

    def emissions(self, task: str, h: tf.Tensor) -> tf.Tensor:
        """Emission scores s_i(·|x) of `task`'s head for context vectors h."""
        return self.dense[task](h)

    def crf_loss(self, task: str, batch: dict[str, tf.Tensor], training: bool) -> tf.Tensor:
        """Mean negative log-likelihood of the gold tags over the batch's sentences."""
        scores = self.emissions(task, self.encode(batch, training))
        return -tf.reduce_mean(self.crf[task].log_likelihood(scores, batch["tags"], batch["length"]))

    def decode(self, task: str, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        """Viterbi tag ids [B, T] for a padded batch."""
        return self.crf[task](self.emissions(task, self.encode(batch, False)), batch["length"])
