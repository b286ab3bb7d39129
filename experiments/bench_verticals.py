"""How a training step scales with the number of verticals, in shared and coupled mode.

    python -m experiments.bench_verticals [--verticals=1,2,4,8] [--steps=20] [--hidden_size=128] \
        [--coupling_scores=emission,log_softmax,marginal]

Synthetic verticals (experiments.common.write_data: Zipf-ish words, 41 tags, lognormal lengths with
median 30; 300 training sentences each) are trained together with `--tasks=V1,…,VN` at the paper's
configuration with the given hidden size and random embeddings; coupled runs couple every pair
(`--couple=all`, N(N−1)/2 pairs, min(pairs, N−1) coupling minibatches per step), once per --coupling_scores
value (`marginal` adds a forward–backward pass per head). Each step time is the median
of --steps steps after a warm-up step; all runs of one N alternate step by step, so machine load hits them
alike. The claim to check: a step costs about N single-vertical steps in both modes, not N².
"""
import datetime
import os
import statistics
import tempfile
import time
from pathlib import Path

from absl import flags

from experiments.common import command_line, load_average, machine, write_data
from mtl_tagger import cli
from mtl_tagger.params import Params, read_flagfile

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    flags.DEFINE_list("verticals", ["1", "2", "4", "8"], "Numbers of verticals to train together.")
    flags.DEFINE_integer("steps", 20, "Timed steps per run.")
    flags.DEFINE_integer("hidden_size", 128, "BiLSTM units per direction.")
    flags.DEFINE_list("coupling_scores", ["emission"], "Time a coupled run with each of these --coupling_score values.")
    flags.DEFINE_string("out", "", "Also write the table (with date, load and command) to this markdown file.")


def loops(root: Path, n: int, scores: list[str]) -> dict[str, object]:
    """Shared and coupled runs (one per coupling score, each named by it when there are others than the paper's)
    of the first n synthetic verticals (a single run for n = 1)."""
    from mtl_tagger import run
    from mtl_tagger.corpus import load_data
    from mtl_tagger.train import make_loop

    names = [f"V{i}" for i in range(n)]
    out = {}
    modes = [("single", "emission")] if n == 1 else [("shared", "emission"), *(("coupled", s) for s in scores)]
    for mode, score in modes:
        label = mode if mode != "coupled" or scores == ["emission"] else f"coupled, {score}"
        p = Params(**{**read_flagfile("flags/paper.cfg"), "tasks": ",".join(names), "mtl_mode": mode,
                      "coupling_score": score, "data_dir": str(root / "data"), "word_vectors": "",
                      "hidden_size": FLAGS.hidden_size, "max_len": 150,
                      "model_dir": str(root / f"{n}.{mode}.{score}")}).validate()
        Path(p.model_dir).mkdir(parents=True)
        built = run.build(p, load_data(p), Path(p.model_dir))
        out[label] = make_loop(built, Path(p.model_dir))[0]
    return out


def time_steps(runs: dict[str, object]) -> dict[str, float]:
    """Median seconds per step of each run, the runs alternating step by step."""
    from mtl_tagger import pipeline

    streams = {}
    for mode, loop in runs.items():
        r = loop.run
        data = pipeline.step_dataset(r.table, r.plans(FLAGS.steps + 1), r.offsets, 0, r.coupling,
                                     r.coupling_plan(FLAGS.steps + 1))
        streams[mode] = list(data)
        loop.train_step(streams[mode][0])  # trace and warm up
    times: dict[str, list[float]] = {mode: [] for mode in runs}
    for i in range(1, FLAGS.steps + 1):
        for mode, loop in runs.items():
            start = time.perf_counter()
            float(loop.train_step(streams[mode][i])["loss"])
            times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(t) for mode, t in times.items()}


def main(argv: list[str]) -> None:
    """Time every N and print (and write) the table."""
    sizes = [int(n) for n in FLAGS.verticals]
    scores = list(dict.fromkeys(FLAGS.coupling_scores))  # once each: a repeated score would reuse its model dir
    before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_data(root / "data", {f"V{i}": {"train": 300, "dev": 20, "test": 20} for i in range(max(sizes))}, 1,
                   20000)
        results = {n: time_steps(loops(root, n, scores)) for n in sizes}
    single = results[1]["single"] if 1 in results else None
    lines = ["| verticals | mode | step (ms) | per vertical (ms) | × one vertical's step |",
             "|---:|---|---:|---:|---:|"]
    for n, by_mode in results.items():
        for mode, t in by_mode.items():
            ratio = f"{t / single:.2f}" if single else "–"
            lines.append(f"| {n} | {mode} | {t * 1000:.0f} | {t * 1000 / n:.0f} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if FLAGS.out:
        command = command_line("experiments.bench_verticals")
        title_scores = "" if scores == ["emission"] else " and the coupling score"
        Path(FLAGS.out).write_text(
            f"# Step time against the number of verticals{title_scores}\n\n"
            f"Written {datetime.date.today().isoformat()} by "
            f"`{command}` (hidden {FLAGS.hidden_size}, {FLAGS.steps} steps, median) on {machine()}; load average "
            f"(1/5/15 min) before {load_average(before, 2)}, after {load_average(digits=2)}.\n\n{table}\n")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
