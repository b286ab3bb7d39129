"""Adam with global gradient-norm clipping, optional decoupled weight decay (AdamW) and an optional proximal L1 step,
as plain TensorFlow variables.

The update is Keras' Adam (β1 0.9, β2 0.999, ε 1e-7, bias correction folded into the step size), written
out so that its slots checkpoint and restore the same way on every supported TensorFlow and Keras.
Sparse gradients (the word embedding's) are made dense first: Adam's moments decay on every row anyway.
Weight decay, as Keras' AdamW, shrinks each variable of rank ≥ 2 (kernels, tables, CRF transitions; not biases) by
step size × `weight_decay` before its update: a pull towards 0 that Adam's scaling of the gradient does not undo, as
it would an L2 term's. An L1 weight per variable (`l1`) adds a proximal step after the update: each entry moves
step size × its weight towards 0 and stops at 0, so entries that the gradients do not push that far each update end
at exactly 0, as the feature CRF's c1 makes its feature weights sparse (the weight is in Adam's step units, not on
c1's scale).
"""
import math
from collections.abc import Sequence

import tensorflow as tf


def decayed(learning_rate: float, step: tf.Tensor, decay: str, steps: int) -> tf.Tensor:
    """The step size at `step` (float) of a schedule that falls from `learning_rate` to 0 at `steps`: none (constant),
    linear or cosine (half a cosine); 0 after `steps`."""
    if decay == "none":
        return tf.constant(learning_rate, tf.float32)
    done = tf.minimum(step / float(max(steps, 1)), 1.0)
    return learning_rate * ((1.0 - done) if decay == "linear" else 0.5 * (1.0 + tf.cos(math.pi * done)))


class Adam(tf.Module):
    """Adam over a fixed list of variables; `iterations` counts applied updates, the step size follows `decay`
    over `decay_steps` updates (`decayed`), variables of rank ≥ 2 decay by `weight_decay`, and each variable takes the
    proximal L1 step of its weight in `l1` (none when empty; module docstring)."""

    def __init__(self, variables: Sequence[tf.Variable], learning_rate: float, clip_norm: float = 0.0,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7, decay: str = "none",
                 decay_steps: int = 0, weight_decay: float = 0.0, l1: Sequence[float] = ()) -> None:
        super().__init__(name="adam")
        self.learning_rate, self.clip_norm = learning_rate, clip_norm
        self.decay, self.decay_steps = decay, decay_steps
        self.weight_decays = [weight_decay if len(v.shape) >= 2 else 0.0 for v in variables]
        self.l1 = list(l1) or [0.0] * len(variables)
        if len(self.l1) != len(variables):
            raise ValueError(f"{len(self.l1)} L1 weights for {len(variables)} variables")
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name="m") for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name="v") for v in variables]

    def apply(self, grads: Sequence[tf.Tensor | tf.IndexedSlices | None],
              variables: Sequence[tf.Variable]) -> tf.Tensor:
        """One update of `variables` (the list given at construction, same order); returns the gradient norm."""
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]
        norm = tf.linalg.global_norm(grads)
        if self.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=norm)
        t = tf.cast(self.iterations + 1, tf.float32)
        beta_1_power, beta_2_power = tf.pow(self.beta_1, t), tf.pow(self.beta_2, t)
        lr = decayed(self.learning_rate, t - 1.0, self.decay, self.decay_steps)
        for g, var, m, v, wd, l1 in zip(grads, variables, self.m, self.v, self.weight_decays, self.l1):
            if wd:
                var.assign_sub(var * (lr * wd))
            if isinstance(var, tf.distribute.DistributedValues):  # a strategy's copies: its assignments
                m.assign_add((g - m) * (1.0 - self.beta_1))
                v.assign_add((tf.square(g) - v) * (1.0 - self.beta_2))
                alpha = lr * tf.sqrt(1.0 - beta_2_power) / (1.0 - beta_1_power)
                var.assign_sub(m * alpha / (tf.sqrt(v) + self.epsilon))
            else:  # the same update as one fused kernel, ~3× faster than the assignments on the word table
                tf.raw_ops.ResourceApplyAdam(
                    var=var.handle, m=m.handle, v=v.handle, beta1_power=beta_1_power, beta2_power=beta_2_power,
                    lr=lr, beta1=self.beta_1, beta2=self.beta_2, epsilon=self.epsilon, grad=g)
            if l1:  # the proximal step: each entry towards 0 by at most lr × l1, stopping at 0
                var.assign_sub(tf.clip_by_value(var, -lr * l1, lr * l1))
        self.iterations.assign_add(1)
        return norm


class Average(tf.Module):
    """An exponential moving average of variables (Polyak averaging), what dev scoring and checkpoints of the
    selected steps use: it smooths the step-to-step noise that small dev sets make selection chase.

    The decay grows as min(decay, (1 + n) / (10 + n)) over the first updates, as tf.train.ExponentialMovingAverage
    does, so the average is not anchored to the initial weights.
    """

    def __init__(self, variables: Sequence[tf.Variable], decay: float) -> None:
        super().__init__(name="average")
        self.decay = decay
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")
        self.shadow = [tf.Variable(v, trainable=False, name="shadow") for v in variables]

    def update(self, variables: Sequence[tf.Variable]) -> None:
        """Move the average towards the variables' current values."""
        n = tf.cast(self.updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + n) / (10.0 + n))
        for s, v in zip(self.shadow, variables):
            s.assign_sub((s - v) * (1.0 - decay))
        self.updates.assign_add(1)

    def swap(self, variables: Sequence[tf.Variable]) -> None:
        """Exchange the variables' values with the average's (twice restores them)."""
        for s, v in zip(self.shadow, variables):
            held = tf.identity(v)
            v.assign(s)
            s.assign(held)
