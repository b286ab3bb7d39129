"""A catalog audit in which no product is tagged by a model that trained on it: K-fold cross-fitting.

    python -m mtl_tagger.crossfit --catalog=PATH --out=DIR [--folds=2] [--flagfile=flags/sweep.cfg] [--tasks=…]
        [--min_conflict_confidence=0.5]
        [--verticals=flags/verticals.json] [--keep_spec_block] [--keep_boilerplate] [any train flag]

Folds. Each product of the catalog goes to fold `prepare.fold_of` of its copy group (the products whose
description is the same, case and spacing ignored), so copies of a description never sit on both sides.

For each fold k, under DIR/fold<k>/:
  data/         prepare of the catalog without fold k's products (their own train/dev/test splits)
  model/        train on that data: the train flags given (--flagfile, …), --tasks defaulting to every vertical of
                the data with all three splits (one shared model over them, --mtl_mode=shared unless given; a
                vertical too small to have them goes untagged in that fold, counted as skipped), its data_dir and
                model_dir set here
  values.jsonl  extract of fold k's products only, by that model
Then DIR/values.jsonl (+ .summary.json): the folds' records, fold by fold, with a summary saying how they were
held out; and DIR/audit/: the audit of them (mtl_tagger.audit). A rerun goes on where a stopped one ended: prepare
is deterministic, train resumes (or says it is complete), extract resumes; the merge and the audit are redone.
"""
import dataclasses
from collections import Counter
from pathlib import Path

from absl import flags

from mtl_tagger import cli, params
from mtl_tagger.audit import CLASS_NAMES, MIN_CONFLICT_CONFIDENCE, REPORT, write_audit
from mtl_tagger.catalog import read_catalog
from mtl_tagger.errors import InputError
from mtl_tagger.extract import SUMMARY_SUFFIX, extract_catalog, sidecar
from mtl_tagger.files import check_input_file, read_json, write_json_atomic, write_text_atomic
from mtl_tagger.params import Params
from mtl_tagger.prepare import (
    DEFAULT_VERTICALS,
    SPLITS,
    catalog_boilerplate,
    copy_groups,
    define_text_flags,
    description_text,
    fold_of,
    load_verticals,
    prepare,
)
from mtl_tagger.progress import status
from mtl_tagger.train import train  # TensorFlow is imported by train() itself, once its input is checked


def folds_of(catalog: str | Path, verticals_path: str | Path, folds: int, keep_spec_block: bool,
             keep_boilerplate: bool) -> list[set[str]]:
    """The product ids of each fold: copy groups by the text prepare makes of each product."""
    verticals = load_verticals(verticals_path)  # a bad mapping is refused before the catalog is read (seconds)
    with status(f"reading {catalog}"):
        products = read_catalog(catalog).products
        boilerplate = {} if keep_boilerplate else catalog_boilerplate(products, verticals, keep_spec_block)
        groups = copy_groups((p.id, description_text(p, keep_spec_block, boilerplate)) for p in products)
    out: list[set[str]] = [set() for _ in range(folds)]
    for pid, group in groups.items():
        out[fold_of(group, folds)].add(pid)
    return out


def trainable(data_dir: Path) -> list[str]:
    """The verticals of a fold's data with all three splits (a vertical of a few products may lack one in a fold:
    its products there go untagged, counted as skipped)."""
    return sorted(p.name for p in data_dir.iterdir() if all((p / f"{s}.conll").is_file() for s in SPLITS))


def merge(parts: list[Path], out: Path, held_out: str) -> dict:
    """OUT and its summary from the folds' extractions: their records one after the other, their counts summed,
    each vertical's attributes those every fold's head can tag (the others count as not taggable, as for one
    model), its confidence kind(s), and `held_out` saying how."""
    summaries = [read_json(sidecar(part, SUMMARY_SUFFIX)) for part in parts]
    verticals = list(dict.fromkeys(v for s in summaries for v in s["tagged_per_vertical"]))

    def pooled(key: str) -> dict:
        return {v: sum(s[key].get(v, 0) for s in summaries) for v in verticals}

    skipped: Counter = sum((Counter(s["skipped_per_vertical"]) for s in summaries), Counter())

    def common(v: str) -> list[str]:  # what every fold's head of v can tag: the audit judges the same for all
        heads = [set(s["attributes"][v]) for s in summaries if v in s["attributes"]]
        return sorted(set.intersection(*heads))

    def kind(v: str) -> str:
        return ", ".join(sorted({s["confidence"][v] for s in summaries if v in s.get("confidence", {})})) or "raw"

    summary = {**summaries[0], "held_out": held_out, "trained_on": None, "not_selected": 0,
               **{k: sum(s[k] for s in summaries) for k in ("tagged", "values", "skipped", "skipped_no_vertical")},
               "tagged_per_vertical": pooled("tagged_per_vertical"),
               "values_per_vertical": pooled("values_per_vertical"),
               "skipped_per_vertical": dict(sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))),
               "attributes": {v: common(v) for v in verticals}, "confidence": {v: kind(v) for v in verticals},
               "settings": {k: v for k, v in summaries[0]["settings"].items() if k not in ("model_sha256", "only")},
               "model_dir": ", ".join(s["model_dir"] for s in summaries)}
    write_text_atomic(out, "".join(part.read_text(encoding="utf-8") for part in parts))
    write_json_atomic(sidecar(out, SUMMARY_SUFFIX), summary)
    return summary


