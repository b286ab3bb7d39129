"""All twelve verticals in one model beside single-task and each vertical's best pair.

    python -m experiments.all12 [--results_dir=experiments/results/all12] [--table3_dir=experiments/results/table3]
        [--out=experiments/results/all12.md]

Per vertical, test macro-F1 mean ± std over seeds: single-task and the best pair (chosen on dev) from the Table 3
sweep, and the twelve-vertical runs in shared mode and in coupled mode with `--couple=auto`; then the pairs
`auto` coupled (each vertical with its top lender by mtl_tagger.lenders) and the mean over the verticals.
"""
import datetime
import statistics
from collections import defaultdict
from pathlib import Path

from absl import flags

from experiments.common import best_pair, command_line, mean_sd, one_tag_prior, read_result, read_sweep, trained_on
from mtl_tagger import cli
from mtl_tagger.params import Params

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    flags.DEFINE_string("results_dir", "experiments/results/all12", "Result files of the twelve-vertical runs.")
    flags.DEFINE_string("table3_dir", "experiments/results/table3", "Result files of the Table 3 sweep.")
    flags.DEFINE_string("out", "experiments/results/all12.md", "Markdown file to write.")


def _cells(table3: dict, big: dict[str, dict[str, list[float]]], vertical: str) -> dict[str, list[float]]:
    """One vertical's test macro-F1 per seed: single, its best pair on dev (shared, coupled), the 12-vertical runs."""
    cells = {"single": [r["m"]["macro_f1"] for r in table3.get(("single", vertical), {}).get(vertical, [])]}
    for mode in ("shared", "coupled"):
        pair = best_pair(table3, mode, vertical, "dev")
        cells[f"pair {mode}"] = [r["m"]["macro_f1"] for r in table3[(mode, pair)][vertical]] if pair else []
        cells[f"all {mode}"] = big[mode][vertical]
    return cells  # main orders the columns


def main(argv: list[str]) -> None:
    """Write the comparison."""
    table3 = read_sweep(Path(FLAGS.table3_dir))
    big: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    pairs: set[str] = set()
    results = [r for cells in table3.values() for rs in cells.values() for r in rs]
    seen = [Params.from_json(r["params"]) for r in results]
    for path in sorted(Path(FLAGS.results_dir).glob("*.json")):
        r = read_result(path)
        results.append(r)
        p = Params.from_json(r["params"])
        seen.append(p)
        for vertical, m in r["metrics"].items():
            big[p.mode][vertical].append(m["macro_f1"])
        if p.mode == "coupled":
            pairs |= {d["pair"] for d in r["analysis"] or []}
    one_tag_prior(seen, f"{FLAGS.table3_dir}, {FLAGS.results_dir}")
    verticals = sorted(big["shared"] or big["coupled"])
    columns = {"single": "single", "pair shared": "best pair, shared", "pair coupled": "best pair, coupled",
               "all shared": "all 12, shared", "all coupled": "all 12, coupled (auto)"}
    rows = {v: _cells(table3, big, v) for v in verticals}
    lines = ["| vertical | " + " | ".join(columns.values()) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {v} | " + " | ".join(mean_sd(cells[k]) for k in columns) + " |" for v, cells in rows.items()]
    measured = [k for k in columns if any(cells[k] for cells in rows.values())]
    common = [v for v, cells in rows.items() if all(cells[k] for k in measured)]
    means = [f"{statistics.mean(statistics.mean(rows[v][k]) for v in common) * 100:.2f}"
             if k in measured and common else "–" for k in columns]
    lines.append(f"| mean over the {len(common)} verticals with every measured cell | " + " | ".join(means) + " |")
    command = command_line("experiments.all12")
    text = "\n".join([
        "# All twelve verticals in one model", "",
        f"Test macro-F1, percent, mean ± std over seeds; the best pair is chosen on dev. Written "
        f"{datetime.date.today().isoformat()} by `{command}`. Trained on {trained_on(results)}.", "", *lines, "",
        f"Pairs coupled by `--couple=auto` (each vertical with its top lender): {', '.join(sorted(pairs)) or '–'}.",
        ""])
    Path(FLAGS.out).write_text(text)
    print(text)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
