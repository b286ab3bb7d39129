"""Which calibration of `confidence` holds on small dev splits: value-level ECE on test, fitted on dev.

    python -m experiments.calibration [--results_dir=experiments/results/small_data] [--runs_dir=runs/small_data]

Every run of the small-data protocol (experiments/small_data.py, whose model dirs are under --runs_dir) is decoded
on its vertical's dev and test splits with its raw confidence (the smallest CRF marginal of a value's tokens); each
calibration method is fitted per run on its dev values (mtl_tagger.calibration: temperature, platt; and isotonic
regression of the value-level score, and temperature scaling allowed to sharpen (T < 1), for comparison only) and
applied to its test values. Decoded values never
change. The table pools the test values of each size and embedding condition (and of all) and gives the ECE (10
equal-width bins) and the log loss of the raw and of each calibrated confidence, and the mean over runs of each run's
own ECE.
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
METHODS = ("raw", *calibration.METHODS, "sharpening", "isotonic")
SHARPENING = np.geomspace(0.5, 64.0, 29)  # temperature scaling's grid with T < 1 allowed, as Guo et al. fit it


def run_outcomes(model_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """method → the run's test values' (confidence, right), each calibrated on the run's dev values."""
    tagger = Tagger.load(model_dir, calibrated=False)
    task = tagger.tasks[0]
    p = tagger.params
    data = load_task(p.data_dir, task, p.strict_bio, p.max_len)
    dev_raw, dev_right = calibration.outcomes(tagger, data.dev, task)
    test_raw, test_right = calibration.outcomes(tagger, data.test, task)
    out = {"raw": (test_raw, test_right)}
    for method in calibration.METHODS:
        fitted = calibration.fit(tagger, data.dev, task, method)
        out[method] = calibration.confidences(tagger, data.test, task, fitted)
    fitted = calibration.fit(tagger, data.dev, task, "temperature", SHARPENING)
    out["sharpening"] = calibration.confidences(tagger, data.test, task, fitted)
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    if len(dev_raw):
        isotonic.fit(dev_raw, dev_right.astype(float))
        out["isotonic"] = (isotonic.predict(test_raw) if len(test_raw) else test_raw, test_right)
    else:
        out["isotonic"] = (test_raw, test_right)
    return out


def main(argv: list[str]) -> None:
    """Score every finished protocol run and write the table."""
    runs, groups = scored_runs(run_outcomes, Path(FLAGS.results_dir), Path(FLAGS.runs_dir))
    lines = ["| test values of | values | " + " | ".join(f"ECE {m}" for m in METHODS) + " | "
             + " | ".join(f"log loss {m}" for m in METHODS) + " | " + " | ".join(f"mean run ECE {m}" for m in METHODS)
             + " |", "|---|---:|" + "---:|" * (3 * len(METHODS))]
    for key, outcomes in groups.items():
        pooled = {m: (np.concatenate([o[m][0] for o in outcomes]), np.concatenate([o[m][1] for o in outcomes]))
                  for m in METHODS}
        lines.append(f"| {key} | {len(pooled['raw'][0])} | "
                     + " | ".join(f"{calibration.ece(*pooled[m]):.3f}" for m in METHODS) + " | "
                     + " | ".join(f"{calibration.log_loss(*pooled[m]):.3f}" for m in METHODS) + " | "
                     + " | ".join(f"{statistics.mean(calibration.ece(*o[m]) for o in outcomes):.3f}"
                                  for m in METHODS) + " |")
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
    flags.adopt_module_key_flags(common)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
