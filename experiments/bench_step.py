"""Optimiser-step time of single, shared and coupled training, and the coupled/single step ratio.

    python -m experiments.bench_step --task_a=Chain --task_b=Mangalsutra [--flagfile=flags/paper.cfg] [--steps=20]

Issue 4's target: one coupled step (a D1 minibatch + a D2 minibatch + a shortlist minibatch) takes
at most 1.5× the two single-task steps it contains. Each figure is the median over --steps timed
steps after two warm-up steps (tracing); real (unpadded) tokens per second are reported too.
"""
import statistics
import tempfile
import time

from absl import app, flags

from mtl_tagger import params
from mtl_tagger.training import Trainer, load_run_data

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 20, "Timed steps per mode (after 2 warm-up steps).")


def time_steps(p: params.Params, steps: int) -> tuple[float, float]:
    """Median seconds per optimiser step and real tokens per second, for the run `p` describes."""
    trainer = Trainer(p, load_run_data(p))
    times, tokens = [], []
    for i, inputs in enumerate(trainer.step_inputs(0).take(steps + 2)):
        start = time.perf_counter()
        trainer.train_step(inputs)["loss"].numpy()
        elapsed = time.perf_counter() - start
        if i >= 2:
            times.append(elapsed)
            tokens.append(sum(int(inputs[t]["length"].numpy().sum()) for t in p.tasks))
    med = statistics.median(times)
    return med, statistics.median(tokens) / med


def main(argv: list[str]) -> None:
    """Time each mode and print the table and the ratio."""
    base = params.from_flags()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in (
            (f"single {base.task_a}", dict(task_b="", mtl_mode="single")),
            (f"single {base.task_b}", dict(task_a=base.task_b, task_b="", mtl_mode="single")),
            ("shared", dict(mtl_mode="shared")),
            ("coupled", dict(mtl_mode="coupled")),
        ):
            p = params.Params(**{**base.to_json(), **overrides, "model_dir": f"{tmp}/{len(rows)}"}).validate()
            rows[name] = time_steps(p, FLAGS.steps)
    print(f"hidden {base.hidden_size}, word_dim {base.word_dim}, batch {base.batch_size}, "
          f"window {base.window}, max neighbours {base.shortlist_max_neighbors}, {FLAGS.steps} steps")
    print(f"{'mode':<24} {'s/step':>8} {'CRF tokens/s':>13}")
    for name, (sec, tps) in rows.items():
        print(f"{name:<24} {sec:8.3f} {tps:13.0f}")
    singles = rows[f"single {base.task_a}"][0] + rows[f"single {base.task_b}"][0]
    print(f"coupled / (single a + single b) = {rows['coupled'][0] / singles:.2f}  (target <= 1.5)")
    print(f"shared  / (single a + single b) = {rows['shared'][0] / singles:.2f}")


if __name__ == "__main__":
    params.define_flags()
    app.run(main)
