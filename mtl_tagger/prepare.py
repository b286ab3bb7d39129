"""BIO training data from a catalog by distant supervision: the seller's specifications label the description.

    python -m mtl_tagger.prepare --source=PATH --out=DATA_DIR [--verticals=flags/verticals.json]

Verticals. A JSON object maps each vertical name (it names a directory: no `/`, no leading `.`) to
a list of rules. A rule is a regex searched (case-sensitive, `re.search`) in the product's category
path joined with " >> ", or an object {"path": regex, "name": regex} whose given fields must all
match (`name` is searched in the product name, for products the path alone cannot place). The
first vertical, in file order, with a matching rule takes the product. A vertical that gets no
product is an error.

Text. The description without its trailing "Specifications of <product> …" block (cut at the first
"Specifications of"), since that block repeats the specifications as text and would make every
label trivial; --keep_spec_block keeps it. Then without the catalog's boilerplate: sentences (cut after
. ! ? before a space, and at line breaks; compared with case and spacing ignored) that the catalog repeats in at
least 1% of its products (and at least 20) of at least 3 verticals (products of no vertical count as one), such
as "Only Genuine Products. 30 Day Replacement Guarantee. Free Shipping."; found from the catalog itself, listed
in stats.md and boilerplate.json; --keep_boilerplate keeps them. Tokens come from mtl_tagger.text.tokenize, the
tokenizer `predict` uses on raw text.

Labels. Every specification with a key and a real value (see `is_placeholder`) tags each token-aligned,
case-insensitive occurrence of the value as B-<attr> I-<attr>…, attr = normalise_key(key). The catalog's
brand column (as `catalog` reads it: not where it repeats a Brand Color or Brand Fit specification)
counts as a "Brand" specification when no key is a brand (clothing specifications have none). A value
"A, B" is a list (the catalog joined lists with ", "): A and B are looked for, each on its own.
Overlapping matches: the longer (in tokens) wins; on equal length the one starting first; on the same
span the specification listed first.

Splits. train/dev/test = 70/10/20 by SHA-256 of a product id: the smallest uniq_id among products
with the same description text (case and spacing ignored), so copies of a description never sit on
both sides of a split. Deterministic on every machine and run. In a tiny vertical an empty dev or
test split takes the train group with the highest bucket, so every vertical can be trained and
scored (the trainer needs a non-empty test, and dev for early stopping).

Output (written to a temporary directory, then renamed over DATA_DIR):
  DATA_DIR/<Vertical>/{train,dev,test}.conll              token<TAB>tag, one description per sentence
  DATA_DIR/<Vertical>/{train,dev,test}.provenance.jsonl   line i = sentence i: id, name, tagged spans
  DATA_DIR/stats.md                                       the paper's Table 1 for this data, and counts
  DATA_DIR/boilerplate.json                               the boilerplate sentences left out (see Text)
Products whose text gets no tag are left out (counted; --keep_unmatched writes them all-O). An empty
split gets no files (a CoNLL file holds at least one sentence); stats.md lists them.
"""
import hashlib
import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from absl import flags

from mtl_tagger import cli
from mtl_tagger.catalog import Product, normalise_key, read_catalog
from mtl_tagger.conll import bio_tags, write_conll
from mtl_tagger.errors import InputError
from mtl_tagger.files import check_input_file, replace_dir
from mtl_tagger.progress import status
from mtl_tagger.text import tokenize

DEFAULT_VERTICALS = Path(__file__).resolve().parents[1] / "flags" / "verticals.json"
SPLITS = ("train", "dev", "test")
_SPEC_BLOCK = re.compile(r"Specifications of\b")
# "NA", "N/A", "0", optionally with a range and a unit ("NA g", "NA K", "0 mm", "NA - NA month"),
# and flag words: these say "no value", and tagging them would label every "No" or "0" in a text.
_PLACEHOLDER = re.compile(
    r"(?:yes|no|none|nil|not applicable|not available"
    r"|(?:n/?a|0+(?:\.0+)?)(?:\s*-\s*(?:n/?a|0+(?:\.0+)?))?(?:\s+[^\W\d_]+\.?)?)",
    re.IGNORECASE)
_VERTICAL_NAME = re.compile(r"[^./\\\x00-\x1f][^/\\\x00-\x1f]*")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s)|\n")
BOILERPLATE_SHARE, BOILERPLATE_PRODUCTS, BOILERPLATE_VERTICALS = 0.01, 20, 3  # see the docstring's Text


