"""Linear-chain CRF head (paper §3.2): its own transition variable around tfa's log-likelihood and Viterbi."""
import tensorflow as tf
import tensorflow_addons as tfa


class CRF(tf.keras.layers.Layer):
    """Holds the transition scores T(y, y') of one task; scores sentences and decodes them.

    Emissions are [batch, time, num_tags] (the dense head's s_i(y|x)); tags [batch, time] int32;
    lengths [batch] int32 (≥ 1). Positions past a sentence's length are ignored by both calls.
    """

    def __init__(self, num_tags: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.num_tags = num_tags

    def build(self, input_shape: tf.TensorShape) -> None:
        """Create the [num_tags, num_tags] transition matrix T(y, y′)."""
        self.transitions = self.add_weight(
            name="transitions",
            shape=(self.num_tags, self.num_tags),
            initializer=tf.keras.initializers.GlorotUniform(),
            trainable=True,
        )
        super().build(input_shape)

    def call(self, emissions: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """Viterbi decode: the best tag sequence per sentence ([batch, time] int32, 0 past the length)."""
        tags, _ = tfa.text.crf_decode(emissions, self.transitions, lengths)
        return tags

    def log_likelihood(self, emissions: tf.Tensor, tags: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """log P(tags | x) per sentence ([batch]): C(x, y) − log Σ_y' exp C(x, y')."""
        ll, _ = tfa.text.crf_log_likelihood(emissions, tags, lengths, self.transitions)
        return ll

    def get_config(self) -> dict:
        """Keras config (for serialisation)."""
        return {**super().get_config(), "num_tags": self.num_tags}
