"""Multi-task modes end to end on synthetic verticals: single = one-vertical shared code, shared, coupled with
N verticals, the Fig. 4 analysis per coupled pair and direction, evaluate --compare, resume."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, smoke_params

from mtl_tagger.analysis import alignment_at_1, top_lenders
from mtl_tagger.conll import write_conll
from mtl_tagger.errors import InputError
from mtl_tagger.train import train


def test_single_mode_is_the_default_for_one_vertical(chain_epoch: Path, data_dir: Path, tmp_path: Path) -> None:
    """`chain_epoch` is trained without --mtl_mode."""
    single = train(smoke_params(data_dir, tmp_path / "b", epochs=1, mtl_mode="single"))
    assert json.loads((chain_epoch / "metrics.json").read_text()) == single


THREE = dict(task_a="", tasks="Chain x,Mangal-sutra,Ring")


def evaluations(model_dir: Path) -> list[dict]:
    """The dev evaluations of a model dir's history."""
    return json.loads((model_dir / "history.json").read_text())["evaluations"]


def assert_continues(first: list[dict], model_dir: Path) -> None:
    """The run in `model_dir`, resumed from `first` (its first epoch's evaluations) to two epochs, continued it."""
    history = evaluations(model_dir)
    assert history[:len(first)] == first and len(history) == 2 * len(first), "the second epoch continues the first"
    assert set(json.loads((model_dir / "metrics.json").read_text())) == {"Chain x", "Mangal-sutra", "Ring"}


