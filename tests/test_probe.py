"""The issue's probes, end to end through the commands: a damaged or mismatched model dir, Ctrl-C in training, two
trainings on one model dir, a resume on changed data, the Tagger API's argument checks, and predict as a stream
(one record per line for every reader, a closed pipe, bad bytes mid-stream, --min_confidence)."""
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, loading_line, run_cli, smoke_params
from test_bad_input import assert_one_error_line

from mtl_tagger import Tagger
from mtl_tagger.errors import InputError
from mtl_tagger.modeldir import model_dir_lock
from mtl_tagger.train import train
from mtl_tagger.vectors import write_vectors

TASK = "Chain x"
PROGRESS = re.compile(r"\[[=>.]*\] \d+/\d+ steps")  # the training progress bar's lines on stderr
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"mtl_tagger.{module}", *args]


def _train_command(data_dir: Path, model_dir: Path, *flags: str) -> list[str]:
    return _command("train", "--flagfile=flags/smoke.cfg", f"--task_a={TASK}", f"--data_dir={data_dir}",
                    f"--model_dir={model_dir}", *flags)


def _start(command: list[str], **kwargs: object) -> subprocess.Popen:
    """The command as a child whose Ctrl-C works even when the suite runs in the background (which ignores it)."""
    return subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def _checkpoint_file(model_dir: Path, suffix: str) -> Path:
    return next((model_dir / "best" / TASK).glob(f"ckpt-*{suffix}"))


def _edit_json(path: Path, change: Callable[[object], object]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# How each finding damages a copy of a model dir, and a word the error line must hold besides the dir.
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "data file deleted": (lambda d: _checkpoint_file(d, ".data-00000-of-00001").unlink(), "data-00000-of-00001"),
    "data file truncated": (lambda d: _truncate(_checkpoint_file(d, ".data-00000-of-00001")), "cannot restore"),
    "index deleted": (lambda d: _checkpoint_file(d, ".index").unlink(), "missing or damaged"),
    "vocab size differs": (lambda d: _edit_json(d / "vocab.json", lambda v: {**v, "words": v["words"] + ["zz"]}),
                           "vocab.json"),
    "hidden_size differs": (lambda d: _edit_json(d / "params.json", lambda p: {**p, "hidden_size": 32}),
                            "params.json"),
    "params.json is [1, 2]": (lambda d: (d / "params.json").write_text("[1, 2]"), "params.json"),
    "max_len 0": (lambda d: _edit_json(d / "params.json", lambda p: {**p, "max_len": 0}), "--max_len=0"),
    "vocab.json is []": (lambda d: (d / "vocab.json").write_text("[]"), "vocab.json"),
    "vocab without words": (lambda d: _edit_json(d / "vocab.json", lambda v: {k: x for k, x in v.items()
                                                                             if k != "words"}), "vocab.json"),
    "known values not lists of words": (lambda d: _edit_json(d / "vocab.json", lambda v: {
        **v, "values": {t: {"brand": ["Acme"]} for t in v["tags"]}}), "values must map"),
}
READ_BY_TENSORFLOW = {"data file deleted", "data file truncated", "index deleted", "vocab size differs",
                      "hidden_size differs"}  # the cases whose fault shows only when the checkpoint is read
CASES = list(DAMAGE)


def _damaged(model: Path, tmp_path: Path, case: str) -> Path:
    d = tmp_path / "damaged"
    shutil.copytree(model, d)
    DAMAGE[case][0](d)
    return d


@pytest.mark.parametrize("case", CASES)
def test_damaged_model_dir_is_an_input_error_of_tagger_load(case: str, chain_model: Path, tmp_path: Path) -> None:
    d = _damaged(chain_model, tmp_path, case)
    with pytest.raises(InputError) as e:
        Tagger.load(d)
    assert str(d) in str(e.value) and DAMAGE[case][1] in str(e.value)


@pytest.mark.parametrize("case", CASES)
def test_damaged_model_dir_is_one_error_line_from_predict_and_evaluate(case: str, chain_model: Path, data_dir: Path,
                                                                      tmp_path: Path) -> None:
    """predict for every fault; evaluate too where TensorFlow reads the checkpoint and may log lines of its own
    (the other faults are found by cli.load_tagger, the same for both commands, before any checkpoint is read)."""
    d = _damaged(chain_model, tmp_path, case)
    commands = [_command("predict", f"--model_dir={d}")]
    if case in READ_BY_TENSORFLOW:
        commands.append(_command("evaluate", f"--model_dir={d}", f"--data={data_dir / TASK / 'test.conll'}"))
    procs = [_start(c, stdin=subprocess.PIPE, text=True) for c in commands]  # both at once: two cores
    for command, proc in zip(commands, procs):
        out, err = proc.communicate("Acme gold chain\n", timeout=600)
        assert_one_error_line(subprocess.CompletedProcess(command, proc.returncode, out, err), str(d), DAMAGE[case][1],
                              loaded=command[2].split(".")[-1] if case in READ_BY_TENSORFLOW else "")
        assert out == ""


