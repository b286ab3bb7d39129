"""The small-data protocol the defaults are chosen on: Flipkart verticals cut to 50, 100 and 200 training
descriptions, the single-task tagger with random embeddings and with the in-domain vectors (3 seeds) against the
feature CRF on the same subsamples.

    python -m experiments.small_data [--sizes=50,100,200] [--seeds=1,2,3] [--variant=label:--flag=value …]

Subsamples. For each vertical of --data_dir with at least n training descriptions, the first n of one fixed
permutation of its train split (seeded by --sample_seed and the vertical's name, so the sizes nest: the 50 are
among the 100), written to <--out_data>/n<n>/<vertical>/train.conll beside the untouched dev.conll and test.conll.

Runs. Every (--variant, condition, size, vertical, seed) trains through experiments.common.traced_run from
--base (flags/sweep.cfg: the defaults a plain `train` gets) into <--runs_dir>/small_data/, two at a time; a run
whose result file exists is not run again. Conditions: `rand` (--word_vectors=, what users without vectors get)
and `glove` (the in-domain vectors). The CRF (experiments/crf_baseline.py) runs once per size on the same data.

experiments/results/small_data.md (--out): per size, each variant and condition's mean over verticals and seeds of the
dev macro-F1 / entity-F1 at the selected step (what a default is chosen by) and of the test macro-F1 and entity
precision, recall and F1, beside the CRF's, with the tagger's margins over the CRF that the precision issue asks
for; then each vertical's test macro-F1 / entity-F1. Result files in experiments/results/small_data/.
"""
import datetime
import statistics
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from absl import flags

from experiments.common import SMALL_DATA, command_line, crf_results, mean_sd, parse_variant, single, traced_run
from mtl_tagger import cli
from mtl_tagger.conll import read_conll, write_conll

FLAGS = flags.FLAGS
CONDITIONS = {"rand": "", "glove": None}  # --word_vectors per condition (None: the flagfile's in-domain vectors)


def subsample(data_dir: Path, out_data: Path, sizes: list[int], seed: int) -> dict[int, list[str]]:
    """Write each size's subsampled verticals (train cut, dev and test as they are); the verticals per size."""
    kept: dict[int, list[str]] = {n: [] for n in sizes}
    for vertical in sorted(p.name for p in data_dir.iterdir() if (p / "train.conll").is_file()):
        train = read_conll(data_dir / vertical / "train.conll")
        order = np.random.default_rng([seed, zlib.crc32(vertical.encode())]).permutation(len(train))
        for n in sizes:
            if len(train) < n:
                continue
            target = out_data / f"n{n}" / vertical
            target.mkdir(parents=True, exist_ok=True)
            write_conll(target / "train.conll", ((train[i].tokens, train[i].tags) for i in sorted(order[:n])))
            for split in ("dev", "test"):
                (target / f"{split}.conll").write_bytes((data_dir / vertical / f"{split}.conll").read_bytes())
            kept[n].append(vertical)
    return kept


def run_crf(size: int) -> Path:
    """The CRF baseline on one size's subsamples (its result files are reused when present)."""
    out = Path(FLAGS.results_dir) / f"crf_n{size}"
    if not out.is_dir():
        subprocess.run([sys.executable, "-m", "experiments.crf_baseline", "--task=all", f"--out={out}",
                        f"--data_dir={Path(FLAGS.out_data) / f'n{size}'}"], check=True, stdout=subprocess.DEVNULL)
    return out


def _mean(rows: list[dict], key: str) -> float:
    return statistics.mean(r[key] for r in rows)


def _dev(result: dict) -> dict:
    """The dev scores at the run's selected step."""
    return result["history"]["best"][single(result)[0]]


def size_rows(size: int, runs: dict[str, list[dict]], crf: dict[str, dict]) -> list[str]:
    """The table rows of one size: the CRF, then each variant-condition with its margins over the CRF."""
    lines = [f"| {size} | CRF | {len(crf)} | – | {_mean(list(crf.values()), 'macro_f1') * 100:.2f} | "
             + " | ".join(f"{_mean(list(crf.values()), k) * 100:.2f}" for k in ("entity_precision", "entity_recall",
                                                                                  "entity_f1")) + " | – |"]
    for label, rs in runs.items():
        test = [single(r)[1] for r in rs]
        seeds = sorted({r["params"]["seed"] for r in rs})
        macro = mean_sd([statistics.mean(single(r)[1]["macro_f1"] for r in rs if r["params"]["seed"] == s)
                         for s in seeds])
        margins = [(_mean(test, k) - _mean([crf[single(r)[0]] for r in rs], k)) * 100
                   for k in ("entity_precision", "entity_f1", "macro_f1")]
        lines.append(f"| {size} | {label} | {len({single(r)[0] for r in rs})} | "
                     f"{_mean([_dev(r) for r in rs], 'macro_f1') * 100:.2f} / "
                     f"{_mean([_dev(r) for r in rs], 'entity_f1') * 100:.2f} | {macro} | "
                     + " | ".join(f"{_mean(test, k) * 100:.2f}" for k in ("entity_precision", "entity_recall",
                                                                           "entity_f1"))
                     + " | " + " / ".join(f"{m:+.2f}" for m in margins) + " |")
    return lines


