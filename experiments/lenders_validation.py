"""Does the lender affinity (mtl_tagger.lenders) predict what multi-task training gains? Spearman's ρ on a sweep.

    python -m experiments.lenders_validation [--results_dir=experiments/results/table3] [--mode=shared]
        [--data_dir=data/flipkart] [--word_vectors=cache/glove.flipkart.300d.txt]

Both verticals of a measured pair A+B are borrowers. The gain of A from lender B is the mean over the seeds both
runs have of (macro-F1 of A in the A+B run − macro-F1 of A's single run), in points. The affinity is computed
from the training splits only (never fitted to these gains). Printed: every (borrower, lender) with its gain and
affinity; then ρ between gain and the score, and each component alone, pooled over all (borrower, lender) with a
permutation p-value (n is small and rows sharing a borrower are not independent), and within borrowers (mean ρ
over borrowers with ≥ 3 measured lenders; choosing a lender is a within-borrower question), and how often the
top-ranked lender is the one that gained most.
"""
import datetime
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from absl import flags
from scipy.stats import rankdata

from experiments.common import command_line, one_tag_prior, read_result
from mtl_tagger import cli
from mtl_tagger.errors import InputError
from mtl_tagger.files import write_text_atomic
from mtl_tagger.lenders import COMPONENTS, Affinity, load_ranking
from mtl_tagger.params import Params

PERMUTATIONS = 10_000


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks (ties share their mean rank); nan if either is constant."""
    rx, ry = rankdata(x), rankdata(y)
    if len(rx) < 2 or rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def permutation_p(x: Sequence[float], y: Sequence[float], rounds: int = PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided p-value of ρ(x, y) against shuffled y (fixed seed, so reruns print the same)."""
    rx, ry = rankdata(x) - (len(x) + 1) / 2, rankdata(y) - (len(y) + 1) / 2  # centred ranks
    shuffled = np.random.default_rng(seed).permuted(np.tile(ry, (rounds, 1)), axis=1)
    rho = np.abs(shuffled @ rx) / np.sqrt((rx @ rx) * (ry @ ry))  # ρ of each shuffle: ranks keep their spread
    return float((1 + np.sum(rho >= abs(spearman(x, y)) - 1e-12)) / (1 + rounds))


def _read_run(path: Path) -> tuple[Params, dict] | None:
    """A result file's validated flags and test metrics; None for a variant run (`<name>@<label>`)."""
    try:
        r = read_result(path)
        name, params, metrics = r["name"], r["params"], r["metrics"]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"not a result file of experiments.sweep ({type(e).__name__}: {e})", path) from None
    if "@" in name:
        return None
    p = Params.from_json(params, path)
    try:
        return p.validate(), metrics
    except InputError as e:
        raise InputError(f"holds a bad setting: {e}", path) from None


def load_gains(results_dirs: Sequence[Path], mode: str) -> tuple[dict[tuple[str, str], list[float]], list[str]]:
    """(borrower, lender) → per-seed gains in points from the result files of `mode` pairs and singles.

    Variant runs are left out, as in experiments.collect. Also returns a note for each pair run and
    borrower without a single run of the same seed.
    """
    for results_dir in results_dirs:
        if not results_dir.is_dir():
            raise InputError("results dir not found (--results_dir)", results_dir)
    single: dict[tuple[str, int], float] = {}
    paired: dict[tuple[str, str, int], float] = {}
    seen: dict[tuple, Path] = {}
    read = [(path, run) for path in sorted(path for results_dir in results_dirs for path in results_dir.glob("*.json"))
            if (run := _read_run(path)) is not None]
    one_tag_prior([p for _, (p, _) in read], ", ".join(map(str, results_dirs)))
    for path, (p, metrics) in read:
        key = (p.mode, p.tasks, p.seed)
        if key in seen:
            raise InputError(f"a second {p.mode} run of {p.tasks} with seed {p.seed} (first: {seen[key]})", path)
        seen[key] = path
        try:
            if p.mode == "single":
                single[(p.names[0], p.seed)] = metrics[p.names[0]]["macro_f1"]
            elif p.mode == mode and len(p.names) == 2:
                a, b = p.names
                paired[(a, b, p.seed)], paired[(b, a, p.seed)] = metrics[a]["macro_f1"], metrics[b]["macro_f1"]
        except (KeyError, TypeError):
            raise InputError(f"no test macro_f1 for every vertical of {p.tasks}", path) from None
    gains: dict[tuple[str, str], list[float]] = defaultdict(list)
    notes = []
    for (a, b, seed), f1 in sorted(paired.items()):
        if (a, seed) in single:
            gains[(a, b)].append(100 * (f1 - single[(a, seed)]))
        else:
            notes.append(f"{a} from {b}, seed {seed}: no single run of {a} with that seed")
    return dict(gains), notes


