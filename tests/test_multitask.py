"""Multi-task modes end to end on synthetic verticals: single = foundation, shared, coupled, analysis, resume."""
import json
from pathlib import Path

import numpy as np
import pytest
from absl import logging
from conftest import run_cli, smoke_params

from mtl_tagger.analysis import alignment_at_1, label_attention, top_lenders
from mtl_tagger.conll import write_conll
from mtl_tagger.errors import InputError
from mtl_tagger.pipeline import ShortlistData
from mtl_tagger.shortlist import Contexts
from mtl_tagger.training import train


def test_single_mode_reproduces_the_foundation_model(data_dir: Path, tmp_path: Path) -> None:
    default = train(smoke_params(data_dir, tmp_path / "a", epochs=1))
    single = train(smoke_params(data_dir, tmp_path / "b", epochs=1, mtl_mode="single"))
    assert default == single


@pytest.fixture(scope="module")
def coupled_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coupled") / "m"
    r = run_cli("train", "--flagfile=flags/smoke.cfg", "--task_a=Chain x", "--task_b=Mangal-sutra",
                f"--data_dir={data_dir}", f"--model_dir={out}")
    assert r.returncode == 0, r.stderr
    assert "shortlist" in r.stderr and "Borrower-Chain x" in r.stdout and "alignment_at_1" in r.stdout
    return out


def test_coupled_writes_both_tasks_and_analysis(coupled_dir: Path) -> None:
    metrics = json.loads((coupled_dir / "metrics.json").read_text())
    assert set(metrics) == {"Chain x", "Mangal-sutra"}
    analysis = json.loads((coupled_dir / "analysis.json").read_text())
    assert analysis["borrower"] == "Chain x" and analysis["lender"] == "Mangal-sutra"
    matrix = np.array(analysis["attention"])
    assert matrix.shape == (len(analysis["tags_a"]), len(analysis["tags_b"]))
    sums = matrix.sum(axis=1)
    assert np.allclose(sums[sums > 0], 1.0, atol=1e-4)
    assert analysis["top_lenders"] and 0.0 <= analysis["alignment_at_1"] <= 1.0
    assert (coupled_dir / "attention.csv").read_text().startswith("Chain x \\ Mangal-sutra,O,")
    assert (coupled_dir / "attention.png").read_bytes()[:4] == b"\x89PNG"
    assert list((coupled_dir / "shortlist").glob("*.npz")), "the shortlist is cached in the model dir"


def test_evaluate_compare_prints_tables_3_and_4(coupled_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    train(smoke_params(data_dir, tmp_path / "s", epochs=1))
    r = run_cli("evaluate", f"--model_dir={tmp_path / 's'}", f"--compare={coupled_dir}", "--top=3")
    assert r.returncode == 0, r.stderr
    assert "== Chain x" in r.stdout and "Mangal-sutra" not in r.stdout.split("==")[1].split("\n")[0]
    assert "Top 3 tags by F1 gain" in r.stdout and "#Train" in r.stdout


@pytest.mark.parametrize("mode", ["shared", "coupled"])
def test_resume_in_multitask_modes(mode: str, data_dir: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    p = dict(task_b="Mangal-sutra", mtl_mode=mode)
    train(smoke_params(data_dir, tmp_path / "m", epochs=1, **p))
    infos: list[str] = []
    monkeypatch.setattr(logging, "info", lambda msg, *a: infos.append(msg % a))
    results = train(smoke_params(data_dir, tmp_path / "m", epochs=2, **p))
    assert any("resuming from" in x and "epoch 1" in x for x in infos), infos
    assert set(results) == {"Chain x", "Mangal-sutra"}


def test_incompatible_model_dir(data_dir: Path, tmp_path: Path) -> None:
    train(smoke_params(data_dir, tmp_path / "m", epochs=1))
    with pytest.raises(InputError, match=r"task_b: '' -> 'Mangal-sutra'"):
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
    with pytest.raises(InputError, match=r"--shortlist_threshold=0.9: the shortlist is empty.*try "
                                         r"--shortlist_threshold="):
        train(smoke_params(d, tmp_path / "m", task_b="Other", shortlist_threshold=0.9))
    assert not (tmp_path / "m").exists(), "a refused run leaves no model dir behind"


def _toy_shortlist() -> ShortlistData:
    ctx = Contexts(np.zeros(3, np.int32), np.arange(3, dtype=np.int32), np.ones((3, 5), np.int32))
    return ShortlistData(contexts=(ctx, ctx), gold=(np.array([1, 2, 1]), np.array([1, 2, 2])),
                         neighbors=(np.array([[0, 1], [1, -1], [2, -1]]), np.array([[0, -1], [-1, -1], [-1, -1]])),
                         anchors=np.array([[0, 0], [0, 1], [0, 2], [1, 0]], np.int32))


def test_label_attention_groups_by_gold_tags_and_normalises_rows() -> None:
    data = _toy_shortlist()
    attention = np.array([[0.75, 0.25], [1.0, 0.0], [1.0, 0.0]], np.float32)
    matrix, counts = label_attention(data, attention, num_a=3, num_b=3)
    # tag_a 1: pairs (1→1, 0.75), (1→2, 0.25), (1→2, 1.0): means 0.75 and 0.625 → normalised.
    assert counts.tolist() == [[0, 0, 0], [0, 1, 2], [0, 0, 1]]
    assert matrix[1].tolist() == pytest.approx([0.0, 0.75 / 1.375, 0.625 / 1.375])
    assert matrix[2].tolist() == pytest.approx([0.0, 0.0, 1.0]) and matrix[0].sum() == 0
    lenders = top_lenders(matrix, counts, ["O", "B-x", "B-y"], ["O", "B-x", "B-y"])
    assert [(r["tag"], r["lender"], r["pairs"]) for r in lenders] == [("B-x", "B-x", 3), ("B-y", "B-y", 1)]
    assert alignment_at_1(lenders, ["O", "B-x", "B-y"]) == (1.0, 2)
    assert alignment_at_1(lenders, ["O", "B-z"]) == (None, 0)
