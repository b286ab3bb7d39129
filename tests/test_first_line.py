"""A command says at once that it is loading TensorFlow, or what it is reading when it loads none before its heavy
reading: on a terminal on a status line it clears once done, so that what follows is the command's own; in a pipe as
its first line, within 2 s. Bad input it can check without TensorFlow (or before reading) is refused before that,
so that in a pipe too the error is its only line."""
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import loading_line, reading_line, run_cli
from test_audit import records, write_job
from test_bad_input import assert_one_error_line
from test_catalog import FIXTURES

from mtl_tagger.files import write_json_atomic
from mtl_tagger.lock import FileLock
from mtl_tagger.params import Params
from mtl_tagger.vocab import Vocab

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
COMMANDS = sorted(p.stem for p in (ROOT / "mtl_tagger").glob("*.py")
                  if re.search(r"^def main\(", p.read_text(encoding="utf-8"), re.M))


def _train(data_dir: Path, model_dir: Path) -> list[str]:
    """A train command whose input is valid: it gets past its checks and imports TensorFlow."""
    return [sys.executable, "-m", "mtl_tagger.train", "--flagfile=flags/smoke.cfg", "--task_a=Chain x",
            f"--data_dir={data_dir}", f"--model_dir={model_dir}"]


def test_on_a_terminal_the_loading_line_comes_first_and_is_cleared(data_dir: Path, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(_train(data_dir, tmp_path / "m"), cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=follower, env=ENV)
    os.close(follower)
    seen, deadline = b"", time.monotonic() + 300
    try:
        while time.monotonic() < deadline:  # until the command writes something of its own after the status line
            if select.select([leader], [], [], 1.0)[0]:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the terminal closed with the process
                    break
                if not chunk:
                    break
                seen += chunk
                if b"\033[K" in seen and seen.split(b"\033[K", 1)[1].strip():
                    break
    finally:
        proc.kill()
        proc.wait()
        os.close(leader)
    text = seen.decode().replace("\r\n", "\n")
    assert text.startswith("mtl_tagger.train: loading TensorFlow…\r\033[K"), text
    after = text.split("\033[K", 1)[1]
    assert after.strip() and "loading TensorFlow" not in after, text


def test_in_a_pipe_the_loading_line_is_the_first_line(data_dir: Path, tmp_path: Path) -> None:
    """Its timing is a benchmark's (experiments/first_run.py), not a test's."""
    proc = subprocess.Popen(_train(data_dir, tmp_path / "m"), cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        first = proc.stderr.readline()
    finally:
        proc.kill()
        proc.communicate()
    assert first == loading_line("train") + "\n"


@pytest.mark.parametrize("command, args, words", [
    ("train", ["--flagfile=flags/smoke.cfg", "--task_a=Chain x", "--data_dir={tmp}/nope", "--model_dir={tmp}/m"],
     ["{tmp}/nope", "data dir not found", "--data_dir"]),
    ("train", ["--flagfile=flags/smoke.cfg", "--task_a=Chain x", "--data_dir={data}", "--model_dir={tmp}/m",
               "--distribute=multiworker"], ["--distribute=multiworker needs TF_CONFIG"]),
    ("export", ["--model_dir={tmp}/nope", "--out={tmp}/saved"], ["{tmp}/nope/params.json", "no params.json"]),
    ("export", ["--model_dir={tmp}/nope"], ["--out is required"]),
    ("glove", ["--source={tmp}/nope.jsonl", "--out={tmp}/g.txt"], ["{tmp}/nope.jsonl", "not found", "--source"]),
    ("glove", ["--source={tmp}/nope.jsonl", "--out={tmp}/g.txt", "--dim=0"], ["--dim", "at least 1"]),
    ("prepare", ["--source={tmp}/nope.jsonl", "--out={tmp}/d"], ["{tmp}/nope.jsonl", "not found", "--source"]),
    ("audit", ["--extractions={tmp}/v.jsonl", "--catalog={tmp}/nope.jsonl", "--out={tmp}/a"],
     ["{tmp}/nope.jsonl", "not found", "--catalog"]),
    ("crossfit", ["--catalog={tmp}/nope.jsonl", "--out={tmp}/c"], ["{tmp}/nope.jsonl", "not found", "--catalog"]),
    ("lenders", ["--data_dir={data}", "--task=Chain x", "--word_vectors={tmp}/nope.txt"],
     ["{tmp}/nope.txt", "not found", "--word_vectors"]),
])
def test_bad_input_in_a_pipe_is_one_line(command: str, args: list[str], words: list[str], data_dir: Path,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    fill = {"tmp": tmp_path, "data": data_dir}
    r = run_cli(command, *(a.format(**fill) for a in args))
    assert_one_error_line(r, *(w.format(**fill) for w in words))
    assert not (tmp_path / "m").exists() and not (tmp_path / "saved").exists()


READS = {  # command: (valid arguments, what it says it reads)
    "prepare": (["--source={catalog}", "--out={tmp}/d", f"--verticals={FIXTURES / 'verticals.json'}"], "{catalog}"),
    "audit": (["--extractions={extractions}", "--catalog={job_catalog}", "--out={tmp}/a"], "{job_catalog}"),
    "crossfit": (["--catalog={catalog}", "--out={tmp}/c", f"--verticals={FIXTURES / 'verticals.json'}",
                  "--flagfile=flags/smoke.cfg"], "{catalog}"),
    "lenders": (["--data_dir={data}", "--task=Chain x", "--word_vectors="], "{data}"),
}


@pytest.mark.parametrize("command", sorted(READS))
def test_a_command_without_tensorflow_says_what_it_reads_first(command: str, data_dir: Path, tmp_path: Path) -> None:
    """Before the seconds of reading a catalog or a data dir (crossfit loads TensorFlow only to train, later)."""
    job_catalog, extractions = write_job(tmp_path, records())
    fill = {"tmp": tmp_path, "data": data_dir, "catalog": FIXTURES / "synthetic_catalog.jsonl",
            "job_catalog": job_catalog, "extractions": extractions}
    args, what = READS[command]
    proc = subprocess.Popen([sys.executable, "-m", f"mtl_tagger.{command}", *(a.format(**fill) for a in args)],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    try:
        first = proc.stderr.readline()
    finally:
        proc.kill()
        proc.communicate()
    assert first == reading_line(command, what.format(**fill)) + "\n"


def test_a_busy_export_output_is_one_line_in_a_pipe(tmp_path: Path) -> None:
    """export checks the model dir (params.json, vocab.json) and takes its output's lock before TensorFlow loads."""
    model = tmp_path / "m"
    model.mkdir()
    write_json_atomic(model / "params.json", Params(task_a="Chain x").validate().to_json())
    Vocab.build([["gold", "chain"]], {"Chain x": [["B-color", "O"]]}).save(model / "vocab.json")
    out = tmp_path / "saved"
    other = FileLock(tmp_path / ".saved.lock", out, "export", "output", "--out")
    try:
        r = run_cli("export", f"--model_dir={model}", f"--out={out}")
    finally:
        other.release()
    assert_one_error_line(r, str(out), f"another export command (pid {os.getpid()})", "--out")


@pytest.mark.parametrize("command", COMMANDS)
def test_importing_a_command_does_not_import_tensorflow(command: str) -> None:
    r = subprocess.run([sys.executable, "-c", f"import sys, mtl_tagger.{command}; print('tensorflow' in sys.modules)"],
                       capture_output=True, text=True, cwd=ROOT, env=ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False", f"importing mtl_tagger.{command} imports TensorFlow"


FLAGS_AT_IMPORT = """
import importlib, sys
from absl import app, flags, logging
library = set(flags.FLAGS)  # absl's own
for command in sys.argv[1:]:
    importlib.import_module("mtl_tagger." + command)
print(" ".join(sorted(set(flags.FLAGS) - library)))
"""


def test_importing_the_commands_defines_no_flags() -> None:
    """A command defines its flags only when run: a process can import every command (absl refuses a flag that two
    modules define), and a command's --help lists only its own."""
    r = subprocess.run([sys.executable, "-c", FLAGS_AT_IMPORT, *COMMANDS], capture_output=True, text=True, cwd=ROOT,
                       env=ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [], f"flags defined by importing the commands: {r.stdout.strip()}"


KERAS_CHECK = """
import sys
if sys.argv[1] == "command":
    sys.orig_argv = [sys.executable, "-m", "mtl_tagger.predict"]  # as `python -m mtl_tagger.predict` starts
import mtl_tagger, tensorflow as tf
loaded = "keras" in sys.modules
assert int(tf.constant(2) + 1) == 3
import keras  # for whoever wants it afterwards
print(loaded, keras.__name__)
"""


@pytest.mark.parametrize("process", ["command", "library"])
def test_a_command_loads_tensorflow_without_keras(process: str) -> None:
    """TensorFlow loads Keras' optimizers as it starts (over a second with Keras 3); the package uses no Keras, so
    its commands skip that, and a process that imports the package as a library gets TensorFlow as usual."""
    r = subprocess.run([sys.executable, "-c", KERAS_CHECK, process], capture_output=True, text=True, cwd=ROOT,
                       env=ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == [str(process == "library"), "keras"]


def test_every_command_is_checked() -> None:
    assert {"train", "export", "glove", "predict", "evaluate", "extract"} <= set(COMMANDS), COMMANDS
