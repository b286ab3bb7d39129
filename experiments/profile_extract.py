"""Where one `mtl_tagger.extract` run spends its time: each stage's share of the wall time.

    python -m experiments.profile_extract [--model_dir=runs/crossfit/fold0/model]
        [--catalog=../shared/data/flipkart/products.jsonl.gz] [--batch=256] [--baseline=DIR]
        [--report=experiments/results/profile_extract.md]

One local-engine run in a fresh process (OUT in a temporary directory), from `extract_catalog` loading the model
(with the settings the command gives TensorFlow) to the summary; imports are not counted. With --baseline=DIR (a
checkout of other code, e.g. `git worktree add /tmp/base HEAD`), the same run of that code first, in its own
process, and the two side by side.

Each stage is a function of the package, looked up by name and wrapped with a timer for the run only (the package
is not changed, so older code is profiled the same way; a stage whose function that code lacks reads 0). Decoder
calls may run on several threads at once; the wall time is split by a sweep over every recorded interval: each
moment goes to the first stage of STAGES running then in any thread, so the rows add up to the wall time. "own s"
sums each stage's own time over all threads (without the stages called inside it), so it exceeds the wall time where
threads overlap. A head's first decoder call is counted as tracing (with the graph's optimisation; code that traces
at a head's first batch counts that batch's work there too).

The model is one traced call per batch (encoder, Viterbi and marginals together); to split it, every batch of
the run is decoded again afterwards, one at a time, with and without the marginals, and the model's time is
shared out in those proportions (rows marked "share measured apart").
"""
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from absl import flags

from experiments.common import command_line, define_catalog_flags, describe, load_average, machine, versions
from mtl_tagger import cli

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS

MODEL = "model (encoder, Viterbi, marginals)"
TRACING = "tracing (each head's first decoder call)"
LOADING = "loading the model"
OTHER = "other (lock, progress bar, chunk grouping)"
SUMMARY = "summary (values per vertical, trained-on ids)"
# (stage, module, attribute) in sweep order: a moment where several run goes to the first; "Class.method" for a
# method. Tracing is told apart by the decoder's wrapper; the rest of the run is "other".
STAGES = [
    (MODEL, "mtl_tagger.tagger", "Tagger.decoder"),
    (TRACING, None, None),
    ("calibration", "mtl_tagger.calibration", "Calibration.apply"),
    ("tokenizing", "mtl_tagger.tagger", "tokenize"),
    ("vocabulary lookup (ids)", "mtl_tagger.tagger", "encode"),
    ("batching (length order, padding)", "mtl_tagger.tagger", "eval_batches"),
    ("context snippets", "mtl_tagger.extract", "snippet"),
    ("JSON lines", "mtl_tagger.extract", "json_line"),
    ("writing OUT (append, fsync, progress file)", "mtl_tagger.extract", "Output.append"),
    ("reading the catalog (gunzip, JSON)", "mtl_tagger.extract", "read_catalog"),
    ("boilerplate sentences", "mtl_tagger.extract", "catalog_boilerplate"),
    ("fingerprints (SHA-256 of catalog, model)", "mtl_tagger.extract", "sha256"),
    ("resume check (opening OUT)", "mtl_tagger.extract", "Output.__init__"),
    (SUMMARY, "mtl_tagger.extract", "values_per_vertical"),
    (SUMMARY, "mtl_tagger.extract", "trained_on"),
    ("snap rule (known values)", "mtl_tagger.tagger", "Tagger._snap"),
    ("values (offsets, confidences) and waiting for the model", "mtl_tagger.tagger", "Tagger.extract"),
    ("routing, text cut", "mtl_tagger.extract", "plan"),
    (LOADING, "mtl_tagger.tagger", "Tagger.load"),
    (OTHER, None, None),
]
ORDER = list(dict.fromkeys(stage for stage, _, _ in STAGES))

Interval = tuple[float, float, str]


def define_flags() -> None:
    """The flags (defined when run as a program, so that other scripts can import its helpers)."""
    define_catalog_flags()
    flags.DEFINE_integer("batch", 256, "extract --batch.")
    flags.DEFINE_string("baseline", None, "A checkout of other code (git worktree) to profile first, beside.")
    flags.DEFINE_string("report", str(ROOT / "experiments/results/profile_extract.md"), "Markdown report path.")
    flags.DEFINE_string("json", None, "Profile the package this process imports and write the figures here as "
                        "JSON, without a report (how the script runs each code).")


