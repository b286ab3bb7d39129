"""Throughput of `mtl_tagger.extract` on the Flipkart sample: the local engine, and Ray with 1 and 2 workers
(the `ray` extra: pip install -e '.[current,ray]').

    python -m experiments.bench_extract [--model_dir=runs/crossfit/fold0/model]
        [--catalog=../shared/data/flipkart/products.jsonl.gz] [--rounds=3] [--limit=0] [--batch=256]
        [--max_load=0.5] [--report=experiments/results/bench_extract.md]
        [--engines=local,ray1,ray2] [--baseline=DIR]

Each measurement is one fresh `python -m mtl_tagger.extract` process writing a new OUT, the engines taking
turns in every round (the order rotating from round to round), so that drifts in machine load hit all
of them alike. Two rates per run: end to end (products / wall seconds from start to exit: Python, TensorFlow
and the model, and for Ray the runtime and one model per actor) and steady (from the first chunk in OUT to
the last, read off OUT's progress file: the tagging rate once everything is loaded). Tokens are those of the
texts the model sees. --limit=N times the first N catalog lines only (a quick check of the script).
--baseline=DIR also times the local engine of the code checked out in DIR (e.g. `git worktree add /tmp/base
HEAD`), in the same rounds: old and new code side by side under the same load. Every run imports the package
from its checkout alone (PYTHONSAFEPATH, PYTHONPATH) and runs in this repository, on the same files.

The machine must be quiet: it refuses to start when the 1-minute load average is above --max_load × cores
(0 turns the check off). The table goes to stdout and to --report with date, machine, load and command.
"""
import gzip
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from absl import flags

from experiments.common import (
    command_line,
    define_catalog_flags,
    describe,
    flops_per_token,
    gemm_rates,
    load_average,
    machine,
    versions,
)
from mtl_tagger import cli
from mtl_tagger.errors import InputError
from mtl_tagger.extract import PROGRESS_SUFFIX, plan, sidecar
from mtl_tagger.files import read_json, write_text_atomic
from mtl_tagger.params import Params
from mtl_tagger.prepare import DEFAULT_VERTICALS
from mtl_tagger.text import tokenize

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {"local": ["--engine=local"], "ray1": ["--engine=ray", "--workers=1"],
           "ray2": ["--engine=ray", "--workers=2"]}
NAMES = {"local": "local", "ray1": "ray, 1 worker", "ray2": "ray, 2 workers"}
FLAGS = flags.FLAGS


def define_flags() -> None:
    """The flags (defined when run as a program, so that other scripts can import its helpers)."""
    define_catalog_flags()
    flags.DEFINE_integer("rounds", 3, "Rounds; each runs every engine once.")
    flags.DEFINE_integer("limit", 0, "Time only the first N lines of the (JSONL) catalog (0: all).")
    flags.DEFINE_integer("batch", 256, "extract --batch.")
    flags.DEFINE_float("max_load", 0.5, "Refuse to start above this 1-minute load average per core (0: no check).")
    flags.DEFINE_string("report", str(ROOT / "experiments/results/bench_extract.md"), "Markdown report path.")
    flags.DEFINE_list("engines", list(ENGINES), f"Engines to time, of {', '.join(ENGINES)}.")
    flags.DEFINE_string("baseline", None, "A checkout of other code (git worktree) whose local engine is timed too.")


def limited_catalog(catalog: Path, limit: int, tmp: Path) -> Path:
    """The catalog, or a JSONL of its first `limit` lines."""
    if not limit:
        return catalog
    data = catalog.read_bytes()
    lines = (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).split(b"\n")[:limit]
    path = tmp / "catalog.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def timed_run(args: list[str], out: Path, code: Path = ROOT) -> dict:
    """Run extract once with the package of the checkout `code`: wall seconds, CPU seconds (all its threads), and
    the steady stretch between the first and the last chunk seen in OUT's progress file (polled every 20 ms; None
    without two distinct observations)."""
    progress = sidecar(out, PROGRESS_SUFFIX)
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONSAFEPATH": "1"}
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"extract failed ({proc.returncode}): {stderr.strip().splitlines()[-1:]}")
    steady = None
    if len(seen) >= 2:
        steady = (seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0])
    return {"wall": ended - began, "products": read_json(progress)["products"], "steady": steady,
            "cpu": used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime,
            "load": statistics.mean(loads) if loads else os.getloadavg()[0]}


