"""Shared fixtures: synthetic verticals and one trained smoke model reused by the end-to-end tests."""
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from datagen import make_data_dir, write_vertical

from mtl_tagger.params import Params, read_flagfile

REPO = Path(__file__).resolve().parents[1]
SMOKE = read_flagfile(REPO / "flags" / "smoke.cfg")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small synthetic verticals: 'Chain x' and 'Mangal-sutra'."""
    return make_data_dir(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def three(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic verticals plus a third, 'Ring': three verticals, three pairs to couple."""
    root = tmp_path_factory.mktemp("three")
    for v in ("Chain x", "Mangal-sutra"):
        shutil.copytree(data_dir / v, root / v)
    write_vertical(root, "Ring", "ring", {"train": 60, "dev": 15, "test": 20}, seed=5)
    return root


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



def run_cli(module: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m mtl_tagger.<module> args…` from the repo root and capture its output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", f"mtl_tagger.{module}", *args], input=stdin, text=True,
                          capture_output=True, cwd=REPO, env=env, timeout=600)
