"""Does a steadier reading of dev pick better steps? Selection rules replayed on runs traced with their test score.

    python -m experiments.selection_rules \
        [--results_dirs=experiments/results/small_data,experiments/results/small_data_cut] \
        [--out=experiments/results/selection_rules.md]

With dev splits of a few sentences, the step each vertical is served from (its latest best dev macro-F1, the loop's
rule) may be a lucky evaluation. The runs of the small-data protocol (experiments.small_data) record dev and test at
every evaluation, so other rules (RULES; experiments.defaults replays some of them too) can be replayed on the same
runs without training: the best mean of the last k dev scores (k = 2, 3, 5: a trailing window, which the loop could
apply as it goes), of a centred window of 3 or 5, of dev macro-F1 plus entity-F1 (alone or over the last 3), and the
last evaluation. Each rule picks among the evaluations the run made (a run stops when the loop's rule runs out of
patience, so a rule that would have trained longer is judged on what it could see).

The page gives, per results directory and variant (embedding condition and size), the test macro-F1 / entity-F1 at the
loop's rule and each other rule's difference to it, mean over the group's runs; a rule worth adopting is ahead in
every group. Test judges here, not dev: no rule picks a step of higher dev macro-F1 than the loop's, by construction,
so dev cannot tell them apart. The page shows every rule that was replayed.
"""
import datetime
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import flags

from experiments.common import command_line, read_result, single
from mtl_tagger import cli
from mtl_tagger.errors import InputError
from mtl_tagger.files import write_text_atomic

FLAGS = flags.FLAGS

Rule = Callable[[Sequence[dict[str, float]]], int]  # dev scores per evaluation → the index of the selected one
KEYS = ("macro_f1", "entity_f1")


def windowed(before: int, after: int, keys: tuple[str, ...] = ("macro_f1",), later: bool = True) -> Rule:
    """The evaluation whose window (`before` evaluations before it, `after` after, cut at the ends) has the highest
    mean of the sum of `keys`; ties go to the later evaluation, as in the loop (`later=False`: to the earlier)."""
    def rule(dev: Sequence[dict[str, float]]) -> int:
        best, where = float("-inf"), 0
        for i in range(len(dev)):
            score = statistics.mean(sum(e[k] for k in keys) for e in dev[max(0, i - before):i + after + 1])
            if score > best or (later and score == best):
                best, where = score, i
        return where
    return rule


RULES: dict[str, Rule] = {
    "latest best dev macro-F1": windowed(0, 0),  # the loop's rule
    "first best dev macro-F1": windowed(0, 0, later=False),
    "latest best dev (macro-F1 + entity-F1)": windowed(0, 0, ("macro_f1", "entity_f1")),
    "latest best dev entity-F1": windowed(0, 0, ("entity_f1",)),
    "last step": lambda dev: len(dev) - 1,
    "trailing 2": windowed(1, 0),
    "trailing 3": windowed(2, 0),
    "trailing 5": windowed(4, 0),
    "centred 3": windowed(1, 1),
    "centred 5": windowed(2, 2),
    "trailing 3 of macro + entity": windowed(2, 0, ("macro_f1", "entity_f1")),
}
# this page's columns, the loop's rule first
REPLAYED = ("latest best dev macro-F1", "trailing 2", "trailing 3", "trailing 5", "centred 3", "centred 5",
            "latest best dev (macro-F1 + entity-F1)", "trailing 3 of macro + entity", "last step")


def picked(result: dict, rule: str) -> dict:
    """The test metrics at the evaluation `rule` picks from a traced single-task run's history."""
    vertical, _ = single(result)
    evaluations = result["history"]["evaluations"]
    return evaluations[RULES[rule]([e["dev"][vertical] for e in evaluations])]["test"][vertical]


def main(argv: list[str]) -> None:
    """Replay every rule on every traced run and write the page."""
    groups: dict[tuple[str, str], list[dict[str, dict]]] = defaultdict(list)
    for where in FLAGS.results_dirs:
        paths = sorted(Path(where).glob("*.s[0-9]*.json"))
        if not paths:
            raise InputError(f"--results_dirs: {where} holds no result files of experiments.small_data")
        for path in paths:
            r = read_result(path)
            evaluations = (r.get("history") or {}).get("evaluations") or [{}]
            if "test" not in evaluations[0]:
                raise InputError(f"{path}: no test score per evaluation; give runs traced by experiments.small_data")
            groups[(where, r["variant"])].append({rule: picked(r, rule) for rule in REPLAYED})
    base, others = REPLAYED[0], REPLAYED[1:]
    lines = ["| results | variant | runs | " + " | ".join(REPLAYED) + " |", "|---|---|---:|" + "---:|" * len(REPLAYED)]
    ahead = {(rule, where): 0 for rule in others for where in FLAGS.results_dirs}
    for (where, variant), runs in sorted(groups.items()):
        mean = {rule: [statistics.mean(r[rule][k] for r in runs) * 100 for k in KEYS] for rule in REPLAYED}
        cells = [f"{mean[base][0]:.2f} / {mean[base][1]:.2f}"]
        for name in others:
            diff = [mean[name][i] - mean[base][i] for i in (0, 1)]
            cells.append(f"{diff[0]:+.2f} / {diff[1]:+.2f}")
            ahead[(name, where)] += all(d > 0 for d in diff)
        lines.append(f"| {where} | {variant} | {len(runs)} | " + " | ".join(cells) + " |")
    counts = {where: sum(w == where for w, _ in groups) for where in FLAGS.results_dirs}
    summary = [f"| {name} | " + " | ".join(f"{ahead[(name, w)]} of {counts[w]}" for w in FLAGS.results_dirs) + " |"
               for name in others]
    text = "\n".join([
        "# Selection rules replayed on the small-data protocol's traced runs", "",
        f"Written {datetime.date.today().isoformat()} by `{command_line('experiments.selection_rules')}`. Test "
        "macro-F1 / entity-F1 in percent, mean over each group's runs (verticals × seeds): the loop's rule, then each "
        "other rule's difference to it.", "", *lines, "",
        "Groups where a rule is ahead of the loop's on both scores, per results directory:", "",
        "| rule | " + " | ".join(FLAGS.results_dirs) + " |", "|---|" + "---:|" * len(FLAGS.results_dirs), *summary,
        ""])
    write_text_atomic(Path(FLAGS.out), text)
    print(text)


def define_flags() -> None:
    """The script's flags (defined when run as a program, so tests can import its functions)."""
    flags.DEFINE_list("results_dirs", ["experiments/results/small_data", "experiments/results/small_data_cut"],
                      "Result directories of experiments.small_data (runs traced with test at every evaluation).")
    flags.DEFINE_string("out", "experiments/results/selection_rules.md", "Markdown file to write.")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
