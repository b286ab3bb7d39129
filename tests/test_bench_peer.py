"""experiments/peer_torch.py's CRF against brute-force enumeration, bench_peer's plan export (the peer pads exactly
the batches the project feeds: training from pipeline.step_dataset, decoding from pipeline.eval_batches), and both
sides' --profile children. The project's side runs without torch (the `peer` extra)."""
import itertools

import numpy as np
import pytest
from conftest import experiments_stack

from experiments import bench_peer
from experiments.common import KINDS, Sentences

try:
    import torch

    from experiments import peer_torch
except ImportError:  # the peer extra is not installed
    torch = peer_torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch (the peer extra) is not installed")

pytestmark = experiments_stack


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The benchmark's config after `prepare` on a tiny configuration (flags/smoke.cfg): data, plans, sizes."""
    tmp_path = tmp_path_factory.mktemp("bench_peer")
    cfg = {"workdir": str(tmp_path), "data_dir": str(tmp_path / "data"), "plan": str(tmp_path / "plans.npz"),
           "flagfile": str(bench_peer.ROOT / "flags" / "smoke.cfg"), "overrides": {"max_len": 200}, "seed": 3,
           "vocab": 300, "train_sentences": 60, "test_sentences": 70, "other_sentences": 20, "train_steps": 4}
    cfg.update(bench_peer.prepare(cfg))
    return cfg


@needs_torch
def test_crf_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    emissions = torch.tensor(rng.normal(size=(3, 4, 3)), dtype=torch.float64)
    transitions = torch.tensor(rng.normal(size=(3, 3)), dtype=torch.float64)
    lengths = torch.tensor([4, 2, 1])
    mask = torch.arange(4).unsqueeze(0) < lengths.unsqueeze(1)
    z, best = peer_torch.log_partition(emissions, mask, transitions), peer_torch.viterbi(emissions, mask, transitions)
    for b, n in enumerate(lengths.tolist()):
        paths = [torch.tensor(list(p) + [0] * (4 - n)) for p in itertools.product(range(3), repeat=n)]
        scores = torch.stack([peer_torch.sequence_score(emissions[b:b + 1], p.unsqueeze(0), mask[b:b + 1],
                                                        transitions)[0] for p in paths])
        torch.testing.assert_close(z[b], torch.logsumexp(scores, 0))
        assert best[b].tolist() == paths[int(scores.argmax())].tolist()
    crf = peer_torch.CRF(3)
    crf.transitions.data = transitions.float()
    tags = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0], [1, 0, 0, 0]])
    want = (z - peer_torch.sequence_score(emissions, tags, mask, transitions)).mean()
    torch.testing.assert_close(crf.nll(emissions.float(), tags, mask), want.float())


@needs_torch
def test_crf_matches_the_project_crf() -> None:
    from mtl_tagger import crf

    rng = np.random.default_rng(1)
    emissions, transitions = rng.normal(size=(2, 5, 4)).astype(np.float32), rng.normal(size=(4, 4)).astype(np.float32)
    tags, lengths = rng.integers(0, 4, (2, 5)), np.array([5, 3])
    mask = torch.arange(5).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    theirs = crf.log_likelihood(emissions, tags.astype(np.int32), lengths, transitions).numpy()
    e, t, y = torch.tensor(emissions), torch.tensor(transitions), torch.tensor(tags) * mask
    mine = (peer_torch.sequence_score(e, y, mask, t) - peer_torch.log_partition(e, mask, t)).numpy()
    np.testing.assert_allclose(mine, theirs, rtol=1e-5)
    np.testing.assert_array_equal(peer_torch.viterbi(e, mask, t).numpy(),
                                  crf.viterbi_decode(emissions, lengths, transitions)[0])


def test_exported_plans_give_both_sides_the_same_batches(prepared: dict) -> None:
    cfg = prepared
    assert cfg["num_words"] == 300 + 2, "every vocabulary word occurs in training"
    assert cfg["num_tags"] == 41
    loop = bench_peer._loop(cfg, bench_peer.TASK)
    plans = dict(np.load(cfg["plan"]))
    for kind in KINDS:
        assert plans[f"plan_train_{kind}"].shape == (4, 16)
    # Raises unless every step_dataset batch equals the peer's padding of the same plan row.
    inputs = bench_peer.project_train_inputs(cfg, loop, plans, Sentences(plans, "train"))
    lengths = [x[bench_peer.TASK]["length"].numpy() for x in inputs["unbucketed"]]
    assert all(len(n) == 16 for n in lengths)
    # Raises unless every decoding batch equals the peer's; eval_batches' order is the exported bucketed plan.
    decoding = bench_peer.project_decode_inputs(loop, plans)
    assert [len(b["length"]) for b in decoding["bucketed"]] == [64, 6]
    assert sorted(np.concatenate([r[r >= 0] for r in plans["plan_decode_unbucketed"]])) == list(range(70))


def _check_profile(profile: dict, leave_out: set[str]) -> None:
    """Every part of PARTS but `leave_out` timed, as a positive number of ms per batch, on the bucketed batches."""
    for work, labels in bench_peer.PARTS.items():
        ms = profile[work]["ms_per_batch"]
        assert set(ms) == set(labels) - leave_out, work
        assert all(v > 0 for v in ms.values()), ms
        assert profile[work]["batches"] == (4 if work == "train" else 2)
        assert profile[work]["tokens"] > 0


def test_project_profile_times_every_part(prepared: dict) -> None:
    _check_profile(bench_peer.profile_child(prepared), set())


@needs_torch
def test_peer_profile_times_every_part_it_has(prepared: dict) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy core stalls torch's other threads: a test beside other tests stays fast
    try:
        _check_profile(peer_torch.measure_parts(prepared), {"pipeline", "marginals", "step_marginals"})
    finally:
        torch.set_num_threads(threads)
