"""Coupled variants against hard sharing, pair by pair: does any coupling score transfer more than sharing?

    python -m experiments.coupling_variants [--baseline_dir=experiments/results/table3] \
        [--results_dir=experiments/results/coupling] [--out=experiments/results/coupling.md]

Reads the Table 3 sweep's shared and coupled (paper: emission score) runs and the variant runs
`<seed>.coupled.<A+B>@<label>` (experiments/make_sweep.py --variant). For every pair and vertical: test
macro-F1 mean ± std over seeds of shared, coupled and each variant; alignment_at_1 beside its uniform-attention
chance level; the mean over all pairs' verticals per seed, and whether a model beats shared by more than the
two seed spreads of those means; and the F1 change over shared by tag frequency.
"""
import datetime
import statistics
from collections import defaultdict
from pathlib import Path

from absl import flags

from experiments.common import BUCKETS, bucket, command_line, mean_sd, one_tag_prior, read_result, train_counts
from mtl_tagger import cli
from mtl_tagger.params import Params

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    flags.DEFINE_string("baseline_dir", "experiments/results/table3", "Result files of the Table 3 sweep.")
    flags.DEFINE_list("results_dir", ["experiments/results/coupling"], "Result files of the variant runs.")
    flags.DEFINE_string("data_dir", "data/flipkart", "Prepared data (#train per tag).")
    flags.DEFINE_string("out", "experiments/results/coupling.md", "Markdown file to write.")


Models = dict[str, dict[str, dict[str, dict[int, dict]]]]  # model → pair → vertical → seed → result


def load(dirs: list[Path]) -> tuple[Models, dict[str, str]]:
    """Shared, coupled and variant results of every pair, and each variant label's flags."""
    models: Models = defaultdict(lambda: defaultdict(lambda: defaultdict(dict)))
    flags_of: dict[str, str] = {}
    seen = []
    for d in dirs:
        for path in sorted(d.glob("*.json")):
            r = read_result(path)
            p = Params.from_json(r["params"])
            seen.append(p)
            if p.mode == "single":
                continue
            label = r["name"].split("@")[1] if "@" in r["name"] else p.mode
            if label not in ("shared", "coupled"):
                flags_of[label] = (f"--coupling_score={p.coupling_score}" + (" --coupling_stop_lender"
                                   if p.coupling_stop_lender else "") + (f" --attention_temperature="
                                   f"{p.attention_temperature}" if p.attention_temperature != 1.0 else "")
                                   + (f" --coupling_weight={p.coupling_weight}" if p.coupling_weight != 1.0 else "")
                                   + (" --coupling_within" if p.coupling_within else ""))
            for vertical, m in r["metrics"].items():
                analysis = next((a for a in r["analysis"] or [] if a["borrower"] == vertical), None)
                models[label]["+".join(p.names)][vertical][p.seed] = {"m": m, "a": analysis}
    one_tag_prior(seen, ", ".join(map(str, dirs)))
    return models, flags_of


def per_seed_means(models: Models, label: str, pairs: list[str]) -> dict[int, float]:
    """Per seed, the mean test macro-F1 over every vertical of the pairs (seeds every pair has)."""
    seeds = set.intersection(*[set(models[label][pair][v]) for pair in pairs for v in pairs_of(pair)])
    return {s: statistics.mean(models[label][pair][v][s]["m"]["macro_f1"] for pair in pairs for v in pairs_of(pair))
            for s in sorted(seeds)}


def pairs_of(pair: str) -> list[str]:
    return pair.split("+")


