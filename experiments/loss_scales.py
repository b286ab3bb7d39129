"""How large the coupling term is beside the CRF losses over a coupled run, from its TensorBoard scalars.

    python -m experiments.loss_scales --model_dirs=runs/sweep/s2.coupled.JewellerySet+Necklace[,...]
        [--out=experiments/results/loss_scales.md]

Prints, per run and per tenth of training, the mean per-step CRF loss of each task and the weighted
coupling term (`train/coupling/tce` × --coupling_weight, as it enters the loss), so one can see when
the coupling term dominates the objective.
"""
import datetime
from pathlib import Path

import numpy as np
from absl import app, flags

from experiments.collect import command_line
from experiments.events import scalars
from mtl_tagger.params import Params

FLAGS = flags.FLAGS
flags.DEFINE_list("model_dirs", None, "Model dirs of coupled runs (each with params.json and tensorboard/).")
flags.DEFINE_string("out", None, "Also write the tables (with the command and date) to this markdown file.")
flags.mark_flag_as_required("model_dirs")

PARTS = 10


def report(model_dir: Path) -> str:
    """A markdown table of the loss terms by tenth of the run's steps."""
    p = Params.load(model_dir)
    s = scalars(model_dir / "tensorboard")
    terms = {f"CRF {t}": s[f"train/crf/{t}"] for t in p.names}
    terms["coupling (weighted)"] = [(k, v * p.coupling_weight) for k, v in s["train/coupling/tce"]]
    lines = [f"## {model_dir.name} (coupling weight {p.coupling_weight})", "",
             "| steps | " + " | ".join(terms) + " | coupling share |", "|---|" + "---:|" * (len(terms) + 1)]
    for part in np.array_split(np.arange(len(terms["coupling (weighted)"])), PARTS):
        if not len(part):
            continue
        means = [np.mean([xs[i][1] for i in part]) for xs in terms.values()]
        lines.append(f"| {part[0] + 1}–{part[-1] + 1} | " + " | ".join(f"{m:.2f}" for m in means)
                     + f" | {means[-1] / sum(means):.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """Print one table per run (and write them to --out)."""
    text = "\n".join(report(Path(d)) for d in FLAGS.model_dirs)
    print(text)
    if FLAGS.out:
        command = command_line("experiments.loss_scales")
        Path(FLAGS.out).write_text(f"# Loss terms over coupled runs\n\nMade {datetime.date.today().isoformat()} by "
                                   f"`{command}`; mean per step over each tenth of the run.\n\n{text}")


if __name__ == "__main__":
    app.run(main)
