"""Resumable sweep runner over absl flagfiles: one training run per `<sweep_dir>/<name>.cfg`.

    python -m experiments.sweep --sweep_dir=flags/sweeps/table3 [--background] [--only='s1.*'] [--jobs=2]

Each run trains `python -m mtl_tagger.train --flagfile=<name>.cfg --model_dir=<runs_dir>/<name>` and,
when it succeeds, writes one result file `<results_dir>/<name>.json` and the attention heatmaps
`<name>.<borrower>__<lender>.png` of coupled runs. `run_one` is the experiments' one run-writer (the studies of
experiments.defaults and experiments.small_data train through it too), and a result file has one schema (read
by experiments.common.read_result): what `mtl_tagger.modeldir.read_run` reads back (flags, test metrics and
selected step of every vertical, the dev history, the Fig. 4 analysis) plus name, date, commit, command, wall
time and, for a study's runs, their variant label. A run with a result file is never run again; an interrupted
one is started again with the same model dir, and the trainer resumes it from its last evaluation. --background
detaches the sweep (its log goes to <runs_dir>/sweep.log) so it survives the terminal; a lock file keeps two
sweeps apart. `python -m experiments.collect` builds the tables from the result files.
"""
import datetime
import fnmatch
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from absl import flags

from experiments.common import read_result
from mtl_tagger import cli
from mtl_tagger.files import write_json_atomic
from mtl_tagger.modeldir import read_run

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that other scripts can import run_one)."""
    flags.DEFINE_string("sweep_dir", "flags/sweeps/table3", "Directory of run flagfiles (<name>.cfg).")
    flags.DEFINE_string("runs_dir", "runs/sweep", "Where the runs' model dirs and logs go (not committed).")
    flags.DEFINE_string("results_dir", "experiments/results/table3", "Where the per-run result files go.")
    flags.DEFINE_string("only", "*", "Glob over run names: run only these.")
    flags.DEFINE_bool("background", False, "Detach and run the sweep in the background.")
    flags.DEFINE_integer("jobs", 1, "Runs at a time; with more than one, each run gets one TensorFlow thread.")


def run_one(name: str, train_args: list[str], runs_dir: Path, results_dir: Path, one_thread: bool,
            module: str = "mtl_tagger.train", variant: str | None = None) -> dict | None:
    """Train the run `name` (`python -m <module> <train_args> --model_dir=<runs_dir>/<name>`, which resumes a run
    cut short) and write its result file, labelled with the study's `variant` if given; the result (read back
    when the file exists already, and then not trained again), or None when training failed. `one_thread` gives
    TensorFlow one thread, for runs trained side by side."""
    path = results_dir / f"{name}.json"
    if path.is_file():
        return read_result(path)
    model_dir = runs_dir / name
    command = [sys.executable, "-m", module, *train_args, f"--model_dir={model_dir}"]
    start = time.time()
    threads = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"} if one_thread else {}
    with open(runs_dir / f"{name}.log", "a") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **threads})
    if code != 0:
        print(f"{name}: FAILED (exit {code}); see {runs_dir / (name + '.log')}", flush=True)
        return None
    result = {
        "name": name,
        **({"variant": variant} if variant is not None else {}),
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "command": " ".join(command[1:]),
        "wall_seconds": round(time.time() - start, 1),
        **read_run(model_dir),
    }
    for png in sorted((model_dir / "attention").glob("*.png")):
        shutil.copyfile(png, results_dir / f"{name}.{png.stem}.png")
    write_json_atomic(path, result)
    f1 = ", ".join(f"{v} {m['macro_f1'] * 100:.2f} (step {m['selected_step']})" for v, m in result["metrics"].items())
    print(f"{name}: done in {result['wall_seconds']:.0f} s; test macro-F1 {f1}", flush=True)
    return result


def _lock(runs_dir: Path) -> Path:
    """Take the runs dir's lock file (created atomically); a lock of a dead sweep is taken over."""
    lock = runs_dir / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = lock.read_text().strip()
            try:
                if text.isdigit():
                    os.kill(int(text), 0)
                    sys.exit(f"error: {lock}: a sweep (pid {text}) is already running in {runs_dir}")
            except ProcessLookupError:
                pass
            lock.unlink(missing_ok=True)  # stale: its sweep is gone
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return lock
    sys.exit(f"error: {lock}: cannot take the sweep lock")


def main(argv: list[str]) -> None:
    """Run every pending flagfile of the sweep, in name order."""
    runs_dir, results_dir = Path(FLAGS.runs_dir), Path(FLAGS.results_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    if FLAGS.background:
        args = [a for a in sys.argv if a not in ("--background", "--background=true")]
        with open(runs_dir / "sweep.log", "a") as log:
            proc = subprocess.Popen([sys.executable, "-m", "experiments.sweep", *args[1:]], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        print(f"sweep running in the background: pid {proc.pid}, log {runs_dir / 'sweep.log'}")
        return
    cfgs = sorted(p for p in Path(FLAGS.sweep_dir).glob("*.cfg") if fnmatch.fnmatch(p.stem, FLAGS.only))
    if not cfgs:
        raise SystemExit(f"error: {FLAGS.sweep_dir}: no run flagfiles match --only={FLAGS.only}")
    lock = _lock(runs_dir)
    try:
        pending = [c for c in cfgs if not (results_dir / f"{c.stem}.json").is_file()]
        print(f"{len(cfgs)} runs, {len(cfgs) - len(pending)} finished, {len(pending)} to run", flush=True)
        with ThreadPoolExecutor(FLAGS.jobs) as pool:
            done = list(pool.map(lambda c: run_one(c.stem, [f"--flagfile={c}"], runs_dir, results_dir,
                                                   FLAGS.jobs > 1), pending))
        failed = [c.stem for c, result in zip(pending, done) if result is None]
    finally:
        lock.unlink(missing_ok=True)
    if failed:
        raise SystemExit(f"error: {len(failed)} run(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
