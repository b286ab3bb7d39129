"""Single-task variants on many verticals and seeds, against the feature CRF: how the defaults were chosen.

    python -m experiments.defaults --verticals=Bracelet,Dress,Earring,Jean,JewellerySet,Trouser --seeds=1,2 \
        --word_vectors= --variant='base:' --variant='lr3:--learning_rate=0.003' --name=defaults

Each (variant, vertical, seed) trains `python -m experiments.traced_train --flagfile=<base> --task_a=V --seed=S
<variant flags>` into <runs_dir>/<name>/ through experiments.common.traced_run, two at a time; a run whose result file
exists is not run again. experiments/traced_train.py also scores test at every dev evaluation, so the table can
show what other model-selection rules (experiments.selection_rules, replayed on that traced history) would have
picked; the result file (the one schema of experiments.sweep, labelled with the variant) holds the test metrics at
the trainer's selected step and that history. experiments/results/<name>.md tables every variant's mean test
macro-F1 and entity-F1 beside the CRF baseline's (experiments/crf_baseline.py, read from --crf_dir).
"""
import datetime
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from absl import app, flags

from experiments.common import command_line, crf_results, mean_sd, parse_variant, single, traced_run
from experiments.selection_rules import picked
from mtl_tagger import cli

FLAGS = flags.FLAGS

COMPARED = ("first best dev macro-F1", "latest best dev (macro-F1 + entity-F1)", "latest best dev entity-F1",
            "last step")  # the selection rules (experiments.selection_rules) the table sets beside the loop's


def _mean(values: list[float]) -> str:
    return f"{statistics.mean(values) * 100:.2f}" if values else "–"


def _both(metrics: list[dict], a: str = "macro_f1", b: str = "entity_f1") -> str:
    """`a / b`, each the mean over the metrics dicts: the table's paired cells."""
    return f"{_mean([m[a] for m in metrics])} / {_mean([m[b] for m in metrics])}"


def _over_seeds(rs: list[dict], key: str) -> str:
    """The selected test `key`, mean ± std over the seeds' means over verticals (the spread a variant's mean has)."""
    seeds = sorted({r["params"]["seed"] for r in rs})
    return mean_sd([statistics.mean(single(r)[1][key] for r in rs if r["params"]["seed"] == s) for s in seeds])


def table(results: list[dict], variants: list[tuple[str, list[str]]], crf_dir: Path) -> str:
    """Markdown: per variant the mean over verticals and seeds (macro-F1 / entity-F1 under each selection rule,
    entity precision / recall), and the mean per vertical (macro-F1 / entity-F1)."""
    verticals = FLAGS.verticals
    crf = {v: m for v, m in crf_results(crf_dir).items() if v in verticals}
    lines = ["| model | macro-F1 (± std over seeds) | entity-F1 (± std over seeds) | verticals with entity-F1 0 | "
             + " | ".join(f"macro-F1 / entity-F1, {r}" for r in COMPARED) + " | entity precision / recall | "
             + " | ".join(verticals) + " |",
             "|---|---:|---:|---:|" + "---:|" * (len(COMPARED) + 1 + len(verticals))]
    if len(crf) == len(verticals):
        lines.append(f"| CRF | {_mean([m['macro_f1'] for m in crf.values()])} | "
                     f"{_mean([m['entity_f1'] for m in crf.values()])} | "
                     f"{sum(m['entity_f1'] == 0 for m in crf.values())} | " + " | " * len(COMPARED)
                     + _both(list(crf.values()), "entity_precision", "entity_recall") + " | "
                     + " | ".join(_both([crf[v]]) for v in verticals) + " |")
    for label, extra in variants:
        rs = [r for r in results if r and r["variant"] == label]
        by_v = {v: [single(r)[1] for r in rs if single(r)[0] == v] for v in verticals}
        zeros = sum(statistics.mean(m["entity_f1"] for m in by_v[v]) == 0 for v in verticals if by_v[v])
        lines.append(f"| {label} {' '.join(extra)} | {_over_seeds(rs, 'macro_f1')} | "
                     f"{_over_seeds(rs, 'entity_f1')} | {zeros} | "
                     + " | ".join(_both([picked(r, rule) for r in rs]) for rule in COMPARED) + " | "
                     + _both([single(r)[1] for r in rs], "entity_precision", "entity_recall") + " | "
                     + " | ".join(_both(by_v[v]) for v in verticals) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Run every pending (variant, vertical, seed) and write the table."""
    if not FLAGS.verticals:
        raise app.UsageError("--verticals is required")
    variants = [parse_variant(v, allow_empty=True) for v in FLAGS.variant]
    runs, results_dir = Path(FLAGS.runs_dir) / FLAGS.name, Path("experiments/results") / FLAGS.name
    runs.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    todo = [(label, extra, v, s) for s in FLAGS.seeds for label, extra in variants for v in FLAGS.verticals]
    with ThreadPoolExecutor(FLAGS.jobs) as pool:
        results = list(pool.map(lambda job: traced_run(*job, runs, results_dir, FLAGS.base, FLAGS.data_dir,
                                                       FLAGS.word_vectors, FLAGS.jobs > 1), todo))
    command = command_line("experiments.defaults")
    text = "\n".join([
        f"# {FLAGS.name}: single-task variants against the feature CRF", "",
        f"Test split, percent, mean over verticals and seeds {', '.join(FLAGS.seeds)} "
        f"(CRF: deterministic, one run). Base flags {FLAGS.base}"
        + (f", --word_vectors={FLAGS.word_vectors!r}" if FLAGS.word_vectors is not None else "")
        + f"; each vertical tested at its selected (best dev macro-F1) step. Written "
        f"{datetime.date.today().isoformat()} by `{command}`; one result file per run in "
        f"experiments/results/{FLAGS.name}/.", "", table(results, variants, Path(FLAGS.crf_dir)), ""])
    Path(f"experiments/results/{FLAGS.name}.md").write_text(text)
    print(text)


def define_flags() -> None:
    """The script's flags (defined when run as a program, so tests can import its functions)."""
    flags.DEFINE_list("verticals", [], "Verticals (directory names under --data_dir).")
    flags.DEFINE_list("seeds", ["1", "2"], "Seeds.")
    flags.DEFINE_string("base", "flags/sweep.cfg", "Flagfile every run starts from.")
    flags.DEFINE_string("data_dir", "data/flipkart", "Prepared data.")
    flags.DEFINE_string("word_vectors", None, "Override --word_vectors for every run ('' = random embeddings).")
    flags.DEFINE_multi_string("variant", ["base:"], "label:--flag=value[ --flag=value]; 'label:' for none.")
    flags.DEFINE_string("name", "defaults", "Name of the study: results go to experiments/results/<name>[.md].")
    flags.DEFINE_string("runs_dir", "runs", "Model dirs go to <runs_dir>/<name>/ (not committed).")
    flags.DEFINE_string("crf_dir", "experiments/results/crf", "CRF baseline result files (<vertical>.json).")
    flags.DEFINE_integer("jobs", 2, "Runs at a time; with more than one, each run gets one TensorFlow thread.")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
