"""Build the paper's tables from a sweep's result files (experiments/sweep.py) and the CRF baseline's.

    python -m experiments.collect [--results_dir=experiments/results/table3] [--out=experiments/results]

Writes table3.md (CRF vs single vs shared vs coupled per vertical, mean ± std over seeds, each multi-task
row from the vertical's best pair chosen on dev and on test, every pair, and the single-vs-CRF check),
table4.md (the tags with the largest gain, and the gain by tag frequency), fig4.md + fig4/*.png (top
lender per tag, alignment_at_1 beside uniform attention, per pair and direction) and table1.md (the prepared
data's statistics, from <data_dir>/stats.md). Each vertical of a run is tested at its own selected step.
"""
import datetime
import re
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

from absl import flags

from experiments.common import (
    BUCKETS,
    SEEDS,
    Runs,
    best_pair,
    bucket,
    command_line,
    crf_results,
    mean_sd,
    read_sweep,
    train_counts,
)
from mtl_tagger import cli
from mtl_tagger.conll import read_conll
from mtl_tagger.params import Params

FLAGS = flags.FLAGS

def _beyond_spread(a: list[float], b: list[float]) -> bool:
    """True when the means differ by more than the two seed spreads (std) together."""
    if len(a) < 2 or len(b) < 2:
        return False
    return abs(statistics.mean(a) - statistics.mean(b)) > statistics.stdev(a) + statistics.stdev(b)


def _config(runs: Runs) -> str:
    records = [r for by_v in runs.values() for rs in by_v.values() for r in rs]
    p = records[0]["params"]
    dates = sorted({r["date"] for r in records})
    return (f"Config: flags/sweep.cfg — hidden {p['hidden_size']} per direction, {p['word_dim']}-d vectors "
            f"({p['word_vectors'] or 'random'}), batch {p['batch_size']}, learning rate {p['learning_rate']}, "
            f"dropout {p['dropout']}, word dropout {p['word_dropout']}, {p['epochs']} epochs of the largest vertical "
            f"clipped to [{p['min_steps']}, {p['max_steps'] or '∞'}] steps, dev every {p['eval_every'] or 'epoch'} "
            f"steps, patience {p['patience']} evaluations, coupling score {p['coupling_score']}, tag prior "
            f"{Params.from_json(p).tag_prior}. Runs dated "
            f"{dates[0]}–{dates[-1]}; regenerate: `python -m experiments.sweep --sweep_dir=flags/sweeps/table3 && "
            f"{command_line('experiments.collect')}` (collected {datetime.date.today().isoformat()}).")


def _cell(rs: list[dict], key: str, base: list[float] | None, pair: str | None = None) -> str:
    values = [r["m"][key] for r in rs]
    mark = " *" if base is not None and _beyond_spread(values, base) else ""
    return mean_sd(values) + mark + (f" ({pair})" if pair else "")


