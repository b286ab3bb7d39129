"""What would today's audit rules say of the rows an earlier hand check judged? A screen of the audit's rules on
rows whose verdicts are known, so that a rule is seen to spare the real conflicts before a fresh check.

    python -m experiments.audit_rules [--catalog=../shared/data/flipkart/products.jsonl.gz]
        [--earlier=experiments/results/audit/earlier] [--seed=2]

EARLIER holds an earlier audit's sample (conflicts_sample_seed<S>.jsonl), its hand check (hand_check_seed<S>.md, its
table with or without a vertical column) and its extraction's summary (extract_summary_seed<S>.json: the attributes each
vertical's head tags, the boilerplate cut). Each judged row is judged again by mtl_tagger.audit as it is now: its values
found again in the product's text (the first at the row's offsets), at the row's confidence, beside the other products
of its vertical (every catalog product of the summary's verticals, as the audit reads every extracted one). Writes
EARLIER/rules_seed<S>.md.
"""
import json
import re
from collections import defaultdict
from pathlib import Path

from absl import flags

from experiments.common import command_line, define_catalog_flags
from mtl_tagger import cli
from mtl_tagger.audit import Described, explain_by_catalog, judge
from mtl_tagger.catalog import read_catalog
from mtl_tagger.errors import InputError
from mtl_tagger.files import read_json, write_text_atomic
from mtl_tagger.prepare import description_text, load_verticals, vertical_of

FLAGS = flags.FLAGS
# a table row: id, the vertical (a capitalised name, in some tables only), the attribute (snake case), …, the verdict
VERDICT = re.compile(r"^\| \d+ \| ([0-9a-f]+) \| (?:[A-Z]\w* \| )?([a-z]\w*) \|.*\| (\*\*real\*\*|not real) \|")


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    define_catalog_flags(model_dir=False)
    flags.DEFINE_string("earlier", "experiments/results/audit/earlier", "Where the earlier sample, hand check and "
                        "extract summary are, and the screen goes.")
    flags.DEFINE_integer("seed", 2, "The seed of the earlier sample (its files' suffix).")
    flags.DEFINE_string("verticals", "flags/verticals.json", "The vertical mapping the earlier audit ran with.")


def verdicts(hand_check: Path) -> dict[tuple[str, str], bool]:
    """(id, attribute) → real, from a hand check's table."""
    found = {}
    for line in hand_check.read_text(encoding="utf-8").splitlines():
        m = VERDICT.match(line)
        if m:
            found[m.group(1), m.group(2)] = m.group(3) != "not real"
    return found


def record_of(row: dict, text: str) -> dict:
    """The extract record a sample row stands for: its values where the text has them, the first at the row's
    offsets, each at the row's confidence (the row keeps only the highest)."""
    values = []
    for i, surface in enumerate(dict.fromkeys(row["description_value"].split(" | "))):
        start = row["start"] if i == 0 else text.find(surface)
        if start < 0 or text[start:start + len(surface)] != surface:
            raise InputError(f"value {surface!r} of product {row['id']} is not in its text")
        values.append({"attribute": row["attribute"], "value": surface, "start": start, "end": start + len(surface),
                       "confidence": row["confidence"]})
    return {"id": row["id"], "vertical": row["vertical"], "values": values}


def _cell(value: str) -> str:
    """A value on one table line: its whitespace runs as single spaces, the values of a list joined by '/'."""
    return " ".join(value.replace("|", "/").split())


def main(argv: list[str]) -> None:
    """Judge each row of the earlier hand check again and write the table beside its verdicts."""
    del argv
    earlier, seed = Path(FLAGS.earlier), FLAGS.seed
    judged = verdicts(earlier / f"hand_check_seed{seed}.md")
    sample = (earlier / f"conflicts_sample_seed{seed}.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [r for r in map(json.loads, sample) if (r["id"], r["attribute"]) in judged]
    if not rows:
        raise InputError(f"no row of conflicts_sample_seed{seed}.jsonl has a verdict in hand_check_seed{seed}.md",
                         earlier)
    summary = read_json(earlier / f"extract_summary_seed{seed}.json")
    boilerplate = frozenset(summary["boilerplate"])
    verticals = load_verticals(FLAGS.verticals)
    products, texts = {}, {}
    described: dict[str, dict[str, Described]] = defaultdict(dict)
    for p in read_catalog(FLAGS.catalog).products:
        vertical = vertical_of(p, verticals)
        if vertical in summary["attributes"]:
            products[p.id], texts[p.id] = p, description_text(p, summary["keep_spec_block"], boilerplate)
            described[vertical][p.id] = Described.of(p, texts[p.id])
    table, kept = [], {True: 0, False: 0}
    for n, r in enumerate(rows, 1):
        real = judged[r["id"], r["attribute"]]
        found, _ = judge(record_of(r, texts[r["id"]]), products[r["id"]], texts[r["id"]],
                         summary["attributes"][r["vertical"]], min_conflict_confidence=0.0)
        verdict = next(v for v in explain_by_catalog(found, described) if v.attribute == r["attribute"])
        kept[real] += verdict.cls == "conflicts"
        table.append(f"| {n} | {r['id']} | {r['attribute']} | {_cell(r['description_value'])} | "
                     f"{_cell(r['spec_value'])} | {'**real**' if real else 'not real'} | {verdict.cls} | "
                     f"{verdict.why} |")
    real_rows = sum(judged[r["id"], r["attribute"]] for r in rows)
    lines = [
        f"# Today's audit rules on the rows of the seed-{seed} hand check", "",
        f"Command: `{command_line('experiments.audit_rules')}`. Rows: the judged rows of "
        f"conflicts_sample_seed{seed}.jsonl, verdicts from hand_check_seed{seed}.md (all were conflicts when they "
        "were drawn). *now*: the class mtl_tagger.audit gives the row today, with the products of its vertical "
        "beside it, at the row's confidence (the confidence threshold is left out: it was passed when drawn); *why*: "
        "why it is no longer claimed as a conflict.", "",
        f"**Today's rules keep {kept[True]} of the {real_rows} real rows as conflicts, and "
        f"{kept[False]} of the {len(rows) - real_rows} not-real rows.**", "",
        "| # | id | attribute | description value | spec value | verdict | now | why |",
        "|---:|---|---|---|---|---|---|---|", *table]
    out = earlier / f"rules_seed{seed}.md"
    write_text_atomic(out, "\n".join(lines) + "\n")
    print(f"{out}: keeps {kept[True]} of {real_rows} real and {kept[False]} of {len(rows) - real_rows} not-real rows")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
