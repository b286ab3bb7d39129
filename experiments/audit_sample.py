"""The catalog audit of the Flipkart sample with held-out extraction, and a seeded sample of its conflicts for the
hand check.

    python -m experiments.audit_sample [--catalog=../shared/data/flipkart/products.jsonl.gz]
        [--verticals=flags/verticals_catalog.json] [--work_dir=runs/crossfit_catalog] [--folds=2]
        [--base=flags/sweep.cfg] [--results_dir=experiments/results/audit] [--sample=30] [--seed=5]

Runs (or resumes) `python -m mtl_tagger.crossfit --catalog=… --verticals=… --out=WORK_DIR --folds=… --flagfile=BASE`:
every product is tagged by a model trained without its fold (one shared model over the verticals, the defaults a plain
`train` gets). flags/verticals_catalog.json adds to the 12 verticals of flags/verticals.json 36 other categories of the
Flipkart sample, of 41 to 1,024 products each (bras, tablet cases, car interior, plant containers, showpieces, routers,
blankets, curtains, towels, cushion covers; then women's western and ethnic wear, lingerie and accessories, boys' wear,
men's sports and winter wear, infant wear, stickers, USB gadgets, laptop batteries, car spare parts, cookware, kitchen
tools, pet furniture, handbags, women's footwear; then every other category of 40 products or more: lens hoods, sofas,
series lights, car electronics, screen protectors, paintings, girls' footwear, mobile pouches, laptop adapters, car
care), so that the audit judges most of the catalog: real conflicts are rare, and the stricter the audit, the more
products a sample of them needs. RESULTS_DIR gets report.md, counts.json, extract_summary.json and
conflicts_sample.jsonl: --sample conflict rows drawn with --seed from the audit's conflicts.jsonl, in that file's order
(ranked by confidence); the rows hand_check.md judges by the verdict rules below, which it repeats. And
catalog_sample.jsonl: as many rows drawn alike from the disagreements that the rest of the vertical explains
(unconfirmed, `audit.catalog_why`: its other descriptions' readings, or a value outside its vocabulary), which
hand_check_catalog.md judges by the same rules, to see whether those rules take real conflicts away.

Verdict rules (one row at a time, reading the whole text the model saw and every specification of the product):
  real        the description and the specification disagree on that attribute of that product, whatever the
              model extracted (e.g. the text says "Rose Gold" and the specification "Yellow Gold").
  not real    they agree, or the text says nothing about the attribute, and the row is the model's error: a value cut
              short, run on or split; a word of another attribute (the metal read as the colour); a value the text
              does not hold; or the two sides say the same in other words.
A row is counted real only if the rule holds on the text itself, not only on the extracted value.
"""
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

from absl import flags

from experiments.common import define_catalog_flags
from mtl_tagger import cli
from mtl_tagger.audit import why_kind
from mtl_tagger.extract import SUMMARY_SUFFIX, sidecar
from mtl_tagger.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    define_catalog_flags(model_dir=False)
    flags.DEFINE_string("verticals", "flags/verticals_catalog.json", "Vertical mapping of the audit.")
    flags.DEFINE_string("work_dir", "runs/crossfit_catalog", "crossfit's --out: folds, models, extractions, audit "
                        "(not committed).")
    flags.DEFINE_integer("folds", 2, "Cross-fitting folds.")
    flags.DEFINE_string("base", "flags/sweep.cfg", "Flagfile of the folds' models.")
    flags.DEFINE_string("results_dir", str(ROOT / "experiments/results/audit"), "Commit-ready results.")
    flags.DEFINE_integer("sample", 30, "Rows drawn for each hand check.")
    flags.DEFINE_integer("seed", 5, "Seed of the draw (seeds 0 to 4 drew the hand checks of earlier audits).")


def main(argv: list[str]) -> None:
    """Cross-fit and audit (or finish an interrupted run), and copy the results with a drawn conflict sample."""
    del argv
    work, results = Path(FLAGS.work_dir), Path(FLAGS.results_dir)
    subprocess.run([sys.executable, "-m", "mtl_tagger.crossfit", f"--catalog={FLAGS.catalog}", f"--out={work}",
                    f"--verticals={FLAGS.verticals}", f"--folds={FLAGS.folds}", f"--flagfile={FLAGS.base}"],
                   check=True)
    results.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "counts.json"):
        shutil.copyfile(work / "audit" / name, results / name)
    shutil.copyfile(sidecar(work / "values.jsonl", SUMMARY_SUFFIX), results / "extract_summary.json")
    conflicts = (work / "audit" / "conflicts.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    explained = [row for row in (work / "audit" / "unconfirmed.jsonl").read_text(encoding="utf-8").splitlines(
        keepends=True) if why_kind(json.loads(row)["why"]) in ("catalog", "vocabulary")]
    for name, rows in (("conflicts_sample.jsonl", conflicts), ("catalog_sample.jsonl", explained)):
        drawn = sorted(random.Random(FLAGS.seed).sample(range(len(rows)), min(FLAGS.sample, len(rows))))
        write_text_atomic(results / name, "".join(rows[i] for i in drawn))
        print(f"{results / name}: {len(drawn)} of {len(rows)} rows")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
