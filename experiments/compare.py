"""Compare variant runs (`<name>@<label>`, experiments/make_sweep.py --variant) with their baseline runs.

    python -m experiments.compare --results_dir=experiments/results/why_selection,experiments/results/why_coupling
        --out=experiments/results/why.md [--baseline_dir=experiments/results/runs]

One row per variant run and vertical: the flags that differ from the baseline run of the same name
before the `@`, test macro-F1 of both and the difference, the selected step of both (of the steps
run), and for coupled runs the vertical's alignment_at_1 as borrower and the shortlist pairs its attention saw.
"""
import datetime
import json
from pathlib import Path

from absl import app, flags

from mtl_tagger.params import Params

FLAGS = flags.FLAGS
flags.DEFINE_list("results_dir", None, "Directories of variant result files (experiments/sweep.py).")
flags.DEFINE_string("baseline_dir", "experiments/results/table3", "Result files of the baseline runs.")
flags.DEFINE_string("out", None, "Markdown file to write.")
flags.mark_flags_as_required(["results_dir", "out"])

IGNORED = {"model_dir"}


def _steps(r: dict, vertical: str) -> str:
    return f"{r['metrics'][vertical]['selected_step']}/{r['history']['evaluations'][-1]['step']}"


def _coupling(r: dict, vertical: str) -> tuple[str, str]:
    """alignment_at_1 of `vertical` as borrower and the shortlist pairs its attention saw."""
    d = next((d for d in r.get("analysis") or [] if d["borrower"] == vertical), None)
    if d is None:
        return "–", "–"
    at1 = d["alignment_at_1"]
    return ("n/a" if at1 is None else f"{at1 * 100:.0f}%"), str(sum(map(sum, d["pairs"])))


def rows(results_dir: Path, baseline_dir: Path) -> list[str]:
    """Markdown table rows, one per (variant run, vertical)."""
    out = []
    for path in sorted(results_dir.glob("*@*.json")):
        v = json.loads(path.read_text())
        base_path = baseline_dir / f"{v['name'].split('@')[0]}.json"
        if not base_path.is_file():
            raise SystemExit(f"error: {path}: no baseline result {base_path}")
        b = json.loads(base_path.read_text())
        bp, vp = Params.from_json(b["params"]).to_json(), Params.from_json(v["params"]).to_json()
        changed = ", ".join(f"{k} {bp[k]}→{x}" for k, x in vp.items() if k not in IGNORED and bp[k] != x) or "none"
        for vertical, m in v["metrics"].items():
            (b_at1, b_pairs), (v_at1, v_pairs) = _coupling(b, vertical), _coupling(v, vertical)
            fb, fv = b["metrics"][vertical]["macro_f1"] * 100, m["macro_f1"] * 100
            out.append(f"| {v['name']} | {changed} | {vertical} | {fb:.2f} | {fv:.2f} | {fv - fb:+.2f} | "
                       f"{_steps(b, vertical)} → {_steps(v, vertical)} | {b_at1} → {v_at1} | {b_pairs} → {v_pairs} |")
    return out


def main(argv: list[str]) -> None:
    """Write the comparison table."""
    baseline_dir = Path(FLAGS.baseline_dir)
    table = [row for d in FLAGS.results_dir for row in rows(Path(d), baseline_dir)]
    if not table:
        raise SystemExit(f"error: {','.join(FLAGS.results_dir)}: no variant result files (<name>@<label>.json)")
    text = "\n".join([
        f"# Variant runs against their baselines ({Path(FLAGS.out).stem})", "",
        f"Variant results in {', '.join(FLAGS.results_dir)}, baselines in {baseline_dir}; collected "
        f"{datetime.date.today().isoformat()} by `python -m experiments.compare --results_dir="
        f"{','.join(FLAGS.results_dir)} "
        f"--out={FLAGS.out}`. Test macro-F1 in percent; step = selected (best dev) step / steps run; "
        "alignment and shortlist pairs for coupled runs.", "",
        "| run | changed flags | vertical | baseline F1 | variant F1 | Δ | step | alignment_at_1 | pairs |",
        "|---|---|---|---:|---:|---:|---|---|---|", *table, ""])
    Path(FLAGS.out).write_text(text)
    print(text)


if __name__ == "__main__":
    app.run(main)