@dataclass(frozen=True)
class Rule:
    """One pattern of a vertical: regexes on the joined category path and/or the product name."""

    path: re.Pattern | None
    name: re.Pattern | None

    def matches(self, product: Product) -> bool:
        """True when every regex given finds a match."""
        return ((self.path is None or self.path.search(" >> ".join(product.category_path)) is not None)
                and (self.name is None or self.name.search(product.name) is not None))


@dataclass(frozen=True)
class Vertical:
    """A vertical name and the rules that place products in it."""

    name: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Span:
    """A tagged value: the specification it came from and its token span [start, end)."""

    key: str
    value: str
    attr: str
    start: int
    end: int


@dataclass(frozen=True)
class Instance:
    """One labelled description of one vertical, with its split."""

    product_id: str
    name: str
    vertical: str
    split: str
    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    spans: tuple[Span, ...]


@dataclass
class VerticalCounts:
    """What happened to a vertical's products: mapped, empty after stripping, without any tag, kept."""

    products: int = 0
    empty_text: int = 0
    no_match: int = 0
    kept: int = 0


@dataclass
class Dataset:
    """prepare's result: instances of all verticals, and the counts stats.md reports."""

    instances: list[Instance]
    counts: dict[str, VerticalCounts]
    products_read: int
    skipped_records: int
    unmapped: int
    settings: dict[str, str] = field(default_factory=dict)
    boilerplate: dict[str, tuple[int, int]] = field(default_factory=dict)  # find_boilerplate's


def _compile(pattern: object, where: str, path: Path) -> re.Pattern:
    """A compiled regex, or an InputError naming the vertical and what is wrong."""
    if not isinstance(pattern, str) or not pattern:
        raise InputError(f"{where}: a pattern must be a non-empty string", path)
    try:
        return re.compile(pattern)
    except re.error as e:
        raise InputError(f"{where}: bad regex {pattern!r} ({e})", path) from None


