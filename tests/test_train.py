"""End to end on synthetic verticals: train → metrics.json → evaluate → predict → Tagger.load; seeds; resume."""
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_cli, smoke_params

from mtl_tagger import Tagger
from mtl_tagger.conll import read_conll
from mtl_tagger.training import train

KEYS = {"split", "macro_precision", "macro_recall", "macro_f1", "macro_f1_mean", "micro_accuracy",
        "entity_precision", "entity_recall", "entity_f1", "per_tag"}


@pytest.fixture(scope="module")
def model_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One smoke model trained through the CLI with flags/smoke.cfg."""
    out = tmp_path_factory.mktemp("model") / "m"
    r = run_cli("train", "--flagfile=flags/smoke.cfg", "--task_a=Chain x", f"--data_dir={data_dir}",
                f"--model_dir={out}", "--epochs=3")
    assert r.returncode == 0, r.stderr
    assert "Epoch 3/3" in r.stdout and "Vertical" in r.stdout
    return out


def test_train_writes_metrics_predictions_params(model_dir: Path, data_dir: Path) -> None:
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert list(metrics) == ["Chain x"]
    m = metrics["Chain x"]
    assert set(m) == KEYS and m["split"] == "test"
    assert all(0.0 <= m[k] <= 1.0 for k in KEYS - {"split", "per_tag"})
    assert {"B-brand", "I-plating"} <= set(m["per_tag"])
    assert set(m["per_tag"]["B-brand"]) == {"precision", "recall", "f1", "support"}
    assert m["macro_f1"] > 0.3, "three epochs on templated data must learn something"
    rows = (model_dir / "predictions" / "Chain x.test.conll").read_text().split("\n\n")
    assert len([r for r in rows if r.strip()]) == len(read_conll(data_dir / "Chain x" / "test.conll"))
    assert all(len(line.split("\t")) == 3 for line in rows[0].splitlines())
    params = json.loads((model_dir / "params.json").read_text())
    assert params["hidden_size"] == 16 and params["task_a"] == "Chain x" and params["epochs"] == 3


def test_evaluate_cli_matches_metrics_json(model_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    r = run_cli("evaluate", f"--model_dir={model_dir}", "--task=Chain x",
                f"--data={data_dir / 'Chain x' / 'test.conll'}", f"--output={out}")
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())["Chain x"]
    want = json.loads((model_dir / "metrics.json").read_text())["Chain x"]
    assert got["macro_f1"] == pytest.approx(want["macro_f1"]) and got["per_tag"] == want["per_tag"]
    assert "Chain x" in r.stdout


def test_predict_cli_extracts_values_with_offsets(model_dir: Path) -> None:
    lines = ["Acme gold plated brass chain in rose gold", "", "Voylla   silver plated alloy chain ."]
    r = run_cli("predict", f"--model_dir={model_dir}", "--task=Chain x", stdin="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    records = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(records) == 3
    assert records[1] == {"text": "", "tokens": [], "tags": [], "values": []}
    for text, rec in zip(lines, records):
        assert len(rec["tokens"]) == len(rec["tags"])
        for v in rec["values"]:
            assert text[v["start"]:v["end"]] == v["value"] and v["attribute"]
    assert any(v["attribute"] == "plating" for v in records[0]["values"])


def test_tagger_api(model_dir: Path) -> None:
    t = Tagger.load(model_dir)
    assert t.tasks == ["Chain x"]
    tags = t.predict([["Acme", "gold", "plated", "chain"], ["brass"]], task="Chain x")
    assert [len(x) for x in tags] == [4, 1]
    assert all(tag == "O" or tag[:2] in ("B-", "I-") for x in tags for tag in x)
    rec = t.extract("Acme gold plated chain", task="Chain x")
    assert rec["tokens"] == ["Acme", "gold", "plated", "chain"] and rec["tags"] == tags[0]


def test_predict_splits_sentences_longer_than_max_len(model_dir: Path) -> None:
    t = Tagger.load(model_dir)
    long = ["Acme", "gold", "plated", "brass", "chain"] * 30  # 150 tokens > max_len 60
    assert len(t.predict([long], task="Chain x")[0]) == 150


def test_same_seed_same_metrics(data_dir: Path, tmp_path: Path) -> None:
    a = train(smoke_params(data_dir, tmp_path / "a", epochs=1))
    b = train(smoke_params(data_dir, tmp_path / "b", epochs=1))
    assert (tmp_path / "a" / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()
    assert a == b


def test_kill_and_resume(data_dir: Path, tmp_path: Path) -> None:
    """A run killed after its first epoch resumes from that checkpoint (epoch, optimizer, best score)."""
    out = tmp_path / "m"
    args = [sys.executable, "-u", "-m", "mtl_tagger.train", "--flagfile=flags/smoke.cfg", "--task_a=Chain x",
            f"--data_dir={data_dir}", f"--model_dir={out}", "--epochs=3", "--patience=3"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "Epoch 2/3" in line:  # epoch 1 is checkpointed before this line is printed
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert not (out / "metrics.json").exists()
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stderr and "epoch 1" in r.stderr
    assert "Epoch 1/3" not in r.stdout and "Epoch 2/3" in r.stdout and "Epoch 3/3" in r.stdout
    assert json.loads((out / "metrics.json").read_text())["Chain x"]["split"] == "test"
