"""Commands exit when their work is done: `train` (single and coupled) must not linger after writing metrics.json."""
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

RUNS = 2  # one single, one coupled: the old hang held every multi-epoch run, so one of each shows it
PARALLEL = 2  # runs at once (the CI machine's cores)
GRACE = 20.0  # seconds a run may take from metrics.json to its exit (printing tables, the coupled analysis)


def _command(data_dir: Path, model_dir: Path, coupled: bool) -> list[str]:
    tasks = "--tasks=Chain x,Mangal-sutra" if coupled else "--tasks=Chain x"
    return [sys.executable, "-m", "mtl_tagger.train", "--flagfile=flags/smoke.cfg", tasks, f"--data_dir={data_dir}",
            f"--model_dir={model_dir}"]  # the smoke budget: two epochs


def test_train_exits_soon_after_metrics_json(data_dir: Path, tmp_path: Path) -> None:
    todo = [(tmp_path / f"run{i}", i % 2 == 1) for i in range(RUNS)]
    running: dict[Path, tuple[subprocess.Popen, float | None]] = {}
    tails: dict[str, float] = {}
    try:
        while todo or running:
            while todo and len(running) < PARALLEL:
                model_dir, coupled = todo.pop(0)
                proc = subprocess.Popen(_command(data_dir, model_dir, coupled), cwd=REPO, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
                running[model_dir] = (proc, None)
            time.sleep(0.1)
            for model_dir, (proc, written) in list(running.items()):
                now, exited = time.monotonic(), proc.poll() is not None
                if written is None and (model_dir / "metrics.json").exists():
                    written = now
                    running[model_dir] = (proc, written)
                if exited:
                    assert proc.returncode == 0, proc.stderr.read()
                    assert written is not None, f"{model_dir.name} exited without writing metrics.json"
                    tails[model_dir.name] = round(now - written, 1)
                    del running[model_dir]
                elif written is not None and now - written > GRACE:
                    raise AssertionError(f"{model_dir.name} is still alive {GRACE:.0f} s after writing metrics.json "
                                         f"(exits so far, seconds after metrics.json: {tails})")
    finally:
        for proc, _ in running.values():
            proc.kill()
            proc.wait()
    assert len(tails) == RUNS
