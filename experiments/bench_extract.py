"""Throughput of `mtl_tagger.extract` on the Flipkart sample: the local engine, and Ray with 1 and 2 workers.

    python -m experiments.bench_extract [--model_dir=runs/catalog] [--catalog=../shared/data/flipkart/products.jsonl.gz]
        [--rounds=3] [--limit=0] [--batch=256] [--max_load=0.5] [--report=experiments/results/bench_extract.md]

Each measurement is one fresh `python -m mtl_tagger.extract` process writing a new OUT, the engines taking
turns in every round (the order rotating from round to round), so that drifts in machine load hit all
of them alike. Two rates per run: end to end (products / wall seconds from start to exit: Python, TensorFlow
and the model, and for Ray the runtime and one model per actor) and steady (from the first chunk in OUT to
the last, read off OUT's progress file: the tagging rate once everything is loaded). Tokens are those of the
texts the model sees. --limit=N times the first N catalog lines only (a quick check of the script).

The machine must be quiet: it refuses to start when the 1-minute load average is above --max_load × cores
(0 turns the check off). The table goes to stdout and to --report with date, machine, load and command.
"""
import gzip
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from absl import app, flags

from experiments.collect import command_line
from mtl_tagger.extract import PROGRESS_SUFFIX, plan, sidecar
from mtl_tagger.files import read_json, write_text_atomic
from mtl_tagger.params import Params
from mtl_tagger.prepare import DEFAULT_VERTICALS
from mtl_tagger.text import tokenize

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {"local": ["--engine=local"], "ray, 1 worker": ["--engine=ray", "--workers=1"],
           "ray, 2 workers": ["--engine=ray", "--workers=2"]}
FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "runs/catalog", "Trained model of the catalog's verticals.")
flags.DEFINE_string("catalog", "../shared/data/flipkart/products.jsonl.gz", "Catalog file (run from the "
                    "repository root).")
flags.DEFINE_integer("rounds", 3, "Rounds; each runs every engine once.")
flags.DEFINE_integer("limit", 0, "Time only the first N lines of the (JSONL) catalog (0: all).")
flags.DEFINE_integer("batch", 256, "extract --batch.")
flags.DEFINE_float("max_load", 0.5, "Refuse to start above this 1-minute load average per core (0: no check).")
flags.DEFINE_string("report", str(ROOT / "experiments/results/bench_extract.md"), "Markdown report path.")


def limited_catalog(catalog: Path, limit: int, tmp: Path) -> Path:
    """The catalog, or a JSONL of its first `limit` lines."""
    if not limit:
        return catalog
    data = catalog.read_bytes()
    lines = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).split(b"\n")[:limit]
    path = tmp / "catalog.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def timed_run(args: list[str], out: Path) -> dict:
    """Run extract once: wall seconds, and the steady stretch between the first and the last chunk seen in
    OUT's progress file (polled every 20 ms; None without two distinct observations)."""
    progress = sidecar(out, PROGRESS_SUFFIX)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "mtl_tagger.extract", *args, f"--out={out}"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[tuple[float, int]] = []  # (time, products) at each change of the progress file
    loads = []
    while proc.poll() is None:
        done = read_json(progress)["products"] if progress.exists() else 0
        if done and (not seen or done != seen[-1][1]):
            seen.append((time.monotonic(), done))
        loads.append(os.getloadavg()[0])
        time.sleep(0.02)
    ended = time.monotonic()
    _, stderr = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"extract failed ({proc.returncode}): {stderr.strip().splitlines()[-1:]}")
    steady = None
    if len(seen) >= 2:
        steady = (seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0])
    return {"wall": ended - began, "products": read_json(progress)["products"], "steady": steady,
            "load": statistics.mean(loads) if loads else os.getloadavg()[0]}


