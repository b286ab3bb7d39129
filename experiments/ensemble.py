"""A precision lever measured on the small-data protocol's runs: an ensemble of the seeds' models, decoding the
mean of their CRF marginals under the BIO constraints (posterior decoding), beside each seed alone and the CRF.

    python -m experiments.ensemble [--runs_dir=runs/small_data] [--seeds=1,2,3]
        [--report=experiments/results/ensemble.md]

Each (condition, size, vertical) of experiments.small_data whose --seeds runs are all there is decoded on its dev
and test splits: every seed's model alone (Viterbi with the BIO constraints and the tag prior, what `train` gives
today), and the ensemble (P(y_i = y | x) averaged over the seeds' models, then the BIO-valid tag sequence with the
highest sum of log mean marginals). The ensemble needs no training: it reuses the runs small_data trained. The CRF's
figures are small_data's (experiments/results/small_data/). Dev is reported beside test, so a decision can be
made on dev.
"""
import datetime
import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import flags

from experiments.common import command_line, crf_results
from mtl_tagger import cli, crf
from mtl_tagger.corpus import load_task
from mtl_tagger.metrics import evaluate_tags
from mtl_tagger.pipeline import encode_sentences, eval_batches
from mtl_tagger.tagger import EVAL_BATCH, Tagger

FLAGS = flags.FLAGS
METRICS = ("macro_f1", "entity_precision", "entity_recall", "entity_f1")


def define_flags() -> None:
    """The script's flags (defined when run, so importing it next to other scripts is safe)."""
    flags.DEFINE_string("runs_dir", "runs/small_data", "experiments.small_data's runs, <cond><size>.<vertical>.s<seed> "
                        "(each reads its data from its params.json's data_dir).")
    flags.DEFINE_list("seeds", ["1", "2", "3"], "The seeds whose models make one ensemble.")
    flags.DEFINE_string("crf_root", "experiments/results/small_data", "small_data's CRF results: crf_n<size>/.")
    flags.DEFINE_string("report", "experiments/results/ensemble.md", "Markdown report.")


def decode_both(tagger: Tagger, sentences: list, task: str) -> tuple[list[list[str]], list[np.ndarray]]:
    """Every sentence's Viterbi tags and its P(y_i = y | x) [length, tags] under the model's decoding scores (prior
    and constraints), from one encoder pass."""
    net = tagger.nets[task]
    head = net.heads[task]
    examples = encode_sentences(sentences, tagger.vocab, task, tagger.params.max_word_len)
    tags: list[list[str]] = [[] for _ in sentences]
    probs: list[np.ndarray | None] = [None] * len(sentences)
    for positions, batch in eval_batches(examples, EVAL_BATCH):
        scores = net.scores(task, batch)
        ids = head.crf.decode(scores, batch["length"]).numpy()
        marginals = head.crf.marginals(scores, batch["length"]).numpy()
        for row, i in enumerate(positions):
            n = len(sentences[i].tokens)
            tags[i], probs[i] = tagger.vocab.tag_names(task, ids[row, :n]), marginals[row, :n]
    return tags, probs


def posterior_decode(mean: list[np.ndarray], tags: list[str]) -> list[list[str]]:
    """The BIO-valid tag sequence with the highest sum of log marginals, per sentence."""
    penalty = crf.bio_penalty(tags)
    longest = max(len(m) for m in mean)
    scores = np.full((len(mean), longest, len(tags)), 0.0, np.float32)
    for i, m in enumerate(mean):
        scores[i, :len(m)] = np.log(np.maximum(m, 1e-12))
    scores[:, 0] += penalty.start
    ids, _ = crf.viterbi_decode(tf.constant(scores), tf.constant([len(m) for m in mean], tf.int32),
                                tf.constant(penalty.transitions))
    ids = ids.numpy()
    return [[tags[k] for k in ids[i, :len(m)]] for i, m in enumerate(mean)]


