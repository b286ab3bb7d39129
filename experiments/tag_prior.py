"""How much tag prior? Models trained without one, decoded with the prior at several weights (`--tag_prior`); with
--snap, also a decoding rule for multi-word values.

    python -m experiments.tag_prior --group='in-domain vectors=runs/defaults3/sweep.*' \
        --group='random embeddings=runs/defaults3/rand.*' [--verticals=Bangle,...] [--weights=0,0.25,0.5,0.75,1] \
        [--out=experiments/results/tag_prior.md]

Each group is a glob of model dirs trained with --tag_prior=0. Every vertical of each model is decoded on its dev
and test splits with w × (the pointwise mutual information of adjacent gold tags in its training split, as
training computes it) added to its learned transitions, for each weight w: exactly what a model trained with
--tag_prior=w decodes with, except that its dev selection saw the prior too. The weight to adopt is read off dev.

--snap adds, per weight, the same decoding with values snapped to the training split's, as a model trained with
--snap_values decodes (mtl_tagger.snap: a brand cut short, split in two or run on is replaced by the training value
it overlaps).
"""
import dataclasses
import datetime
import glob
import statistics
from pathlib import Path

from absl import app, flags

from experiments.common import command_line, crf_results, mean_sd
from mtl_tagger import cli
from mtl_tagger.corpus import load_task
from mtl_tagger.crf import bigram_pmi
from mtl_tagger.tagger import Tagger

FLAGS = flags.FLAGS

SPLITS = ("dev", "test")
COLUMNS = (("dev", "macro_f1"), ("dev", "entity_f1"), ("test", "macro_f1"), ("test", "entity_precision"),
           ("test", "entity_f1"))
NAMES = {"macro_f1": "macro-F1", "entity_f1": "entity-F1", "entity_precision": "entity precision"}
HEADER = "| models | weight | " + " | ".join(f"{split} {NAMES[key]}" for split, key in COLUMNS) + " |"


def rescored(model_dir: str, weights: list[float], verticals: list[str], snap: bool = False) -> list[dict]:
    """Per vertical of the model (of `verticals`, if any): its seed, and per weight each split's metrics decoded
    with that prior (`scores`) and, with `snap`, with values snapped to the training split's (`snapped`, the
    tagger's --snap_values)."""
    tagger = Tagger.load(model_dir, decoding={"snap_values": False})
    p = tagger.params
    if p.tag_prior:
        raise ValueError(f"{model_dir} was trained with --tag_prior={p.tag_prior}; give models trained without")
    data = {t: load_task(p.data_dir, t, p.strict_bio, p.max_len) for t in tagger.tasks}
    snapping = Tagger(dataclasses.replace(p, snap_values=True), dataclasses.replace(
        tagger.vocab, values={t: d.values for t, d in data.items()}), tagger.nets, tagger.calibration)
    out = []
    for task in [t for t in tagger.tasks if not verticals or t in verticals]:
        pmi = bigram_pmi([tagger.vocab.tag_ids(task, s.tags) for s in data[task].train], len(tagger.vocab.tags[task]))
        transitions = tagger.nets[task].heads[task].crf.transitions
        learned = transitions.numpy()
        run: dict = {"task": task, "seed": p.seed, "scores": {}, **({"snapped": {}} if snap else {})}
        for w in weights:
            transitions.assign(learned + w * pmi)
            for kind, decoder in (("scores", tagger), ("snapped", snapping))[:1 + snap]:
                run[kind][w] = {split: decoder.evaluate(getattr(data[task], split), task)[0] for split in SPLITS}
        out.append(run)
    return out


def rows(label: str, runs: list[dict], weights: list[float]) -> list[str]:
    """Markdown rows of one group: per weight (and snapped, where the runs were), the COLUMNS' metrics, mean over the
    verticals and seeds ± std of the per-seed means."""
    seeds = sorted({r["seed"] for r in runs})
    out = []
    for w in weights:
        for kind, shown in (("scores", f"{w:g}"), ("snapped", f"{w:g}, values snapped")):
            if kind in runs[0]:
                cells = [mean_sd([statistics.mean(r[kind][w][split][key] for r in runs if r["seed"] == s)
                                  for s in seeds]) for split, key in COLUMNS]
                out.append(f"| {label} | {shown} | " + " | ".join(cells) + " |")
    return out


def crf_row(crf: dict[str, dict]) -> str:
    """The CRF's row under HEADER: its test metrics, mean over the verticals; no weight and no dev scores."""
    return ("| CRF (experiments/crf_baseline.py) | | " + " | ".join(
        "" if split == "dev" else f"{statistics.mean(m[k] for m in crf.values()) * 100:.2f}" for split, k in COLUMNS)
        + " |")


def main(argv: list[str]) -> None:
    """Rescore every group at every weight and print (and with --out write) the table."""
    weights = sorted(float(w) for w in FLAGS.weights)
    lines = [HEADER, "|---|---:|" + "---:|" * len(COLUMNS)]
    tasks: set[str] = set()
    for spec in FLAGS.group:
        label, sep, pattern = spec.partition("=")
        dirs = sorted(d for d in glob.glob(pattern) if not d.endswith(".log"))
        try:
            runs = [r for d in dirs for r in rescored(d, weights, FLAGS.verticals, FLAGS.snap)]
        except ValueError as e:
            raise app.UsageError(str(e)) from None
        if not sep or not runs:
            raise app.UsageError(f"--group={spec}: give label=glob matching model dirs of --verticals")
        tasks |= {r["task"] for r in runs}
        lines += rows(f"{label} ({len(runs)} vertical runs)", runs, weights)
    crf = {t: m for t, m in crf_results(Path(FLAGS.crf_dir)).items() if t in tasks} if FLAGS.crf_dir else {}
    if len(crf) == len(tasks):
        lines.append(crf_row(crf))
    text = "\n".join(lines)
    print(text)
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            f.write(f"# Decoding with a tag prior (`--tag_prior`) of models trained without one"
                    f"{', and values snapped to known ones' if FLAGS.snap else ''}\n\nPercent, mean "
                    f"over each group's vertical runs, ± std over the seeds' means. Written "
                    f"{datetime.date.today().isoformat()} by `{command_line('experiments.tag_prior')}`.\n\n{text}\n")


def define_flags() -> None:
    """The script's flags (defined when run as a program, so tests can import its functions)."""
    flags.DEFINE_multi_string("group", None, "label=glob of model dirs trained without a tag prior.")
    flags.DEFINE_list("verticals", [], "Score only these verticals (default: every vertical of each model).")
    flags.DEFINE_list("weights", ["0", "0.25", "0.5", "0.75", "1"], "Prior weights to decode with.")
    flags.DEFINE_bool("snap", False, "Also decode at each weight with values snapped to the training split's "
                      "multi-word values (the module's docstring).")
    flags.DEFINE_string("crf_dir", "experiments/results/crf", "The CRF baseline's result files, for its test row.")
    flags.DEFINE_string("out", None, "Also write the table (with the command and date) to this markdown file.")
    flags.mark_flag_as_required("group")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
