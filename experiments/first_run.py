"""How long the README's main command takes on a fresh clone, stage by stage, and how soon each stage says something
(the first output of a command that loads TensorFlow is its loading line): what a new user waits.

    python -m experiments.first_run [--work_dir=/tmp/mtl_first_run] [--shared=../shared]
        [--report=experiments/results/first_run.md]

Clones this repository's HEAD into WORK_DIR/mtl_tagger with `shared` beside it (a link to --shared), makes a fresh
virtualenv there, and runs the README's main command one stage at a time, timing each: the install, prepare, GloVe
and the training of the README's model. The report names the CPU, the load average before and after each stage
(other work on the machine slows every stage), and the command. WORK_DIR is removed first and left afterwards. The
install takes what pip's cache holds: on a machine that has never downloaded TensorFlow it takes longer.
"""
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

from experiments.common import command_line, load_average, machine
from mtl_tagger import cli
from mtl_tagger.progress import clock

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run, so importing it next to other scripts is safe)."""
    flags.DEFINE_string("work_dir", "/tmp/mtl_first_run", "Scratch directory for the clone (replaced).")
    flags.DEFINE_string("shared", str(ROOT.parent / "shared"), "The ../shared directory the README expects.")
    flags.DEFINE_string("report", str(ROOT / "experiments/results/first_run.md"), "Markdown report.")


def main_command(readme: Path) -> str:
    """The README's main command: the code block under "The two commands", first line."""
    text = readme.read_text(encoding="utf-8")
    block = re.search(r"## The two commands.*?```(?:sh|bash)?\n(.*?)```", text, re.S)
    if block is None:
        raise ValueError(f"{readme}: no code block under 'The two commands'")
    return next(line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#"))


def run_stage(stage: str, clone: Path, env: dict[str, str]) -> tuple[float, float, float, bool]:
    """Run one stage (its stdout and stderr one pipe, as a log or a caller sees them); (seconds until its first
    output, seconds in all, the longest silence between outputs or before the end, whether a progress bar showed
    the time left)."""
    start = time.monotonic()
    proc = subprocess.Popen(stage, shell=True, cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    times, text = [], b""
    while chunk := proc.stdout.read1(65536):
        times.append(time.monotonic() - start)
        text += chunk
    if proc.wait():
        raise subprocess.CalledProcessError(proc.returncode, stage)
    seconds = time.monotonic() - start
    gaps = [b - a for a, b in zip([0.0, *times], [*times, seconds])]
    left = re.search(rb"\d+[smh](?:\d+[sm])? left\b", text) is not None  # a progress bar's "· 3m05s left"
    return (times[0] if times else float("nan")), seconds, max(gaps), left


def run_stages(command: str, clone: Path) -> list[tuple]:
    """(stage, seconds to its first output, seconds, longest silence, time left shown, load before, load after)
    for each `&&`-joined stage, run in a fresh venv in `clone`."""
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True)
    env = {**os.environ, "PATH": f"{clone / '.venv' / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(clone / ".venv")}
    env.pop("PYTHONPATH", None)
    rows = []
    for stage in command.split(" && "):
        before = load_average()
        first, seconds, silence, left = run_stage(stage, clone, env)
        rows.append((stage, first, seconds, silence, left, before, load_average()))
        print(f"{seconds:8.1f} s (first output after {first:.1f} s, longest silence {silence:.1f} s)  {stage}",
              flush=True)
    return rows


def main(argv: list[str]) -> None:
    """Clone, run the stages, write the report."""
    cli.check_args(argv)
    work = Path(FLAGS.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "shared").symlink_to(Path(FLAGS.shared).resolve())
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "mtl_tagger")], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=work / "mtl_tagger", capture_output=True,
                          text=True, check=True).stdout.strip()
    command = main_command(work / "mtl_tagger" / "README.md")
    rows = run_stages(command, work / "mtl_tagger")
    total = sum(r[2] for r in rows)
    lines = [f"# The README's main command on a fresh clone ({datetime.date.today().isoformat()})", "",
             f"Machine: {machine()}, Python {platform.python_version()}; commit {head}. Written by "
             f"`{command_line('experiments.first_run')}`. Load average (1/5/15 min) "
             "before and after each stage: other work on the machine slows every stage. `first output`: seconds "
             "from a stage's start to its first byte on stdout or stderr (one pipe, as in a log); `longest silence`: "
             "the longest wait for the next output (or the end); in a log a progress bar writes a line every 30 s, "
             "on a terminal it redraws several times a second; `time left`: whether the project's progress bar showed "
             "the time left (pip's own bars, while downloading, give an eta this does not count).", "",
             "| stage | first output | longest silence | time left | time | load before | load after |",
             "|---|---:|---:|---|---:|---:|---:|"]
    lines += [f"| `{stage}` | {first:.1f} s | {silence:.1f} s | {'yes' if left else 'no'} | {clock(seconds)} | "
              f"{before} | {after} |" for stage, first, seconds, silence, left, before, after in rows]
    lines.append(f"| all | | | | {clock(total)} | | |")
    Path(FLAGS.report).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(FLAGS.report)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
