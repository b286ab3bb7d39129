"""Helpers shared by the experiment scripts: the result files' reader, table cells, headers (the machine, its load)
and variant specs.

Light on purpose (no TensorFlow): bench_peer's PyTorch process imports it.
"""
import json
import os
import platform
import re
import shlex
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from absl import app, flags

from mtl_tagger.conll import read_conll
from mtl_tagger.params import Params

SEEDS = 3  # the sweeps' seeds (make_sweep --seeds); a cell with fewer names its count
BUCKETS = [(1, 10), (11, 50), (51, 200), (201, None)]  # tag frequency bands (training tokens) of the gain tables
CATALOG = "../shared/data/flipkart/products.jsonl.gz"  # the Flipkart sample beside the repository (run from its root)
FOLD_MODEL = "runs/crossfit/fold0/model"  # the audit's first fold model (flags/sweep.cfg), by experiments.audit_sample


def define_catalog_flags(model_dir: bool = True) -> None:
    """--catalog (default the Flipkart sample) and, with `model_dir`, --model_dir (default the audit's first fold
    model): what the scripts that extract from the catalog read."""
    flags.DEFINE_string("catalog", CATALOG, "Catalog file (run from the repository root).")
    if model_dir:
        flags.DEFINE_string("model_dir", FOLD_MODEL, "Trained model of the catalog's verticals (the default: the "
                            "audit's first fold model, flags/sweep.cfg, made by experiments.audit_sample).")


def command_line(module: str) -> str:
    """The shell command that reruns `module` with this process's arguments, for a results page's header."""
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def machine() -> str:
    """'<CPU model> × <cores>' (the model name from /proc/cpuinfo where there is one, else platform.processor()):
    what a report's timings depend on."""
    info = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.*)$", info.read_text(), re.M) if info.is_file() else []
    return f"{names[0] if names else platform.processor() or '?'} × {os.cpu_count()}"


def versions(*names: str) -> str:
    """'Python 3.11.7, TensorFlow 2.15.0, Ray not installed' for versions("TensorFlow", "Ray") (each module the
    name in lower case, imported): the software a report's timings depend on."""
    found = [f"Python {platform.python_version()}"]
    for name in names:
        try:
            found.append(f"{name} {__import__(name.lower()).__version__}")
        except ImportError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def load_average(values: Sequence[float] | None = None, digits: int = 1) -> str:
    """The 1/5/15-minute load averages as 'a/b/c', now or as read before (os.getloadavg()): other work on the
    machine slows what a report times."""
    return "/".join(f"{x:.{digits}f}" for x in (os.getloadavg() if values is None else values))


def mean_sd(values: list[float]) -> str:
    """Percent mean ± std over seeds, with (n=k) when fewer than SEEDS seeds went in; – when none did."""
    if not values:
        return "–"
    sd = f" ± {statistics.stdev(values) * 100:.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values) * 100:.2f}{sd}" + (f" (n={len(values)})" if len(values) < SEEDS else "")


def one_tag_prior(params: Iterable[Params], where: object) -> None:
    """Stop unless every run decodes with the same --tag_prior: runs from before it became a default (0) beside
    newer ones (e.g. a sweep continued after the change) would compare unlike models."""
    values = sorted({p.tag_prior for p in params})
    if len(values) > 1:
        raise SystemExit(f"error: {where}: the runs decode with --tag_prior {' and '.join(map(str, values))}; rerun "
                         "the older ones, or pin --tag_prior in the sweep's flagfiles")


def crf_results(crf_dir: Path) -> dict[str, dict]:
    """The CRF baseline's (experiments/crf_baseline.py) test metrics per vertical."""
    return {p.stem: json.loads(p.read_text())["metrics"] for p in sorted(crf_dir.glob("*.json"))}


def read_result(path: Path) -> dict:
    """A run's result file in the one schema experiments.sweep.run_one writes: name, date, commit, command,
    wall_seconds, params, metrics (test metrics per vertical at its selected step), history, analysis, and the
    study label `variant` where a study set one.

    Files the study runner wrote before that schema (vertical, seed, selected, steps) are read as it: metrics
    {vertical: selected}, params with the two flags such a file names (tasks, seed), no commit or analysis."""
    r = json.loads(path.read_text(encoding="utf-8"))
    if "selected" not in r:
        return r
    return {"name": r["name"], "variant": r["variant"], "date": r["date"], "commit": None, "command": r["command"],
            "wall_seconds": r["wall_seconds"], "params": {"tasks": r["vertical"], "seed": r["seed"]},
            "metrics": {r["vertical"]: r["selected"]}, "history": r["history"], "analysis": None}


Runs = dict[tuple[str, str], dict[str, list[dict]]]  # (mode, "A" or "A+B") → vertical → one record per seed


def read_sweep(results_dir: Path) -> Runs:
    """A sweep's result records grouped by (mode, pair) and vertical; variant runs (`<name>@<label>`) are left out."""
    runs: Runs = defaultdict(lambda: defaultdict(list))
    seen = []
    for path in sorted(results_dir.glob("*.json")):
        r = read_result(path)
        if "@" in r["name"]:
            continue
        p = Params.from_json(r["params"])
        seen.append(p)
        for vertical, m in r["metrics"].items():
            runs[(p.mode, "+".join(p.names))][vertical].append({**r, "m": m})
    one_tag_prior(seen, results_dir)
    return runs


def best_pair(runs: Runs, mode: str, vertical: str, on: str) -> str | None:
    """The pair whose runs give `vertical` the highest mean macro-F1 on `on` ('dev': the selected step's dev
    score, an honest choice; 'test': as the paper reports)."""
    cands = {pair: rs[vertical] for (m, pair), rs in runs.items() if m == mode and "+" in pair and vertical in rs}
    if not cands:
        return None
    key = "dev_macro_f1" if on == "dev" else "macro_f1"
    return max(sorted(cands), key=lambda pair: statistics.mean(r["m"][key] for r in cands[pair]))


def single(result: dict) -> tuple[str, dict]:
    """A single-task run's vertical and its test metrics at the selected step."""
    [(vertical, metrics)] = result["metrics"].items()
    return vertical, metrics


def train_counts(data_dir: Path, vertical: str) -> Counter:
    """Training tokens per tag of a prepared vertical (empty when its train split is missing)."""
    path = data_dir / vertical / "train.conll"
    return Counter(t for s in read_conll(path) for t in s.tags) if path.is_file() else Counter()


def bucket(count: int) -> tuple[int, int | None] | None:
    """The BUCKETS band of a tag seen `count` times in training (None for an unseen tag)."""
    return next((b for b in BUCKETS if b[0] <= count and (b[1] is None or count <= b[1])), None)


def parse_variant(spec: str, allow_empty: bool = False) -> tuple[str, list[str]]:
    """'label:--a=1 --b=2' → ('label', ['--a=1', '--b=2']); 'label:' is allowed (no flags) with allow_empty."""
    label, sep, rest = spec.partition(":")
    extra = rest.split()
    if (not sep or not label or "." in label or (not extra and not allow_empty)
            or not all(f.startswith("--") for f in extra)):
        raise app.UsageError(f"--variant={spec!r}: expected label:--flag=value[ --flag=value], label without dots")
    return label, extra