def vertical_rows(size: int, verticals: list[str], runs: dict[str, list[dict]], crf: dict[str, dict]) -> list[str]:
    """Each vertical's test macro-F1 / entity-F1 at one size: the CRF, then each variant-condition."""
    def cell(ms: list[dict]) -> str:
        return f"{_mean(ms, 'macro_f1') * 100:.2f} / {_mean(ms, 'entity_f1') * 100:.2f}" if ms else "–"

    return [f"| {size} | {v} | {cell([crf[v]])} | "
            + " | ".join(cell([single(r)[1] for r in rs if single(r)[0] == v]) for rs in runs.values()) + " |"
            for v in verticals]


def main(argv: list[str]) -> None:
    """Subsample, run every pending CRF and tagger run, and write the table."""
    sizes = [int(n) for n in FLAGS.sizes]
    variants = [parse_variant(v, allow_empty=True) for v in FLAGS.variant]
    kept = subsample(Path(FLAGS.data_dir), Path(FLAGS.out_data), sizes, FLAGS.sample_seed)
    runs_dir = Path(FLAGS.runs_dir) / SMALL_DATA
    runs_dir.mkdir(parents=True, exist_ok=True)
    results_dir = Path(FLAGS.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    crf = {n: crf_results(run_crf(n)) for n in sizes}
    todo = [(f"{label}.{cond}{n}" if label != "base" else f"{cond}{n}", [*extra], v, s, n, cond)
            for s in FLAGS.seeds for label, extra in variants for cond in CONDITIONS for n in sizes for v in kept[n]]

    def one(job: tuple) -> dict | None:
        label, extra, vertical, seed, n, cond = job
        return traced_run(label, extra, vertical, seed, runs_dir, results_dir, FLAGS.base,
                          str(Path(FLAGS.out_data) / f"n{n}"), CONDITIONS[cond], FLAGS.jobs > 1)

    with ThreadPoolExecutor(FLAGS.jobs) as pool:
        results = [r for r in pool.map(one, todo) if r]
    header = ("| size | model | verticals | dev macro-F1 / entity-F1 | test macro-F1 (± std over seeds) | "
              "entity precision | entity recall | entity-F1 | − CRF: entity precision / entity-F1 / macro-F1 |")
    lines, per_vertical = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|"], []
    labels = list(dict.fromkeys(r["variant"].rstrip("0123456789") for r in results))
    for n in sizes:
        runs = {label: [r for r in results if r["variant"] == f"{label}{n}"] for label in labels}
        runs = {label: rs for label, rs in runs.items() if rs}
        lines += size_rows(n, runs, crf[n])
        per_vertical += vertical_rows(n, kept[n], runs, crf[n])
    text = "\n".join([
        f"# {SMALL_DATA}: the small-data protocol", "",
        f"Flipkart verticals with their training split cut to {', '.join(FLAGS.sizes)} descriptions (where they have "
        f"that many; sample seed {FLAGS.sample_seed}), dev and test untouched; single-task tagger from {FLAGS.base} "
        f"at seeds {', '.join(FLAGS.seeds)}, `rand` with random embeddings and `glove` with the in-domain vectors; "
        "the feature CRF on the same subsamples (c1/c2 chosen on dev). Percent, mean over verticals and seeds; each "
        "run tested at its selected (best dev macro-F1) step. Choose on the dev column. Written "
        f"{datetime.date.today().isoformat()} by `{command_line('experiments.' + SMALL_DATA)}`; one result file per "
        f"run in {results_dir}/.", "", *lines, "", "## Per vertical (test macro-F1 / entity-F1)", "",
        "| size | vertical | CRF | " + " | ".join(labels) + " |", "|---|---|---:|" + "---:|" * len(labels),
        *per_vertical, ""])
    Path(FLAGS.out).write_text(text)
    print(text)


def define_flags() -> None:
    """The script's flags (defined when run as a program, so tests can import its functions)."""
    flags.DEFINE_list("sizes", ["50", "100", "200"], "Training descriptions per vertical.")
    flags.DEFINE_list("seeds", ["1", "2", "3"], "Training seeds.")
    flags.DEFINE_integer("sample_seed", 1, "Seed of the subsamples.")
    flags.DEFINE_string("base", "flags/sweep.cfg", "Flagfile every run starts from.")
    flags.DEFINE_string("data_dir", "data/flipkart", "Prepared data to subsample.")
    flags.DEFINE_string("out_data", "data/small", "Where the subsampled data dirs go (n<size>/<vertical>/).")
    flags.DEFINE_multi_string("variant", ["base:"], "label:--flag=value[ --flag=value]; 'base:' for the defaults.")
    flags.DEFINE_string("runs_dir", "runs", "Model dirs go to <runs_dir>/small_data/ (not committed).")
    flags.DEFINE_string("results_dir", f"experiments/results/{SMALL_DATA}", "The CRF's (crf_n<size>/) and the runs' "
                        "result files; a run whose file is there is not run again, so data prepared anew needs its "
                        "own.")
    flags.DEFINE_integer("jobs", 2, "Runs at a time; with more than one, each run gets one TensorFlow thread.")
    flags.DEFINE_string("out", f"experiments/results/{SMALL_DATA}.md", "The table to write (a screen of a lever on "
                        "fewer sizes or seeds writes its own page).")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
