"""All twelve verticals in one model beside single-task and each vertical's best pair.

    python -m experiments.all12 [--results_dir=experiments/results/all12] [--table3_dir=experiments/results/table3]
        [--variant=LABEL:RESULTS_DIR ...] [--out=experiments/results/all12.md]

Per vertical, test macro-F1 mean ± std over seeds: single-task and the best pair (chosen on dev) from the Table 3
sweep, and the twelve-vertical runs in shared mode and in coupled mode with `--couple=auto`, and a column of shared
runs per --variant (other flags, their own result files); then the pairs `auto` coupled (each vertical with its top
lender by mtl_tagger.lenders), the mean over the verticals, and for each multi-task column the two checks of the
whole-catalog model: the verticals below single-task by more than single-task's seed spread (its std over seeds),
and the mean gain over single-task beside that of the best pairs; then test entity-F1 and the same checks on it.
"""
import datetime
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from absl import flags

from experiments.common import (
    best_pair,
    command_line,
    mean_sd,
    one_tag_prior,
    read_result,
    read_sweep,
    trained_on,
)
from mtl_tagger import cli
from mtl_tagger.errors import InputError
from mtl_tagger.params import Params

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    flags.DEFINE_string("results_dir", "experiments/results/all12", "Result files of the twelve-vertical runs.")
    flags.DEFINE_string("table3_dir", "experiments/results/table3", "Result files of the Table 3 sweep.")
    flags.DEFINE_string("out", "experiments/results/all12.md", "Markdown file to write.")
    flags.DEFINE_multi_string("variant", [], "LABEL:RESULTS_DIR: result files of more twelve-vertical shared runs "
                              "(other flags), shown as their own column.")


def _cells(table3: dict, big: dict[str, dict[str, list[dict]]], columns: Iterable[str], vertical: str,
           key: str = "macro_f1") -> dict[str, list[float]]:
    """One vertical's `key` of its selected step per seed (test macro_f1 or entity_f1, or dev_macro_f1) in each of
    `columns` (empty where not measured): single, its best pair on dev (shared, coupled), the 12-vertical runs (`big`:
    column → vertical → metrics per seed)."""
    cells = {k: [] for k in columns}
    cells["single"] = [r["m"][key] for r in table3.get(("single", vertical), {}).get(vertical, [])]
    for mode in ("shared", "coupled"):
        pair = best_pair(table3, mode, vertical, "dev")
        cells[f"pair {mode}"] = [r["m"][key] for r in table3[(mode, pair)][vertical]] if pair else []
    return cells | {column: [m[key] for m in seeds[vertical]] for column, seeds in big.items() if column in cells}


def _checks(rows: dict[str, dict[str, list[float]]], column: str, common: list[str]) -> str:
    """A multi-task column against single-task: the verticals below single-task by more than single-task's seed
    spread, and the column's mean gain over the `common` verticals."""
    below = [f"{v} ({(statistics.mean(c[column]) - statistics.mean(c['single'])) * 100:+.2f})"
             for v, c in rows.items() if len(c["single"]) > 1 and c[column]
             and statistics.mean(c[column]) < statistics.mean(c["single"]) - statistics.stdev(c["single"])]
    gain = statistics.mean(statistics.mean(rows[v][column]) - statistics.mean(rows[v]["single"]) for v in common)
    return f"{gain * 100:+.2f} | {', '.join(below) or 'none'}"


def main(argv: list[str]) -> None:
    """Write the comparison."""
    table3 = read_sweep(Path(FLAGS.table3_dir))
    big: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    pairs: set[str] = set()
    results = [r for cells in table3.values() for rs in cells.values() for r in rs]
    dirs = [("", Path(FLAGS.results_dir))]
    for spec in FLAGS.variant:
        label, sep, where = spec.partition(":")
        if not (label and sep and where and any(Path(where).glob("*.json"))):
            raise InputError(f"--variant={spec}: expected LABEL:RESULTS_DIR, a directory of result files")
        dirs.append((label, Path(where)))
    variants = [label for label, _ in dirs[1:]]
    for label, results_dir in dirs:
        for path in sorted(results_dir.glob("*.json")):
            r = read_result(path)
            results.append(r)
            p = Params.from_json(r["params"])
            if label and p.mode != "shared":
                raise InputError(f"--variant={label}:{results_dir}: {path.name} is a {p.mode} run; a variant "
                                     "column holds twelve-vertical shared runs")
            for vertical, m in r["metrics"].items():
                big[f"all {p.mode}" + (f" {label}" if label else "")][vertical].append(m)
            if p.mode == "coupled":
                pairs |= {d["pair"] for d in r["analysis"] or []}
    one_tag_prior([Params.from_json(r["params"]) for r in results],
                  ", ".join(map(str, [FLAGS.table3_dir, *(d for _, d in dirs)])))
    verticals = sorted(big["all shared"] or big["all coupled"])
    columns = {"single": "single", "pair shared": "best pair, shared", "pair coupled": "best pair, coupled",
               "all shared": "all 12, shared", "all coupled": "all 12, coupled (auto)",
               **{f"all shared {label}": f"all 12, shared, {label}" for label in variants}}
    scores = {key: {v: _cells(table3, big, columns, v, key) for v in verticals}
              for key in ("macro_f1", "entity_f1", "dev_macro_f1")}
    measured = [k for k in columns if any(cells[k] for cells in scores["macro_f1"].values())]
    common = [v for v, cells in scores["macro_f1"].items() if all(cells[k] for k in measured)]
    tables = {}
    for key, table in scores.items():
        lines = ["| vertical | " + " | ".join(columns.values()) + " |", "|---|" + "---:|" * len(columns)]
        lines += [f"| {v} | " + " | ".join(mean_sd(cells[k]) for k in columns) + " |" for v, cells in table.items()]
        means = [f"{statistics.mean(statistics.mean(table[v][k]) for v in common) * 100:.2f}"
                 if k in measured and common else "–" for k in columns]
        tables[key] = lines + [f"| mean over the {len(common)} verticals with every measured cell | "
                               + " | ".join(means) + " |"]
    checks = {key: [f"| column | mean gain over single ({len(common)} verticals) | below single by more than its "
                    "seed spread (every vertical) |", "|---|---:|---|"]
              + [f"| {columns[k]} | {_checks(scores[key], k, common)} |" for k in measured if k != "single" and common]
              for key in ("macro_f1", "entity_f1")}
    command = command_line("experiments.all12")
    text = "\n".join([
        "# All twelve verticals in one model", "",
        f"Test macro-F1, percent, mean ± std over seeds; the best pair is chosen on dev. Written "
        f"{datetime.date.today().isoformat()} by `{command}`. Trained on {trained_on(results)}.", "",
        *tables["macro_f1"], "",
        "Dev macro-F1 at each run's selected steps, the score that selects them (and the pairs):", "",
        *tables["dev_macro_f1"], "",
        "Against single-task (the mean gain over the verticals of the mean row; a vertical counts as below when its "
        "mean is under single-task's mean minus single-task's std over seeds):", "", *checks["macro_f1"], "",
        "Test entity-F1 (conlleval: whole values, where one missed rare value counts once rather than as two of "
        "the vertical's classes), at the same selected steps:", "",
        *tables["entity_f1"], "", "The same checks on entity-F1:", "", *checks["entity_f1"], "",
        f"Pairs coupled by `--couple=auto` (each vertical with its top lender): {', '.join(sorted(pairs)) or '–'}.",
        ""])
    Path(FLAGS.out).write_text(text)
    print(text)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
