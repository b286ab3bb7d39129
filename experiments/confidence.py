"""Is `confidence` informative, and does it mean what it says? Precision of extracted values by confidence decile
and by calibrated-confidence bin on test splits.

    python -m experiments.confidence --model_dirs=runs/table3/s1.single.Necklace[,...] \
        [--out=experiments/results/confidence.md]

Every value the tagger extracts from a test sentence (a predicted chunk) gets the confidence Tagger.extract
gives it (the smallest CRF marginal of its tokens' predicted tags, calibrated where the model dir has a
calibration.json); it is correct when the gold tags hold the same chunk (attribute, start, end). Values of all
given runs are pooled, sorted by confidence and cut into ten equal-count deciles; a useful confidence has
precision rising with the decile. Then the calibration: value-level ECE (10 equal-width bins) of the raw
marginals and of the calibrated confidence, pooled and per vertical, and the calibrated values' bins (a
calibrated confidence has each bin's precision near its mean confidence); with --out, the pooled values'
reliability diagram, raw and calibrated, beside it as a PNG.

With --thresholds it also tables what `--min_confidence` does to the test metrics (mean over the runs' verticals):
values below each threshold dropped (their tokens tagged O), a threshold chosen per run on its dev split, and
one threshold for all runs chosen on the mean of their dev scores.
"""
import datetime
from pathlib import Path

import numpy as np
from absl import flags

from experiments.common import command_line, crf_results
from mtl_tagger import calibration, cli
from mtl_tagger.conll import Sentence, chunks
from mtl_tagger.corpus import load_task
from mtl_tagger.metrics import evaluate_tags
from mtl_tagger.tagger import Tagger, scored_chunks, shown

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    flags.DEFINE_list("model_dirs", None, "Trained model dirs; every vertical of each is scored on its test split.")
    flags.DEFINE_string("out", None, "Also write the table (with the command and date) to this markdown file.")
    flags.DEFINE_list("thresholds", [], "Also table the test metrics with values below each of these dropped.")
    flags.DEFINE_string("crf_dir", "experiments/results/crf", "With --thresholds, the CRF baseline's row from its "
                        "result files (<vertical>.json) for the same verticals; '' for none.")
    flags.mark_flag_as_required("model_dirs")


Tagged = list[tuple[Sentence, list[str], np.ndarray]]  # gold sentence, predicted tags, per-token confidence
RAW = "raw test"  # the split key of the test split's raw (uncalibrated) marginals


def tagged(model_dir: str, splits: tuple[str, ...]) -> list[tuple[str, dict[str, Tagged]]]:
    """Per vertical of the model, its name and each split's sentences with the predicted tags and (calibrated)
    confidences, and under RAW the test split's raw marginals."""
    tagger = Tagger.load(model_dir)
    p = tagger.params
    out = []
    for task in tagger.tasks:
        data = load_task(p.data_dir, task, p.strict_bio, p.max_len)
        by_split = {}
        for split, temperature in [*((s, None) for s in splits), (RAW, 1.0)]:
            sentences = data.test if split == RAW else getattr(data, split)
            tags, marginals = tagger.tag([s.tokens for s in sentences], task, temperature=temperature)
            by_split[split] = list(zip(sentences, tags, marginals))
        out.append((task, by_split))
    return out


def scored_values(split: Tagged) -> list[tuple[float, bool]]:
    """(confidence, correct) of every value predicted on a split."""
    out = []
    for sentence, pred, conf in split:
        gold = set(chunks(sentence.tags))
        out += [(confidence, (attr, s, e) in gold) for attr, s, e, confidence in scored_chunks(pred, conf)]
    return out


def thresholded(split: Tagged, threshold: float) -> dict:
    """The paper's metrics of a split once the values below `threshold` are dropped (tagged O)."""
    pred = []
    for _, tags, conf in split:
        kept = list(tags)
        for _, s, e, confidence in scored_chunks(tags, conf):
            if shown(confidence) < threshold:  # as extract filters
                kept[s:e] = ["O"] * (e - s)
        pred.append(kept)
    return evaluate_tags([sentence.tags for sentence, _, _ in split], pred)


