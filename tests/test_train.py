"""End to end on synthetic verticals: train → metrics.json → evaluate → predict → Tagger.load; the step budget,
the evaluation cadence, per-vertical selection, seeds and resumption."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import CHAIN_FLAGS, REPO, run_cli, smoke_params
from datagen import write_vertical

from mtl_tagger import Tagger, bilstm, interrupt
from mtl_tagger import train as train_module
from mtl_tagger.bilstm import resolve_matmul_dtype
from mtl_tagger.conll import read_conll
from mtl_tagger.crf import bigram_pmi
from mtl_tagger.errors import InputError
from mtl_tagger.loop import Loop
from mtl_tagger.modeldir import best_checkpoint, read_history
from mtl_tagger.train import train

KEYS = {"split", "selected_step", "dev_macro_f1", "macro_precision", "macro_recall", "macro_f1", "macro_f1_mean",
        "micro_accuracy", "entity_precision", "entity_recall", "entity_f1", "per_tag"}


def test_train_writes_metrics_predictions_params_history(chain_model: Path, data_dir: Path) -> None:
    metrics = json.loads((chain_model / "metrics.json").read_text())
    assert list(metrics) == ["Chain x"]
    m = metrics["Chain x"]
    assert set(m) == KEYS and m["split"] == "test"
    assert all(0.0 <= m[k] <= 1.0 for k in KEYS - {"split", "per_tag", "selected_step"})
    assert {"B-brand", "I-plating"} <= set(m["per_tag"])
    assert m["macro_f1"] > 0.3, "three epochs on templated data must learn something"
    rows = (chain_model / "predictions" / "Chain x.test.conll").read_text().split("\n\n")
    assert len([r for r in rows if r.strip()]) == len(read_conll(data_dir / "Chain x" / "test.conll"))
    assert all(len(line.split("\t")) == 3 for line in rows[0].splitlines())
    params = json.loads((chain_model / "params.json").read_text())
    assert params["hidden_size"] == 16 and params["tasks"] == "Chain x" and params["task_a"] == ""
    history = read_history(chain_model)
    assert [e["step"] for e in history["evaluations"]] == [12, 24, 36]  # once per epoch of 12 minibatches
    assert history["best"]["Chain x"]["step"] == m["selected_step"]
    assert (chain_model / "best" / "Chain x").is_dir() and (chain_model / "provenance.json").is_file()


def test_evaluate_cli_matches_metrics_json(chain_model: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.json"
    r = run_cli("evaluate", f"--model_dir={chain_model}", "--task=Chain x",
                f"--data={data_dir / 'Chain x' / 'test.conll'}", f"--output={out}")
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())["Chain x"]
    want = json.loads((chain_model / "metrics.json").read_text())["Chain x"]
    assert got["macro_f1"] == pytest.approx(want["macro_f1"]) and got["per_tag"] == want["per_tag"]
    assert "Chain x" in r.stdout


def test_predict_cli_extracts_values_with_offsets_and_confidence(chain_model: Path) -> None:
    lines = ["Acme gold plated brass chain in rose gold", "", "Voylla   silver plated alloy chain ."]
    r = run_cli("predict", f"--model_dir={chain_model}", "--task=Chain x", stdin="\n".join(lines) + "\n")
    assert r.returncode == 0, r.stderr
    records = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(records) == 3
    assert records[1] == {"text": "", "tokens": [], "tags": [], "values": []}
    for text, rec in zip(lines, records):
        assert len(rec["tokens"]) == len(rec["tags"])
        for v in rec["values"]:
            assert text[v["start"]:v["end"]] == v["value"] and v["attribute"]
            assert 0.0 <= v["confidence"] <= 1.0
    assert any(v["attribute"] == "plating" for v in records[0]["values"])


def test_tagger_api(chain_model: Path) -> None:
    t = Tagger.load(chain_model)
    assert t.tasks == ["Chain x"]
    tags = t.predict([["Acme", "gold", "plated", "chain"], ["brass"]], task="Chain x")
    assert [len(x) for x in tags] == [4, 1]
    assert all(tag == "O" or tag[:2] in ("B-", "I-") for x in tags for tag in x)
    rec = t.extract("Acme gold plated chain", task="Chain x")
    assert rec["tokens"] == ["Acme", "gold", "plated", "chain"] and rec["tags"] == tags[0]
    everything = t.extract("Acme gold plated chain", task="Chain x", min_confidence=0.0)["values"]
    confident = t.extract("Acme gold plated chain", task="Chain x", min_confidence=0.9)["values"]
    assert confident == [v for v in everything if v["confidence"] >= 0.9]


def test_the_model_decodes_with_its_training_splits_tag_prior(chain_model: Path, data_dir: Path) -> None:
    t = Tagger.load(chain_model)
    assert t.params.tag_prior == 0.5, "flags/smoke.cfg keeps the default"
    train_split = read_conll(data_dir / "Chain x" / "train.conll", max_len=t.params.max_len)
    want = 0.5 * bigram_pmi([t.vocab.tag_ids("Chain x", s.tags) for s in train_split], len(t.vocab.tags["Chain x"]))
    crf = t.nets["Chain x"].heads["Chain x"].crf
    np.testing.assert_allclose(crf.prior.numpy(), want, rtol=1e-6)
    assert want.min() < 0 < want.max(), "the prior favours some tag pairs and penalises others"


def test_predict_splits_sentences_longer_than_max_len(chain_model: Path) -> None:
    t = Tagger.load(chain_model)
    long = ["Acme", "gold", "plated", "brass", "chain"] * 30  # 150 tokens > max_len 60
    assert len(t.predict([long], task="Chain x")[0]) == 150


def test_same_seed_same_metrics(chain_epoch: Path, data_dir: Path, tmp_path: Path) -> None:
    """A second run of `chain_epoch`'s flags (same seed) gives its metrics, in the file and as returned."""
    b = train(smoke_params(data_dir, tmp_path / "b", epochs=1))
    assert (chain_epoch / "metrics.json").read_text() == (tmp_path / "b" / "metrics.json").read_text()
    assert json.loads((chain_epoch / "metrics.json").read_text()) == b


