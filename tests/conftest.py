"""Shared fixtures: synthetic verticals and the trained smoke models reused by the end-to-end tests."""
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# One thread per TensorFlow op, here and in every command a test starts (they inherit the environment): the README's
# test command runs both stacks' suites side by side on two cores, and a small op split across both cores waits on
# the core the other suite is using. Set before TensorFlow is imported.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import pytest
from datagen import make_data_dir, write_vertical

from mtl_tagger.modeldir import installed_version
from mtl_tagger.params import Params, read_flagfile
from mtl_tagger.train import train

REPO = Path(__file__).resolve().parents[1]
SMOKE = read_flagfile(REPO / "flags" / "smoke.cfg")
# The scripts of experiments/ are run on the current stack (the default for new work), so their tests run there
# alone: the README's test command runs both stacks' suites at once on two cores, and CI gives it 20 minutes.
PAPER_STACK = installed_version("keras").startswith("2.")
experiments_stack = pytest.mark.skipif(PAPER_STACK, reason="experiments/ run on the current stack (Keras 3)")
# A long test of logic that is the same code on both stacks (extract killed at random moments and resumed) runs under
# CI on the paper stack alone, for the same reason: the current stack's suite, which also runs experiments/' tests, is
# the longer.
paper_stack_under_ci = pytest.mark.skipif(os.environ.get("CI") == "true" and not PAPER_STACK,
                                          reason="under CI on the paper stack alone (same code on both stacks)")
CHAIN_FLAGS = ("--flagfile=flags/smoke.cfg", "--task_a=Chain x", "--epochs=3")  # train flags of `chain_model`


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small synthetic verticals: 'Chain x' and 'Mangal-sutra'."""
    return make_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def pair_model(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shared smoke model with heads 'Chain x' and 'Mangal-sutra' (2 epochs, the snap rule on, as a plain train
    has it); tests read it or copy it first."""
    out = tmp_path_factory.mktemp("pair_model") / "m"
    train(smoke_params(data_dir, out, tasks="Chain x,Mangal-sutra", mtl_mode="shared", epochs=2, snap_values=True))
    return out


@pytest.fixture(scope="session")
def three(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic verticals plus a third, 'Ring': three verticals, three pairs to couple."""
    root = tmp_path_factory.mktemp("three")
    for v in ("Chain x", "Mangal-sutra"):
        shutil.copytree(data_dir / v, root / v)
    write_vertical(root, "Ring", "ring", {"train": 60, "dev": 15, "test": 20}, seed=5)
    return root


@pytest.fixture(scope="session")
def chain_model(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke model of 'Chain x' trained three epochs (enough to tag values) by the train command with CHAIN_FLAGS.

    Trained once for the suite: the end-to-end tests read it, and a test that changes a model dir (damages it,
    resumes or recalibrates it) works on a copy.
    """
    out = tmp_path_factory.mktemp("chain") / "m"
    r = run_cli("train", *CHAIN_FLAGS, f"--data_dir={data_dir}", f"--model_dir={out}")
    assert r.returncode == 0, r.stderr
    assert "step 36/36" in r.stdout and "Vertical" in r.stdout
    return out


@pytest.fixture(scope="session")
def chain_epoch(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke model of 'Chain x' after one epoch (`train(smoke_params(data_dir, m, epochs=1))`), for tests that
    need some finished run (to refuse, compare with or evaluate); read it or copy it, never train into it."""
    out = tmp_path_factory.mktemp("chain_epoch") / "m"
    train(smoke_params(data_dir, out, epochs=1))
    return out


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """Python's own SIGINT handler for one test: a suite started in the background (`&`) inherits SIGINT ignored."""
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, outer)


def smoke_params(data_dir: Path | str, model_dir: Path | str, **overrides: object) -> Params:
    """The smoke configuration (flags/smoke.cfg) for a run on the synthetic data."""
    return Params(**{**SMOKE, "task_a": "Chain x", "data_dir": str(data_dir), "model_dir": str(model_dir),
                     **overrides}).validate()


def loading_line(command: str) -> str:
    """The line `python -m mtl_tagger.<command>` writes to stderr in a pipe as it starts loading TensorFlow."""
    return f"mtl_tagger.{command}: loading TensorFlow…"


def reading_line(command: str, what: object) -> str:
    """The line `python -m mtl_tagger.<command>` writes to stderr in a pipe as it starts reading `what`."""
    return f"mtl_tagger.{command}: reading {what}…"


def run_cli(module: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mtl_tagger.<module> args…` from the repo root and capture its output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", f"mtl_tagger.{module}", *args], input=stdin, text=True,
                          capture_output=True, cwd=REPO, env=env, timeout=600)