def _summary(values: list[float]) -> str:
    """Median (range, n)."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f}, n={len(values)})"


def variants() -> dict[str, tuple[list[str], Path]]:
    """What each round times, by table row: the extract flags and the checkout whose code runs."""
    unknown = sorted(set(FLAGS.engines) - set(ENGINES))
    if unknown:
        raise InputError(f"--engines: unknown {', '.join(unknown)}; choose among {', '.join(ENGINES)}")
    timed = {NAMES[e]: (ENGINES[e], ROOT) for e in FLAGS.engines}
    if FLAGS.baseline:
        code = Path(FLAGS.baseline).resolve()
        if not (code / "mtl_tagger").is_dir():
            raise InputError(f"--baseline={FLAGS.baseline}: no checkout of the package there (mtl_tagger/)")
        timed[f"local, baseline ({describe(code)})"] = (ENGINES["local"], code)
    return timed


def measure(timed: dict[str, tuple[list[str], Path]], common: list[str], tmp: Path) -> dict[str, list[dict]]:
    """--rounds rounds of one run of each variant, the order rotating from round to round."""
    runs: dict[str, list[dict]] = {name: [] for name in timed}
    names = list(timed)
    for r in range(FLAGS.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            args, code = timed[name]
            out = tmp / f"{len(runs[name])}.{names.index(name)}.jsonl"
            result = timed_run(common + args, out, code)
            runs[name].append(result)
            steady = f"{result['steady']:.0f}" if result["steady"] else "–"
            print(f"round {r + 1} {name}: {result['products']} products in {result['wall']:.1f} s "
                  f"({result['cpu']:.1f} s CPU) "
                  f"(steady {steady} products/s, load {result['load']:.1f})", flush=True)
    return runs


def table_row(name: str, results: list[dict], tokens_per_product: float) -> str:
    """One variant's row: median wall and CPU seconds, end-to-end and steady rates in products and tokens, mean
    load."""
    e2e = [x["products"] / x["wall"] for x in results]
    steady = [x["steady"] for x in results if x["steady"]]
    return (f"| {name} | {statistics.median(x['wall'] for x in results):.1f} "
            f"| {statistics.median(x['cpu'] for x in results):.1f} | {_summary(e2e)} "
            f"| {_summary([v * tokens_per_product for v in e2e])} | {_summary(steady) if steady else '–'} "
            f"| {_summary([v * tokens_per_product for v in steady]) if steady else '–'} "
            f"| {statistics.mean(x['load'] for x in results):.1f} |")


def flop_ceiling(params: Params, num_tags: int, chars_per_token: float) -> tuple[float, float, float, str]:
    """What the hardware allows: the model's forward FLOPs per token, this machine's best GEMM rate (GFLOP/s,
    TensorFlow, 2048³) in the dtype of the model's BiLSTM products on this machine, the tokens/s that rate would give
    if all the forward pass were such GEMMs, and that dtype's name."""
    import tensorflow as tf

    from mtl_tagger.bilstm import resolve_matmul_dtype

    dtype = resolve_matmul_dtype(params.matmul_dtype)
    model = {k: getattr(params, k) for k in ("word_dim", "char_dim", "char_hidden", "hidden_size", "case_dim")}
    flops = sum(flops_per_token(model, num_tags, chars_per_token).values())
    peak = gemm_rates({"2048³": (2048, 2048, 2048)}, lambda a: tf.cast(a, dtype), tf.linalg.matmul)["2048³"]
    return flops, peak, peak * 1e9 / flops, dtype.name


