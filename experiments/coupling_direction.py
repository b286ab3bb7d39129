"""Where the coupling loss spends itself: the share of its gradient in the direction a CRF cannot see.

    python -m experiments.coupling_direction --model_dirs=runs/table3/s1.coupled.Dress+Jean[,...] \
        [--batches=20] [--out=experiments/results/coupling_direction.md]

A linear-chain CRF's likelihood and Viterbi path do not change when one constant is added to every tag's
emission at a position, so the emission score s_i(y|x) has one direction per position that the CRF never
sees. For each coupled run this measures, on the first --batches coupling minibatches of its plan (no
dropout), at the initial weights (the same seed rebuilds them exactly) and at the end of training (last/):

- TCE with the paper's emission scores, and TCE with each context's emissions centred over its vertical's
  tags (the part of |s − s′| the CRF can see); their fall from start to end, and the share of the raw fall
  that the centred TCE does not show (what the invariant direction accounts for); at the end, how much of the
  centred gap the raw TCE does not show (the two heads' mean scores offsetting what the CRF sees);
- the share of the coupling gradient on each head's Dense layer that lies along the all-ones tag vector
  (kernel columns' mean and the bias' mean: a move there shifts every tag alike), beside the same share of
  the CRF loss's gradient (0 up to rounding: marginals minus one-hot sum to 0 at every position);
- the share of the emission change that the coupling gradient on the encoder outputs h would cause
  (Wᵀ g_h per position) that lies along the all-ones direction.
"""
import datetime
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import flags

from experiments.common import command_line
from mtl_tagger import cli, pipeline
from mtl_tagger.corpus import load_data
from mtl_tagger.modeldir import read_history, restore
from mtl_tagger.params import Params
from mtl_tagger.run import build
from mtl_tagger.vocab import Vocab

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    flags.DEFINE_list("model_dirs", None, "Model dirs of finished coupled runs.")
    flags.DEFINE_integer("batches", 20, "Coupling minibatches (the first of each run's plan) to measure on.")
    flags.DEFINE_string("out", None, "Also write the table (with the command and date) to this markdown file.")
    flags.mark_flag_as_required("model_dirs")


def _centred(emissions: tf.Tensor, lengths: tf.Tensor, transitions: tf.Tensor) -> tf.Tensor:
    """The emission scores minus their mean over the tags at each position (what the CRF can see)."""
    return emissions - tf.reduce_mean(emissions, axis=-1, keepdims=True)


def _ones_share(g: np.ndarray, axis: int) -> tuple[float, float]:
    """(squared norm of g's component along the all-ones vector of `axis`, squared norm of g)."""
    n = g.shape[axis]
    along = np.sum(g, axis=axis) ** 2 / n
    return float(along.sum()), float(np.sum(g ** 2))


