"""How much tag prior? Models trained without one, decoded with the prior at several weights (`--tag_prior`); with
--snap, also a decoding rule for multi-word values.

    python -m experiments.tag_prior --group='in-domain vectors=runs/defaults3/sweep.*' \
        --group='random embeddings=runs/defaults3/rand.*' [--verticals=Bangle,...] [--weights=0,0.25,0.5,0.75,1] \
        [--out=experiments/results/tag_prior.md]

Each group is a glob of model dirs trained with --tag_prior=0. Every vertical of each model is decoded on its dev
and test splits with w × (the pointwise mutual information of adjacent gold tags in its training split, as
training computes it) added to its learned transitions, for each weight w: exactly what a model trained with
--tag_prior=w decodes with, except that its dev selection saw the prior too. The weight to adopt is read off dev.

--snap adds, per weight, the same decoding with values snapped to known ones: where a multi-word value of the
training split (any case) occurs in the sentence, decoded values of its attribute overlap it, and no value it
overlaps is a training value of its own attribute (a brand cut short, split in two or run on), it replaces every
value it overlaps (longest first, then leftmost; snaps do not overlap).
"""
import datetime
import glob
import statistics
from collections.abc import Sequence
from pathlib import Path

from absl import app, flags

from experiments.common import command_line, crf_results, mean_sd
from mtl_tagger import cli
from mtl_tagger.conll import Sentence, bio_tags, chunks
from mtl_tagger.corpus import load_task
from mtl_tagger.crf import bigram_pmi
from mtl_tagger.metrics import evaluate_tags
from mtl_tagger.tagger import Tagger

FLAGS = flags.FLAGS

SPLITS = ("dev", "test")
COLUMNS = (("dev", "macro_f1"), ("dev", "entity_f1"), ("test", "macro_f1"), ("test", "entity_precision"),
           ("test", "entity_f1"))
NAMES = {"macro_f1": "macro-F1", "entity_f1": "entity-F1", "entity_precision": "entity precision"}
HEADER = "| models | weight | " + " | ".join(f"{split} {NAMES[key]}" for split, key in COLUMNS) + " |"


Values = dict[str, set[tuple[str, ...]]]


def known_values(sentences: list[Sentence]) -> Values:
    """Every value of `sentences` per attribute, lower-cased."""
    found: Values = {}
    for s in sentences:
        for attr, a, b in chunks(s.tags):
            found.setdefault(attr, set()).add(tuple(w.lower() for w in s.tokens[a:b]))
    return found


def snapped(tokens: Sequence[str], tags: list[str], values: Values) -> list[str]:
    """`tags` with known multi-word values snapped in: each occurrence of one (longest first, then leftmost) that
    decoded values of its attribute overlap, none of the values it overlaps being a known value of its own
    attribute, and no other snap overlapping it, replaces every value it overlaps."""
    low = [w.lower() for w in tokens]
    found = sorted((-len(v), i, attr) for attr, vs in values.items() for v in vs if len(v) > 1
                   for i in range(len(low)) if tuple(low[i:i + len(v)]) == v)
    spans, done = chunks(tags), []
    for minus_length, a, attr in found:
        b = a - minus_length
        hit = [c for c in spans if c[1] < b and a < c[2]]
        if (any(c[0] == attr for c in hit) and hit != [(attr, a, b)] and not any(d[0] < b and a < d[1] for d in done)
                and all(tuple(low[c[1]:c[2]]) not in values.get(c[0], ()) for c in hit)):
            spans = [c for c in spans if c not in hit] + [(attr, a, b)]
            done.append((a, b))
    return bio_tags(len(tags), spans) if done else list(tags)


def rescored(model_dir: str, weights: list[float], verticals: list[str], snap: bool = False) -> list[dict]:
    """Per vertical of the model (of `verticals`, if any): its seed, and per weight each split's metrics decoded
    with that prior (`scores`) and, with `snap`, with values snapped to the training split's (`snapped`)."""
    tagger = Tagger.load(model_dir)
    p = tagger.params
    if p.tag_prior:
        raise ValueError(f"{model_dir} was trained with --tag_prior={p.tag_prior}; give models trained without")
    out = []
    for task in [t for t in tagger.tasks if not verticals or t in verticals]:
        data = load_task(p.data_dir, task, p.strict_bio, p.max_len)
        pmi = bigram_pmi([tagger.vocab.tag_ids(task, s.tags) for s in data.train], len(tagger.vocab.tags[task]))
        values = known_values(data.train)
        transitions = tagger.nets[task].heads[task].crf.transitions
        learned = transitions.numpy()
        run: dict = {"task": task, "seed": p.seed, "scores": {}, **({"snapped": {}} if snap else {})}
        for w in weights:
            transitions.assign(learned + w * pmi)
            run["scores"][w] = {}
            if snap:
                run["snapped"][w] = {}
            for split in SPLITS:
                sentences = getattr(data, split)
                metrics, pred = tagger.evaluate(sentences, task)
                run["scores"][w][split] = metrics
                if snap:
                    run["snapped"][w][split] = evaluate_tags(
                        [s.tags for s in sentences], [snapped(s.tokens, t, values) for s, t in zip(sentences, pred)])
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