def test_min_steps_hold_for_a_tiny_vertical(tmp_path: Path) -> None:
    write_vertical(tmp_path / "data", "Tiny", "chain", {"train": 3, "dev": 2, "test": 2}, seed=3)
    train(smoke_params(tmp_path / "data", tmp_path / "m", tasks="Tiny", task_a="", epochs=2, min_steps=25,
                       eval_every=10, patience=1))
    steps = [e["step"] for e in read_history(tmp_path / "m")["evaluations"]]
    assert steps == [10, 20, 25], "one minibatch per epoch, yet min_steps (25) are trained despite patience 1"


def test_eval_cadence_and_early_stopping_in_evaluations(data_dir: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Dev scored every --eval_every steps; with dev falling after step 6, patience 2 stops the run at step 12."""
    monkeypatch.setattr(Loop, "dev_scores", lambda self: {"Chain x": {"macro_f1": 1 / abs(int(self.step) - 6.5),
                                                                      "entity_f1": 0.0}})
    train(smoke_params(data_dir, tmp_path / "m", epochs=50, eval_every=3, patience=2))
    history = read_history(tmp_path / "m")
    assert [e["step"] for e in history["evaluations"]] == [3, 6, 9, 12]
    assert history["best"]["Chain x"]["step"] == 6


def test_each_vertical_is_selected_at_its_own_best_step(data_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripted dev scores peak at step 4 for one vertical and step 8 for the other (ties go to the later step)."""
    script = {"Chain x": {2: 0.5, 4: 0.9, 6: 0.7, 8: 0.8}, "Mangal-sutra": {2: 0.1, 4: 0.3, 6: 0.6, 8: 0.6}}

    def scripted(self: Loop) -> dict:
        return {t: {"macro_f1": s[int(self.step)], "entity_f1": 0.0} for t, s in script.items()}

    monkeypatch.setattr(Loop, "dev_scores", scripted)
    results = train(smoke_params(data_dir, tmp_path / "m", tasks="Chain x,Mangal-sutra", task_a="",
                                 mtl_mode="shared", epochs=1, max_steps=8, min_steps=8, eval_every=2, patience=0))
    assert {t: m["selected_step"] for t, m in results.items()} == {"Chain x": 4, "Mangal-sutra": 8}
    assert {t: m["dev_macro_f1"] for t, m in results.items()} == {"Chain x": 0.9, "Mangal-sutra": 0.6}
    for task, step in (("Chain x", 4), ("Mangal-sutra", 8)):
        assert best_checkpoint(tmp_path / "m", task).endswith(f"-{step}")
    # The test metrics are those of each vertical's own checkpoint, which Tagger.load also reads.
    tagger = Tagger.load(tmp_path / "m")
    for task, m in results.items():
        got, _ = tagger.evaluate(read_conll(data_dir / task / "test.conll"), task)
        assert got["macro_f1"] == pytest.approx(m["macro_f1"])


def test_selection_is_the_dev_score_it_names(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    """--selection=entity_f1 picks the step with the best dev entity-F1, where macro-F1 would pick another."""
    script = {2: (0.9, 0.5), 4: (0.6, 0.8), 6: (0.7, 0.7)}
    monkeypatch.setattr(Loop, "dev_scores", lambda self: {"Chain x": dict(zip(("macro_f1", "entity_f1"),
                                                                              script[int(self.step)]))})
    for selection, step in (("macro_f1", 2), ("entity_f1", 4)):
        results = train(smoke_params(data_dir, tmp_path / selection, epochs=1, max_steps=6, min_steps=6, eval_every=2,
                                     patience=0, selection=selection))
        assert results["Chain x"]["selected_step"] == step, selection
    assert "dev entity-F1: Chain x 80.00*" in capsys.readouterr().out
    with pytest.raises(InputError, match="--selection=micro: must be one of macro_f1, entity_f1"):
        smoke_params(data_dir, tmp_path / "x", selection="micro")


def test_tasks_list_equals_task_a_task_b(data_dir: Path, tmp_path: Path) -> None:
    """train reads nothing but Params, so the two spellings give one run when they validate to equal Params."""
    pair = smoke_params(data_dir, tmp_path, task_b="Mangal-sutra", mtl_mode="coupled")
    listed = smoke_params(data_dir, tmp_path, task_a="", tasks="Chain x,Mangal-sutra", mtl_mode="coupled")
    assert pair == listed and pair.names == ["Chain x", "Mangal-sutra"] and pair.task_b == ""


def test_kill_mid_budget_then_resume_finishes_it_exactly(chain_model: Path, data_dir: Path, tmp_path: Path) -> None:
    """SIGKILL after the first evaluation; the rerun resumes there and ends as the uninterrupted run of the same
    command (`chain_model`) does."""
    out = tmp_path / "m"
    args = [sys.executable, "-u", "-m", "mtl_tagger.train", *CHAIN_FLAGS, f"--data_dir={data_dir}"]
    proc = subprocess.Popen([*args, f"--model_dir={out}"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("step 12/36"):  # printed after step 12's checkpoint and history are written
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert not (out / "metrics.json").exists()
    r = subprocess.run([*args, f"--model_dir={out}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout and "at step 12 of 36" in r.stdout
    assert "step 12/36" not in r.stdout and "step 36/36" in r.stdout
    assert [e["step"] for e in read_history(out)["evaluations"]] == [12, 24, 36]
    assert (out / "metrics.json").read_text() == (chain_model / "metrics.json").read_text()


@pytest.mark.usefixtures("default_sigint")
def test_a_first_ctrl_c_waits_for_the_step_and_a_second_interrupts_at_once() -> None:
    """The first SIGINT only marks the step (so no cleanup code can swallow it) and is raised on leaving, a second
    one at once; a nested block shares the flag; the default handler is back afterwards."""
    with pytest.raises(KeyboardInterrupt):
        with interrupt.between_steps() as pressed:
            assert not pressed()
            os.kill(os.getpid(), signal.SIGINT)
            assert pressed()
            with interrupt.between_steps() as inner:
                assert inner()
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupt.between_steps() as pressed:
        assert not pressed(), "a new block starts unpressed"


def test_averaged_weights_resume_exactly(data_dir: Path, tmp_path: Path) -> None:
    """With --average, a run extended from 12 to 24 steps ends as one trained 24 steps at once."""
    p = dict(epochs=1, eval_every=6, patience=0, average=0.9)
    train(smoke_params(data_dir, tmp_path / "m", min_steps=12, max_steps=12, **p))
    train(smoke_params(data_dir, tmp_path / "m", min_steps=24, max_steps=24, **p))
    train(smoke_params(data_dir, tmp_path / "whole", min_steps=24, max_steps=24, **p))
    assert (tmp_path / "m" / "metrics.json").read_text() == (tmp_path / "whole" / "metrics.json").read_text()
    assert read_history(tmp_path / "m") == read_history(tmp_path / "whole")


def test_the_run_records_its_matmul_dtype_and_a_resume_in_another_says_so(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--matmul_dtype=auto follows the CPU: provenance.json records the dtype a run started with, and a resume that
    goes on in another one (on another machine) warns."""
    d = tmp_path / "m"
    train(smoke_params(data_dir, d, epochs=1, matmul_dtype="auto"))
    started = json.loads((d / "provenance.json").read_text())["matmul_dtype"]
    assert started == resolve_matmul_dtype("auto").name
    other = tf.float32 if started == "bfloat16" else tf.bfloat16
    monkeypatch.setattr(bilstm, "resolve_matmul_dtype", lambda name: other if name == "auto" else tf.as_dtype(name))
    warned = []
    monkeypatch.setattr(train_module.logging, "warning", lambda msg, *args: warned.append(msg % args))
    train(smoke_params(data_dir, d, epochs=2, matmul_dtype="auto"))
    assert f"{d} was started with {started} matrix products and goes on in {other.name} on this machine " \
        "(--matmul_dtype=auto follows the CPU)" in warned, warned
    assert json.loads((d / "provenance.json").read_text())["matmul_dtype"] == started