@pytest.fixture(scope="module")
def first_epoch(three: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A coupled run of the three verticals trained one epoch, and its evaluations; `coupled_dir` resumes it."""
    out = tmp_path_factory.mktemp("coupled") / "m"
    train(smoke_params(three, out, epochs=1, mtl_mode="coupled", **THREE))
    return out, evaluations(out)


@pytest.fixture(scope="module")
def coupled_dir(first_epoch: tuple[Path, list[dict]], three: Path) -> Path:
    """`first_epoch`'s run finished by the train command (smoke budget: two epochs). Resuming it, rather than
    training a second coupled run from scratch, also makes it the second half of the coupled resume test."""
    out = first_epoch[0]
    r = run_cli("train", "--flagfile=flags/smoke.cfg", "--tasks=Chain x,Mangal-sutra,Ring", f"--data_dir={three}",
                f"--model_dir={out}")
    assert r.returncode == 0, r.stderr
    assert "shortlist" in r.stderr and "Borrower-Ring" in r.stdout and "alignment_at_1" in r.stdout
    return out


def test_coupled_n_verticals_writes_every_vertical_and_pair(coupled_dir: Path) -> None:
    metrics = json.loads((coupled_dir / "metrics.json").read_text())
    assert set(metrics) == {"Chain x", "Mangal-sutra", "Ring"}
    directions = json.loads((coupled_dir / "analysis.json").read_text())["directions"]
    pairs = {"Chain x:Mangal-sutra", "Chain x:Ring", "Mangal-sutra:Ring"}
    assert {d["pair"] for d in directions} == pairs and len(directions) == 6
    for d in directions:
        matrix = np.array(d["attention"])
        assert matrix.shape == (len(d["tags_a"]), len(d["tags_b"]))
        sums = matrix.sum(axis=1)
        assert np.allclose(sums[sums > 0], 1.0, atol=1e-4)
        assert d["top_lenders"] and 0.0 <= d["alignment_at_1"] <= 1.0 and 0.0 <= d["alignment_at_1_uniform"] <= 1.0
        stem = coupled_dir / "attention" / f"{d['borrower']}__{d['lender']}"
        assert stem.with_suffix(".csv").read_text().startswith(f"{d['borrower']} \\ {d['lender']},O,")
        assert stem.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((coupled_dir / "shortlist").glob("*.npz"))) == 3, "one cached shortlist per pair"
    scalars = {p.name for p in (coupled_dir / "tensorboard").glob("events*")}
    assert scalars


def test_evaluate_compare_on_an_n_vertical_run(coupled_dir: Path, three: Path, tmp_path: Path) -> None:
    train(smoke_params(three, tmp_path / "s", task_a="Ring", epochs=1))
    r = run_cli("evaluate", f"--model_dir={tmp_path / 's'}", f"--compare={coupled_dir}", "--top=3")
    assert r.returncode == 0, r.stderr
    assert "== Ring" in r.stdout and "== Chain x" not in r.stdout
    assert "Top 3 tags by F1 gain" in r.stdout and "#Train" in r.stdout


def test_couple_lists_pairs(three: Path, tmp_path: Path) -> None:
    """--couple chooses the pairs; the run also takes its coupling minibatches from its own (--coupling_within)."""
    metrics = train(smoke_params(three, tmp_path / "m", epochs=1, couple="Ring:Chain x", coupling_within=True,
                                 **THREE))
    directions = json.loads((tmp_path / "m" / "analysis.json").read_text())["directions"]
    assert [(d["borrower"], d["lender"]) for d in directions] == [("Ring", "Chain x"), ("Chain x", "Ring")]
    assert set(metrics) == {"Chain x", "Mangal-sutra", "Ring"}
    assert json.loads((tmp_path / "m" / "params.json").read_text())["coupling_within"] is True


def test_resume_with_n_verticals_shared(three: Path, tmp_path: Path) -> None:
    train(smoke_params(three, tmp_path / "m", epochs=1, mtl_mode="shared", **THREE))
    first = evaluations(tmp_path / "m")
    train(smoke_params(three, tmp_path / "m", epochs=2, mtl_mode="shared", **THREE))
    assert_continues(first, tmp_path / "m")


def test_resume_with_n_verticals_coupled(first_epoch: tuple[Path, list[dict]], coupled_dir: Path) -> None:
    assert_continues(first_epoch[1], coupled_dir)


def test_incompatible_model_dir(chain_epoch: Path, data_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(chain_epoch, tmp_path / "m")
    with pytest.raises(InputError, match=r"tasks: 'Chain x' -> 'Chain x,Mangal-sutra'"):
        train(smoke_params(data_dir, tmp_path / "m", epochs=1, task_b="Mangal-sutra"))


def test_missing_second_vertical(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no vertical 'Ring'"):
        train(smoke_params(data_dir, tmp_path / "m", task_b="Ring"))
    assert not (tmp_path / "m").exists()


def test_empty_shortlist_says_which_threshold_gives_pairs(data_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    (d / "Chain x").symlink_to(data_dir / "Chain x")
    (d / "Other").mkdir()
    for split in ("train", "test"):
        write_conll(d / "Other" / f"{split}.conll",
                    [([f"zz{i}", f"qq{i}", "yy"], [f"B-kind{i % 2}", f"I-kind{i % 2}", "O"]) for i in range(30)])
    with pytest.raises(InputError, match=r"--shortlist_threshold=0.9: the shortlist of Chain x and Other is empty.*"
                                         r"try --shortlist_threshold="):
        train(smoke_params(d, tmp_path / "m", task_b="Other", shortlist_threshold=0.9))
    assert not (tmp_path / "m").exists(), "a refused run leaves no model dir behind"


def test_top_lenders_and_alignment_at_1() -> None:
    matrix = np.array([[0, 0, 0], [0, 0.6, 0.4], [0, 0, 1.0]])
    counts = np.array([[0, 0, 0], [0, 1, 2], [0, 0, 1]])
    lenders = top_lenders(matrix, counts, ["O", "B-x", "B-y"], ["O", "B-x", "B-y"])
    assert [(r["tag"], r["lender"], r["pairs"]) for r in lenders] == [("B-x", "B-x", 3), ("B-y", "B-y", 1)]
    assert alignment_at_1(lenders, ["O", "B-x", "B-y"]) == (1.0, 2)
    assert alignment_at_1(lenders, ["O", "B-z"]) == (None, 0)
