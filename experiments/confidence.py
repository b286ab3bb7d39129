"""Is `confidence` informative? Precision of extracted values by confidence decile on test splits.

    python -m experiments.confidence --model_dirs=runs/table3/s1.single.Necklace[,...] \
        [--out=experiments/results/confidence.md]

Every value the tagger extracts from a test sentence (a predicted chunk) gets the confidence Tagger.extract
gives it (the smallest CRF marginal of its tokens' predicted tags); it is correct when the gold tags hold
the same chunk (attribute, start, end). Values of all given runs are pooled, sorted by confidence and cut
into ten equal-count deciles; a useful confidence has precision rising with the decile.
"""
import datetime
import sys
from pathlib import Path

import numpy as np
from absl import app, flags

from mtl_tagger.conll import chunks
from mtl_tagger.corpus import load_task
from mtl_tagger.tagger import Tagger

FLAGS = flags.FLAGS
flags.DEFINE_list("model_dirs", None, "Trained model dirs; every vertical of each is scored on its test split.")
flags.DEFINE_string("out", None, "Also write the table (with the command and date) to this markdown file.")
flags.mark_flag_as_required("model_dirs")


def scored_values(model_dir: str) -> list[tuple[float, bool]]:
    """(confidence, correct) of every value predicted on the test splits of a model's verticals."""
    tagger = Tagger.load(model_dir)
    p = tagger.params
    out = []
    for task in tagger.tasks:
        test = load_task(p.data_dir, task, p.strict_bio, p.max_len).test
        tags, marginals = tagger.tag([s.tokens for s in test], task)
        for sentence, pred, conf in zip(test, tags, marginals):
            gold = set(chunks(sentence.tags))
            out += [(float(np.min(conf[s:e])), (attr, s, e) in gold) for attr, s, e in chunks(pred)]
    return out


def deciles(values: list[tuple[float, bool]]) -> list[str]:
    """Markdown rows: decile, confidence range, values, precision."""
    ranked = sorted(values)
    rows = ["| decile | confidence | values | precision |", "|---:|---|---:|---:|"]
    for d, part in enumerate(np.array_split(np.arange(len(ranked)), 10), 1):
        if not len(part):
            continue
        conf = [ranked[i][0] for i in part]
        correct = [ranked[i][1] for i in part]
        rows.append(f"| {d} | {min(conf):.3f}–{max(conf):.3f} | {len(part)} | {np.mean(correct) * 100:.1f}% |")
    return rows


def main(argv: list[str]) -> None:
    """Pool the runs' values and print (and write) the decile table."""
    values = [v for d in FLAGS.model_dirs for v in scored_values(d)]
    overall = np.mean([c for _, c in values]) * 100
    text = "\n".join([*deciles(values), "", f"{len(values)} values, overall precision {overall:.1f}%."])
    print(text)
    if FLAGS.out:
        command = "python -m experiments.confidence " + " ".join(sys.argv[1:])
        Path(FLAGS.out).write_text(f"# Precision of extracted values by confidence decile\n\nTest splits of "
                                   f"{', '.join(Path(d).name for d in FLAGS.model_dirs)}; written "
                                   f"{datetime.date.today().isoformat()} by `{command}`.\n\n{text}\n")


if __name__ == "__main__":
    app.run(main)
