"""Build the paper's tables from a sweep's result files (experiments/sweep.py).

    python -m experiments.collect [--results_dir=experiments/results/runs] [--out=experiments/results]

Writes table3.md (single vs shared vs coupled per vertical, mean ± std over seeds, each vertical from
its best pair and per pair), table4.md (the 5 tags with the largest F1 gain of coupled over single,
with #train), fig4.md + fig4/<pair>.png (top lender per tag, alignment_at_1 per pair) and
table1.md (the prepared data's statistics, from <data_dir>/stats.md).
"""
import datetime
import json
import re
import shutil
import statistics
from collections import Counter, defaultdict
from pathlib import Path

from absl import app, flags

from mtl_tagger.conll import read_conll

FLAGS = flags.FLAGS
flags.DEFINE_string("results_dir", "experiments/results/runs", "Result files written by the sweep.")
flags.DEFINE_string("out", "experiments/results", "Where the tables go.")
flags.DEFINE_string("data_dir", "data/flipkart", "Prepared data (for Table 1 and #train per tag).")

SUMMARY = (("macro_precision", "P"), ("macro_recall", "R"), ("micro_accuracy", "Acc"), ("macro_f1", "F1"))


def _ms(values: list[float]) -> str:
    mean = statistics.mean(values) * 100
    sd = statistics.stdev(values) * 100 if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {sd:.2f}"


def load(results_dir: Path) -> dict[tuple[str, str], dict[str, list[dict]]]:
    """(mode, pair) → vertical → list of result records (one per seed); pair is 'A' or 'A+B'.

    Variant runs (`<name>@<label>`) are left to experiments/compare.py.
    """
    runs: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(results_dir.glob("*.json")):
        r = json.loads(path.read_text())
        if "@" in r["name"]:
            continue
        _, mode, pair = r["name"].split(".", 2)
        for vertical, m in r["metrics"].items():
            runs[(mode, pair)][vertical].append({**r, "m": m})
    return runs


def _config(runs: dict) -> str:
    p = next(iter(next(iter(runs.values())).values()))[0]["params"]
    records = [r for by_v in runs.values() for rs in by_v.values() for r in rs]
    dates = sorted({r["date"] for r in records})
    impl: dict[str, set[str]] = defaultdict(set)  # runs before --lstm_impl existed used the Keras layer
    for r in records:
        impl[r["params"].get("lstm_impl", "keras")].add(r["name"].split(".")[0])
    impls = "; ".join(f"{k} ({', '.join(sorted(v))})" for k, v in sorted(impl.items()))
    return (f"Config: hidden {p['hidden_size']} per direction, {p['word_dim']}-d vectors "
            f"({p['word_vectors'] or 'random'}), batch {p['batch_size']}, ≤ {p['epochs']} epochs "
            f"(patience {p['patience']}), shortlist threshold {p['shortlist_threshold']}, window {p['window']}, "
            f"coupling weight {p['coupling_weight']}, BiLSTM implementation: {impls} (the same model, outputs "
            f"equal to ~1e-7; BUILD_NOTES \"Speed\"). Runs dated {dates[0]}–{dates[-1]}; "
            f"regenerate: `python -m experiments.sweep --sweep_dir=flags/sweeps/table3 && "
            f"python -m experiments.collect` (collected {datetime.date.today().isoformat()}).")


def _best_pair(runs: dict, mode: str, vertical: str) -> str | None:
    cands = {pair: rs[vertical] for (m, pair), rs in runs.items() if m == mode and "+" in pair and vertical in rs}
    if not cands:
        return None
    return max(cands, key=lambda pair: statistics.mean(r["m"]["macro_f1"] for r in cands[pair]))


def _beyond_spread(a: list[float], b: list[float]) -> bool:
    """True when the means differ by more than the two seed spreads (std) together."""
    if len(a) < 2 or len(b) < 2:
        return False
    return abs(statistics.mean(a) - statistics.mean(b)) > statistics.stdev(a) + statistics.stdev(b)


