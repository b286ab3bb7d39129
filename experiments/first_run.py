"""How long the README's main command takes on a fresh clone, stage by stage: what a new user waits.

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
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

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


def cpu() -> str:
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    info = Path("/proc/cpuinfo")
    names = re.findall(r"model name\s*:\s*(.*)", info.read_text()) if info.is_file() else []
    return f"{names[0]} × {os.cpu_count()}" if names else f"{platform.processor()} × {os.cpu_count()}"


def run_stages(command: str, clone: Path) -> list[tuple[str, float, str, str]]:
    """(stage, seconds, load before, load after) for each `&&`-joined stage, run in a fresh venv in `clone`."""
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True)
    env = {**os.environ, "PATH": f"{clone / '.venv' / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(clone / ".venv")}
    env.pop("PYTHONPATH", None)
    rows = []
    for stage in command.split(" && "):
        before = "/".join(f"{x:.1f}" for x in os.getloadavg())
        start = time.monotonic()
        subprocess.run(stage, shell=True, cwd=clone, env=env, check=True, stdout=subprocess.DEVNULL)
        rows.append((stage, time.monotonic() - start, before, "/".join(f"{x:.1f}" for x in os.getloadavg())))
        print(f"{rows[-1][1]:8.1f} s  {stage}", flush=True)
    return rows


def main(argv: list[str]) -> None:
    """Clone, run the stages, write the report."""
    del argv
    work = Path(FLAGS.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "shared").symlink_to(Path(FLAGS.shared).resolve())
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work / "mtl_tagger")], check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=work / "mtl_tagger", capture_output=True,
                          text=True, check=True).stdout.strip()
    command = main_command(work / "mtl_tagger" / "README.md")
    rows = run_stages(command, work / "mtl_tagger")
    total = sum(r[1] for r in rows)
    lines = [f"# The README's main command on a fresh clone ({datetime.date.today().isoformat()})", "",
             f"Machine: {cpu()}, Python {platform.python_version()}; commit {head}. Written by "
             f"`{shlex.join(['python', '-m', 'experiments.first_run', *sys.argv[1:]])}`. Load average (1/5/15 min) "
             "before and after each stage: other work on the machine slows every stage.", "",
             "| stage | time | load before | load after |", "|---|---:|---:|---:|"]
    lines += [f"| `{stage}` | {clock(seconds)} | {before} | {after} |" for stage, seconds, before, after in rows]
    lines.append(f"| all | {clock(total)} | | |")
    Path(FLAGS.report).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(FLAGS.report)


if __name__ == "__main__":
    define_flags()
    app.run(main)