def load_verticals(path: str | Path) -> list[Vertical]:
    """Read the vertical mapping (see the module docstring); InputError names the bad vertical or rule."""
    path = Path(path)
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("vertical mapping not found (--verticals)", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read the vertical mapping as JSON ({e})", path) from None
    if not isinstance(mapping, dict) or not mapping:
        raise InputError("the vertical mapping must be a non-empty JSON object {vertical: [rules]}", path)
    verticals = []
    for name, rules in mapping.items():
        if not _VERTICAL_NAME.fullmatch(name):
            raise InputError(f"vertical name {name!r} must be a directory name (no '/', no leading '.')", path)
        if not isinstance(rules, list) or not rules:
            raise InputError(f"vertical {name}: rules must be a non-empty list", path)
        compiled = []
        for rule in rules:
            rule = {"path": rule} if isinstance(rule, str) else rule
            if not isinstance(rule, dict) or not rule or set(rule) - {"path", "name"}:
                raise InputError(f"vertical {name}: a rule is a regex or an object with 'path' and/or 'name'",
                                 path)
            compiled.append(Rule(*(_compile(rule[k], f"vertical {name}", path) if k in rule else None
                                   for k in ("path", "name"))))
        verticals.append(Vertical(name, tuple(compiled)))
    return verticals


def vertical_of(product: Product, verticals: Sequence[Vertical]) -> str | None:
    """The first vertical with a rule matching the product, or None."""
    for vertical in verticals:
        if any(rule.matches(product) for rule in vertical.rules):
            return vertical.name
    return None


def strip_spec_block(description: str) -> str:
    """The description up to its "Specifications of …" block (the whole text when there is none)."""
    m = _SPEC_BLOCK.search(description)
    return description if m is None else description[:m.start()]


def sentences(text: str) -> list[tuple[int, int]]:
    """The [start, end) spans of the text's sentences, without the whitespace before them (see the docstring's
    Text)."""
    cuts = [0, *(m.end() for m in _SENTENCE_END.finditer(text)), len(text)]
    spans = [(a + len(text[a:b]) - len(text[a:b].lstrip()), b) for a, b in zip(cuts, cuts[1:])]
    return [(a, b) for a, b in spans if a < b]


def text_key(text: str) -> str:
    """A text with case and spacing ignored: how copies of a description and boilerplate sentences are compared."""
    return " ".join(text.casefold().split())


def find_boilerplate(texts: Iterable[tuple[str | None, str]]) -> dict[str, tuple[int, int]]:
    """The boilerplate of a catalog given as (vertical, text) per product: sentence key → (products, verticals), most
    products first, ties in key order (so stats.md is the same from run to run)."""
    products: Counter = Counter()
    verticals: dict[str, set] = {}
    total = 0
    for vertical, text in texts:
        total += 1
        for key in {text_key(text[a:b]) for a, b in sentences(text)}:
            products[key] += 1
            verticals.setdefault(key, set()).add(vertical)
    least = max(BOILERPLATE_PRODUCTS, BOILERPLATE_SHARE * total)
    return {key: (n, len(verticals[key])) for key, n in sorted(products.items(), key=lambda kv: (-kv[1], kv[0]))
            if n >= least and len(verticals[key]) >= BOILERPLATE_VERTICALS}


def strip_boilerplate(text: str, boilerplate: Collection[str]) -> str:
    """The text without its sentences whose key is in `boilerplate`, each with the whitespace after it."""
    cut = [(a, b) for a, b in sentences(text) if text_key(text[a:b]) in boilerplate] if boilerplate else []
    kept, start = [], 0
    for a, b in cut:
        kept.append(text[start:a])
        start = b + len(text[b:]) - len(text[b:].lstrip())
    return "".join(kept) + text[start:]


def description_text(product: Product, keep_spec_block: bool = False, boilerplate: Collection[str] = ()) -> str:
    """The text that is labelled and tagged for a product: its description, spec block cut unless kept, without
    the catalog's `boilerplate` sentences (their keys)."""
    text = product.description if keep_spec_block else strip_spec_block(product.description)
    return strip_boilerplate(text, boilerplate)


def is_placeholder(value: str) -> bool:
    """True for values that stand for "no value": NA / N/A / 0 (with a unit or range), Yes, No, None, nil,
    not applicable/available, and values without a letter or digit."""
    value = value.strip()
    return _PLACEHOLDER.fullmatch(value) is not None or not any(c.isalnum() for c in value)


def value_tokens(value: str) -> tuple[str, ...]:
    """A value as the matcher compares it: its tokens, case-folded (so case and spacing do not count)."""
    return tuple(t.casefold() for t, _, _ in tokenize(value))


def value_variants(value: str) -> list[str]:
    """The strings to look for: the comma-separated parts of the value (a list in the catalog), no placeholders."""
    return [v for v in dict.fromkeys(p.strip() for p in value.split(",")) if v and not is_placeholder(v)]


def distant_labels(tokens: Sequence[str], specifications: Sequence[tuple[str | None, str]]
                   ) -> tuple[list[str], list[Span]]:
    """BIO tags for `tokens` from the specifications, and the spans tagged (sorted by position)."""
    folded = [t.casefold() for t in tokens]
    starts: dict[str, list[int]] = {}
    for i, t in enumerate(folded):
        starts.setdefault(t, []).append(i)
    candidates = []
    for order, (key, value) in enumerate(specifications):
        attr = normalise_key(key) if key else ""
        if not attr:
            continue
        for variant in value_variants(value):
            wanted = list(value_tokens(variant))
            for i in starts.get(wanted[0], ()) if wanted else ():
                if folded[i:i + len(wanted)] == wanted:
                    candidates.append((-len(wanted), i, order, Span(key, variant, attr, i, i + len(wanted))))
    taken = [False] * len(tokens)
    spans = []
    for *_, span in sorted(candidates, key=lambda c: c[:3]):
        if not any(taken[span.start:span.end]):
            taken[span.start:span.end] = [True] * (span.end - span.start)
            spans.append(span)
    spans.sort(key=lambda s: s.start)
    return bio_tags(len(tokens), ((s.attr, s.start, s.end) for s in spans)), spans


def label_specifications(product: Product) -> tuple[tuple[str | None, str], ...]:
    """The product's specifications, plus ("Brand", brand column) last when no key is a brand."""
    if not product.brand or any(key and normalise_key(key) == "brand" for key, _ in product.specifications):
        return product.specifications
    return (*product.specifications, ("Brand", product.brand))


def stable_hash(key: str, n: int) -> int:
    """0 … n-1 from the SHA-256 of `key`: the same on every machine and run (Python's hash() is salted)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % n


def bucket_of(product_id: str) -> int:
    """The id's bucket, 0-99, which decides its split."""
    return stable_hash(product_id, 100)


def split_of(product_id: str) -> str:
    """train / dev / test (70/10/20) by the id's bucket."""
    bucket = bucket_of(product_id)
    return "train" if bucket < 70 else "dev" if bucket < 80 else "test"


def assign_splits(group_ids: Iterable[str]) -> dict[str, str]:
    """The split of each group of one vertical: split_of, except that an empty dev or test takes the
    train group with the highest bucket (the nearest to dev's range) while train keeps another group."""
    groups = sorted(set(group_ids))
    split = {g: split_of(g) for g in groups}
    for wanted in ("dev", "test"):
        train = [g for g in groups if split[g] == "train"]
        if wanted not in split.values() and len(train) >= 2:
            split[max(train, key=lambda g: (bucket_of(g), g))] = wanted
    return split


def copy_groups(texts: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each product id (of (id, text) pairs) → its copy group: the smallest id among the products whose text is
    the same with case and spacing ignored. Splits and folds keep a group together."""
    keys = {pid: text_key(text) for pid, text in texts}
    smallest: dict[str, str] = {}
    for pid, key in keys.items():
        smallest[key] = min(smallest.get(key, pid), pid)
    return {pid: smallest[key] for pid, key in keys.items()}


def fold_of(group: str, folds: int) -> int:
    """The cross-fitting fold (0 … folds-1) of a copy group, by a SHA-256 of its id independent of its split."""
    return stable_hash(f"fold:{group}", folds)


def build_dataset(products: Sequence[Product], verticals: Sequence[Vertical], keep_spec_block: bool = False,
                  keep_unmatched: bool = False, boilerplate: Collection[str] = (), drop_empty: bool = False
                  ) -> tuple[list[Instance], dict[str, VerticalCounts], int]:
    """Instances of every vertical (texts without the `boilerplate` sentences), per-vertical counts, and how many
    products fell in no vertical.

    InputError when a vertical gets no product, or none of its products gets a tag; with `drop_empty` (products
    were left out on purpose) such a vertical is left out instead.
    """
    counts = {v.name: VerticalCounts() for v in verticals}
    placed = []
    for product in products:
        name = vertical_of(product, verticals)
        if name is not None:
            text = description_text(product, keep_spec_block, boilerplate)
            placed.append((name, product, text))
            counts[name].products += 1
    for name, c in list(counts.items()):
        if not c.products and drop_empty:
            del counts[name]
        elif not c.products:
            raise InputError(f"vertical {name} matches no product of the source; fix its rules or remove it")
    group_id = copy_groups((product.id, text) for _, product, text in placed)
    labelled = []
    for name, product, text in placed:
        tokens = [t for t, _, _ in tokenize(text)]
        if not tokens:
            counts[name].empty_text += 1
            continue
        tags, spans = distant_labels(tokens, label_specifications(product))
        if not spans:
            counts[name].no_match += 1
            if not keep_unmatched:
                continue
        counts[name].kept += 1
        labelled.append((name, product, group_id[product.id], tokens, tags, spans))
    for name, c in list(counts.items()):
        if not c.kept and drop_empty:
            del counts[name]
        elif not c.kept:
            raise InputError(f"vertical {name}: none of its {c.products} products has a tagged value")
    splits = {name: assign_splits(g for n, _, g, *_ in labelled if n == name) for name in counts}
    instances = [Instance(p.id, p.name, name, splits[name][g], tuple(tokens), tuple(tags), tuple(spans))
                 for name, p, g, tokens, tags, spans in labelled]
    return instances, counts, len(products) - len(placed)


def _label_counts(instances: Sequence[Instance]) -> Counter:
    """For each B-/I- tag, how many instances contain it."""
    return Counter(t for inst in instances for t in set(inst.tags) if t != "O")


def stats_markdown(data: Dataset) -> str:
    """stats.md: the paper's Table 1 for this data, products and token lengths per vertical, label counts."""
    by_vertical: dict[str, dict[str, list[Instance]]] = {v: {s: [] for s in SPLITS} for v in data.counts}
    for inst in data.instances:
        by_vertical[inst.vertical][inst.split].append(inst)
    table1 = ["| Vertical | # labels (B, I separately) | # train | # test | # examples / label (max, min) |",
              "|---|---:|---:|---:|---:|"]
    per_vertical = ["| Vertical | products | empty text | no match | kept | train | dev | test "
                    "| tokens median | p90 | max | labels only in dev/test |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    details = []
    for name, splits in by_vertical.items():
        c = data.counts[name]
        train = _label_counts(splits["train"])
        held = set(_label_counts(splits["dev"] + splits["test"])) - set(train)
        most, least = (max(train.values()), min(train.values())) if train else (0, 0)
        table1.append(f"| {name} | {len(train)} | {len(splits['train'])} | {len(splits['test'])} "
                      f"| {most}, {least} |")
        lengths = np.array([len(i.tokens) for s in SPLITS for i in splits[s]]) if c.kept else np.zeros(1)
        per_vertical.append(
            f"| {name} | {c.products} | {c.empty_text} | {c.no_match} | {c.kept} | {len(splits['train'])} "
            f"| {len(splits['dev'])} | {len(splits['test'])} | {np.median(lengths):.0f} "
            f"| {np.percentile(lengths, 90):.0f} | {lengths.max()} | {len(held)} |")
        ranked = sorted(train.items(), key=lambda kv: (-kv[1], kv[0]))
        details.append(f"- **{name}**: " + ", ".join(f"{t} {n}" for t, n in ranked))
    empty_splits = [f"{name}/{split}.conll" for name, splits in by_vertical.items() for split in SPLITS
                    if not splits[split]]
    no_match = sum(c.no_match for c in data.counts.values())
    empty = sum(c.empty_text for c in data.counts.values())
    settings = "; ".join(f"{k}: {v}" for k, v in data.settings.items())
    return "\n".join([
        "# Distant-supervision data", "", settings, "",
        "## Table 1 (the paper's, for this data)", "",
        "# labels: distinct B-/I- tags in train. # examples / label: train descriptions holding the tag.", "",
        *table1, "",
        f"Products with no match (text but no tagged value): {no_match}"
        f"{' (kept, all O)' if data.settings.get('unmatched') == 'kept' else ' (left out)'}. "
        f"Products with empty text: {empty}. Products in no vertical: {data.unmapped}. "
        f"Source records read: {data.products_read}; skipped as unreadable: {data.skipped_records}.", "",
        f"Empty splits, so not written: {', '.join(empty_splits)} (without dev.conll the trainer holds out 10% "
        "of train as dev)." if empty_splits else "Every split of every vertical has sentences.", "",
        "## Products and description lengths (tokens) per vertical", "",
        *per_vertical, "",
        "## Boilerplate left out of every text", "",
        "Sentences the catalog repeats across many products and verticals (prepare's docstring); boilerplate.json "
        "lists them.", "",
        *(["| sentence (case and spacing ignored) | products | verticals |", "|---|---:|---:|",
           *("| " + key.replace("|", "\\|") + f" | {n} | {v} |" for key, (n, v) in data.boilerplate.items()), ""]
          if data.boilerplate else ["None.", ""]),
        "## Train descriptions per label", "",
        *details, ""])


def _provenance(inst: Instance) -> str:
    """One provenance line: product id and name, and key, value, attr, token span of each tagged value."""
    spans = [{"key": s.key, "value": s.value, "attr": s.attr, "start": s.start, "end": s.end}
             for s in inst.spans]
    return json.dumps({"id": inst.product_id, "name": inst.name, "spans": spans}, ensure_ascii=False)


def _check_dataset_dir(out: Path) -> None:
    """InputError unless `out` may become DATA_DIR: absent, an empty directory, or one holding a stats.md (an
    earlier prepare output)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "stats.md").is_file())):
        raise InputError("exists and is not an earlier prepare output (no stats.md); not replacing it", out)


def write_dataset(out: str | Path, data: Dataset) -> None:
    """Write DATA_DIR (CoNLL, provenance, stats.md) via a temporary directory renamed into place (_check_dataset_dir
    says what it may replace)."""
    out = Path(out)
    _check_dataset_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        for name in data.counts:
            (tmp / name).mkdir(parents=True)
            for split in SPLITS:
                chosen = [i for i in data.instances if i.vertical == name and i.split == split]
                if not chosen:
                    continue  # a CoNLL file holds at least one sentence; see stats.md for empty splits
                write_conll(tmp / name / f"{split}.conll", ((i.tokens, i.tags) for i in chosen))
                (tmp / name / f"{split}.provenance.jsonl").write_text(
                    "".join(_provenance(i) + "\n" for i in chosen), encoding="utf-8")
        (tmp / "stats.md").write_text(stats_markdown(data), encoding="utf-8")
        (tmp / "boilerplate.json").write_text(json.dumps(sorted(data.boilerplate), ensure_ascii=False, indent=0),
                                              encoding="utf-8")
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def catalog_boilerplate(products: Sequence[Product], verticals: Sequence[Vertical], keep_spec_block: bool
                        ) -> dict[str, tuple[int, int]]:
    """find_boilerplate over every product of a catalog, routed to its vertical (None for none)."""
    return find_boilerplate((vertical_of(p, verticals), description_text(p, keep_spec_block)) for p in products)


def prepare(source: str | Path, out: str | Path, verticals_path: str | Path = DEFAULT_VERTICALS,
            keep_spec_block: bool = False, keep_unmatched: bool = False, keep_boilerplate: bool = False,
            leave_out: Collection[str] = ()) -> Dataset:
    """Read the catalog, label and split every vertical, and write DATA_DIR; returns what was written.
    `leave_out`: ids of products to leave out of every split (a cross-fitting fold; the boilerplate is still
    found over the whole catalog)."""
    verticals = load_verticals(verticals_path)
    _check_dataset_dir(Path(out))  # also before the catalog is read (seconds): a refusal is then the only line
    with status(f"reading {source}"):
        catalog = read_catalog(source)
        boilerplate = {} if keep_boilerplate else catalog_boilerplate(catalog.products, verticals, keep_spec_block)
        kept = [p for p in catalog.products if p.id not in leave_out] if leave_out else catalog.products
        instances, counts, unmapped = build_dataset(kept, verticals, keep_spec_block, keep_unmatched, boilerplate,
                                                    drop_empty=bool(leave_out))
    data = Dataset(instances, counts, len(catalog.products), len(catalog.skipped), unmapped, {
        "source": str(source), "verticals": str(verticals_path),
        "spec block": "kept" if keep_spec_block else "stripped",
        "unmatched": "kept" if keep_unmatched else "left out",
        "boilerplate": "kept" if keep_boilerplate else f"{len(boilerplate)} sentences left out",
        **({"left out": f"{len(catalog.products) - len(kept)} products (a cross-fitting fold)"} if leave_out else {})},
        boilerplate)
    write_dataset(out, data)
    return data


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined when run as a program, so importing this module next to other CLIs is safe)."""
    flags.DEFINE_string("source", None, "Catalog: products JSONL(.gz) or Kaggle CSV(.gz).")
    flags.DEFINE_string("out", None, "Output DATA_DIR (replaced if it holds an earlier prepare output).")
    flags.DEFINE_bool("keep_unmatched", False, "Write products whose text gets no tag (all O), not drop them.")
    flags.DEFINE_bool("show_stats", False, "Print stats.md also when it is what the last prepare into --out wrote.")
    define_text_flags()


def define_text_flags() -> None:
    """The flags that say how a catalog's products become text: prepare, extract and crossfit must agree on them."""
    flags.DEFINE_string("verticals", str(DEFAULT_VERTICALS), "JSON mapping vertical -> category-path rules "
                        "(extract: the ones prepare used).")
    flags.DEFINE_bool("keep_spec_block", False, "Keep the trailing 'Specifications of …' block in the text "
                      "(extract: as prepare did).")
    flags.DEFINE_bool("keep_boilerplate", False, "Keep the sentences the catalog repeats across many products and "
                      "verticals (see prepare's docstring) in the text (extract: as prepare did).")


def main(argv: list[str]) -> None:
    """CLI: prepare DATA_DIR and print its stats.md (when it changed, or with --show_stats)."""
    cli.check_args(argv, "source", "out")
    check_input_file(FLAGS.source, "--source", "catalog file")
    stats = Path(FLAGS.out) / "stats.md"
    before = stats.read_text(encoding="utf-8") if stats.is_file() else None
    data = prepare(FLAGS.source, FLAGS.out, FLAGS.verticals, FLAGS.keep_spec_block, FLAGS.keep_unmatched,
                   FLAGS.keep_boilerplate)
    after = stats.read_text(encoding="utf-8")
    if after == before and not FLAGS.show_stats:
        print(f"{FLAGS.out}: {len(data.counts)} verticals, {len(data.instances)} sentences, as the last prepare made "
              f"them; the table is in {stats} (--show_stats prints it)")
    else:
        print(after)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