def _within(rows: list[tuple[str, float, float]]) -> tuple[float, int, int, int]:
    """Mean within-borrower ρ over borrowers with ≥ 3 lenders (ρ, borrowers), and top-1 hits (hits, of) over
    borrowers whose lenders' gains differ."""
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for borrower, value, gain in rows:
        by[borrower].append((value, gain))
    rhos = [spearman(*zip(*pairs)) for pairs in by.values() if len(pairs) >= 3]
    rhos = [r for r in rhos if not math.isnan(r)]
    decided = [pairs for pairs in by.values() if len({g for _, g in pairs}) >= 2]
    hits = sum(max(pairs, key=lambda vg: vg[0])[1] == max(g for _, g in pairs) for pairs in decided)
    return (statistics.mean(rhos) if rhos else float("nan")), len(rhos), hits, len(decided)


def report(gains: dict[tuple[str, str], list[float]], affinity: dict[tuple[str, str], Affinity], mode: str) -> str:
    """The markdown report: per-pair table, then ρ of the score and of each component against the gain."""
    lines = [f"# Lender affinity vs measured gain ({mode} pairs)", "",
             "| borrower | lender | seeds | gain (points, mean ± sd) | score | " + " | ".join(COMPONENTS) + " |",
             "|---|---|---:|---:|---:|" + "---:|" * len(COMPONENTS)]
    keys = sorted(gains, key=lambda k: (k[0], -affinity[k].score, k[1]))
    for k in keys:
        g, a = gains[k], affinity[k]
        sd = statistics.stdev(g) if len(g) > 1 else 0.0
        cells = ["–" if getattr(a, c) is None else f"{getattr(a, c):.3f}" for c in COMPONENTS]
        lines.append(f"| {k[0]} | {k[1]} | {len(g)} | {statistics.mean(g):+.2f} ± {sd:.2f} | {a.score:.3f} | "
                     + " | ".join(cells) + " |")
    if len(keys) < 3:
        return "\n".join(lines + ["", f"Too few measured (borrower, lender) pairs ({len(keys)}) for a correlation."])
    lines += ["", f"Spearman ρ with the gain. Pooled: every (borrower, lender), p from {PERMUTATIONS:,} permutations. "
              "Within: "
              "mean ρ over borrowers with ≥ 3 measured lenders. Top-1: of the borrowers whose measured lenders gained "
              "differently, those whose highest-ranked lender gained most (an affinity tie goes to the first "
              "listed).", "",
              "| affinity | pooled ρ | n | p | within ρ | borrowers | top-1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("score", *COMPONENTS):
        if any(getattr(affinity[k], name) is None for k in keys):
            continue
        rows = [(k[0], getattr(affinity[k], name), statistics.mean(gains[k])) for k in keys]
        values, measured = [r[1] for r in rows], [r[2] for r in rows]
        within, borrowers, hits, of = _within(rows)
        lines.append(f"| {name} | {spearman(values, measured):+.2f} | {len(rows)} | "
                     f"{permutation_p(values, measured):.4f} | "
                     + ("–" if borrowers == 0 else f"{within:+.2f}") + f" | {borrowers} | {hits}/{of} |")
    return "\n".join(lines)


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so tests can import the module)."""
    flags.DEFINE_list("results_dir", ["experiments/results/table3"], "Directories of experiments.sweep result files.")
    flags.DEFINE_string("out", "", "Also write the report (with the command and date) to this markdown file.")
    flags.DEFINE_enum("mode", "shared", ["shared", "coupled"], "Which two-vertical runs give the gains.")
    flags.DEFINE_string("data_dir", Params.data_dir, "Prepared data the runs were trained on.")
    flags.DEFINE_string("word_vectors", Params.word_vectors, "Word vectors for the density component ('': none).")


def main(argv: list[str]) -> None:
    """Load the gains, rank each borrower's measured lenders, print the report."""
    cli.check_args(argv)
    gains, notes = load_gains([Path(d) for d in FLAGS.results_dir], FLAGS.mode)
    lenders: dict[str, list[str]] = defaultdict(list)
    for a, b in sorted(gains):
        lenders[a].append(b)
    p = Params(data_dir=FLAGS.data_dir, word_vectors=FLAGS.word_vectors)
    affinity = {(a, r.lender): r for a, bs in lenders.items() for r in load_ranking(p, a, bs)}
    text = "\n".join([report(gains, affinity, FLAGS.mode), *(f"- skipped: {note}" for note in notes)])
    print(text)
    if FLAGS.out:
        command = command_line("experiments.lenders_validation")
        write_text_atomic(FLAGS.out, f"{text}\n\nWritten {datetime.date.today().isoformat()} by `{command}`.\n")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