def _summary(values: list[float]) -> str:
    """Median (range, n)."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f}, n={len(values)})"


def machine() -> str:
    """Cores, CPU model, Python, TensorFlow and Ray versions."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    versions = {}
    for name in ("tensorflow", "ray"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    return (f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, TensorFlow "
            f"{versions['tensorflow']}, Ray {versions['ray']}")


def main(argv: list[str]) -> None:
    """Time every engine --rounds times, alternating, and write the table."""
    del argv
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()
    if FLAGS.max_load and load_start[0] > FLAGS.max_load * cores:
        raise SystemExit(f"the machine is busy (1-minute load {load_start[0]:.1f} on {cores} cores > --max_load="
                         f"{FLAGS.max_load} per core): wait, or pass --max_load=0 for a rough check")
    command = command_line("experiments.bench_extract")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        catalog = limited_catalog(Path(FLAGS.catalog), FLAGS.limit, tmp)
        tasks = Params.load(FLAGS.model_dir).names
        work = plan(catalog, DEFAULT_VERTICALS, tasks, keep_spec_block=False)
        tokens_per_product = sum(len(tokenize(text)) for _, _, text in work.items) / max(len(work.items), 1)
        base = [f"--model_dir={FLAGS.model_dir}", f"--catalog={catalog}", f"--batch={FLAGS.batch}"]
        runs: dict[str, list[dict]] = {name: [] for name in ENGINES}
        names = list(ENGINES)
        for r in range(FLAGS.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                out = tmp / f"{len(runs[name])}.{name.replace(' ', '_').replace(',', '')}.jsonl"
                result = timed_run(base + ENGINES[name], out)
                runs[name].append(result)
                steady = f"{result['steady']:.0f}" if result["steady"] else "–"
                print(f"round {r + 1} {name}: {result['products']} products in {result['wall']:.1f} s "
                      f"(steady {steady} products/s, load {result['load']:.1f})", flush=True)
    load_end = os.getloadavg()
    rows = []
    for name, results in runs.items():
        e2e = [x["products"] / x["wall"] for x in results]
        steady = [x["steady"] for x in results if x["steady"]]
        rows.append(f"| {name} | {statistics.median(x['wall'] for x in results):.1f} | {_summary(e2e)} "
                    f"| {_summary([v * tokens_per_product for v in e2e])} | {_summary(steady) if steady else '–'} "
                    f"| {_summary([v * tokens_per_product for v in steady]) if steady else '–'} "
                    f"| {statistics.mean(x['load'] for x in results):.1f} |")
    rough = FLAGS.limit or not FLAGS.max_load or FLAGS.rounds < 3
    report = "\n".join([
        f"# extract throughput ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
        *(["**A check that the script works, not a measurement** (part of the catalog, fewer than 3 rounds or no "
           "load check): rerun `python -m experiments.bench_extract` on a quiet machine for the figures.", ""]
          if rough else []),
        f"Machine: {machine()}. Command: `{command}`.", "",
        f"Load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in load_start)}, at end "
        f"{'/'.join(f'{x:.1f}' for x in load_end)}; the load column is the mean 1-minute load during that "
        "engine's runs.", "",
        f"Catalog `{FLAGS.catalog}`{f' (first {FLAGS.limit} lines)' if FLAGS.limit else ''}: {len(work.items)} "
        f"products of the model's verticals, {tokens_per_product:.1f} tokens each on average; model "
        f"`{FLAGS.model_dir}`; --batch={FLAGS.batch}; rounds: {FLAGS.rounds}, engines alternating. End to end: "
        "from process start to exit (imports, model loads, Ray start-up and shutdown included). Steady: between "
        "the first and the last chunk recorded in OUT (the tagging rate once all is loaded; needs 3+ chunks to "
        "mean much).", "",
        "| engine | wall s (median) | products/s end to end | tokens/s end to end | products/s steady "
        "| tokens/s steady | load |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows, ""])
    print(report)
    write_text_atomic(FLAGS.report, report)


if __name__ == "__main__":
    app.run(main)