def report(models: Models, flags_of: dict[str, str], data_dir: Path) -> str:
    """The markdown report."""
    labels = ["coupled", *sorted(flags_of)]
    pairs = sorted(p for p in models["shared"] if p in models["coupled"])
    lines = ["| pair | vertical | shared | " + " | ".join(labels) + " | alignment_at_1 (" + ", ".join(labels)
             + ") | uniform |", "|---|---|---:|" + "---:|" * len(labels) + "---|---:|"]
    for pair in pairs:
        for v in pairs_of(pair):
            cells = [mean_sd([r["m"]["macro_f1"] for r in models[m].get(pair, {}).get(v, {}).values()])
                     for m in ["shared", *labels]]
            at1 = [[r["a"]["alignment_at_1"] for r in models[m].get(pair, {}).get(v, {}).values()
                    if r["a"] and r["a"]["alignment_at_1"] is not None] for m in labels]
            chance = [r["a"]["alignment_at_1_uniform"] for r in models["coupled"][pair][v].values()
                      if r["a"] and r["a"]["alignment_at_1_uniform"] is not None]
            lines.append(f"| {pair} | {v} | " + " | ".join(cells) + " | " + ", ".join(mean_sd(a) for a in at1)
                         + f" | {mean_sd(chance)} |")
    lines += ["", "## Mean over every vertical of the pairs each model has run (one value per seed)", "",
              "Each row against shared on the same pairs and seeds.", "",
              "| model | flags | pairs | seeds | mean ± std over seeds | shared on them | − shared | beyond the two "
              "seed spreads |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for label in labels:
        done = [p for p in pairs if all(models[label].get(p, {}).get(v) for v in pairs_of(p))]
        if not done:
            continue
        means, base = per_seed_means(models, label, done), per_seed_means(models, "shared", done)
        seeds = sorted(set(means) & set(base))
        values, shared = [means[s] for s in seeds], [base[s] for s in seeds]
        if not seeds:
            continue
        diff = statistics.mean(values) - statistics.mean(shared)
        named = flags_of.get(label, "--coupling_score=emission")
        beyond = ("yes" if abs(diff) > statistics.stdev(values) + statistics.stdev(shared) else "no") \
            if len(seeds) > 1 else "n/a (one seed)"
        lines.append(f"| {label} | {named} | {len(done)} | {len(seeds)} | {mean_sd(values)} | {mean_sd(shared)} | "
                     f"{diff * 100:+.2f} | {beyond} |")
    lines += ["", "## F1 change over shared by training frequency (per tag, averaged over seeds, then over tags)", "",
              "| #train | tags | " + " | ".join(f"{m} − shared (tags)" for m in labels) + " |",
              "|---|---:|" + "---:|" * len(labels)]
    cells: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for pair in pairs:
        for v in pairs_of(pair):
            counts = train_counts(data_dir, v)
            runs = {m: list(models[m].get(pair, {}).get(v, {}).values()) for m in ["shared", *labels]}
            tags = {t for rs in runs.values() for r in rs for t in r["m"]["per_tag"]}
            for t in tags:
                band = bucket(counts[t])
                if band is None:
                    continue
                f1 = {m: statistics.mean(r["m"]["per_tag"].get(t, {}).get("f1", 0.0) for r in rs)
                      for m, rs in runs.items() if rs}
                for m in labels:
                    if m in f1:
                        cells[band][m].append(f1[m] - f1["shared"])
    for lo, hi in BUCKETS:
        if (lo, hi) in cells:
            c = cells[(lo, hi)]
            lines.append(f"| {lo}–{hi or '∞'} | {len(c['coupled'])} | " + " | ".join(
                f"{statistics.mean(c[m]) * 100:+.1f} ({len(c[m])})" if c[m] else "–" for m in labels) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Write the report."""
    models, flags_of = load([Path(FLAGS.baseline_dir), *map(Path, FLAGS.results_dir)])
    command = command_line("experiments.coupling_variants")
    text = (f"# Coupling variants against hard sharing\n\nTest macro-F1 in percent, mean ± std over seeds; each "
            f"vertical at its own selected step. Written {datetime.date.today().isoformat()} by `{command}` from "
            f"{FLAGS.baseline_dir} and {', '.join(FLAGS.results_dir)}.\n\n" + report(models, flags_of,
                                                                                     Path(FLAGS.data_dir)) + "\n")
    Path(FLAGS.out).write_text(text)
    print(text)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
