"""Would a catalog-wording rule tell the hand check's real conflicts from the false ones? A screen of a candidate
rule for the audit, on the rows the hand check judged.

    python -m experiments.audit_wording [--catalog=../shared/data/flipkart/products.jsonl.gz]
        [--results_dir=experiments/results/audit]

The rule: a conflict (description value D, specification value S) is the catalog's wording, not an error, when
another description of the same vertical (not a copy of this one: the text differs, case and spacing ignored)
names a value of D while that product's specification holds a value of S: the catalog uses the two for one thing
(denim for Cotton). For each row of RESULTS_DIR/conflicts_sample.jsonl, with its verdict from RESULTS_DIR/
hand_check.md, this counts those products, and the products whose text is a copy of the row's. Writes
RESULTS_DIR/wording.md.
"""
import json
import re
from collections import defaultdict
from pathlib import Path

from absl import flags

from experiments.common import command_line, define_catalog_flags
from mtl_tagger import cli
from mtl_tagger.audit import contains, specified
from mtl_tagger.catalog import read_catalog
from mtl_tagger.errors import InputError
from mtl_tagger.files import write_text_atomic
from mtl_tagger.prepare import (
    DEFAULT_VERTICALS,
    catalog_boilerplate,
    description_text,
    load_verticals,
    text_key,
    vertical_of,
)

FLAGS = flags.FLAGS
VERDICT = re.compile(r"^\| \d+ \| ([0-9a-f]+) \| (\w+) \|.*\| (\*\*real\*\*|not real) \|")


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    define_catalog_flags(model_dir=False)
    flags.DEFINE_string("results_dir", "experiments/results/audit", "Where the hand check's sample and verdicts are, "
                        "and wording.md goes.")


def verdicts(hand_check: Path) -> dict[tuple[str, str], bool]:
    """(id, attribute) → real, from the hand check's table."""
    found = {}
    for line in hand_check.read_text(encoding="utf-8").splitlines():
        m = VERDICT.match(line)
        if m:
            found[m.group(1), m.group(2)] = m.group(3) != "not real"
    return found


def _cell(value: str) -> str:
    """A value on one table line: its whitespace runs as single spaces, the values of a list joined by '/'."""
    return " ".join(value.replace("|", "/").split())


def main(argv: list[str]) -> None:
    """Count, for each judged conflict, the other descriptions that pair its two values, and write the table."""
    del argv
    results = Path(FLAGS.results_dir)
    judged = verdicts(results / "hand_check.md")
    sample = (results / "conflicts_sample.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [r for r in map(json.loads, sample) if (r["id"], r["attribute"]) in judged]
    if not rows:
        raise InputError("no row of conflicts_sample.jsonl has a verdict in hand_check.md", results)
    products = read_catalog(FLAGS.catalog).products
    verticals = load_verticals(DEFAULT_VERTICALS)
    boilerplate = catalog_boilerplate(products, verticals, False)
    by_vertical: dict[str, list] = defaultdict(list)  # (id, text key, text, specified values) per product
    for p in products:
        text = description_text(p, False, boilerplate)
        by_vertical[vertical_of(p, verticals)].append((p.id, text_key(text), text, specified(p)))
    table, marked = [], {True: 0, False: 0}
    for n, r in enumerate(rows, 1):
        real = judged[r["id"], r["attribute"]]
        _, mine, _, own = next(x for x in by_vertical[r["vertical"]] if x[0] == r["id"])
        spec = own[r["attribute"]][1]
        values = r["description_value"].split(" | ")
        copies = wording = 0
        for pid, key, text, specs in by_vertical[r["vertical"]]:
            if pid == r["id"]:
                continue
            if key == mine:
                copies += 1
            elif spec & specs.get(r["attribute"], ([], set()))[1] and any(contains(text, v) for v in values):
                wording += 1
        marked[real] += wording > 0
        table.append(f"| {n} | {r['id']} | {r['attribute']} | {_cell(r['description_value'])} | "
                     f"{_cell(r['spec_value'])} | {'**real**' if real else 'not real'} | {copies} | {wording} |")
    real_rows = sum(judged[r["id"], r["attribute"]] for r in rows)
    lines = [
        "# A catalog-wording rule, screened on the hand check's conflicts", "",
        f"Command: `{command_line('experiments.audit_wording')}`. Rows: the judged rows of conflicts_sample.jsonl, "
        "verdicts from hand_check.md. *copies*: other products whose description is this one's text; *wording*: "
        "other descriptions of the vertical (not copies) that name one of the row's description values while their "
        "specification holds one of its specification values. The rule would call a row the catalog's wording "
        "(unconfirmed) when *wording* ≥ 1.", "",
        f"**The rule marks {marked[False]} of {len(rows) - real_rows} not-real rows and {marked[True]} of {real_rows} "
        "real rows.**", "",
        "| # | id | attribute | description value | spec value | verdict | copies | wording |",
        "|---:|---|---|---|---|---|---:|---:|", *table]
    write_text_atomic(results / "wording.md", "\n".join(lines) + "\n")
    print(f"{results / 'wording.md'}: marks {marked[False]} not-real and {marked[True]} real rows")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
