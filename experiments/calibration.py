"""Which calibration of `confidence` holds on small dev splits: value-level ECE on test, fitted on dev.

    python -m experiments.calibration [--results_dir=experiments/results/small_data] [--runs_dir=runs/small_data]

Every run of the small-data protocol (experiments/small_data.py, whose model dirs are under --runs_dir) is decoded
on its vertical's dev and test splits with its raw confidence (the smallest CRF marginal of a value's tokens); each
calibration method is fitted per run on its dev values (mtl_tagger.calibration: temperature, platt; and isotonic
regression of the value-level score, for comparison only) and applied to its test values. Decoded values never
change. The table pools the test values of each size and embedding condition (and of all) and gives the ECE (10
equal-width bins) and the log loss of the raw and of each calibrated confidence, and the mean over runs of each run's
own ECE.
"""
import datetime
import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
from absl import app, flags
from sklearn.isotonic import IsotonicRegression

from experiments.collect import command_line
from mtl_tagger import calibration
from mtl_tagger.corpus import load_task
from mtl_tagger.tagger import Tagger

FLAGS = flags.FLAGS
METHODS = ("raw", *calibration.METHODS, "isotonic")


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
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    if len(dev_raw):
        isotonic.fit(dev_raw, dev_right.astype(float))
        out["isotonic"] = (isotonic.predict(test_raw) if len(test_raw) else test_raw, test_right)
    else:
        out["isotonic"] = (test_raw, test_right)
    return out


def main(argv: list[str]) -> None:
    """Score every finished protocol run and write the table."""
    groups: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = defaultdict(lambda: defaultdict(list))
    results = sorted(Path(FLAGS.results_dir).glob("*.s[0-9]*.json"))
    for path in results:
        result = json.loads(path.read_text())
        label = result["variant"]
        size, condition = label.lstrip("abcdefghijklmnopqrstuvwxyz.") or "?", label.rstrip("0123456789")
        outcomes = run_outcomes(Path(FLAGS.runs_dir) / result["name"])
        for key in (f"{size} {condition}", f"all {condition}", "all"):
            for method, values in outcomes.items():
                groups[key][method].append(values)
        print(result["name"], " ".join(f"{m} {calibration.ece(*outcomes[m]):.3f}" for m in METHODS), flush=True)
    lines = ["| test values of | values | " + " | ".join(f"ECE {m}" for m in METHODS) + " | "
             + " | ".join(f"log loss {m}" for m in METHODS) + " | " + " | ".join(f"mean run ECE {m}" for m in METHODS)
             + " |", "|---|---:|" + "---:|" * (3 * len(METHODS))]
    for key in sorted(groups, key=lambda k: (k.split()[0] == "all", k)):
        pooled = {m: (np.concatenate([c for c, _ in v]), np.concatenate([r for _, r in v])) for m, v in
                  groups[key].items()}
        lines.append(f"| {key} | {len(pooled['raw'][0])} | "
                     + " | ".join(f"{calibration.ece(*pooled[m]):.3f}" for m in METHODS) + " | "
                     + " | ".join(f"{calibration.log_loss(*pooled[m]):.3f}" for m in METHODS) + " | "
                     + " | ".join(f"{statistics.mean(calibration.ece(*v) for v in groups[key][m]):.3f}"
                                  for m in METHODS) + " |")
    text = "\n".join([
        "# Calibration of confidence on small dev splits", "",
        f"The {len(results)} runs of the small-data protocol ({FLAGS.results_dir}): each method fitted on the run's "
        "dev values, scored on its test values; value-level ECE over 10 equal-width bins and log loss. Written "
        f"{datetime.date.today().isoformat()} by `{command_line('experiments.calibration')}`.", "", *lines, ""])
    Path(FLAGS.out).write_text(text)
    print(text)


if __name__ == "__main__":
    flags.DEFINE_string("results_dir", "experiments/results/small_data", "The protocol's result files.")
    flags.DEFINE_string("runs_dir", "runs/small_data", "The protocol's model dirs.")
    flags.DEFINE_string("out", "experiments/results/calibration.md", "The table.")
    app.run(main)
