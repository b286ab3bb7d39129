"""The feature-CRF baseline (experiments/crf_baseline.py) end to end on synthetic verticals."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, experiments_stack
from datagen import make_data_dir

from experiments.crf_baseline import best_entry, sentence_features, short_shape, word_shape
from mtl_tagger.conll import read_conll
from mtl_tagger.metrics import evaluate_tags

pytestmark = experiments_stack

# c1=100 wipes out every feature weight (dev macro-F1 0), so the choice of 0.1 is a real selection.
GRID = ["--c1=100,0.1", "--c2=0.05"]


def _run(*args: str, pythonpath: str = str(REPO)) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run([sys.executable, "-m", "experiments.crf_baseline", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def _read_predictions(path: Path) -> list[tuple[list[str], list[str], list[str]]]:
    """(tokens, gold, pred) per sentence of a token<TAB>gold<TAB>pred file."""
    sentences, rows = [], []
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line:
            rows.append(line.split("\t"))
            assert len(rows[-1]) == 3, line
        elif rows:
            sentences.append(tuple(list(col) for col in zip(*rows)))
            rows = []
    assert not rows, "the file ends with a blank line"
    return sentences


def _error_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_data_dir(tmp_path_factory.mktemp("crf_data"))


def test_all_verticals(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("sklearn_crfsuite")
    out = tmp_path / "out"
    r = _run(f"--data_dir={data}", "--task=all", f"--out={out}", *GRID)
    assert r.returncode == 0, r.stderr
    names = sorted(p.parent.name for p in data.glob("*/test.conll"))
    assert {"Chain x", "Mangal-sutra"} <= set(names)
    expected = sorted(f"{n}{ext}" for n in names for ext in (".json", ".test.conll"))
    assert sorted(p.name for p in out.iterdir()) == expected
    for name in names:
        n_train = len(read_conll(data / name / "train.conll"))
        record = json.loads((out / f"{name}.json").read_text())
        test = read_conll(data / name / "test.conll")
        predictions = _read_predictions(out / f"{name}.test.conll")
        assert len(predictions) == len(test)
        assert [tuple(tokens) for tokens, _, _ in predictions] == [s.tokens for s in test]
        assert [tuple(gold) for _, gold, _ in predictions] == [s.tags for s in test]
        gold, pred = [g for _, g, _ in predictions], [p for _, _, p in predictions]
        assert record["metrics"] == {"split": "test", **evaluate_tags(gold, pred)}
        assert record["metrics"]["macro_f1"] > 0.8, record["metrics"]
        assert record["task"] == name and record["train_sentences"] == n_train and not record["dev_held_out"]
        assert record["command"].startswith("python -m experiments.crf_baseline ")

        grid = record["grid"]
        assert [(g["c1"], g["c2"]) for g in grid] == [(100.0, 0.05), (0.1, 0.05)]
        top = max(g["dev_macro_f1"] for g in grid)
        assert min(g["dev_macro_f1"] for g in grid) < top, "the grid must discriminate for the test to mean much"
        assert (record["c1"], record["c2"], record["dev_macro_f1"], record["dev_ties"]) == (0.1, 0.05, top, 1)
        assert f"\n{name} " in r.stdout, "a table row per vertical"


def test_same_command_same_files(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("sklearn_crfsuite")
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        r = _run(f"--data_dir={data}", "--tasks=Mangal-sutra", f"--out={out}", "--c1=0.1", "--c2=0.05,0.5")
        assert r.returncode == 0, r.stderr
    a, b = (json.loads((out / "Mangal-sutra.json").read_text()) for out in outs)
    for record in (a, b):
        del record["date"], record["command"]
    assert a == b
    assert (outs[0] / "Mangal-sutra.test.conll").read_bytes() == (outs[1] / "Mangal-sutra.test.conll").read_bytes()


def test_dev_held_out_of_train_without_dev_conll(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("sklearn_crfsuite")
    no_dev = tmp_path / "data" / "Chain x"
    no_dev.mkdir(parents=True)
    for split in ("train", "test"):
        shutil.copyfile(data / "Chain x" / f"{split}.conll", no_dev / f"{split}.conll")
    r = _run(f"--data_dir={no_dev.parent}", "--task=Chain x", f"--out={tmp_path / 'out'}", "--c1=0.1", "--c2=0.1")
    assert r.returncode == 0, r.stderr
    record = json.loads((tmp_path / "out" / "Chain x.json").read_text())
    assert record["dev_held_out"] and record["dev_sentences"] > 0
    n_train = len(read_conll(data / "Chain x" / "train.conll"))
    assert record["train_sentences"] + record["dev_sentences"] == n_train, "dev comes out of train, as in training"


@pytest.mark.parametrize("args, expected", [
    (["--task=Nope"], "no vertical 'Nope'"),
    (["--task=Chain x", "--tasks=Mangal-sutra"], "exactly one of --task"),
    (["--task=Chain x", "--c1=abc"], "--c1=abc"),
    (["--task=Chain x", "stray"], "unexpected argument"),
])
def test_bad_input_is_one_error_line(data: Path, tmp_path: Path, args: list[str], expected: str) -> None:
    pytest.importorskip("sklearn_crfsuite")
    r = _run(f"--data_dir={data}", f"--out={tmp_path / 'out'}", *args)
    assert r.returncode == 2
    lines = _error_lines(r)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
    assert not (tmp_path / "out").exists(), "nothing is written when the input is bad"


def test_missing_crfsuite_says_how_to_install(data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker" / "sklearn_crfsuite"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('blocked by the test')\n")
    r = _run(f"--data_dir={data}", "--task=Chain x", f"--out={tmp_path / 'out'}",
             pythonpath=f"{blocker.parent}{os.pathsep}{REPO}")
    assert r.returncode == 2
    lines = _error_lines(r)
    assert len(lines) == 1 and "pip install -e '.[baselines]'" in lines[0], r.stderr


def test_features() -> None:
    assert word_shape("Gold-22K") == "Xxxx-ddX" and short_shape("Gold-22K") == "Xx-dX"
    assert word_shape("925") == "ddd" and short_shape("Voylla") == "Xx"
    first, second, last = (f := sentence_features(["Voylla", "22K", "gold-plated", "ring"]))[0], f[1], f[-1]
    assert first["BOS"] == 1.0 and "EOS" not in first and last["EOS"] == 1.0
    assert first["lw"] == "voylla" and first["suf4"] == "ylla" and first["pre2"] == "vo" and first["istitle"] == 1.0
    assert first["-1:pad"] == first["-2:pad"] == 1.0 and first["+2:lw"] == "gold-plated"
    assert second["hasdigit"] == 1.0 and "isdigit" not in second and second["-1:lw"] == "voylla"
    assert f[2]["hashyphen"] == 1.0 and f[2]["+1:sshape"] == "x" and f[2]["-1|0:lw"] == "22k|gold-plated"
    assert sentence_features([","])[0]["ispunct"] == 1.0


def test_best_entry_ties_go_to_the_earliest() -> None:
    grid = [{"dev_macro_f1": x} for x in (0.5, 0.9, 0.7, 0.9)]
    assert best_entry(grid) == 1
    assert best_entry([{"dev_macro_f1": 0.0}]) == 0