def table3(runs: Runs, crf: dict[str, dict], data_dir: Path) -> str:
    """Per vertical: CRF, single, shared and coupled (best pair on dev and on test); every pair; the CRF check."""
    verticals = sorted({v for (mode, _), by_v in runs.items() if mode == "single" for v in by_v})
    lines = ["# Table 3: CRF vs single vs shared vs coupled (test split, percent, mean ± std over seeds)", "",
             _config(runs), "",
             "Multi-task cells name the pair; the pair is the vertical's best by mean *dev* macro-F1 (an honest "
             "choice) or by mean *test* macro-F1 (as the paper reports, biased upward). `*` = differs from single "
             "by more than the two seed spreads (std) together. CRF: experiments/crf_baseline.py (deterministic).", ""]
    for key, title in (("macro_f1", "macro-F1 (the paper's)"), ("entity_f1", "entity-F1 (conlleval)")):
        lines += [f"## {title}", "", "| Vertical | #train | CRF | single | shared, pair by dev | shared, pair by test "
                  "| coupled, pair by dev | coupled, pair by test |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for v in verticals:
            single = runs[("single", v)][v]
            base = [r["m"][key] for r in single]
            cells = [f"{crf[v][key] * 100:.2f}" if v in crf else "–", _cell(single, key, None)]
            for mode in ("shared", "coupled"):
                for on in ("dev", "test"):
                    pair = best_pair(runs, mode, v, on)
                    cells.append(_cell(runs[(mode, pair)][v], key, base, pair) if pair else "–")
            lines.append(f"| {v} | {_train_size(data_dir, v)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Single-task tagger against the CRF (verticals with ≥ 30 training descriptions)", "",
              *single_vs_crf(runs, crf, data_dir), "",
              "## Every pair (macro-F1, mean ± std; the Table 2 analogue)", "",
              "| pair | vertical | single | shared | coupled | selected steps (shared; coupled) |",
              "|---|---|---:|---:|---:|---|"]
    for pair in sorted({p for (_, p) in runs if "+" in p}):
        for v in pair.split("+"):
            cells = []
            for mode, p in (("single", v), ("shared", pair), ("coupled", pair)):
                rs = runs.get((mode, p), {}).get(v)
                cells.append(mean_sd([r["m"]["macro_f1"] for r in rs]) if rs else "–")
            steps = "; ".join(", ".join(str(r["m"]["selected_step"]) for r in runs.get((mode, pair), {}).get(v, []))
                              for mode in ("shared", "coupled"))
            lines.append(f"| {pair} | {v} | " + " | ".join(cells) + f" | {steps} |")
    return "\n".join(lines) + "\n"


README_BEGIN, README_END = "<!-- collect: begin -->", "<!-- collect: end -->"


def summary(runs: Runs, crf: dict[str, dict], data_dir: Path) -> str:
    """Per vertical test macro-F1 / entity-F1 of the CRF, single and the pairs chosen on dev, with their means."""
    verticals = sorted({v for (mode, _), by_v in runs.items() if mode == "single" for v in by_v})
    models = {"CRF": {v: [crf[v]] for v in verticals if v in crf},
              "single": {v: [r["m"] for r in runs[("single", v)][v]] for v in verticals}}
    for mode in ("shared", "coupled"):
        picked = {v: best_pair(runs, mode, v, "dev") for v in verticals}
        models[mode] = {v: [r["m"] for r in runs[(mode, pair)][v]] for v, pair in picked.items() if pair}
    lines = ["| vertical | #train | " + " | ".join(models) + " |", "|---|---:|" + "---:|" * len(models)]

    def cell(ms: list[dict], model: str) -> str:
        n = f" (n={len(ms)})" if len(ms) < SEEDS and model != "CRF" else ""  # the CRF is deterministic: no seeds
        return " / ".join(f"{statistics.mean(m[k] for m in ms) * 100:.1f}" for k in ("macro_f1", "entity_f1")) + n
    for v in verticals:
        lines.append(f"| {v} | {_train_size(data_dir, v)} | "
                     + " | ".join(cell(by_v[v], model) if v in by_v else "–" for model, by_v in models.items()) + " |")
    common = ([v for v in verticals if all(v in by_v for by_v in models.values())]
              or [v for v in verticals if v in models["CRF"]])
    means = [" / ".join(f"{statistics.mean(statistics.mean(m[k] for m in by_v[v]) for v in common) * 100:.1f}"
                        for k in ("macro_f1", "entity_f1")) if all(v in by_v for v in common) else "–"
             for by_v in models.values()]
    lines.append(f"| mean of the {len(common)} verticals with these rows | | " + " | ".join(means) + " |")
    return (f"Test macro-F1 / entity-F1, mean over seeds (n = seeds where fewer than {SEEDS} have finished); shared "
            "and coupled at each vertical's best pair chosen on dev. Written by "
            f"`{command_line('experiments.collect')}` on {datetime.date.today().isoformat()} from "
            "[table3.md](experiments/results/table3.md), which has the pairs, the seed spreads and the pairs chosen "
            "on test.\n\n" + "\n".join(lines))


def write_readme_block(readme: Path, text: str) -> None:
    """Replace what lies between the collect markers of `readme` with `text`."""
    old = readme.read_text(encoding="utf-8")
    if README_BEGIN not in old or README_END not in old:
        raise SystemExit(f"error: {readme}: no {README_BEGIN} … {README_END} block to write the summary into")
    head, rest = old.split(README_BEGIN, 1)
    readme.write_text(head + README_BEGIN + "\n" + text + "\n" + README_END + rest.split(README_END, 1)[1],
                      encoding="utf-8")


def _train_size(data_dir: Path, vertical: str) -> str:
    path = data_dir / vertical / "train.conll"
    return str(len(read_conll(path))) if path.is_file() else "?"


def single_vs_crf(runs: Runs, crf: dict[str, dict], data_dir: Path) -> list[str]:
    """Mean over the verticals with ≥ 30 training descriptions of single-task and CRF macro-F1 and entity-F1, and the
    entity precision and recall behind the latter (where the two taggers differ in kind)."""
    verticals = [v for (mode, _), by_v in sorted(runs.items()) if mode == "single" for v in by_v
                 if v in crf and _train_size(data_dir, v).isdigit() and int(_train_size(data_dir, v)) >= 30]
    if not verticals:
        return ["(no vertical with ≥ 30 training descriptions and a CRF result)"]
    rows = ["| | " + " | ".join(verticals) + " | mean |", "|---|" + "---:|" * (len(verticals) + 1)]
    zero = []
    for key in ("macro_f1", "entity_f1", "entity_precision", "entity_recall"):
        single = [statistics.mean(r["m"][key] for r in runs[("single", v)][v]) for v in verticals]
        rows.append(f"| single {key} | " + " | ".join(f"{x * 100:.2f}" for x in single)
                    + f" | {statistics.mean(single) * 100:.2f} |")
        rows.append(f"| CRF {key} | " + " | ".join(f"{crf[v][key] * 100:.2f}" for v in verticals)
                    + f" | {statistics.mean(crf[v][key] for v in verticals) * 100:.2f} |")
    for v in verticals:
        if any(r["m"]["entity_f1"] == 0 for r in runs[("single", v)][v]) and crf[v]["entity_f1"] > 0:
            zero.append(v)
    return rows + ["", f"Verticals where a single-task seed has entity-F1 0 and the CRF does not: "
                       f"{', '.join(zero) or 'none'}."]


def table4(runs: Runs, data_dir: Path, top: int = 5) -> str:
    """Per vertical the `top` tags by F1 gain of coupled (best pair by dev) over single; gain by tag frequency."""
    lines = ["# Table 4: tags with the largest F1 gain, and the gain by training frequency", "", _config(runs), "",
             "Mean over seeds of per-tag F1 (percent); multi-task runs from the vertical's best pair by dev; "
             "#train = training tokens of the tag.", ""]
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for v in sorted({v for (mode, _), by_v in runs.items() if mode == "single" for v in by_v}):
        counts = train_counts(data_dir, v)
        models = {"single": runs[("single", v)][v]}
        for mode in ("shared", "coupled"):
            pair = best_pair(runs, mode, v, "dev")
            if pair:
                models[mode] = runs[(mode, pair)][v]
        tags = sorted({t for rs in models.values() for r in rs for t in r["m"]["per_tag"]})
        f1 = {mode: {t: statistics.mean(r["m"]["per_tag"].get(t, {}).get("f1", 0.0) for r in rs) for t in tags}
              for mode, rs in models.items()}
        for t in tags:
            band = bucket(counts[t])
            if band:
                for mode in models:
                    cells[band][mode].append(f1[mode][t])
        if "coupled" not in models:
            continue
        ranked = sorted(tags, key=lambda t: (f1["single"][t] - f1["coupled"][t], t))[:top]
        lines += [f"## {v}", "", "| tag | #train | single F1 | coupled F1 | gain |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {t} | {counts.get(t, 0)} | {f1['single'][t] * 100:.1f} | {f1['coupled'][t] * 100:.1f} | "
                  f"{(f1['coupled'][t] - f1['single'][t]) * 100:+.1f} |" for t in ranked]
        lines.append("")
    lines += ["## Gain by training frequency (all verticals)", "",
              "Per (vertical, tag) F1 averaged over seeds, then over the tags whose #train falls in the bucket. The "
              "paper's claim is that the gain is largest for rare tags.", "",
              "| #train | tags | single F1 | shared F1 | coupled F1 | shared − single | coupled − shared |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for lo, hi in BUCKETS:
        c = cells.get((lo, hi))
        if not c or "shared" not in c or "coupled" not in c:
            continue
        f = {mode: statistics.mean(xs) * 100 for mode, xs in c.items()}
        label = f"{lo}–{hi}" if hi else f"> {lo - 1}"
        lines.append(f"| {label} | {len(c['single'])} | {f['single']:.1f} | {f['shared']:.1f} | {f['coupled']:.1f} | "
                     f"{f['shared'] - f['single']:+.1f} | {f['coupled'] - f['shared']:+.1f} |")
    return "\n".join(lines) + "\n"


def fig4(runs: Runs, results_dir: Path, out: Path) -> str:
    """alignment_at_1 beside uniform attention per pair and direction; top lenders and heatmaps of one seed."""
    (out / "fig4").mkdir(parents=True, exist_ok=True)
    lines = ["# Fig. 4: label attention between the verticals of each coupled pair", "", _config(runs), "",
             "alignment_at_1 = share of borrower tags (present in both verticals) whose top lender is the same tag; "
             "uniform = the same readout with uniform attention over each anchor's neighbours (its chance level).",
             "", "| borrower | lender | alignment_at_1 | uniform attention | tags in both |",
             "|---|---|---:|---:|---:|"]
    tables = []
    for (mode, pair), by_v in sorted(runs.items()):
        if mode != "coupled":
            continue
        records = sorted(by_v[pair.split("+")[0]], key=lambda r: r["name"])
        for i, d in enumerate(records[0]["analysis"]):
            learned = [r["analysis"][i]["alignment_at_1"] for r in records if r["analysis"][i]["alignment_at_1"]
                       is not None]
            chance = [r["analysis"][i]["alignment_at_1_uniform"] for r in records
                      if r["analysis"][i]["alignment_at_1_uniform"] is not None]
            lines.append(f"| {d['borrower']} | {d['lender']} | {mean_sd(learned) if learned else 'n/a'} | "
                         f"{mean_sd(chance) if chance else 'n/a'} | {d['alignment_tags']} |")
            png = results_dir / f"{records[0]['name']}.{d['borrower']}__{d['lender']}.png"
            if png.is_file():
                shutil.copyfile(png, out / "fig4" / f"{d['borrower']}__{d['lender']}.png")
            tables += [f"## {d['borrower']} borrows from {d['lender']} ({records[0]['name']})", "",
                       f"![heatmap](fig4/{d['borrower']}__{d['lender']}.png)", "",
                       f"| Borrower-{d['borrower']} | Lender-{d['lender']} | attention | pairs |",
                       "|---|---|---:|---:|",
                       *[f"| {x['tag']} | {x['lender']} | {x['attention']:.2f} | {x['pairs']} |"
                         for x in d["top_lenders"]], ""]
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
    runs = read_sweep(results_dir)
    if not runs:
        raise SystemExit(f"error: {results_dir}: no result files; run experiments.sweep first")
    if FLAGS.readme:  # first: a README without the block stops the command before any table is written
        write_readme_block(Path(FLAGS.readme), summary(runs, crf_results(Path(FLAGS.crf_dir)), data_dir))
    out.mkdir(parents=True, exist_ok=True)
    (out / "table3.md").write_text(table3(runs, crf_results(Path(FLAGS.crf_dir)), data_dir))
    (out / "table4.md").write_text(table4(runs, data_dir))
    if any(mode == "coupled" for mode, _ in runs):
        (out / "fig4.md").write_text(fig4(runs, results_dir, out))
    if (data_dir / "stats.md").is_file():
        (out / "table1.md").write_text(table1(data_dir))
    print((out / "table3.md").read_text())


def define_flags() -> None:
    """The script's flags (defined when run as a program, so other experiments can import its functions)."""
    flags.DEFINE_string("results_dir", "experiments/results/table3", "Result files written by the sweep.")
    flags.DEFINE_string("crf_dir", "experiments/results/crf", "Result files of experiments/crf_baseline.py.")
    flags.DEFINE_string("out", "experiments/results", "Where the tables go.")
    flags.DEFINE_string("data_dir", "data/flipkart", "Prepared data (for Table 1 and #train per tag).")
    flags.DEFINE_string("readme", "", "Also write the per-vertical summary into this file's collect block.")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