def threshold_rows(runs: list[tuple[str, dict[str, Tagged]]], thresholds: list[float], crf_dir: str) -> list[str]:
    """Markdown rows: test metrics (mean over the verticals) per threshold; a threshold chosen by dev entity-F1
    (ties to the lowest) for each run on its own dev split, and one for all runs on the mean of their dev scores
    (small dev splits make the per-run choice noisy); and the CRF baseline's on the same verticals."""
    grid = [0.0, *sorted(thresholds)]
    scores = [{split: [thresholded(run[split], t) for t in grid] for split in ("dev", "test")} for _, run in runs]
    keys = ("macro_f1", "entity_f1", "entity_precision", "entity_recall")
    rows = ["| values dropped below | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]

    def row(name: str, picked: list[dict]) -> str:
        return f"| {name} | " + " | ".join(f"{np.mean([m[k] for m in picked]) * 100:.2f}" for k in keys) + " |"
    rows += [row(f"{t:g}", [s["test"][i] for s in scores]) for i, t in enumerate(grid)]
    chosen = [int(np.argmax([m["entity_f1"] for m in s["dev"]])) for s in scores]
    rows.append(row("chosen on dev", [s["test"][i] for s, i in zip(scores, chosen)]))
    one = int(np.argmax([np.mean([s["dev"][i]["entity_f1"] for s in scores]) for i in range(len(grid))]))
    rows.append(row(f"one for all runs, chosen on their mean dev score ({grid[one]:g})",
                    [s["test"][one] for s in scores]))
    if crf_dir:
        crf = crf_results(Path(crf_dir))
        rows.append(row("CRF (experiments/crf_baseline.py)", [crf[task] for task, _ in runs]))
    return rows


def arrays(values: list[tuple[float, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, right) arrays of scored values, as mtl_tagger.calibration takes them."""
    return np.array([c for c, _ in values], np.float64), np.array([r for _, r in values], bool)


def reliability(runs: list[tuple[str, dict[str, Tagged]]], path: Path) -> bool:
    """The pooled test values' reliability diagram, raw and calibrated, as a PNG at `path` (False without the plots
    extra)."""
    curves = {name: arrays([v for _, run in runs for v in scored_values(run[split])])
              for name, split in (("raw", RAW), ("calibrated", "test"))}
    png = calibration.reliability_png(curves, "test values")
    if png is not None:
        path.write_bytes(png)
    return png is not None


def calibration_rows(runs: list[tuple[str, dict[str, Tagged]]]) -> list[str]:
    """Markdown rows: value-level ECE of the raw and the calibrated confidence, pooled and per vertical (each
    vertical's values pooled over the runs), then the calibrated values' equal-width bins."""
    raw = {task: [] for task, _ in runs}
    calibrated = {task: [] for task, _ in runs}
    for task, run in runs:
        raw[task] += scored_values(run[RAW])
        calibrated[task] += scored_values(run["test"])
    rows = ["| test values of | values | ECE raw | ECE calibrated |", "|---|---:|---:|---:|"]
    for name, tasks in [("all", list(raw)), *((task, [task]) for task in raw)]:
        r, c = [v for t in tasks for v in raw[t]], [v for t in tasks for v in calibrated[t]]
        rows.append(f"| {name} | {len(c)} | {calibration.ece(*arrays(r)):.3f} | {calibration.ece(*arrays(c)):.3f} |")
    rows += ["", "| calibrated confidence | values | mean confidence | precision |", "|---|---:|---:|---:|"]
    for b in calibration.bins(*arrays([v for vs in calibrated.values() for v in vs])):
        if b["values"]:
            rows.append(f"| {b['low']:.1f}–{b['high']:.1f} | {b['values']} | {b['confidence']:.3f} | "
                        f"{b['precision'] * 100:.1f}% |")
    return rows


def deciles(values: list[tuple[float, bool]]) -> list[str]:
    """Markdown rows: decile, confidence range, values, precision."""
    ranked = sorted(values, key=lambda v: v[0])  # ties stay in extraction order
    rows = ["| decile | confidence | values | precision |", "|---:|---|---:|---:|"]
    for d, part in enumerate(np.array_split(np.arange(len(ranked)), 10), 1):
        if not len(part):
            continue
        conf = [ranked[i][0] for i in part]
        correct = [ranked[i][1] for i in part]
        rows.append(f"| {d} | {min(conf):.3f}–{max(conf):.3f} | {len(part)} | {np.mean(correct) * 100:.1f}% |")
    return rows


def main(argv: list[str]) -> None:
    """Pool the runs' values and print (and write) the decile table (and the threshold table)."""
    thresholds = [float(t) for t in FLAGS.thresholds]
    runs = [r for d in FLAGS.model_dirs for r in tagged(d, ("dev", "test") if thresholds else ("test",))]
    values = [v for _, run in runs for v in scored_values(run["test"])]
    overall = np.mean([c for _, c in values]) * 100
    lines = [*deciles(values), "", f"{len(values)} values, overall precision {overall:.1f}%.", "",
             "Calibration (value-level ECE over 10 equal-width bins; raw: the CRF marginals before calibration):", "",
             *calibration_rows(runs)]
    if thresholds:
        lines += ["", f"Test metrics with `--min_confidence` (mean over {len(runs)} vertical runs):", "",
                  *threshold_rows(runs, thresholds, FLAGS.crf_dir)]
    if FLAGS.out and reliability(runs, Path(FLAGS.out).with_suffix(".png")):
        lines += ["", f"![reliability diagram of the test values]({Path(FLAGS.out).with_suffix('.png').name})"]
    text = "\n".join(lines)
    print(text)
    if FLAGS.out:
        command = command_line("experiments.confidence")
        title = ("Precision of extracted values by confidence decile, and their calibration"
                 + (" and `--min_confidence`" * bool(thresholds)))
        Path(FLAGS.out).write_text(f"# {title}\n\nTest splits of "
                                   f"{', '.join(Path(d).name for d in FLAGS.model_dirs)}; written "
                                   f"{datetime.date.today().isoformat()} by `{command}`.\n\n{text}\n")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