def main(argv: list[str]) -> None:
    """Time every engine (and the baseline) --rounds times, alternating, and write the table."""
    cli.check_args(argv)
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()
    if FLAGS.max_load and load_start[0] > FLAGS.max_load * cores:
        raise SystemExit(f"the machine is busy (1-minute load {load_start[0]:.1f} on {cores} cores > --max_load="
                         f"{FLAGS.max_load} per core): wait, or pass --max_load=0 for a rough check")
    command = command_line("experiments.bench_extract")
    timed = variants()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        catalog = limited_catalog(Path(FLAGS.catalog), FLAGS.limit, tmp)
        tasks = Params.load(FLAGS.model_dir).names
        work = plan(catalog, DEFAULT_VERTICALS, tasks, keep_spec_block=False)
        tokens = [tokenize(text) for _, _, text in work.items]
        tokens_per_product = sum(map(len, tokens)) / max(len(work.items), 1)
        chars_per_token = sum(len(w) for ws in tokens for w in ws) / max(sum(map(len, tokens)), 1)
        common = [f"--model_dir={FLAGS.model_dir}", f"--catalog={catalog}", f"--batch={FLAGS.batch}"]
        runs = measure(timed, common, tmp)
    load_end = load_average()
    params = Params.load(FLAGS.model_dir)
    vocab_tags = read_json(Path(FLAGS.model_dir) / "vocab.json")["tags"]
    num_tags = max(len(tags) for tags in vocab_tags.values())
    flops, peak, ceiling, dtype = flop_ceiling(params, num_tags, chars_per_token)
    rough = FLAGS.limit or not FLAGS.max_load or FLAGS.rounds < 3
    report = "\n".join([
        f"# extract throughput ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
        *(["**A check that the script works, not a measurement** (part of the catalog, fewer than 3 rounds or no "
           "load check): rerun `python -m experiments.bench_extract` on a quiet machine for the figures.", ""]
          if rough else []),
        f"Machine: {machine()}, {versions('TensorFlow', 'Ray')}. Command: `{command}`.", "",
        f"Load average (1/5/15 min) at start {load_average(load_start)}, at end {load_end}; the load column is the "
        "mean 1-minute load during that engine's runs.", "",
        f"Catalog `{FLAGS.catalog}`{f' (first {FLAGS.limit} lines)' if FLAGS.limit else ''}: {len(work.items)} "
        f"products of the model's verticals, {tokens_per_product:.1f} tokens each on average; model "
        f"`{FLAGS.model_dir}`; --batch={FLAGS.batch}; rounds: {FLAGS.rounds}, engines alternating. End to end: "
        "from process start to exit (imports, model loads, tracing, Ray start-up and shutdown included). Steady: "
        "between the first and the last chunk recorded in OUT, the tagging rate once all is loaded (extract traces "
        "the heads it needs before its first chunk; code that traces a head at its first batch pays for it in "
        "this stretch); it needs 3+ chunks to mean much. CPU: user and system seconds of the extract process (all its "
        "threads) and of the processes it waited for (not Ray's actors).", "",
        "| engine | wall s (median) | CPU s (median) | products/s end to end | tokens/s end to end "
        "| products/s steady | tokens/s steady | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *(table_row(name, results, tokens_per_product) for name, results in runs.items()), "",
        f"What the hardware allows at this configuration (hidden {params.hidden_size}): the forward pass takes "
        f"{flops / 1e6:.2f} MFLOP per token (experiments.common.flops_per_token: {chars_per_token:.1f} characters "
        f"per token, {num_tags} tags); this machine's best {dtype} GEMM rate in TensorFlow (2048³, in the dtype of "
        f"the model's BiLSTM products here, measured after the rounds) is {peak:.0f} GFLOP/s, so at most "
        f"{ceiling:,.0f} tokens/s, {ceiling / tokens_per_product:,.0f} "
        "products/s, if all of it ran at that rate (the recurrence's small GEMMs do not).", ""])
    print(report)
    write_text_atomic(FLAGS.report, report)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
