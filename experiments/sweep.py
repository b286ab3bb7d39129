"""Resumable sweep runner over absl flagfiles: one training run per `<sweep_dir>/<name>.cfg`.

    python -m experiments.sweep --sweep_dir=flags/sweeps/table3 [--background] [--only='s1.*'] [--jobs=2]

Each run trains `python -m mtl_tagger.train --flagfile=<name>.cfg --model_dir=<runs_dir>/<name>` and,
when it succeeds, writes one result file `<results_dir>/<name>.json` and the attention heatmaps
`<name>.<borrower>__<lender>.png` of coupled runs, through experiments.common.run_one, the experiments' one
run-writer (the studies of experiments.defaults and experiments.small_data train through it too). A result file has
one schema (read by experiments.common.read_result): what `mtl_tagger.modeldir.read_run` reads back (flags, test
metrics and selected step of every vertical, the dev history, the Fig. 4 analysis) plus name, date, commit, command,
wall time and, for a study's runs, their variant label. A run with a result file is never run again; an interrupted
one is started again with the same model dir, and the trainer resumes it from its last evaluation. --background
detaches the sweep (its log goes to <runs_dir>/sweep.log) so it survives the terminal; a lock file keeps two
sweeps apart. `python -m experiments.collect` builds the tables from the result files.
"""
import fnmatch
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from absl import flags

from experiments.common import run_one
from mtl_tagger import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    flags.DEFINE_string("sweep_dir", "flags/sweeps/table3", "Directory of run flagfiles (<name>.cfg).")
    flags.DEFINE_string("runs_dir", "runs/sweep", "Where the runs' model dirs and logs go (not committed).")
    flags.DEFINE_string("results_dir", "experiments/results/table3", "Where the per-run result files go.")
    flags.DEFINE_string("only", "*", "Glob over run names: run only these.")
    flags.DEFINE_bool("background", False, "Detach and run the sweep in the background.")
    flags.DEFINE_integer("jobs", 1, "Runs at a time; with more than one, each run gets one TensorFlow thread.")


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
