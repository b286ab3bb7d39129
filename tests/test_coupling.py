"""CouplingLoss against a plain NumPy reading of paper §3.4, plus gradients, masking and config."""
import zlib

import numpy as np
import pytest
import tensorflow as tf

from mtl_tagger.coupling import CouplingLoss, kgram_ids, label_kgrams

TAGS_A = ["O", "B-color", "I-color", "B-base_material"]
TAGS_B = ["O", "B-color", "B-material", "I-material", "B-brand"]
D, K = 6, 3


def _batch() -> dict[str, np.ndarray]:
    """Five anchors, mixed directions; anchor 3 has only padding, padding holds junk (−1 tags, big values)."""
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]], bool)
    direction = np.array([0, 1, 0, 1, 1], np.int32)
    anchor_tag = np.array([1, 2, 3, 0, 4], np.int32)
    neighbor_tag = np.where(direction[:, None] == 0, rng.integers(0, len(TAGS_B), (5, K)),
                            rng.integers(0, len(TAGS_A), (5, K))).astype(np.int32)
    neighbor_tag[~mask] = -1
    neighbor_score = rng.normal(size=(5, K)).astype(np.float32)
    neighbor_score[~mask] = 1e6
    return {
        "direction": direction,
        "anchor_u": rng.normal(size=(5, D)).astype(np.float32),
        "neighbor_u": rng.normal(size=(5, K, D)).astype(np.float32),
        "mask": mask,
        "anchor_tag": anchor_tag,
        "neighbor_tag": neighbor_tag,
        "anchor_score": rng.normal(size=5).astype(np.float32),
        "neighbor_score": neighbor_score,
    }


def _layer(**kw) -> CouplingLoss:
    layer = CouplingLoss(TAGS_A, TAGS_B, window_dim=D, label_dim=4, hash_buckets=64, **kw)
    layer(_batch())  # build
    rng = np.random.default_rng(1)
    layer.a.assign(rng.uniform(0.5, 1.5, D).astype(np.float32))  # distinct a and a′: a mix-up would show
    layer.a_prime.assign(rng.uniform(-1.0, 0.5, D).astype(np.float32))
    return layer


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _reference(batch: dict[str, np.ndarray], a: np.ndarray, a_prime: np.ndarray,
               table: np.ndarray) -> dict[str, float]:
    """The formulas anchor by anchor, with label vectors re-derived from the k-gram strings themselves."""
    def label_vector(name: str) -> np.ndarray:
        return np.mean([table[zlib.crc32(g.encode()) % len(table)] for g in label_kgrams(name, 3)], axis=0)

    out = {"cce": 0.0, "cce_prime": 0.0, "lce": 0.0, "lce_prime": 0.0}
    for b in range(len(batch["direction"])):
        real = np.flatnonzero(batch["mask"][b])
        if real.size == 0:
            continue
        forward = batch["direction"][b] == 0
        anchor_tags, neighbor_tags = (TAGS_A, TAGS_B) if forward else (TAGS_B, TAGS_A)
        diag = a if forward else a_prime
        u = batch["anchor_u"][b]
        alpha = np.array([u @ np.diag(diag) @ batch["neighbor_u"][b, k] for k in real])
        v = label_vector(anchor_tags[batch["anchor_tag"][b]])
        label_logits = np.array([v @ label_vector(neighbor_tags[batch["neighbor_tag"][b, k]]) for k in real])
        gap = np.abs(batch["anchor_score"][b] - batch["neighbor_score"][b, real])
        out["cce" if forward else "cce_prime"] += float(_softmax(alpha) @ gap)
        out["lce" if forward else "lce_prime"] += float(_softmax(label_logits) @ gap)
    return out


def test_errors_match_numpy_reference() -> None:
    layer = _layer()
    batch = _batch()
    got = layer(batch)
    want = _reference(batch, layer.a.numpy(), layer.a_prime.numpy(), layer.label_kgrams.numpy())
    for name, value in want.items():
        assert got[name].numpy() == pytest.approx(value, rel=1e-5), name
        assert value > 0, name  # each error has anchors in this batch
    assert got["total"].numpy() == pytest.approx(sum(want.values()), rel=1e-5)


def test_attention_is_a_distribution_over_real_neighbours() -> None:
    batch = _batch()
    got = _layer()(batch)
    for key in ("attention", "label_attention"):
        att = got[key].numpy()
        assert np.all(att[~batch["mask"]] == 0), key
        has_real = batch["mask"].any(axis=1)
        np.testing.assert_allclose(att[has_real].sum(axis=1), 1.0, rtol=1e-6)
        assert np.all(att[~has_real] == 0), key


def test_gradients_reach_every_weight_and_the_scores() -> None:
    layer = _layer()
    batch = {k: tf.constant(v) for k, v in _batch().items()}
    with tf.GradientTape() as tape:
        tape.watch([batch["anchor_score"], batch["neighbor_score"]])
        total = layer(batch)["total"]
    grads = tape.gradient(total, [layer.a, layer.a_prime, layer.label_kgrams,
                                  batch["anchor_score"], batch["neighbor_score"]])
    for g in grads:
        g = tf.convert_to_tensor(g).numpy()
        assert np.all(np.isfinite(g)) and np.any(g != 0)
    neighbor_grad = grads[-1].numpy()
    assert np.all(neighbor_grad[~batch["mask"].numpy()] == 0)


def test_anchor_without_neighbours_contributes_zero_and_no_nan() -> None:
    layer = _layer()
    batch = _batch()
    only_empty = {k: v[3:4] for k, v in batch.items()}  # direction 1, every neighbour masked
    variables = [layer.a, layer.a_prime, layer.label_kgrams]
    with tf.GradientTape() as tape:
        got = layer(only_empty)
    for name in ("cce", "cce_prime", "lce", "lce_prime", "total"):
        assert got[name].numpy() == 0.0
    for g in tape.gradient(got["total"], variables):
        assert g is None or np.all(np.isfinite(tf.convert_to_tensor(g).numpy()))


def test_label_kgrams_and_shared_table() -> None:
    assert label_kgrams("O", 3) == ["<O>"]
    assert label_kgrams("B-color", 3)[:2] == ["<B-", "B-c"] and label_kgrams("B-color", 3)[-1] == "or>"
    ids, mask = kgram_ids(["O", "B-color"], 3, 64)
    assert ids.shape == (2, 7) and mask.sum(axis=1).tolist() == [1, 7]
    layer = _layer()
    vectors = layer.label_vectors().numpy()
    np.testing.assert_array_equal(vectors[TAGS_A.index("B-color")],
                                  vectors[len(TAGS_A) + TAGS_B.index("B-color")])


def test_default_init_is_scaled_dot_product() -> None:
    layer = CouplingLoss(TAGS_A, TAGS_B, window_dim=16)
    wide = {"anchor_u": np.ones((5, 16), np.float32), "neighbor_u": np.ones((5, K, 16), np.float32)}
    layer(_batch() | wide)
    np.testing.assert_allclose(layer.a.numpy(), 0.25)
    np.testing.assert_allclose(layer.a_prime.numpy(), 0.25)


def test_get_config_round_trip() -> None:
    layer = _layer(attention_init=1.0, label_kgram=2)
    clone = CouplingLoss.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone(_batch())
    clone.set_weights(layer.get_weights())
    batch = _batch()
    np.testing.assert_allclose(clone(batch)["total"].numpy(), layer(batch)["total"].numpy())
