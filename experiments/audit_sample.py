"""Extract the Flipkart sample with the catalog model, audit it, and write the commit-ready audit results.

    python -m experiments.audit_sample [--model_dir=runs/catalog] [--catalog=../shared/data/flipkart/products.jsonl.gz]
        [--work_dir=runs/audit] [--results_dir=experiments/results/audit] [--sample=30] [--seed=0]

The model (a shared model of the ten verticals with enough data):
    python -m mtl_tagger.train --tasks=Necklace,Ring,Bangle,Bracelet,Earring,JewellerySet,Jean,Trouser,Dress,Top \\
        --mtl_mode=shared --hidden_size=128 --epochs=15 --eval_every=200 --patience=0 --model_dir=runs/catalog

The extraction (resumable) goes to WORK_DIR/extract.jsonl and the full audit to WORK_DIR/audit/; RESULTS_DIR
gets report.md, counts.json, extract_summary.json and conflicts_sample.jsonl: --sample conflict rows drawn
with --seed, in file order (the rows hand_check.md checks by hand).
"""
import json
import random
import shutil
from pathlib import Path

from absl import app, flags

from mtl_tagger.audit import write_audit
from mtl_tagger.extract import SUMMARY_SUFFIX, extract_catalog, format_summary, sidecar
from mtl_tagger.files import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "runs/catalog", "Trained model of the catalog's verticals.")
flags.DEFINE_string("catalog", "../shared/data/flipkart/products.jsonl.gz",
                    "Catalog file (run from the repository root).")
flags.DEFINE_string("work_dir", "runs/audit", "Where the extraction and the full audit go (not committed).")
flags.DEFINE_string("results_dir", str(ROOT / "experiments/results/audit"), "Commit-ready results.")
flags.DEFINE_integer("sample", 30, "Conflict rows drawn for the hand check.")
flags.DEFINE_integer("seed", 0, "Seed of the draw.")


def main(argv: list[str]) -> None:
    """Extract (or finish an interrupted extraction), audit, and copy the results with a drawn conflict sample."""
    del argv
    work, results = Path(FLAGS.work_dir), Path(FLAGS.results_dir)
    out = work / "extract.jsonl"
    summary = extract_catalog(FLAGS.model_dir, FLAGS.catalog, out)
    print(format_summary(summary, out))
    table = write_audit(out, FLAGS.catalog, work / "audit")
    print(json.dumps(table["total"]))
    results.mkdir(parents=True, exist_ok=True)
    for name in ("report.md", "counts.json"):
        shutil.copyfile(work / "audit" / name, results / name)
    shutil.copyfile(sidecar(out, SUMMARY_SUFFIX), results / "extract_summary.json")
    rows = (work / "audit" / "conflicts.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    drawn = sorted(random.Random(FLAGS.seed).sample(range(len(rows)), min(FLAGS.sample, len(rows))))
    write_text_atomic(results / "conflicts_sample.jsonl", "".join(rows[i] for i in drawn))
    print(f"{results}: report.md, counts.json, extract_summary.json, conflicts_sample.jsonl ({len(drawn)} of "
          f"{len(rows)} conflicts)")


if __name__ == "__main__":
    app.run(main)