def crossfit(catalog: str | Path, out: str | Path, folds: int, base: Params,
             verticals_path: str | Path = DEFAULT_VERTICALS, keep_spec_block: bool = False,
             keep_boilerplate: bool = False, min_conflict_confidence: float = MIN_CONFLICT_CONFIDENCE) -> dict:
    """Prepare, train and extract every fold, merge and audit (see the docstring); returns the audit's counts."""
    if folds < 2:
        raise InputError(f"--folds={folds}: cross-fitting needs at least 2 folds")
    given = base.tasks or ",".join(t for t in (base.task_a, base.task_b) if t)
    mode = base.mtl_mode or ("shared" if "," in given or not given else "single")
    dataclasses.replace(base, tasks=given or "A,B", task_a="", task_b="", mtl_mode=mode).validate()  # flags first
    out = Path(out)
    parts = []
    for k, ids in enumerate(folds_of(catalog, verticals_path, folds, keep_spec_block, keep_boilerplate)):
        fold = out / f"fold{k}"
        print(f"fold {k + 1} of {folds}: {len(ids)} products held out; preparing the others", flush=True)
        prepare(catalog, fold / "data", verticals_path, keep_spec_block, keep_boilerplate=keep_boilerplate,
                leave_out=ids)
        tasks = given or ",".join(trainable(fold / "data"))
        p = dataclasses.replace(base, tasks=tasks, task_a="", task_b="", data_dir=str(fold / "data"),
                                model_dir=str(fold / "model"), mtl_mode=mode).validate()
        train(p)
        parts.append(fold / "values.jsonl")
        extract_catalog(p.model_dir, catalog, parts[-1], verticals_path=verticals_path,
                        keep_spec_block=keep_spec_block, keep_boilerplate=keep_boilerplate, only=ids,
                        held_out=f"fold {k + 1} of {folds}")
    held_out = (f"{folds}-fold cross-fitting (mtl_tagger.crossfit): the catalog's products were cut into {folds} "
                "folds by copy group, and each fold was tagged by a model trained without it")
    merge(parts, out / "values.jsonl", held_out)
    return write_audit(out / "values.jsonl", catalog, out / "audit", min_conflict_confidence)


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags, beside every train flag (defined when run as a program)."""
    params.define_flags()
    flags.DEFINE_string("catalog", None, "Catalog: products JSONL(.gz) or Kaggle CSV(.gz).")
    flags.DEFINE_string("out", None, "Directory for the folds' data, models and extractions, and the audit.")
    flags.DEFINE_integer("folds", 2, "Folds: each is tagged by a model trained on the others.")
    define_text_flags()
    flags.DEFINE_float("min_conflict_confidence", MIN_CONFLICT_CONFIDENCE, "The audit's: claim a conflict only when "
                       "the model's confidence in its value is at least this.")


def main(argv: list[str]) -> None:
    """CLI: cross-fit, audit and print the totals."""
    cli.check_args(argv, "catalog", "out")
    check_input_file(FLAGS.catalog, "--catalog", "catalog file")
    table = crossfit(FLAGS.catalog, FLAGS.out, FLAGS.folds, params.from_flags(validate=False), FLAGS.verticals,
                     FLAGS.keep_spec_block, FLAGS.keep_boilerplate, FLAGS.min_conflict_confidence)
    print(", ".join(f"{CLASS_NAMES[c]} {n}" for c, n in table["total"].items())
          + f": {Path(FLAGS.out) / 'audit' / REPORT}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
