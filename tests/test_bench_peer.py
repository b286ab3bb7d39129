"""experiments/peer_torch.py's CRF against brute-force enumeration, and bench_peer's plan export: the peer pads
exactly the batches the project feeds (training from pipeline.step_dataset, decoding from pipeline.eval_batches)."""
import itertools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from experiments import bench_peer  # noqa: E402
from experiments.peer_torch import CRF, log_partition, sequence_score, viterbi  # noqa: E402


def test_crf_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    emissions = torch.tensor(rng.normal(size=(3, 4, 3)), dtype=torch.float64)
    transitions = torch.tensor(rng.normal(size=(3, 3)), dtype=torch.float64)
    lengths = torch.tensor([4, 2, 1])
    mask = torch.arange(4).unsqueeze(0) < lengths.unsqueeze(1)
    z, best = log_partition(emissions, mask, transitions), viterbi(emissions, mask, transitions)
    for b, n in enumerate(lengths.tolist()):
        paths = [torch.tensor(list(p) + [0] * (4 - n)) for p in itertools.product(range(3), repeat=n)]
        scores = torch.stack([sequence_score(emissions[b:b + 1], p.unsqueeze(0), mask[b:b + 1], transitions)[0]
                              for p in paths])
        torch.testing.assert_close(z[b], torch.logsumexp(scores, 0))
        assert best[b].tolist() == paths[int(scores.argmax())].tolist()
    crf = CRF(3)
    crf.transitions.data = transitions.float()
    tags = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0], [1, 0, 0, 0]])
    want = (z - sequence_score(emissions, tags, mask, transitions)).mean()
    torch.testing.assert_close(crf.nll(emissions.float(), tags, mask), want.float())


def test_crf_matches_the_project_crf() -> None:
    from mtl_tagger import crf

    rng = np.random.default_rng(1)
    emissions, transitions = rng.normal(size=(2, 5, 4)).astype(np.float32), rng.normal(size=(4, 4)).astype(np.float32)
    tags, lengths = rng.integers(0, 4, (2, 5)), np.array([5, 3])
    mask = torch.arange(5).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    theirs = crf.log_likelihood(emissions, tags.astype(np.int32), lengths, transitions).numpy()
    e, t, y = torch.tensor(emissions), torch.tensor(transitions), torch.tensor(tags) * mask
    mine = (sequence_score(e, y, mask, t) - log_partition(e, mask, t)).numpy()
    np.testing.assert_allclose(mine, theirs, rtol=1e-5)
    np.testing.assert_array_equal(viterbi(e, mask, t).numpy(), crf.viterbi_decode(emissions, lengths, transitions)[0])


def test_exported_plans_give_both_sides_the_same_batches(tmp_path: Path) -> None:
    cfg = {"workdir": str(tmp_path), "data_dir": str(tmp_path / "data"), "plan": str(tmp_path / "plans.npz"),
           "flagfile": str(bench_peer.ROOT / "flags" / "smoke.cfg"), "overrides": {"max_len": 200}, "seed": 3,
           "vocab": 300, "train_sentences": 60, "test_sentences": 70, "other_sentences": 20, "train_steps": 4}
    cfg.update(bench_peer.prepare(cfg))
    assert cfg["num_words"] == 300 + 2, "every vocabulary word occurs in training"
    assert cfg["num_tags"] == 41
    loop = bench_peer._loop(cfg, bench_peer.TASK)
    plans = dict(np.load(cfg["plan"]))
    for kind in bench_peer.KINDS:
        assert plans[f"plan_train_{kind}"].shape == (4, 16)
    # Raises unless every step_dataset batch equals the peer's padding of the same plan row.
    inputs = bench_peer.project_train_inputs(cfg, loop, plans, bench_peer.Sentences(plans, "train"))
    lengths = [x[bench_peer.TASK]["length"].numpy() for x in inputs["unbucketed"]]
    assert all(len(n) == 16 for n in lengths)
    from mtl_tagger import pipeline
    from mtl_tagger.tagger import EVAL_BATCH

    test = bench_peer.Sentences(plans, "test")
    examples = pipeline.encode_sentences(loop.run.data.tasks[bench_peer.TASK].test, loop.run.vocab,
                                         bench_peer.TASK, loop.p.max_word_len)
    for (positions, batch), row in zip(pipeline.eval_batches(examples, EVAL_BATCH), plans["plan_decode_bucketed"]):
        np.testing.assert_array_equal(row[row >= 0], positions)
        for k, v in test.batch(row).items():
            np.testing.assert_array_equal(batch[k], v)
    assert sorted(np.concatenate([r[r >= 0] for r in plans["plan_decode_unbucketed"]])) == list(range(70))