class Recorder:
    """Intervals of stages per thread, and the tagger and the padded batches each head decoded (for the model
    split)."""

    def __init__(self) -> None:
        self.intervals: dict[int, list[Interval]] = defaultdict(list)
        self.tagger: object = None
        self.batches: list[tuple[str, dict]] = []
        self.called: set[tuple[str, bool]] = set()
        self.lock = threading.Lock()

    def add(self, stage: str, start: float, end: float) -> None:
        """One interval of `stage` in the calling thread."""
        self.intervals[threading.get_ident()].append((start, end, stage))

    def timed(self, function: Callable, stage: str) -> Callable:
        """`function`, recording each call as an interval of `stage`."""
        def call(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(stage, start, time.perf_counter())
        return call

    def decoder(self, method: Callable) -> Callable:
        """Tagger.decoder, its functions timed: a head's first call as tracing, the others as the model."""
        def decoder(tagger: object, task: str, marginals: bool = False, **options: bool) -> Callable:
            self.tagger = tagger
            decode = method(tagger, task, marginals, **options)
            key = (task, marginals, *sorted(options.items()))

            def call(*args: object) -> object:
                with self.lock:
                    first = key not in self.called
                    self.called.add(key)
                if not first and marginals:
                    self.batches.append((task, args[0]))
                return self.timed(decode, TRACING if first else MODEL)(*args)
            return call
        return decoder


@contextlib.contextmanager
def instrumented(recorder: Recorder) -> Iterator[None]:
    """Every function of STAGES replaced by its timed version for the block, then put back."""
    saved = []
    try:
        for stage, module_name, attribute in STAGES:
            if module_name is None:
                continue
            owner: object = importlib.import_module(module_name)
            name = attribute
            if "." in attribute:
                class_name, name = attribute.split(".")
                owner = getattr(owner, class_name)
            if name not in vars(owner):  # older code without this stage: it reads 0
                continue
            original = vars(owner)[name]
            saved.append((owner, name, original))
            if stage == MODEL:
                setattr(owner, name, recorder.decoder(original))
            elif isinstance(original, classmethod):
                setattr(owner, name, classmethod(recorder.timed(original.__func__, stage)))
            else:
                setattr(owner, name, recorder.timed(original, stage))
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def own_segments(intervals: list[Interval]) -> list[Interval]:
    """One thread's properly nested intervals as disjoint segments, each moment given to the innermost stage."""
    segments: list[Interval] = []
    stack: list[list] = []  # [end, stage, cursor]

    def close_until(moment: float) -> None:
        while stack and stack[-1][0] <= moment:
            end, stage, cursor = stack.pop()
            segments.append((cursor, end, stage))
            if stack:
                stack[-1][2] = end

    for start, end, stage in sorted(intervals, key=lambda x: (x[0], -x[1])):
        close_until(start)
        if stack:
            segments.append((stack[-1][2], start, stack[-1][1]))
        stack.append([end, stage, start])
    close_until(float("inf"))
    return [s for s in segments if s[1] > s[0]]


def split_wall(segments: list[Interval]) -> dict[str, float]:
    """Wall seconds per stage: each moment to the first stage of ORDER running then, in any thread."""
    events = sorted([(start, 1, stage) for start, _, stage in segments]
                    + [(end, -1, stage) for _, end, stage in segments])
    active: dict[str, int] = defaultdict(int)
    wall: dict[str, float] = defaultdict(float)
    last = events[0][0] if events else 0.0
    for moment, change, stage in events:
        running = [s for s in ORDER if active[s] > 0]
        if running:
            wall[running[0]] += moment - last
        active[stage] += change
        last = moment
    return dict(wall)


def model_split(tagger: object, batches: list[tuple[str, dict]]) -> float:
    """The share of the model's time that the encoder and Viterbi take: every batch decoded again alone, with and
    without the marginals (each head's decoders traced first)."""
    import tensorflow as tf

    for task, batch in {task: batch for task, batch in batches}.items():
        tagger.decoder(task, False)(batch)
    seconds = {False: 0.0, True: 0.0}
    for task, batch in batches:
        for marginals in (False, True):
            decode = tagger.decoder(task, marginals)
            args = (batch, tf.ones([1] * decode.input_signature[1].shape.rank)) if marginals else (batch,)  # older
            start = time.perf_counter()  # code's marginal decoder takes a scalar temperature, today's a vector of one
            decode(*args)
            seconds[marginals] += time.perf_counter() - start
    return seconds[False] / seconds[True]


def profile(out: Path) -> dict:
    """Extract the catalog into `out` as the command does (the model loaded by extract) with every stage timed: wall
    and own seconds per stage, the total, products tagged, the steady rate (first to last chunk written) and the
    model split."""
    import mtl_tagger
    from mtl_tagger import extract

    recorder = Recorder()
    appended: list[tuple[float, int]] = []
    with instrumented(recorder):
        append = extract.Output.append

        def noted(output: extract.Output, lines: str, products: int) -> None:
            append(output, lines, products)
            appended.append((time.perf_counter(), output.state["products"]))

        extract.Output.append = noted
        began = time.perf_counter()
        try:
            summary = extract.extract_catalog(FLAGS.model_dir, FLAGS.catalog, out, batch=FLAGS.batch)
        finally:
            extract.Output.append = append
        ended = time.perf_counter()
    recorder.add(OTHER, began, ended)
    segments = [s for intervals in recorder.intervals.values() for s in own_segments(intervals)]
    own: dict[str, float] = defaultdict(float)
    for start, end, stage in segments:
        own[stage] += end - start
    steady = (appended[-1][1] - appended[0][1]) / (appended[-1][0] - appended[0][0]) if len(appended) > 2 else None
    return {"package": str(Path(mtl_tagger.__file__).parent), "wall": split_wall(segments), "own": dict(own),
            "total": ended - began, "tagged": summary["tagged"], "steady": steady,
            "viterbi_share": model_split(recorder.tagger, recorder.batches)}


def profiled(name: str, code: Path, tmp: Path) -> dict:
    """`profile` in a fresh process that imports the package of the checkout `code` and this script from here (the
    package is imported first, so the script's own imports of it find that one)."""
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    result = tmp / f"{name}.json"
    args = [f"--model_dir={FLAGS.model_dir}", f"--catalog={FLAGS.catalog}", f"--batch={FLAGS.batch}",
            f"--json={result}"]
    start = (f"import runpy, sys; sys.argv[1:] = {args!r}; sys.path.insert(0, {str(code)!r}); import mtl_tagger; "
             f"sys.path.insert(0, {str(ROOT)!r}); runpy.run_module('experiments.profile_extract', run_name='__main__')")
    run = subprocess.run([sys.executable, "-c", start], cwd=Path.cwd(), env=env, capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"profiling {code} failed: {run.stderr.strip().splitlines()[-1:]}")
    figures = json.loads(result.read_text())
    if Path(figures["package"]) != code / "mtl_tagger":
        raise SystemExit(f"profiling {code} imported the package from {figures['package']}")
    return figures


def table(results: dict[str, dict]) -> list[str]:
    """Markdown rows: per stage, each code's wall seconds and share of its total, and own seconds."""
    head = "| stage | " + " | ".join(f"{name}: wall s | share | own s" for name in results) + " |"
    rows = [head, "|---|" + "---:|---:|---:|" * len(results)]
    for stage in ORDER:
        parts = [(stage, {name: 1.0 for name in results})]
        if stage == MODEL:
            parts = [("model: encoder + Viterbi (share measured apart)", {n: r["viterbi_share"] for n, r in
                                                                          results.items()}),
                     ("model: marginals (share measured apart)", {n: 1 - r["viterbi_share"] for n, r in
                                                                  results.items()})]
        for label, fraction in parts:
            cells = []
            for name, r in results.items():
                wall, own = r["wall"].get(stage, 0.0) * fraction[name], r["own"].get(stage, 0.0) * fraction[name]
                cells.append(f"{wall:.2f} | {wall / r['total']:.1%} | {own:.2f}")
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
    rows.append("| **total** | " + " | ".join(f"**{r['total']:.2f}** | 100% | " for r in results.values()) + " |")
    return rows


def main(argv: list[str]) -> None:
    """Profile one extract run of each code, and write the table."""
    cli.check_args(argv)
    if FLAGS.json:
        with tempfile.TemporaryDirectory() as tmp:
            Path(FLAGS.json).write_text(json.dumps(profile(Path(tmp) / "out.jsonl")))
        return
    command = command_line("experiments.profile_extract")
    load_start = load_average()
    codes = {"baseline": Path(FLAGS.baseline).resolve()} if FLAGS.baseline else {}
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: profiled(name, code, Path(tmp)) for name, code in {**codes, "this code": ROOT}.items()}
    load_end = load_average()
    from mtl_tagger.files import write_text_atomic

    rates = "; ".join(f"{name} ({describe(Path(r['package']).parent)}): {r['tagged']} products in {r['total']:.1f} s, "
                      f"{r['tagged'] / r['total']:,.0f} products/s, steady (first chunk written to last) "
                      f"{r['steady'] or 0:,.0f} products/s" for name, r in results.items())
    report = "\n".join([
        f"# Where an extract run's time goes ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
        f"Machine: {machine()}, {versions('TensorFlow', 'Ray')}. Command: `{command}`.", "",
        f"Load average (1/5/15 min) at start {load_start}, at end {load_end}: other work on the machine slows every "
        "stage.", "",
        f"Catalog `{FLAGS.catalog}`, model `{FLAGS.model_dir}`, --batch={FLAGS.batch}, local engine, one process "
        f"per code, from loading the model to the summary (imports not counted): {rates}. How the rows are made: "
        "the docstring of experiments/profile_extract.py.", "",
        *table(results), ""])
    print(report)
    write_text_atomic(FLAGS.report, report)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