def test_tagger_refuses_text_where_tokens_belong_and_bytes(chain_model: Path) -> None:
    t = Tagger.load(chain_model)
    for bad in (["Sukkhi chain"], "Sukkhi chain", [b"Sukkhi", b"chain"], [["Sukkhi", 3]]):
        with pytest.raises(InputError, match="tokenised sentences"):
            t.predict(bad, task=TASK)
    for bad in (b"Sukkhi chain", [b"Sukkhi chain"]):
        with pytest.raises(InputError, match=r"not bytes.*decode"):
            t.extract(bad, task=TASK)
    with pytest.raises(InputError, match="a text"):
        t.extract(["Sukkhi chain", 7], task=TASK)
    assert [len(tags) for tags in t.predict([["Sukkhi", "chain"]], task=TASK)] == [2]


def test_predict_streams_one_line_per_record_and_stops_at_bad_bytes(chain_model: Path) -> None:
    """Each record comes back while stdin stays open; every character str.splitlines() breaks on stays inside
    its record's line; a line that is not UTF-8 ends the run with one error line, after the earlier records."""
    breaks = "".join(c for c in map(chr, range(0x110000)) if len(f"a{c}b".splitlines()) == 2 and c != "\n")
    assert {"\r", "\x85", "\u2028", "\u2029"} <= set(breaks)
    proc = _start(_command("predict", f"--model_dir={chain_model}"), stdin=subprocess.PIPE)
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        for text, wait in (("Acme gold plated brass chain", 600), (f"Acme{breaks}gold chain", 60)):
            proc.stdin.write(text.encode() + b"\n")
            proc.stdin.flush()
            raw = lines.get(timeout=wait).decode()  # fails here if predict waits for more input
            assert len(raw.splitlines()) == 1 and len(raw.rstrip("\n").split("\n")) == 1
            record = json.loads(raw)
            assert record["text"] == text and len(record["tokens"]) == len(record["tags"])
        proc.stdin.write(b"caf\xe9 chain\nnever read\n")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 2
    finally:
        proc.kill()
    err = [x for x in proc.stderr.read().decode().splitlines() if x.strip()]
    assert len(err) == 2 and err[0] == loading_line("predict") and err[1].startswith("error: <stdin>:3: not UTF-8"), err
    assert lines.empty()