def measure(run: object, batches: list[dict]) -> dict[str, float]:
    """TCE raw and centred, and the gradient shares, on the batches with the run's current weights."""
    net, coupler = run.net, run.coupler
    heads = [net.heads[t] for t in coupler.tasks]
    out = {"tce": 0.0, "tce_centred": 0.0}
    sums = {k: [0.0, 0.0] for k in ("head_coupling", "head_crf", "encoder_coupling")}
    for c in batches:
        hs = [net.encoder(c[f"sentences_{g}"]) for g in range(pipeline.GROUPS)]
        lengths = [c[f"sentences_{g}"]["length"] for g in range(pipeline.GROUPS)]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(hs)
            tce = coupler.loss(net, c, hs, lengths)["total"]
        out["tce"] += float(tce) / len(batches)
        out["tce_centred"] += float(coupler.loss(net, c, hs, lengths, score=_centred)["total"]) / len(batches)
        grads = tape.gradient(tce, [v for h in heads for v in (h.kernel, h.bias)] + hs)
        for i, head in enumerate(heads):
            for g, axis in ((grads[2 * i], 1), (grads[2 * i + 1], 0)):
                along, total = _ones_share(np.asarray(g), axis)
                sums["head_coupling"][0] += along
                sums["head_coupling"][1] += total
            rows = np.unique(c["row"].numpy()[(c["task"].numpy() == i) & (c["group"].numpy() == 0)])
            with tf.GradientTape() as crf_tape:  # the CRF loss of this vertical's sentences in group 0, summed
                sentences = {k: tf.gather(v, rows) for k, v in c["sentences_0"].items()}
                loss = net.crf_loss(coupler.tasks[i], sentences, count=tf.constant(1.0),
                                    hidden=tf.gather(hs[0], rows))
            for g, axis in zip(crf_tape.gradient(loss, [head.kernel, head.bias]), (1, 0)):
                along, total = _ones_share(np.asarray(g), axis)
                sums["head_crf"][0] += along
                sums["head_crf"][1] += total
            for g_h in grads[2 * len(heads):]:
                change = np.tensordot(tf.convert_to_tensor(g_h).numpy(), head.kernel.numpy(), 1)  # [R, T, N]
                along, total = _ones_share(change, 2)
                sums["encoder_coupling"][0] += along
                sums["encoder_coupling"][1] += total
        del tape
    return out | {k: a / t if t else 0.0 for k, (a, t) in sums.items()}


def report(model_dir: Path) -> str:
    """One markdown row per stage (initial weights, end of training) and the fall between them."""
    p = Params.load(model_dir)
    data = load_data(p)
    data.vocab = Vocab.load(model_dir / "vocab.json")
    run = build(p, data, model_dir)
    rows, chosen = run.coupling_plan(FLAGS.batches)
    batches = [run.coupling.batch(run.table, tf.constant(r), tf.constant(c)) for r, c in zip(rows, chosen)]
    start = measure(run, batches)
    restore(run.net, tf.train.latest_checkpoint(str(model_dir / "last")), model_dir, {"coupler": run.coupler})
    end = measure(run, batches)
    fall, fall_centred = start["tce"] - end["tce"], start["tce_centred"] - end["tce_centred"]
    steps = read_history(model_dir)["evaluations"][-1]["step"]
    rows = [f"| {model_dir.name} | {stage} | {m['tce']:.3f} | {m['tce_centred']:.3f} | {m['head_coupling']:.2f} | "
            f"{m['head_crf']:.1e} | {m['encoder_coupling']:.2f} |" for stage, m in (("step 0", start),
                                                                                   (f"step {steps}", end))]
    share = (f"{(fall - fall_centred) / fall:.2f}" if fall > 0.1 * start["tce"]
             else "none: TCE did not fall by a tenth")
    hidden = end["tce_centred"] - end["tce"]
    rows.append(f"| {model_dir.name} | fall | {fall:.3f} | {fall_centred:.3f} | share of the fall along the "
                f"invariant direction: {share} | | |")
    rows.append(f"| {model_dir.name} | hidden at the end | {hidden:.3f} | | the CRF-visible gap that the invariant "
                f"direction hides from TCE: {hidden / end['tce_centred']:.0%} of it | | |")
    return "\n".join(rows)


def main(argv: list[str]) -> None:
    """Measure every run and print (and write) the table."""
    lines = ["| run | weights | TCE (emission scores) | TCE (centred scores) | share of head gradient along ones "
             "(coupling) | same share (CRF loss) | share of h-gradient's emission change along ones |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [report(Path(d)) for d in FLAGS.model_dirs]
    table = "\n".join(lines)
    print(table)
    if FLAGS.out:
        command = command_line("experiments.coupling_direction")
        Path(FLAGS.out).write_text(f"# Coupling gradient along the CRF-invariant direction\n\nWritten "
                                   f"{datetime.date.today().isoformat()} by `{command}` ({FLAGS.batches} coupling "
                                   f"minibatches per run, no dropout). See the module docstring for each column."
                                   f"\n\n{table}\n")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
