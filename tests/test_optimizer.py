"""Our Adam is Keras' Adam (AdamW with weight decay) with global-norm clipping and an optional proximal L1 step; the
average is Polyak averaging."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import smoke_params

from mtl_tagger.corpus import load_data
from mtl_tagger.loop import Loop
from mtl_tagger.optimizer import Adam, Average
from mtl_tagger.run import build


@pytest.mark.parametrize("weight_decay, decay", [(0.0, "none"), (0.5, "none"), (0.5, "linear")])
def test_adam_equals_keras_adam_or_adamw_with_global_clipping(weight_decay: float, decay: str) -> None:
    """With weight decay, Keras' AdamW with the bias excluded: the matrix decays, the bias does not."""
    rng = np.random.default_rng(0)
    ours = [tf.Variable(rng.normal(size=(5, 3)).astype(np.float32)), tf.Variable(rng.normal(size=4).astype(np.float32))]
    theirs, plain = [tf.Variable(v.numpy()) for v in ours], [tf.Variable(v.numpy()) for v in ours]
    adam = Adam(ours, 0.01, clip_norm=1.0, decay=decay, decay_steps=8, weight_decay=weight_decay)
    no_decay = Adam(plain, 0.01, clip_norm=1.0, decay=decay, decay_steps=8)
    lr = tf.keras.optimizers.schedules.PolynomialDecay(0.01, 8, end_learning_rate=0.0) if decay == "linear" else 0.01
    if weight_decay:
        keras = tf.keras.optimizers.AdamW(lr, weight_decay=weight_decay, global_clipnorm=1.0)
        keras.exclude_from_weight_decay(var_list=[theirs[1]])
    else:
        keras = tf.keras.optimizers.Adam(lr, global_clipnorm=1.0)
    for _ in range(6):
        grads = [tf.constant(rng.normal(scale=3.0, size=v.shape).astype(np.float32)) for v in ours]
        adam.apply(grads, ours)
        no_decay.apply(grads, plain)
        keras.apply_gradients(zip(grads, theirs))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), np.asarray(b), atol=1e-6)
    assert int(adam.iterations) == 6
    assert np.allclose(ours[0].numpy(), plain[0].numpy(), atol=1e-4) == (not weight_decay)
    np.testing.assert_array_equal(ours[1].numpy(), plain[1].numpy())


@pytest.mark.parametrize("decay, schedule", [
    ("linear", lambda: tf.keras.optimizers.schedules.PolynomialDecay(0.01, 4, end_learning_rate=0.0, power=1.0)),
    ("cosine", lambda: tf.keras.optimizers.schedules.CosineDecay(0.01, 4)),
])
def test_adam_decays_its_step_size_as_keras_schedules_do(decay: str, schedule) -> None:
    """The step size falls to 0 at decay_steps and stays there: the last updates of 6 move nothing."""
    rng = np.random.default_rng(1)
    ours = [tf.Variable(rng.normal(size=(3, 2)).astype(np.float32))]
    theirs = [tf.Variable(ours[0].numpy())]
    adam, keras = Adam(ours, 0.01, decay=decay, decay_steps=4), tf.keras.optimizers.Adam(schedule())
    for step in range(6):
        grads = [tf.constant(rng.normal(size=(3, 2)).astype(np.float32))]
        before = ours[0].numpy()
        adam.apply(grads, ours)
        keras.apply_gradients(zip(grads, theirs))
        np.testing.assert_allclose(ours[0].numpy(), np.asarray(theirs[0]), atol=1e-6)
        assert np.array_equal(ours[0].numpy(), before) == (step >= 4)


def test_adam_takes_sparse_and_missing_gradients() -> None:
    table = tf.Variable(np.ones((4, 2), np.float32))
    other = tf.Variable(np.ones(3, np.float32))
    adam = Adam([table, other], 0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, [1, 1, 3]))
    grads = tape.gradient(loss, [table, other])
    assert isinstance(grads[0], tf.IndexedSlices) and grads[1] is None
    adam.apply(grads, [table, other])
    moved = np.abs(table.numpy() - 1.0).sum(axis=1) > 0
    assert moved.tolist() == [False, True, False, True] and np.all(other.numpy() == 1.0)


def test_average_tracks_and_swaps() -> None:
    v = tf.Variable([0.0, 0.0])
    avg = Average([v], decay=0.5)
    for value in ([10.0, 10.0], [20.0, 20.0]):
        v.assign(value)
        avg.update([v])
    # decays min(0.5, 1/10) = 0.1, then min(0.5, 2/11): shadow 0 → 9 → 9 + (20 − 9)(9/11)
    want = 9.0 + 11.0 * 9.0 / 11.0
    avg.swap([v])
    assert v.numpy() == pytest.approx([want, want])
    avg.swap([v])
    assert v.numpy() == pytest.approx([20.0, 20.0])


def test_l1_is_a_proximal_step_after_the_update() -> None:
    """Each entry of a variable with an L1 weight moves lr × weight towards 0 after Adam's update and stops at 0;
    a variable without one takes Adam's update alone."""
    rng = np.random.default_rng(2)
    start = [rng.normal(scale=0.01, size=(6, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)]
    ours, plain = [tf.Variable(v) for v in start], [tf.Variable(v) for v in start]
    adam, reference = Adam(ours, 0.01, l1=[0.5, 0.0]), Adam(plain, 0.01)
    for _ in range(3):
        grads = [tf.constant(rng.normal(size=v.shape).astype(np.float32)) for v in ours]
        reference.apply(grads, plain)
        adam.apply(grads, ours)
        want = np.sign(plain[0].numpy()) * np.maximum(np.abs(plain[0].numpy()) - 0.01 * 0.5, 0.0)
        np.testing.assert_allclose(ours[0].numpy(), want, atol=1e-7)
        plain[0].assign(want)  # the next update starts where the proximal step left the variable
    np.testing.assert_array_equal(ours[1].numpy(), plain[1].numpy())
    assert 0 < np.sum(ours[0].numpy() == 0.0) < ours[0].numpy().size, "some entries end at exactly 0, not all"


def test_the_l1_weight_reaches_the_spelling_tables_alone(data_dir: Path, tmp_path: Path) -> None:
    """--lexical_l1 goes to each head's spelling table ([buckets, tags]) and to no other variable of a coupled run, the
    coupler's included."""
    p = smoke_params(data_dir, tmp_path / "m", task_a="", tasks="Chain x,Mangal-sutra", mtl_mode="coupled",
                     lexical_l1=0.25)
    data = load_data(p)
    run = build(p, data, tmp_path / "m", write=False)
    loop = Loop(run, {"evaluations": [], "best": {}}, lambda vertical: {})
    coupler = {v.ref() for v in run.coupler.trainable_variables}
    assert coupler and coupler <= {v.ref() for v in loop.variables}

    def table(v: tf.Variable) -> bool:  # the coupler's hashed label k-grams are a [buckets, ·] table too
        return v.name == "lexical:0"

    assert sorted(v.shape.as_list() for v in loop.variables if table(v)) == sorted(
        [p.lexical_buckets, len(data.vocab.tags[t])] for t in p.names)
    assert loop.optimizer.l1 == [0.25 if table(v) else 0.0 for v in loop.variables]
