"""Speed of training, decoding, the shortlist and the main command, before/after the fused BiLSTM.

    python -m experiments.bench [--task_a=Necklace --task_b=Chain] [--steps=6 --rounds=3] [--main_runs=2]

Writes experiments/results/bench.md (date, machine, command, load) and prints it. Figures:

- BiLSTM layer alone at the paper's sizes (batch 30, in 350, 700 units per direction): forward and
  forward+backward seconds at two sentence lengths, Keras Bidirectional(LSTM) vs `FusedBiLSTM`.
- Training: real (unpadded) CRF tokens per second of single (task_a), shared and coupled (task_a +
  task_b) steps at the paper configuration and at flags/smoke.cfg sizes on the same real data, timed
  as `experiments.bench_step` does but with both implementations alternating step by step on the same
  inputs; the gain is the median of the per-step time ratios.
- Decoding: tokens per second of `Tagger.predict` on task_a's test split (paper configuration).
- Shortlist build time and peak RSS at --sizes contexts per side (synthetic catalog-like data) with
  the fitted growth exponent: `experiments.bench_shortlist` run as its own command at the training
  default threshold, its table copied into the report.
- The README's main command (`python -m mtl_tagger.train --task_a=Chain --task_b=Mangalsutra`) end to
  end, in a fresh process per run.

"Before" builds the encoder with Keras' Bidirectional(LSTM) (`--lstm_impl=keras`), "after" with
`mtl_tagger.bilstm.FusedBiLSTM` (`--lstm_impl=fused`, the default). Before/after runs alternate (ABBA…) so both see the
same machine load; each figure is the median over --rounds runs (the main command: --main_runs;
the layer alone: 5 × --rounds; decoding: 2 × --rounds), with the runs' range. The
machine may be shared with other jobs (a training sweep): the 1-minute load average is printed beside
each figure, and only figures measured side by side should be compared.
"""
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import app, flags

from mtl_tagger import training
from mtl_tagger.bilstm import FusedBiLSTM
from mtl_tagger.params import Params, read_flagfile
from mtl_tagger.tagger import Tagger
from mtl_tagger.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ("keras", "fused")
FLAGS = flags.FLAGS
flags.DEFINE_string("task_a", "Necklace", "Vertical of the single-task figures and first task of the pairs.")
flags.DEFINE_string("task_b", "Chain", "Second vertical of the shared and coupled figures.")
flags.DEFINE_integer("rounds", 3, "Runs per figure and implementation (median reported); paper config: "
                     "--rounds × --steps timed steps per figure, layer alone: 5 × --rounds repetitions.")
flags.DEFINE_integer("steps", 6, "Timed training steps per run at the paper configuration.")
flags.DEFINE_integer("small_steps", 20, "Timed training steps per run at the small configuration.")
flags.DEFINE_list("layer_lengths", ["40", "120"], "Sentence lengths of the layer-alone figures.")
flags.DEFINE_integer("main_runs", 2, "Runs of the main command per implementation.")
flags.DEFINE_list("sizes", ["1000", "10000", "100000"], "Shortlist contexts per side.")
flags.DEFINE_list("runs", ["5", "3", "3"], "Shortlist runs per size (median reported).")
flags.DEFINE_string("out", str(ROOT / "experiments/results/bench.md"), "Markdown report path.")


def _load() -> float:
    return os.getloadavg()[0]


def alternate(measure: Callable[[str], float], rounds: int) -> tuple[dict[str, list[float]], float]:
    """Run `measure(impl)` `rounds` times per implementation in ABBA order; the values and the mean load."""
    values: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    loads = []
    for r in range(rounds):
        for impl in (IMPLS if r % 2 == 0 else IMPLS[::-1]):
            loads.append(_load())
            values[impl].append(measure(impl))
    return values, float(np.mean(loads))