def table3(runs: dict) -> str:
    """Per vertical: single, shared (best pair), coupled (best pair); then every pair."""
    verticals = sorted({v for (mode, pair) in runs if mode == "single" for v in runs[(mode, pair)]})
    lines = ["# Table 3: single vs shared vs coupled (test split, percent, mean ± std over seeds)", "",
             _config(runs), "",
             "Multi-task rows: the vertical's best pair by mean test macro-F1 (as the paper reports: \"the "
             "results for each of the verticals is the best achieved for these pairs\"); the per-pair table "
             "below shows every pair. "
             "`*` = differs from single by more than the two seed spreads (std) together.", "",
             "| Vertical | Model | pair | seeds | P | R | Acc | F1 |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for v in verticals:
        single = runs[("single", v)][v]
        base = [r["m"]["macro_f1"] for r in single]
        lines.append(f"| {v} | single | | {len(single)} | "
                     + " | ".join(_ms([r["m"][k] for r in single]) for k, _ in SUMMARY) + " |")
        for mode in ("shared", "coupled"):
            pair = _best_pair(runs, mode, v)
            if pair is None:
                continue
            rs = runs[(mode, pair)][v]
            mark = " *" if _beyond_spread([r["m"]["macro_f1"] for r in rs], base) else ""
            lines.append(f"| {v} | {mode} | {pair} | {len(rs)} | "
                         + " | ".join(_ms([r["m"][k] for r in rs]) for k, _ in SUMMARY) + mark + " |")
    lines += ["", "## Per pair: the Table 2 analogue (macro-F1, mean ± std)", "",
              "| pair | vertical | single | shared | coupled |", "|---|---|---:|---:|---:|"]
    for pair in sorted({p for (m, p) in runs if "+" in p}):
        for v in pair.split("+"):
            cells = [_ms([r["m"]["macro_f1"] for r in runs.get((m, p), {}).get(v, [])]) if runs.get((m, p), {}).get(v)
                     else "–" for m, p in (("single", v), ("shared", pair), ("coupled", pair))]
            lines.append(f"| {pair} | {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines + selection_gaps(runs)) + "\n"


def selection_gaps(runs: dict, gap: float = 5.0) -> list[str]:
    """Two-task runs whose selected epoch (best mean dev macro-F1) is > `gap` dev points below a vertical's own best."""
    records = {r["name"]: r for (mode, pair), by_v in runs.items() if "+" in pair for rs in by_v.values() for r in rs}
    with_history = [r for r in records.values() if r.get("dev_history")]
    rows = []
    for r in sorted(with_history, key=lambda r: r["name"]):
        history, chosen = r["dev_history"], r["best_epoch"]
        for v in history[0]:
            scores = [h[v] for h in history]
            own = max(range(len(scores)), key=scores.__getitem__)
            if scores[own] - scores[chosen - 1] > gap:
                rows.append(f"| {r['name']} | {len(history)} of {r['params']['epochs']} | {chosen} | {v} | "
                            f"{scores[chosen - 1]:.1f} | {own + 1} | {scores[own]:.1f} |")
    return ["", "## Model selection in two-task runs", "",
            f"The epoch is chosen by the mean of both verticals' dev macro-F1 (BUILD_NOTES). Of {len(with_history)} "
            f"two-task runs with a recorded dev history, these chose an epoch more than {gap:g} dev points below "
            "a vertical's own best epoch (a small vertical's noisy dev score can end a run by patience while "
            "the other is still improving):", "",
            "| run | epochs run | chosen epoch | vertical | dev F1 there | own best epoch | its dev F1 |",
            "|---|---|---:|---|---:|---:|---:|", *(rows or ["| none | | | | | | |"])]


def _train_counts(data_dir: Path, vertical: str) -> Counter:
    path = data_dir / vertical / "train.conll"
    return Counter(t for s in read_conll(path) for t in s.tags) if path.is_file() else Counter()


def table4(runs: dict, data_dir: Path, top: int = 5) -> str:
    """Per vertical: the `top` tags by mean F1 gain of coupled (best pair) over single."""
    lines = ["# Table 4: tags with the largest F1 gain, coupled (best pair) over single", "", _config(runs), "",
             "Mean over seeds of per-tag P / R / F1 (percent); gain in F1 points; #train = training tokens.", ""]
    for v in sorted({v for (mode, pair) in runs if mode == "single" for v in runs[(mode, pair)]}):
        pair = _best_pair(runs, "coupled", v)
        if pair is None:
            continue
        single, coupled = runs[("single", v)][v], runs[("coupled", pair)][v]

        def mean_tag(rs: list[dict], tag: str, key: str) -> float:
            return statistics.mean(r["m"]["per_tag"].get(tag, {}).get(key, 0.0) for r in rs)

        tags = sorted({t for r in single + coupled for t in r["m"]["per_tag"]})
        gains = sorted(tags, key=lambda t: (mean_tag(single, t, "f1") - mean_tag(coupled, t, "f1"), t))[:top]
        counts = _train_counts(data_dir, v)
        lines += [f"## {v} (coupled with {pair})", "",
                  "| tag | #train | single P | R | F1 | coupled P | R | F1 | gain |", "|---|---:|" + "---:|" * 7]
        for t in gains:
            s = [mean_tag(single, t, k) * 100 for k in ("precision", "recall", "f1")]
            c = [mean_tag(coupled, t, k) * 100 for k in ("precision", "recall", "f1")]
            lines.append(f"| {t} | {counts.get(t, 0)} | " + " | ".join(f"{x:.1f}" for x in s + c)
                         + f" | {c[2] - s[2]:+.1f} |")
        lines.append("")
    return "\n".join(lines + by_frequency(runs, data_dir))


BUCKETS = ((0, 0), (1, 10), (11, 50), (51, 200), (201, None))


def by_frequency(runs: dict, data_dir: Path) -> list[str]:
    """The paper's claim in one table: mean per-tag F1 of each model by the tag's #train (tags of all verticals)."""
    cells: dict[tuple[int, int | None], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for v in sorted({v for (mode, pair) in runs if mode == "single" for v in runs[(mode, pair)]}):
        models = {"single": runs[("single", v)][v]}
        for mode in ("shared", "coupled"):
            pair = _best_pair(runs, mode, v)
            if pair is not None:
                models[mode] = runs[(mode, pair)][v]
        if "coupled" not in models:  # shared is optional: a sweep may have only single and coupled runs
            continue
        counts = _train_counts(data_dir, v)
        for t in sorted({t for rs in models.values() for r in rs for t in r["m"]["per_tag"]}):
            lo, hi = next(b for b in BUCKETS if b[0] <= counts.get(t, 0) and (b[1] is None or counts.get(t, 0) <= b[1]))
            for mode, rs in models.items():
                cells[(lo, hi)][mode].append(statistics.mean(r["m"]["per_tag"].get(t, {}).get("f1", 0.0) for r in rs))
    lines = ["## Gain by training frequency (all verticals)", "",
             "Per (vertical, tag): F1 averaged over seeds, multi-task rows from the vertical's best pair; then "
             "averaged over the tags whose #train falls in the bucket. The paper's claim is that the gain is "
             "largest for rare tags.", "",
             "| #train | tags | single F1 | shared F1 | coupled F1 | coupled − single | coupled − shared |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for lo, hi in BUCKETS:
        c = cells.get((lo, hi))
        if not c:
            continue
        f = {mode: statistics.mean(xs) * 100 for mode, xs in c.items()}
        label = str(lo) if hi == lo else f"{lo}–{hi}" if hi else f"> {lo - 1}"
        shared = (f"{f['shared']:.1f}", f"{f['coupled'] - f['shared']:+.1f}") if "shared" in f else ("–", "–")
        lines.append(f"| {label} | {len(c['single'])} | {f['single']:.1f} | {shared[0]} | {f['coupled']:.1f} | "
                     f"{f['coupled'] - f['single']:+.1f} | {shared[1]} |")
    return lines + [""]


def fig4(runs: dict, results_dir: Path, out: Path) -> str:
    """Top-lender tables of the first seed, heatmap PNGs, and alignment_at_1 (mean ± std) per pair."""
    (out / "fig4").mkdir(parents=True, exist_ok=True)
    lines = ["# Fig. 4: label attention between the verticals of each coupled pair", "", _config(runs), "",
             "| pair | alignment_at_1 (mean ± std over seeds) | tags present in both |", "|---|---:|---:|"]
    tables = []
    for (mode, pair), by_v in sorted(runs.items()):
        if mode != "coupled":
            continue
        rs = sorted(by_v[pair.split("+")[0]], key=lambda r: r["name"])
        at1 = [r["analysis"]["alignment_at_1"] for r in rs if r["analysis"]["alignment_at_1"] is not None]
        lines.append(f"| {pair} | {_ms(at1) if at1 else 'n/a'} | {rs[0]['analysis']['alignment_tags']} |")
        first = rs[0]
        png = results_dir / f"{first['name']}.attention.png"
        if png.is_file():
            shutil.copyfile(png, out / "fig4" / f"{pair}.png")
        a = first["analysis"]
        tables += [f"## {pair} ({first['name']})", "", f"![heatmap](fig4/{pair}.png)", "",
                   f"| Borrower-{a['borrower']} | Lender-{a['lender']} | attention | pairs |", "|---|---|---:|---:|"]
        tables += [f"| {x['tag']} | {x['lender']} | {x['attention']:.2f} | {x['pairs']} |" for x in a["top_lenders"]]
        tables.append("")
    return "\n".join(lines + [""] + tables)


def table1(data_dir: Path) -> str:
    """The Table 1 section of the prepared data's stats.md."""
    stats = (data_dir / "stats.md").read_text()
    section = re.search(r"## Table 1.*?(?=\n## )", stats, re.S)
    return ("# Table 1: dataset characteristics of the prepared verticals\n\nMade by `python -m mtl_tagger.prepare "
            "--source=../shared/data/flipkart/products.jsonl.gz --out=data/flipkart` (full statistics in "
            f"{data_dir}/stats.md).\n\n" + (section.group(0) if section else stats) + "\n")


def main(argv: list[str]) -> None:
    """Write the tables."""
    results_dir, out, data_dir = Path(FLAGS.results_dir), Path(FLAGS.out), Path(FLAGS.data_dir)
    runs = load(results_dir)
    if not runs:
        raise SystemExit(f"error: {results_dir}: no result files; run experiments.sweep first")
    out.mkdir(parents=True, exist_ok=True)
    (out / "table3.md").write_text(table3(runs))
    (out / "table4.md").write_text(table4(runs, data_dir))
    (out / "fig4.md").write_text(fig4(runs, results_dir, out))
    if (data_dir / "stats.md").is_file():
        (out / "table1.md").write_text(table1(data_dir))
    print((out / "table3.md").read_text())


if __name__ == "__main__":
    app.run(main)
