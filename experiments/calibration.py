"""Which calibration of `confidence` holds on small dev splits: value-level ECE on test, fitted on dev.

    python -m experiments.calibration [--results_dir=experiments/results/small_data] [--runs_dir=runs/small_data]

Every run of the small-data protocol (experiments/small_data.py, whose model dirs are under --runs_dir) is decoded
on its vertical's dev and test splits with its raw confidence (the smallest CRF marginal of a value's tokens); each
calibration method is fitted per run on its dev values (mtl_tagger.calibration: temperature, platt, each alone and
with the second map of values that hold a word no training sentence has; and isotonic regression of the value-level
score, and temperature scaling allowed to sharpen (T < 1), for comparison only) and applied to its test values.
Decoded values never change. The table pools the test values of each size and embedding condition (and of all) and
gives the ECE (10 equal-width bins) and the log loss of the raw and of each calibrated confidence, and the mean over
runs of each run's own ECE; then the same for the values that hold an unseen word alone. `--variants` keeps the runs
of those variants (experiments.small_data's labels) of a results dir that holds several.
"""
import datetime
import statistics
from pathlib import Path

import numpy as np
from absl import flags
from sklearn.isotonic import IsotonicRegression

from experiments import common
from experiments.common import command_line, define_scoring_flags, scored_runs
from mtl_tagger import calibration, cli
from mtl_tagger.corpus import load_task
from mtl_tagger.tagger import Tagger

FLAGS = flags.FLAGS
SECOND = " + unseen"  # a method with the second map, of values that hold an unseen word
METHODS = ("raw", *(m + s for m in calibration.METHODS for s in ("", SECOND)), "sharpening", "isotonic")
SHARPENING = np.geomspace(0.5, 64.0, 29)  # temperature scaling's grid with T < 1 allowed, as Guo et al. fit it
Outcomes = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]  # method → confidences; right; unseen


def training_words(tagger: Tagger, data: dict) -> None:
    """Tell the vocabulary of a model written before it said so how many of its words the training splits hold
    (Vocab.build puts them first): the second map needs it."""
    if tagger.vocab.train_words is None:
        words = {w for split in data.values() for s in split.train for w in s.tokens}
        if set(tagger.vocab.words[2:2 + len(words)]) != words:
            raise SystemExit(f"error: {tagger.params.data_dir}: the model's vocabulary does not begin with the words "
                             "of its training splits")
        tagger.vocab.train_words = len(words)


def run_outcomes(model_dir: Path) -> Outcomes:
    """The run's test values: per method their confidence, calibrated on the run's dev values; whether each is right
    and whether it holds an unseen word."""
    tagger = Tagger.load(model_dir, calibrated=False)
    task = tagger.tasks[0]
    p = tagger.params
    data = load_task(p.data_dir, task, p.strict_bio, p.max_len)
    training_words(tagger, {task: data})
    # Each split decoded once, at every temperature any method searches (the values do not depend on it).
    grid = sorted({1.0, *map(float, calibration.TEMPERATURES), *map(float, SHARPENING)})
    dev, dev_right, dev_unseen = calibration.outcomes_at(tagger, data.dev, task, grid)
    test, test_right, test_unseen = calibration.outcomes_at(tagger, data.test, task, grid)
    dev_raw, test_raw = dev[grid.index(1.0)], test[grid.index(1.0)]

    def on_test(method: str, searched_grid: np.ndarray, second: bool) -> np.ndarray:
        """Test's confidences under the map `method` fits on dev (as calibration.fit fits it)."""
        temperatures = calibration.searched(method, searched_grid)
        fitted = calibration.fit_outcomes(method, [dev[grid.index(t)] for t in temperatures], dev_right,
                                          temperatures, dev_unseen if second else None)
        return fitted.apply(test[grid.index(fitted.temperature)], test_unseen)

    out = {"raw": test_raw}
    for method in calibration.METHODS:
        for second in (False, True):
            out[method + (SECOND if second else "")] = on_test(method, calibration.TEMPERATURES, second)
    out["sharpening"] = on_test("temperature", SHARPENING, False)
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    if len(dev_raw):
        isotonic.fit(dev_raw, dev_right.astype(float))
        out["isotonic"] = isotonic.predict(test_raw) if len(test_raw) else test_raw
    else:
        out["isotonic"] = test_raw
    return out, test_right, test_unseen


def rows(key: str, outcomes: list[Outcomes], unseen: bool) -> str:
    """The table's row of one group of runs: every value, or (`unseen`) those that hold an unseen word alone."""
    picked = [(o, r, u if unseen else np.ones(len(r), bool)) for o, r, u in outcomes]
    pooled = {m: (np.concatenate([o[m][k] for o, _, k in picked]), np.concatenate([r[k] for _, r, k in picked]))
              for m in METHODS}
    runs = [{m: (o[m][k], r[k]) for m in METHODS} for o, r, k in picked if k.any()]
    return (f"| {key}{', at an unseen word' if unseen else ''} | {len(pooled['raw'][0])} | "
            + " | ".join(f"{calibration.ece(*pooled[m]):.3f}" for m in METHODS) + " | "
            + " | ".join(f"{calibration.log_loss(*pooled[m]):.3f}" for m in METHODS) + " | "
            + " | ".join(f"{statistics.mean(calibration.ece(*run[m]) for run in runs):.3f}" if runs else "–"
                         for m in METHODS) + " |")


def main(argv: list[str]) -> None:
    """Score every finished protocol run and write the table."""
    runs, groups = scored_runs(run_outcomes, Path(FLAGS.results_dir), Path(FLAGS.runs_dir), FLAGS.variants)
    lines = ["| test values of | values | " + " | ".join(f"ECE {m}" for m in METHODS) + " | "
             + " | ".join(f"log loss {m}" for m in METHODS) + " | " + " | ".join(f"mean run ECE {m}" for m in METHODS)
             + " |", "|---|---:|" + "---:|" * (3 * len(METHODS))]
    lines += [rows(key, outcomes, unseen) for unseen in (False, True) for key, outcomes in groups.items()]
    text = "\n".join([
        "# Calibration of confidence on small dev splits", "",
        f"The {runs} runs of the small-data protocol ({FLAGS.results_dir}): each method fitted on the run's "
        "dev values, scored on its test values; value-level ECE over 10 equal-width bins and log loss. Written "
        f"{datetime.date.today().isoformat()} by `{command_line('experiments.calibration')}`.", "", *lines, ""])
    Path(FLAGS.out).write_text(text)
    print(text)


def define_flags() -> None:
    """The script's flags: the small-data protocol's (listed by --helpshort as this script's) and the table."""
    define_scoring_flags("experiments/results/calibration.md")
    flags.DEFINE_list("variants", [], "Only the runs of these variants (experiments.small_data's --variant labels; "
                                      "empty: every run of --results_dir).")
    flags.adopt_module_key_flags(common)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