def layer_seconds(length: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Forward and forward+backward seconds of the paper-size BiLSTM alone, per implementation and run."""
    rng = np.random.default_rng(0)
    batch, dim, units = 30, 350, 700
    lengths = np.r_[length, rng.integers(max(1, length - 8), length + 1, batch - 1)]
    mask = tf.constant(np.arange(length)[None] < lengths[:, None])
    x = tf.constant(rng.normal(size=(batch, length, dim)).astype(np.float32))
    keras = tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(units, return_sequences=True))
    fused = FusedBiLSTM(units)
    keras(x, mask=mask)
    fused(x, mask=mask)
    fused.set_weights(keras.get_weights())
    fns = {}
    for impl, layer in (("keras", keras), ("fused", fused)):
        def backward(layer: tf.keras.layers.Layer = layer) -> list[tf.Tensor]:
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(layer(x, mask=mask)))
            return tape.gradient(loss, layer.trainable_variables)

        fns[impl] = {"forward": tf.function(lambda layer=layer: layer(x, mask=mask)), "forward+backward":
                     tf.function(backward)}
    times: dict[str, dict[str, list[float]]] = {impl: {k: [] for k in fns[impl]} for impl in IMPLS}
    for r in range(rounds + 1):  # round 0 traces
        for impl in (IMPLS if r % 2 == 0 else IMPLS[::-1]):
            for kind, fn in fns[impl].items():
                start = time.perf_counter()
                tf.nest.map_structure(lambda t: t.numpy(), fn())
                if r:
                    times[impl][kind].append(time.perf_counter() - start)
    return times


def paired_train_steps(p: Params, steps: int, rounds: int) -> tuple[dict[str, list[float]], list[float]]:
    """Real CRF tokens/s per round of `steps` optimiser steps, per implementation, and per-step time ratios.

    Both implementations' trainers live side by side and take turns on the very same step inputs
    (bench_step's Trainer + step_inputs + train_step after two warm-up steps, but alternated step by
    step: on a shared machine, runs of a few steps one after the other differed by up to 1.8× from
    load alone). Tokens are the task minibatches' real tokens, as bench_step counts them.
    """
    data = training.load_run_data(p)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for impl in IMPLS:
            trainers[impl] = Trainer(Params(**{**p.to_json(), "model_dir": f"{tmp}/{impl}", "lstm_impl": impl}
                                            ).validate(), data)
        inputs = list(trainers["keras"].step_inputs(0).take(2 + steps * rounds))
        seconds: dict[str, list[float]] = {impl: [] for impl in IMPLS}
        for k, batch in enumerate(inputs):
            for impl in (IMPLS if k % 2 == 0 else IMPLS[::-1]):
                start = time.perf_counter()
                trainers[impl].train_step(batch)["loss"].numpy()
                seconds[impl].append(time.perf_counter() - start)
    tokens = [sum(int(batch[t]["length"].numpy().sum()) for t in p.tasks) for batch in inputs[2:]]
    per_round = {impl: [sum(tokens[r * steps:(r + 1) * steps]) / sum(v[2:][r * steps:(r + 1) * steps])
                        for r in range(rounds)] for impl, v in seconds.items()}
    ratios = [k / f for k, f in zip(seconds["keras"][2:], seconds["fused"][2:])]
    return per_round, ratios


def decode_tokens_per_second(p: Params, impl: str, rounds: int) -> list[float]:
    """Tokens per second of Tagger.predict on task_a's test split (untrained weights: speed only), per run."""
    data = training.load_run_data(p)
    tagger = Tagger(Params(**{**p.to_json(), "lstm_impl": impl}), data.vocab)
    tokens = [s.tokens for s in data.tasks[p.task_a].test]
    tagger.predict(tokens, p.task_a)  # traces
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        tagger.predict(tokens, p.task_a)
        out.append(sum(map(len, tokens)) / (time.perf_counter() - start))
    return out


def main_command_seconds(impl: str) -> float:
    """Wall seconds of the README's main command (with --lstm_impl=impl) in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "mtl_tagger.train", "--task_a=Chain", "--task_b=Mangalsutra",
               f"--model_dir={tmp}/m", f"--lstm_impl={impl}"]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        return time.perf_counter() - start


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _row(figure: str, values: dict[str, list[float]], load: float, unit: str, higher_is_better: bool,
         gain: float | None = None) -> str:
    """One before/after table row: medians with the runs' range, and the gain (default: of the medians)."""
    med = {impl: statistics.median(v) for impl, v in values.items()}
    if gain is None:
        gain = med["fused"] / med["keras"] if higher_is_better else med["keras"] / med["fused"]

    def cell(impl: str) -> str:
        v = values[impl]
        return f"{med[impl]:,.{0 if med[impl] >= 100 else 3}f} ({min(v):,.3g}–{max(v):,.3g}, n={len(v)})"

    return f"| {figure} | {unit} | {cell('keras')} | {cell('fused')} | **{gain:.2f}×** | {load:.1f} |"


def layer_rows() -> list[str]:
    """The BiLSTM layer alone, forward and forward+backward, at each --layer_lengths."""
    rows = []
    for length in map(int, FLAGS.layer_lengths):
        load = _load()
        secs = layer_seconds(length, 5 * FLAGS.rounds)
        rows += [_row(f"BiLSTM layer alone, {kind}, batch 30 × {length} tokens",
                      {impl: secs[impl][kind] for impl in IMPLS}, (load + _load()) / 2, "s", False)
                 for kind in ("forward", "forward+backward")]
        print(*rows[-2:], sep="\n", flush=True)
    return rows


def train_rows() -> list[str]:
    """Training tokens/s of single, shared and coupled steps at the paper and the small configuration."""
    paper = Params(task_a=FLAGS.task_a)
    small = Params(**{**read_flagfile(ROOT / "flags/smoke.cfg"), "task_a": FLAGS.task_a})
    rows = []
    for name, base, steps in (("paper", paper, FLAGS.steps), ("small", small, FLAGS.small_steps)):
        for mode in ("single", "shared", "coupled"):
            p = Params(**{**base.to_json(), "task_b": "" if mode == "single" else FLAGS.task_b,
                          "mtl_mode": mode}).validate()
            load = _load()
            values, ratios = paired_train_steps(p, steps, FLAGS.rounds)
            rows.append(_row(f"train, {name} config, {mode} {'+'.join(p.tasks)}", values, (load + _load()) / 2,
                             "CRF tokens/s", True, statistics.median(ratios)))
            print(rows[-1], flush=True)
    return rows


def decode_rows() -> list[str]:
    """Decoding tokens/s of the paper configuration on task_a's test split."""
    p = Params(task_a=FLAGS.task_a).validate()
    values: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    load = _load()
    for r in range(2):
        for impl in (IMPLS if r % 2 == 0 else IMPLS[::-1]):
            values[impl] += decode_tokens_per_second(p, impl, FLAGS.rounds)
    row = _row(f"decode, paper config, {FLAGS.task_a} test split (Tagger.predict)", values, (load + _load()) / 2,
               "tokens/s", True)
    print(row, flush=True)
    return [row]


def main_command_rows() -> list[str]:
    """The README's main command end to end."""
    values, load = alternate(main_command_seconds, FLAGS.main_runs)
    row = _row("main command, Chain+Mangalsutra coupled, paper config, end to end", values, load, "s", False)
    print(row, flush=True)
    return [row]


def shortlist_rows() -> list[str]:
    """`experiments.bench_shortlist` at --sizes/--runs and the training default threshold, as its own table.

    Run as its own command: a child forked from this process (TensorFlow loaded, models built) would
    inherit its peak RSS, which is what bench_shortlist reports as the child's peak.
    """
    threshold = Params().shortlist_threshold
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "experiments.bench_shortlist", f"--sizes={','.join(FLAGS.sizes)}",
               f"--runs={','.join(FLAGS.runs)}", f"--threshold={threshold}", "--iid_size=0", "--real_pairs=",
               f"--report={tmp}/shortlist.md"]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        table = Path(f"{tmp}/shortlist.md").read_text(encoding="utf-8").splitlines()
    command = " ".join(["python", *cmd[1:-1]])
    rows = ["", f"Shortlist build, not changed by the fused BiLSTM (`{command}`; {table[0].lstrip('# ')}):",
            *table[1:]]
    print(*rows, sep="\n", flush=True)
    return rows