def test_predict_into_a_closed_pipe_ends_quietly(chain_model: Path, tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    predict = shlex.join(_command("predict", f"--model_dir={chain_model}"))
    script = f"yes 'Acme gold chain' | head -1000 | {predict} 2>{shlex.quote(str(err))} | head -1; " \
             "exit ${PIPESTATUS[2]}"
    r = subprocess.run(["bash", "-c", script], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, err.read_text()
    assert json.loads(r.stdout)["text"] == "Acme gold chain"
    assert err.read_text() == loading_line("predict") + "\n"


def test_predict_input_file_and_min_confidence_match_extract(chain_model: Path, tmp_path: Path) -> None:
    """--input and --min_confidence give Tagger.extract's records, line for line."""
    texts = ["Acme gold plated brass chain in rose gold", "", "Voylla silver plated alloy chain .",
             "Sukkhi rhodium plated copper chain with pearl", "Jewel Box gold plated metal chain for parties"]
    everything = Tagger.load(chain_model).extract(texts, TASK)
    confidences = sorted(v["confidence"] for r in everything for v in r["values"])
    threshold = confidences[len(confidences) // 2]
    assert confidences[0] < threshold, "the threshold must leave some values out"
    (tmp_path / "in.txt").write_bytes("\r\n".join(texts).encode())  # CRLF line ends, none after the last line
    r = run_cli("predict", f"--model_dir={chain_model}", f"--input={tmp_path / 'in.txt'}",
                f"--min_confidence={threshold}")
    assert r.returncode == 0, r.stderr
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert got == [{**rec, "values": [v for v in rec["values"] if v["confidence"] >= threshold]} for rec in everything]
    assert_one_error_line(run_cli("predict", f"--model_dir={chain_model}", "--min_confidence=1.5"),
                          "--min_confidence=1.5", "[0, 1]")


def test_ctrl_c_in_training_is_one_line_and_the_rerun_resumes(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    command = _train_command(data_dir, out, "--epochs=3", "--patience=0")
    proc = _start(command, text=True)
    for line in proc.stdout:
        if line.startswith("step "):  # "step 12/36: dev macro-F1 …", printed once step 12's checkpoint is saved
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [x for x in err.splitlines() if x.strip() and not PROGRESS.match(x)]
    assert len(lines) == 2 and lines[0] == loading_line("train") and lines[1].startswith("interrupted at step "), err
    assert str(out / "last" / "ckpt-12") in lines[1] and "run the same command again to resume" in lines[1]
    assert not (out / "metrics.json").exists()
    again = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming {out} at step 12 of 36" in again.stdout and "step 36/36" in again.stdout
    assert json.loads((out / "metrics.json").read_text()).keys() == {TASK}


def test_two_identical_trainings_on_one_model_dir(data_dir: Path, tmp_path: Path) -> None:
    """Started together, one trains and the other is refused in one line; the lock goes with its holder, even by
    SIGKILL. (The budget is far beyond what either runs, so the refused one always meets the other training.)"""
    out = tmp_path / "m"
    command = _train_command(data_dir, out, "--epochs=1000", "--patience=0")
    procs = [_start(command, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 600
        while all(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "neither run was refused: both train into one model dir"
            time.sleep(0.2)
        loser = next(p for p in procs if p.returncode is not None)
        winner = next(p for p in procs if p is not loser)
        out_text, err_text = loser.communicate(timeout=60)
        assert_one_error_line(subprocess.CompletedProcess(command, loser.returncode, out_text, err_text), str(out),
                              f"another train command (pid {winner.pid}) is using this model dir")
        assert winner.poll() is None, "the first run goes on"
        with pytest.raises(InputError, match="another train command"):
            model_dir_lock(out)
        winner.kill()
        winner.communicate(timeout=60)
    finally:
        for p in procs:
            p.kill()
    model_dir_lock(out).release()  # SIGKILL released it


def _files(model_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(model_dir)): p.read_bytes() for p in model_dir.rglob("*")
            if p.is_file() and p.name != ".lock"}


def test_resume_on_changed_data_is_refused(data_dir: Path, tmp_path: Path) -> None:
    """The model dir keeps the data's fingerprint: the same command on edited data stops in one line naming the
    file, and touches nothing (metrics.json, predictions, checkpoints)."""
    d = tmp_path / "data"
    shutil.copytree(data_dir / TASK, d / TASK)
    out = tmp_path / "m"
    train(smoke_params(d, out, epochs=1))
    before = _files(out)
    test = d / TASK / "test.conll"
    test.write_text(test.read_text().replace("-color\n", "-colour\n"))
    r = subprocess.run(_train_command(d, out, "--epochs=1"), cwd=REPO, env=ENV, capture_output=True, text=True,
                       timeout=600)
    assert_one_error_line(r, str(out), f"trained on other data ({TASK}/test.conll changed)", "--overwrite",
                          warnings=True)  # beside the warning that B-colour is never seen in train
    assert _files(out) == before
    model_dir_lock(out).release()  # the refused run let go of the lock


def test_resume_with_other_word_vectors_is_refused(data_dir: Path, tmp_path: Path) -> None:
    vectors = tmp_path / "v.txt"
    write_vectors(vectors, ["Acme", "gold"], np.ones((2, 16), np.float32))
    train(smoke_params(data_dir, tmp_path / "m", epochs=1, word_vectors=str(vectors)))
    before = _files(tmp_path / "m")
    write_vectors(vectors, ["Acme", "gold"], np.zeros((2, 16), np.float32))
    with pytest.raises(InputError, match=r"trained on other data \(word_vectors changed\)"):
        train(smoke_params(data_dir, tmp_path / "m", epochs=1, word_vectors=str(vectors)))
    assert _files(tmp_path / "m") == before


@pytest.mark.parametrize("metrics", ["[1, 2]", '{"Chain x": [1]}', '{"Chain x": {"macro_f1": 1}}'])
def test_evaluate_compare_with_damaged_metrics_json(metrics: str, chain_model: Path, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text(metrics)
    r = run_cli("evaluate", f"--model_dir={chain_model}", f"--compare={tmp_path / 'other'}")
    assert_one_error_line(r, f"{tmp_path / 'other' / 'metrics.json'}: damaged metrics")


@pytest.mark.parametrize("flag, words", [("--output=/nonexistent/m.json", ["--output=/nonexistent/m.json",
                                                                          "no directory /nonexistent"]),
                                         ("--top=-1", ["--top=-1"])])
def test_evaluate_bad_output_or_top_is_refused_before_any_work(flag: str, words: list[str], chain_model: Path,
                                                               data_dir: Path) -> None:
    r = run_cli("evaluate", f"--model_dir={chain_model}", f"--compare={chain_model}" if flag.startswith("--top") else
                f"--data={data_dir / TASK / 'test.conll'}", flag)
    assert_one_error_line(r, *words)
    assert r.stdout == ""