def score_group(dirs: list[Path], task: str) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {"seed <s>" | "ensemble": metrics}} of one (condition, size, vertical)."""
    taggers = [Tagger.load(d, calibrated=False, decoding={"bio_constraints": True}) for d in dirs]
    data = taggers[0]
    out: dict[str, dict[str, dict[str, float]]] = {}
    p = data.params
    splits = load_task(p.data_dir, task, p.strict_bio, p.max_len)
    for split in ("dev", "test"):
        sentences = getattr(splits, split)
        gold = [s.tags for s in sentences]
        decoded = [decode_both(t, sentences, task) for t in taggers]
        result = {d.name.rsplit(".", 1)[1]: evaluate_tags(gold, tags) for d, (tags, _) in zip(dirs, decoded)}
        mean = [np.mean([probs[i] for _, probs in decoded], axis=0) for i in range(len(sentences))]
        result["ensemble"] = evaluate_tags(gold, posterior_decode(mean, list(data.vocab.tags[task])))
        out[split] = {k: {m: v[m] for m in METRICS} for k, v in result.items()}
    return out


def main(argv: list[str]) -> None:
    """Score every complete group and write the report."""
    cli.check_args(argv)
    runs = Path(FLAGS.runs_dir)
    groups: dict[tuple[str, int, str], list[Path]] = defaultdict(list)
    for d in sorted(runs.iterdir()):
        if d.is_dir() and (d / "metrics.json").is_file():
            head, vertical, seed = d.name.split(".")
            cond, size = head.rstrip("0123456789"), int(head[len(head.rstrip("0123456789")):])
            if seed[1:] in FLAGS.seeds:
                groups[(cond, size, vertical)].append(d)
    results = {}
    for key, dirs in sorted(groups.items()):
        if len(dirs) == len(FLAGS.seeds):
            results[key] = score_group(dirs, key[2])
            print(key, {k: round(v["entity_f1"] * 100, 2) for k, v in results[key]["test"].items()}, flush=True)
    Path(FLAGS.report).with_suffix(".json").write_text(
        json.dumps([{"condition": c, "size": n, "vertical": v, **r} for (c, n, v), r in results.items()], indent=1),
        encoding="utf-8")
    Path(FLAGS.report).write_text(report(results), encoding="utf-8")
    print(FLAGS.report)


def report(results: dict) -> str:
    """ensemble.md: per size and condition, mean over verticals of the seeds alone (mean over seeds), the ensemble
    and the CRF, dev and test."""
    crf_test = {(size, v): m for size in {k[1] for k in results}
                for v, m in crf_results(Path(FLAGS.crf_root) / f"crf_n{size}").items()}
    lines = [f"# ensemble: the seeds' models decoding their mean marginals ({datetime.date.today()})", "",
             f"Command: `{command_line('experiments.ensemble')}`. Runs of experiments.small_data (flags/sweep.cfg as "
             f"trained then), seeds {', '.join(FLAGS.seeds)}; both decoded with the BIO constraints and the tag prior. "
             "Mean over the verticals of each size; `seeds alone` is the mean over the seeds. CRF: small_data's "
             "test figures.",
             "", "| size | condition | split | model | macro-F1 | entity precision | entity recall | entity-F1 |",
             "|---:|---|---|---|---:|---:|---:|---:|"]
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (cond, size, vertical), by_split in results.items():
        for split, models in by_split.items():
            for metric in METRICS:
                alone = statistics.mean(v[metric] for k, v in models.items() if k != "ensemble")
                cells[(size, cond, split, "seeds alone")][metric].append(alone)
                cells[(size, cond, split, "ensemble")][metric].append(models["ensemble"][metric])
            if split == "test" and (size, vertical) in crf_test:
                for metric in METRICS:
                    cells[(size, "crf", "test", "CRF")][metric].append(crf_test[(size, vertical)][metric])
    for (size, cond, split, model), m in sorted(cells.items()):
        lines.append(f"| {size} | {cond} | {split} | {model} | "
                     + " | ".join(f"{100 * statistics.mean(m[k]):.2f}" for k in METRICS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    define_flags()
    cli.run(main)