SECTIONS = {"layer": layer_rows, "train": train_rows, "decode": decode_rows, "main": main_command_rows,
            "shortlist": shortlist_rows}
flags.DEFINE_list("sections", list(SECTIONS), "Which benchmarks to run (shortlist last: its own table).")


def main(argv: list[str]) -> None:
    """Run every benchmark and write the report."""
    tf.keras.utils.set_random_seed(Params().seed)  # as training.train runs
    tf.config.experimental.enable_op_determinism()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = os.getloadavg()
    body = [row for name in SECTIONS if name in FLAGS.sections for row in SECTIONS[name]()]
    load_after = os.getloadavg()
    lines = [
        f"# Benchmarks ({started})", "",
        f"Machine: {os.cpu_count()} cores ({_cpu_model()}), TensorFlow {tf.__version__}, Python "
        f"{platform.python_version()}. Command: `python -m experiments.bench {' '.join(argv[1:])}`.", "",
        f"Load average (1/5/15 min) at start {'/'.join(f'{x:.1f}' for x in load_before)}, at end "
        f"{'/'.join(f'{x:.1f}' for x in load_after)}: a training sweep and other jobs may have been running "
        "concurrently, so absolute figures are lower than on an idle machine; before/after were measured "
        "alternately under the same conditions (the load column is the mean 1-minute load during that row).", "",
        f"Paper config: hidden 700, 300-d GloVe, batch 30; small: flags/smoke.cfg sizes (hidden 16, 16-d random "
        f"vectors, batch 16) on the same data. Training: {FLAGS.rounds} runs × {FLAGS.steps} (paper) / "
        f"{FLAGS.small_steps} (small) timed steps after 2 warm-up steps, the two implementations alternating step "
        "by step on the same inputs, gain = median of the per-step time ratios; CRF tokens are the real tokens of "
        "the task minibatches (a coupled step also encodes the coupling minibatch's sentences, not counted). "
        "Before = Keras Bidirectional(LSTM); after = `mtl_tagger.bilstm.FusedBiLSTM` (same weights, outputs equal "
        "to ~1e-7, checkpoints interchangeable). Decoding: both models alternate, each predicting the whole "
        "split --rounds times after a tracing pass. The main command runs once per implementation per round "
        "in a fresh process, with `--lstm_impl=keras` or `--lstm_impl=fused`.",
        "",
        "| figure | unit | before: Keras BiLSTM, median (range, n) | after: fused BiLSTM | gain | load |",
        "|---|---|---|---|---:|---:|",
        *body,
    ]
    text = "\n".join(lines) + "\n"
    Path(FLAGS.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    app.run(main)
