"""Does the description agree with the seller's specifications? One verdict per (product, attribute).

    python -m mtl_tagger.audit --extractions=OUT.jsonl --catalog=PATH --out=DIR

Inputs: extract's OUT.jsonl, its OUT.jsonl.summary.json (written when the extraction is complete: the
attributes each vertical's head can tag, how the text was prepared, the catalog's SHA-256) and the catalog it
was run on. A catalog whose SHA-256 is not the one extract recorded is refused (an extraction whose summary
predates that record is checked against OUT.jsonl.progress.json's, and, without either, audited with a note).

Values are compared by one function, `classify`, on their tokens as prepare matches them (`value_tokens`: case-
folded), with `&` read as `and`, punctuation as a separator only (Hook-and-Eye, ADSL2+ / ADSL2), a unit word that
measures no number left out (Free Size / Free inch), and a word spelt another way or in the plural (`same_word`:
Plazo / Palazzo, Glod / Gold, Car / Cars) as the same word.
Specification side S: every specification with a key, and the brand column (as `catalog` reads it) where prepare adds it
(`label_specifications`); the key names the attribute (`catalog.normalise_key`: "Base Material" is base_material)
and a value is the set of its list items (`value_variants`: "Women, Girls" is {women, girls}; placeholders
such as "NA" are no value). Several specifications of one attribute pool their items. Description side D:
the values extract found for the attribute (several are pooled too).

For each product and each attribute its vertical's head can tag:
  agrees                 D and S share a value (naming one item of a list agrees; an extra description
                         value next to a shared one, e.g. a second colour, is not flagged)
  partially_agrees       no shared value, but a value of one side lies inside one of the other, token-aligned:
                         slim / slim fit, Sterling Silver / Silver, a value the model split in two or ran on; or
                         S says multicolour (Multicolor, Multi Colour) and D names colours
  conflicts              D and S both non-empty, and no value equal to or inside one of the other, claimed only
                         when the text does not name a specification value too, not every value of D is explained
                         otherwise, the vertical's other descriptions do not explain it, both sides are the
                         vertical's vocabulary (other sellers specify the attribute with each value of D and with a
                         value of S), and the model's (calibrated) confidence in its value is at least
                         --min_conflict_confidence
  unconfirmed            such a disagreement that is not claimed (its `why`): the description names both, and
                         the model took the other; every value of D lies inside the product's (short) value of
                         another attribute the head tags (the plating Gold read as the colour) or is a piece of a
                         longer number (the 1 of a price 1,499); the vertical's other descriptions explain every
                         value of D (`catalog_why`: the catalog's wording, denim where the specification says
                         Cotton; template copy, a sentence repeated under either value; a phrase that no
                         specification of the vertical holds); a value of D, or every value of S, is free text that
                         fewer than two other sellers specify for the attribute; or the model is not sure enough of
                         its value. Hand checks found these to be the model's errors or the catalog's vocabulary
                         almost always.
                         Because the catalog rules read every extracted product of the vertical, a product's class
                         can differ when a subset of the extraction (one fold's, say) is audited alone
  only_in_description    D non-empty, S empty (no specification, or a placeholder): an enrichment
  only_in_specification  S non-empty, D empty
Specified attributes that the head cannot tag get no verdict; counts.json counts them as not_taggable.

Output (each file written atomically, report.md last, under a lock on DIR/.lock that refuses a second audit
into DIR while one writes, and removed after; a DIR without report.md holds an unfinished audit):
DIR/counts.json (the classes in total, per vertical, per attribute and per vertical and attribute, and the
--min_conflict_confidence they were made with), DIR/<class>.jsonl per class (one row per (product, attribute):
id, vertical, attribute, description_value, spec_value, snippet, sentence (the whole sentence of the first
value), start, end, confidence; unconfirmed rows also why), ranked by the model's confidence in its value,
highest first (calibrated where the model is: a conflict whose value the model is sure
of is more likely the seller's error than the model's; rows without a description value last), and
DIR/report.md (totals, per vertical, per attribute, the conflicts the model is most sure of, the most frequent
conflicts with ids and snippets).
"""
import functools
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from absl import flags, logging

from mtl_tagger import cli
from mtl_tagger.catalog import Product, normalise_key, read_catalog
from mtl_tagger.errors import InputError
from mtl_tagger.extract import PROGRESS_SUFFIX, SUMMARY_SUFFIX, sidecar
from mtl_tagger.files import check_input_file, json_line, read_json, sha256, write_json_atomic, write_text_atomic
from mtl_tagger.lock import FileLock
from mtl_tagger.prepare import (
    description_text,
    label_specifications,
    sentences,
    text_key,
    value_tokens,
    value_variants,
)
from mtl_tagger.progress import status
from mtl_tagger.text import pieces, snippet

LOCK = ".lock"
REPORT = "report.md"
SUMMARY_KEYS = ("model_dir", "keep_spec_block", "min_confidence", "tagged", "tagged_per_vertical", "skipped",
                "attributes")
CLASSES = ("agrees", "partially_agrees", "conflicts", "unconfirmed", "only_in_description", "only_in_specification")
CLASS_NAMES = {"agrees": "agrees", "partially_agrees": "partially agrees", "conflicts": "conflicts",
               "unconfirmed": "unconfirmed", "only_in_description": "only in description",
               "only_in_specification": "only in specification"}
MIN_CONFLICT_CONFIDENCE = 0.5  # a conflict is claimed when the model's value is more likely right than wrong
NAMES_BOTH = "the text names the specification value too"
EXPLAINED = "the text's value is "
NOT_SURE = "the model's confidence in its value is below "
WHY_KINDS = {"names_both": "because the text names the specification value too (the model took another word)",
             "explained_otherwise": "because every value the model found is another attribute's value of the "
                                    "product or a piece of a longer number",
             "catalog": "because the vertical's other descriptions use the text's value for the specification's "
                        "(the catalog's wording), repeat its sentence under either value (template copy) or use it "
                        "where no specification of the vertical has it (a phrase, not a value)",
             "vocabulary": "because the text's or the specification's value is not one that other sellers of the "
                           "vertical specify for the attribute (free text or another grain, where other words and a "
                           "contradiction cannot be told apart)",
             "not_sure": "because the model is not sure enough of its value"}
UNIT_WORDS = frozenset({"size", "inch", "inches", "cm", "cms", "mm", "gms", "grams", "kg", "ml", "litre", "litres"})
NUMBER_WORDS = frozenset({"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "half",
                          "quarter", "double", "single"})  # a unit word beside one of these measures it
CATALOG = "the vertical's other descriptions "
FREE_TEXT = "not the vertical's vocabulary: "
CATALOG_MIN = 2  # other sources that must show the catalog's wording, a phrase or a value before they count
NAME_TOKENS = 6  # a longer specification value is free text (other_features), not a value the model could take
TOP_CONFLICTS = 20
NAMED_CHARS = 3  # a shorter specification value (a size S, a pack of 1) names itself only as a whole token


@dataclass(frozen=True)
class Verdict:
    """One (product, attribute) and its class; the values behind it, for conflict rows."""

    id: str
    vertical: str
    attribute: str
    cls: str
    description: tuple[dict, ...]  # extract's value records, in text order
    spec: tuple[str, ...]  # the seller's values as written
    why: str = ""  # of an unconfirmed disagreement


@dataclass
class Audit:
    """What audit found: the verdicts, extract's summary, the specified attributes no head can tag (per
    vertical and attribute) and the text of each judged product (for snippets)."""

    verdicts: list[Verdict]
    summary: dict
    not_taggable: Counter
    texts: dict[str, str]
    min_conflict_confidence: float = MIN_CONFLICT_CONFIDENCE


def specified(product: Product) -> dict[str, tuple[list[str], set[tuple[str, ...]]]]:
    """Per attribute: the seller's values as written, and their normalised list items (placeholders dropped)."""
    out: dict[str, tuple[list[str], set[tuple[str, ...]]]] = {}
    for key, value in label_specifications(product):
        attr = normalise_key(key) if key else ""
        items = {value_tokens(v) for v in value_variants(value)} - {()}
        if attr and items:
            raw, norm = out.setdefault(attr, ([], set()))
            raw.append(value)
            norm |= items
    return out


def _pieces(tokens: Iterable[str]) -> tuple[str, ...]:
    """Tokens as the words they join (`text.pieces`): `&` is `and`, Hook-and-Eye is its three words, Comfy.Cotton two,
    ADSL2+ is ADSL2, and the inch sign a specification writes as \\" is nothing; 8.0 and women's stay whole."""
    return tuple(word for word in _words(tokens) if word)


def _words(tokens: Iterable[str]) -> tuple[str, ...]:
    """A text's tokens as words (`text.pieces`, `&` as `and`), each symbol (a comma, a full stop) left as "", which
    no value's word is: a value is found inside a token the tokenizer kept whole (Comfy.Cotton), not across a comma."""
    return tuple(piece for token in tokens for piece in (pieces("and" if token == "&" else token) or [""]))


def _normal(value: tuple[str, ...]) -> tuple[str, ...]:
    """A value's tokens as classify compares them (`_pieces`), with a unit word that measures no number left out
    (Free Size / Free inch), unless it is the whole value."""
    tokens = _pieces(value) or value
    if any(c.isnumeric() for t in tokens for c in t) or not NUMBER_WORDS.isdisjoint(tokens):
        return tokens
    return tuple(t for t in tokens if t not in UNIT_WORDS) or tokens


def same_word(a: str, b: str) -> bool:
    """Whether two case-folded tokens are one word spelt two ways: equal; a word of three letters or more and its
    plural (Car / Cars, Box / Boxes; -es only after s, x, z, ch or sh, so Cap / Capes differ; no -s after s); or, with
    the same first letter and at least four letters, two neighbouring letters swapped (Glod / Gold) or the longer
    with letters left out (Plazo / Palazzo, Yello / Yellow), the shorter at least 70% of the longer. Substitutions
    are not counted: Black / Block differ."""
    if a == b:
        return True
    short, long = sorted((a, b), key=len)
    if len(short) >= 3 and short.isalpha() and (long == short + "s" and not short.endswith("s") or (
            long == short + "es" and short.endswith(("s", "x", "z", "ch", "sh")))):
        return True
    if len(short) < 4 or short[0] != long[0]:
        return False
    if len(short) == len(long):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    rest = iter(long)
    return len(short) >= 0.7 * len(long) and all(c in rest for c in short)


def _inside(inner: tuple[str, ...], outer: tuple[str, ...], same=str.__eq__) -> bool:
    """Whether `inner` is a contiguous run of `outer`'s tokens (token by token equal under `same`)."""
    return any(all(map(same, inner, outer[i:i + len(inner)])) for i in range(len(outer) - len(inner) + 1))


def is_multicolour(value: tuple[str, ...]) -> bool:
    """Whether a specification value says "several colours" (Multicolor, Multi Colour, Multi): any colour the text
    names is one of them."""
    return re.fullmatch(r"multi(?: ?colou?r(?:ed|s)?)?", " ".join(value)) is not None


def classify(description: set[tuple[str, ...]], spec: set[tuple[str, ...]]) -> str | None:
    """The class of a (product, attribute) from its values' tokens on both sides (None: neither has one). The
    audit's one comparison of values: `&` is `and` and a word joined by punctuation its parts (`_pieces`); equal
    values agree; a value inside one of the other side (token-aligned: slim / slim fit, Sterling Silver / Silver),
    the same words spelt another way (`same_word`: Plazo / Palazzo) or any value against a multicolour
    specification agrees partially; anything else conflicts."""
    description, spec = {_normal(v) for v in description}, {_normal(v) for v in spec}
    if description and spec:
        if description & spec:
            return "agrees"
        if any(_inside(d, s, same_word) or _inside(s, d, same_word) for d in description for s in spec) or any(
                map(is_multicolour, spec)):
            return "partially_agrees"
        return "conflicts"
    if description:
        return "only_in_description"
    return "only_in_specification" if spec else None


def _number_piece(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is digits that a thousands separator joins to more digits ("1" of "1,499")."""
    return text[start:end].isdigit() and (re.match(r",\d", text[end:end + 2]) is not None
                                          or re.search(r"\d,\Z", text[max(0, start - 2):start]) is not None)


def _explained(value: dict, others: list[tuple[str, tuple[str, ...]]], text: str) -> str:
    """What a disagreeing description value is instead of this attribute's ("": nothing known): inside the product's
    short value of another attribute the head tags (the model confused the two), or a piece of a longer number."""
    if _number_piece(text, value["start"], value["end"]):
        return "a piece of a longer number"
    tokens = _normal(value_tokens(value["value"]))
    return next((f"the product's {a} (another attribute)" for a, s in others if _inside(tokens, s, same_word)), "")


def _names(item: tuple[str, ...], tokens: tuple[str, ...], words: tuple[str, ...]) -> bool:
    """Whether a text (its tokens, and their `_words`) names a value (its tokens): token for token, or, for a value of
    NAMED_CHARS characters or more, word for word inside tokens (Cotton in Comfy.Cotton)."""
    named = _pieces(item)
    return _inside(item, tokens) or bool(named) and len("".join(named)) >= NAMED_CHARS and _inside(named, words)


def why_kind(why: str) -> str:
    """The kind of an unconfirmed row's reason (a key of WHY_KINDS); ValueError for a reason of no kind."""
    for kind, prefix in (("names_both", NAMES_BOTH), ("explained_otherwise", EXPLAINED), ("catalog", CATALOG),
                         ("vocabulary", FREE_TEXT), ("not_sure", NOT_SURE)):
        if why.startswith(prefix):
            return kind
    raise ValueError(f"an unconfirmed row's reason of no kind: {why!r}")


def unconfirmed_why(values: list[dict], attr: str, spec: dict, taggable: list[str], text: str,
                    min_conflict_confidence: float) -> str:
    """Why a disagreement is not claimed as a conflict ("" when it is): the text names the specification value too;
    every value the model found is explained otherwise (`_explained`); or the model is not sure enough of it."""
    tokens = value_tokens(text)
    words = _words(tokens)
    if any(_names(item, tokens, words) for item in spec[attr][1]):
        return NAMES_BOTH
    others = [(a, _normal(s)) for a in taggable if a != attr and a in spec for s in sorted(spec[a][1])
              if len(s) <= NAME_TOKENS]
    explained = [_explained(v, others, text) for v in values]
    if all(explained):
        return EXPLAINED + "; ".join(dict.fromkeys(explained))
    if max(v["confidence"] for v in values) < min_conflict_confidence:
        return f"{NOT_SURE}{min_conflict_confidence:g}"
    return ""


def judge(record: dict, product: Product, text: str, taggable: list[str],
          min_conflict_confidence: float = MIN_CONFLICT_CONFIDENCE) -> tuple[list[Verdict], Counter]:
    """The verdicts of one extracted product, and its specified attributes that the head cannot tag."""
    found: dict[str, list[dict]] = defaultdict(list)
    for value in record["values"]:
        found[value["attribute"]].append(value)
    spec = specified(product)
    verdicts = []
    for attr in sorted(taggable):  # a value of another attribute (one fold's head of a cross-fit) is not judged
        raw, items = spec.get(attr, ([], set()))
        cls = classify({value_tokens(v["value"]) for v in found[attr]} - {()}, items)
        if cls is None:
            continue
        why = unconfirmed_why(found[attr], attr, spec, taggable, text, min_conflict_confidence) if (
            cls == "conflicts") else ""
        cls = "unconfirmed" if why else cls
        verdicts.append(Verdict(record["id"], record["vertical"], attr, cls, tuple(found[attr]), tuple(raw), why))
    return verdicts, Counter(attr for attr in spec if attr not in taggable)


@dataclass(frozen=True)
class Described:
    """A judged product as the catalog rules read it: the text extract tagged, its case-folded tokens, whose wording
    it is (the brand; where the product names none, the first word of its name, where catalogs such as the Flipkart
    sample put the brand; the text itself where it has no name) and its specified values (as classify compares
    them) per attribute."""

    text: str
    tokens: tuple[str, ...]
    source: str
    spec: dict[str, set[tuple[str, ...]]]

    @classmethod
    def of(cls, product: Product, text: str) -> "Described":
        """The product with the text extract tagged."""
        spec = specified(product)
        brand = " ".join(value_tokens(product.brand or ", ".join(spec.get("brand", ([], set()))[0])))
        name = value_tokens(product.name)
        source = f"brand:{brand}" if brand else f"name:{name[0]}" if name else f"text:{text_key(text)}"
        return cls(text, value_tokens(text), source, {a: {_normal(s) for s in items} for a, (_, items) in spec.items()})

    @functools.cached_property
    def key(self) -> str:
        """The text's copy key (prepare.text_key): copies of one description share it."""
        return text_key(self.text)

    @functools.cached_property
    def words(self) -> tuple[str, ...]:
        """The tokens' `_words`, as `_names` reads a text."""
        return _words(self.tokens)

    @functools.cached_property
    def word_set(self) -> frozenset[str]:
        """The tokens and words as a set, for a quick look before `_names`."""
        return frozenset(self.tokens) | frozenset(self.words)


def _holds(spec: set[tuple[str, ...]], value: tuple[str, ...]) -> bool:
    """Whether a specification (its normalised values) holds a description value, at least partially."""
    v = _normal(value)
    return any(_inside(v, s, same_word) or _inside(s, v, same_word) for s in spec)


def _one_of(spec: set[tuple[str, ...]], value: tuple[str, ...]) -> bool:
    """Whether a specification (its normalised values) has this normalised value, word for word (`same_word`)."""
    return any(len(s) == len(value) and all(map(same_word, s, value)) for s in spec)


def catalog_why(verdict: Verdict, own: Described, others: Iterable[Described]) -> str:
    """Why the rest of the vertical says a conflict is not the seller's error ("" when it does not). Evidence counts by
    seller (`Described.source`: a brand's products are one source, an unbranded product's its name's first word,
    copies of this text none), so that one seller's repeated slip or wording is not taken for the catalog's. Other
    descriptions name a value as `_names` finds one in a text; a specification has a value spelt any way
    (`same_word`). First each value the text gives must be explained by one of three readings of them:
      the catalog's wording  at least CATALOG_MIN other sources name the value where their specification holds this
                             product's value and not the text's (denim where the specification says Cotton);
      template copy          the sentence the value is in recurs in other descriptions, some specified with the
                             text's value and some with this product's (a brand's copy about "the women of today" on
                             men's rings): the sentence is written whatever the value is;
      a phrase, not a value  at least CATALOG_MIN other sources name it, and no specification of the attribute in the
                             vertical holds it ("beautiful design" taken for a model name).
    Otherwise both sides must be the vertical's vocabulary: every value of the text, and one of the specification's,
    is the attribute's specified value of at least CATALOG_MIN other sources. A value no other seller specifies is free
    text or another grain (one seller's "Hard Back Case with Smart Cover" against the title's "Back Cover", a woven
    fabric against Polyester), where other words and a contradiction cannot be told apart."""
    attr, spec = verdict.attribute, own.spec.get(verdict.attribute, set())
    values = {value_tokens(d["value"]): text_key(own.text[a:b]) for d in verdict.description
              for a, b in sentences(own.text) if a <= d["start"] < b}
    wording, named, template = defaultdict(set), defaultdict(set), defaultdict(set)
    normal = {v: _normal(v) for v in values}
    first = {v: {v[0], *_pieces(v)[:1]} if v else set() for v in values}  # what `_names` needs in other texts
    vocabulary: dict[tuple[str, ...], set[str]] = defaultdict(set)  # a normalised value: the sources specifying it
    held: set[tuple[str, ...]] = set()
    for other in others:
        theirs = other.spec.get(attr)
        if other.key == own.key or not theirs:
            continue
        if other.source != own.source:
            for v in {*normal.values(), *spec}:
                if _one_of(theirs, v):
                    vocabulary[v].add(other.source)
        same = any(_one_of(theirs, s) for s in spec)  # their specification has this product's value
        for v, sentence in values.items():
            holds = _holds(theirs, v)
            held.update([v] if holds else [])
            if f" {sentence} " in f" {other.key} ":  # the whole sentence: "pink bra." is not in "hot pink bra."
                template[v].update(["text"] if holds else ["spec"] if same else [])
            if other.source != own.source and not first[v].isdisjoint(other.word_set) and _names(
                    v, other.tokens, other.words):
                named[v].add(other.source)
                if same and not holds:
                    wording[v].add(other.source)

    def reading(v: tuple[str, ...]) -> str:
        if len(wording[v]) >= CATALOG_MIN:
            return (f"name the text's value where their specification holds this one, from {len(wording[v])} "
                    "sellers (the catalog's wording)")
        if template[v] == {"text", "spec"}:
            return "repeat the value's sentence under either value (template copy)"
        if len(named[v]) >= CATALOG_MIN and v not in held:
            return f"use the text's value and no specification of the vertical has it (a phrase, not a {attr})"
        return ""

    readings = [reading(v) for v in values]
    if values and all(readings):
        return CATALOG + "; ".join(dict.fromkeys(readings))
    outside = [f"the text's {' '.join(v)!r}" for v in values if len(vocabulary[normal[v]]) < CATALOG_MIN]
    if not any(len(vocabulary[s]) >= CATALOG_MIN for s in spec):
        outside.append("the specification's value")
    return (f"{FREE_TEXT}{' and '.join(outside)} (fewer than {CATALOG_MIN} other sellers specify it as the "
            f"{attr})") if outside else ""


def explain_by_catalog(verdicts: list[Verdict], described: dict[str, dict[str, Described]]) -> list[Verdict]:
    """The verdicts with each conflict that the rest of its vertical explains (`catalog_why`) made
    unconfirmed; `described`: per vertical, per product id, every judged product."""
    def judged(v: Verdict) -> Verdict:
        why = catalog_why(v, described[v.vertical][v.id], described[v.vertical].values()) if (
            v.cls == "conflicts") else ""
        return replace(v, cls="unconfirmed", why=why) if why else v

    return [judged(v) for v in verdicts]


def _is_value(v: object) -> bool:
    """Whether `v` is one of extract's value records."""
    return (isinstance(v, dict) and isinstance(v.get("attribute"), str) and isinstance(v.get("value"), str)
            and isinstance(v.get("start"), int) and isinstance(v.get("end"), int)
            and isinstance(v.get("confidence"), (int, float)))


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """(line, record) of an extract output; InputError naming the line of a damaged one."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror})", path) from None
    with f:
        for lineno, line in enumerate(f, 1):
            try:
                record = json.loads(line.decode("utf-8"))
                if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not isinstance(
                        record.get("vertical"), str) or not isinstance(record.get("values"), list):
                    raise ValueError("not an extract record (id, vertical, values)")
                if not all(map(_is_value, record["values"])):
                    raise ValueError("a value is not an extract value (attribute, value, start, end, confidence)")
            except (ValueError, UnicodeDecodeError) as e:
                raise InputError(f"damaged extract record ({e})", path, lineno) from None
            yield lineno, record


def is_summary(summary: object) -> bool:
    """Whether `summary` has the shape of extract's summary, in the fields audit reads."""
    def counts(d: object) -> bool:
        return isinstance(d, dict) and all(isinstance(k, str) and isinstance(n, int) for k, n in d.items())

    return (isinstance(summary, dict) and set(SUMMARY_KEYS) <= set(summary)
            and isinstance(summary["tagged"], int) and isinstance(summary["skipped"], int)
            and isinstance(summary["keep_spec_block"], bool) and counts(summary["tagged_per_vertical"])
            and isinstance(summary["attributes"], dict)
            and all(isinstance(a, list) and all(isinstance(x, str) for x in a) for a in summary["attributes"].values())
            and (summary.get("trained_on") is None or isinstance(summary["trained_on"], list)
                 and all(isinstance(i, str) for i in summary["trained_on"]))
            and (summary.get("confidence") is None or isinstance(summary["confidence"], dict)))


def check_catalog(extractions: Path, summary: dict, catalog: str | Path) -> None:
    """InputError unless the catalog's SHA-256 is the one extract recorded for the catalog it read (in the
    summary; in the progress file for summaries written before they held it); a note when neither has it."""
    settings = summary.get("settings")
    progress = sidecar(extractions, PROGRESS_SUFFIX)
    if settings is None and progress.is_file():
        state = read_json(progress)
        settings = state.get("settings") if isinstance(state, dict) else None
    # an older extract recorded none, or (as "catalog") a fingerprint of another hash than files.sha256
    recorded = settings.get("catalog_sha256") if isinstance(settings, dict) else None
    if recorded is None:
        logging.warning("%s records no SHA-256 of the catalog it was extracted from that this audit can check (an "
                        "older extract wrote it): not checked that it is %s", extractions, catalog)
    elif sha256(catalog) != recorded:
        raise InputError(f"is not the catalog {extractions} was extracted from (another SHA-256 than extract "
                         "recorded): pass that catalog, or extract this one into another --out", catalog)


def audit(extractions: str | Path, catalog: str | Path, min_conflict_confidence: float = MIN_CONFLICT_CONFIDENCE
          ) -> Audit:
    """Verdicts for every extracted product; InputError when the extraction is unfinished or was not made
    from this catalog."""
    if not 0.0 <= min_conflict_confidence <= 1.0:
        raise InputError(f"--min_conflict_confidence={min_conflict_confidence}: must be in [0, 1]")
    extractions = Path(extractions)
    summary_path = sidecar(extractions, SUMMARY_SUFFIX)
    if not summary_path.is_file():
        raise InputError(f"no {summary_path.name}: the extraction has not finished; run extract again to complete "
                         "it", extractions)
    summary = read_json(summary_path)
    if not is_summary(summary):
        raise InputError("not a summary of extract (or a damaged one): run extract again into a new --out",
                         summary_path)
    boilerplate = summary.get("boilerplate", [])  # absent from summaries written before extract cut it
    if not isinstance(boilerplate, list) or not all(isinstance(b, str) for b in boilerplate):
        raise InputError("not a summary of extract (boilerplate is not a list of sentences)", summary_path)
    boilerplate = frozenset(boilerplate)
    with status(f"reading {catalog}"):
        products = {p.id: p for p in read_catalog(catalog).products}
        check_catalog(extractions, summary, catalog)
    verdicts: list[Verdict] = []
    not_taggable: Counter = Counter()
    texts: dict[str, str] = {}
    described: dict[str, dict[str, Described]] = defaultdict(dict)  # per vertical, per product id
    count = 0
    for lineno, record in _records(extractions):
        count += 1
        product = products.get(record["id"])
        if product is None:
            raise InputError(f"product {record['id']!r} is not in {catalog}: were the extractions made from this "
                             "catalog?", extractions, lineno)
        taggable = summary["attributes"].get(record["vertical"])
        if taggable is None:
            raise InputError(f"vertical {record['vertical']!r} is not in {summary_path.name}", extractions, lineno)
        text = description_text(product, summary["keep_spec_block"], boilerplate)
        for v in record["values"]:
            if text[v["start"]:v["end"]] != v["value"]:
                raise InputError(f"value {v['value']!r} is not at [{v['start']}, {v['end']}) of product "
                                 f"{record['id']}'s text: were the extractions made from this catalog?",
                                 extractions, lineno)
        found, missing = judge(record, product, text, taggable, min_conflict_confidence)
        verdicts += found
        not_taggable.update({(record["vertical"], a): n for a, n in missing.items()})
        described[record["vertical"]][record["id"]] = Described.of(product, text)
        if found:
            texts[record["id"]] = text
    if count != summary["tagged"]:
        raise InputError(f"holds {count} records but {summary_path.name} says {summary['tagged']} products were "
                         "tagged", extractions)
    return Audit(explain_by_catalog(verdicts, described), summary, not_taggable, texts, min_conflict_confidence)


def _class_counts(verdicts: list[Verdict]) -> dict[str, int]:
    got = Counter(v.cls for v in verdicts)
    return {c: got[c] for c in CLASSES}


def seen_ids(summary: dict) -> set[str] | None:
    """The judged products that the model trained on, as extract recorded them (empty when they were held out;
    None when the extraction does not say)."""
    if summary.get("held_out"):
        return set()
    trained = summary.get("trained_on")
    return set(trained) if isinstance(trained, list) else None


def counts(result: Audit) -> dict:
    """counts.json: the classes in total, for held-out and seen products (when the extraction says which the model
    trained on), per vertical, per attribute and per vertical and attribute."""
    verdicts, summary = result.verdicts, result.summary
    by_vertical: dict[str, list[Verdict]] = defaultdict(list)
    by_attribute: dict[str, list[Verdict]] = defaultdict(list)
    by_both: dict[str, dict[str, list[Verdict]]] = defaultdict(lambda: defaultdict(list))
    for v in verdicts:
        by_vertical[v.vertical].append(v)
        by_attribute[v.attribute].append(v)
        by_both[v.vertical][v.attribute].append(v)
    not_taggable: dict[str, dict[str, int]] = defaultdict(dict)
    for (vertical, attr), n in sorted(result.not_taggable.items()):
        not_taggable[vertical][attr] = n
    seen = seen_ids(summary)
    by_training = None if seen is None else {
        "held_out": _class_counts([v for v in verdicts if v.id not in seen]),
        "seen": _class_counts([v for v in verdicts if v.id in seen])}
    return {
        "classes": list(CLASSES),
        "min_conflict_confidence": result.min_conflict_confidence,
        "unconfirmed_why": dict(Counter(why_kind(v.why) for v in verdicts if v.cls == "unconfirmed")),
        "products": summary["tagged"],
        "products_per_vertical": summary["tagged_per_vertical"],
        "total": _class_counts(verdicts),
        "by_training": by_training,
        "per_vertical": {v: _class_counts(by_vertical[v]) for v in summary["tagged_per_vertical"]},
        "per_attribute": {a: _class_counts(by_attribute[a]) for a in sorted(by_attribute)},
        "per_vertical_attribute": {v: {a: _class_counts(vs) for a, vs in sorted(attrs.items())}
                                   for v, attrs in by_both.items()},
        "not_taggable": dict(not_taggable),
    }


def sentence_of(text: str, start: int, end: int) -> str:
    """The sentences (prepare's) that [start, end) lies in, on one line with the value marked «like this»."""
    spans = [(a, b) for a, b in sentences(text) if a < end and start < b] or [(start, end)]
    a, b = spans[0][0], spans[-1][1]
    return " ".join(f"{text[a:start]}«{text[start:end]}»{text[end:b]}".split())


def verdict_row(v: Verdict, text: str) -> dict:
    """One row of a class's JSONL: the values of both sides and a snippet around the first description value
    (no snippet, offsets or confidence without one)."""
    first = v.description[0] if v.description else None
    surface = list(dict.fromkeys(d["value"] for d in v.description))
    row = {"id": v.id, "vertical": v.vertical, "attribute": v.attribute, "description_value": " | ".join(surface),
           "spec_value": " | ".join(v.spec), "snippet": snippet(text, first["start"], first["end"]) if first else None,
           "sentence": sentence_of(text, first["start"], first["end"]) if first else None,
           "start": first["start"] if first else None, "end": first["end"] if first else None,
           "confidence": max(d["confidence"] for d in v.description) if first else None}
    if v.why:
        row["why"] = v.why
    return row


def ranked_rows(rows: list[dict]) -> list[dict]:
    """Rows by the model's confidence in its value, highest first, then rows without a description value; ties
    by id and attribute."""
    return sorted(rows, key=lambda r: (r["confidence"] is None, -(r["confidence"] or 0.0), r["id"], r["attribute"]))


def confidence_note(summary: dict) -> str:
    """What the extractions' confidences are, from extract's summary: calibrated per vertical, or raw."""
    kinds = summary.get("confidence")
    if not isinstance(kinds, dict):
        return ("extract did not record whether its confidences are calibrated (an older extract): rerun extract "
                "into a new --out to know")
    raw = sorted(v for v, kind in kinds.items() if kind == "raw")
    if not raw:
        return ("confidences are calibrated on each vertical's dev split: the probability that the model's value "
                "is right")
    return (f"confidences of {', '.join(raw)} are raw CRF marginals (the model has no calibration for them; "
            "`python -m mtl_tagger.calibration` makes one), over-confident on small data")


def held_out_note(summary: dict) -> str:
    """Whether the model that tagged the products had trained on them: what a reviewer must know first."""
    if summary.get("held_out"):
        return f"Every product was extracted by a model that did not train on it: {summary['held_out']}."
    seen = seen_ids(summary)
    if seen is None:
        return ("The extraction does not record which products the model trained on: agreement on them measures "
                "the model's memory, not the catalog. `python -m mtl_tagger.crossfit` extracts every product with a "
                "model that did not train on it.")
    return (f"{len(seen)} of the {summary['tagged']} products were in the model's training split: agreement on "
            "them measures the model's memory, not the catalog, so the held-out and seen products are counted "
            "apart below. `python -m mtl_tagger.crossfit` extracts every product with a model that did not train "
            "on it.")


def _shown(values: set[tuple[str, ...]]) -> str:
    return " | ".join(sorted(" ".join(v) for v in values))


def _cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    """A Markdown table; columns of numbers (and percentages) are right-aligned."""
    numeric = [all(isinstance(row[i], (int, float)) or str(row[i]).endswith("%") or row[i] == "–" for row in rows)
               for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _count_row(c: dict[str, int]) -> list[object]:
    agree = c["agrees"] + c["partially_agrees"]
    judged = agree + c["conflicts"]
    return [*(c[k] for k in CLASSES), f"{100 * agree / judged:.0f}%" if judged else "–"]


def report(result: Audit, table: dict, rows: list[dict], extractions: str | Path, catalog: str | Path) -> str:
    """report.md: totals, per vertical, per attribute, the conflicts the model is most sure of, then the most
    frequent conflicts with examples (`rows`: the conflict rows, ranked)."""
    summary = result.summary
    header = [*(CLASS_NAMES[c] for c in CLASSES), "agreement ((agrees + partially) / (those + conflicts))"]
    total = table["total"]
    pairs = sum(total.values())
    lines = [
        "# Audit: product descriptions against the seller's specifications", "",
        f"Extractions `{extractions}` (model `{summary['model_dir']}`, {summary['tagged']} products of "
        f"{len(summary['tagged_per_vertical'])} verticals, min confidence {summary['min_confidence']}); "
        f"catalog `{catalog}`. Not extracted: {summary['skipped']} products of no vertical or of a vertical the "
        "model has no head for.", "",
        "Each (product, attribute) that the vertical's head can tag gets one class: **agrees** (the description "
        "and the specification share a value, compared word for word, case-folded, punctuation only separating "
        "words; a list specification \"A, B\" holds A and B; `&` is `and`), **partially agrees** (a value of one "
        "side lies inside one of the other: slim / slim fit, Sterling Silver / Silver, or a value the model cut "
        "short or ran on; the same word spelt another way or in the plural: Plazo / Palazzo, Car / Cars; unit "
        "words that measure no number left out: Free Size / Free inch; colours against a multicolour specification), "
        "**conflicts** (both have values, none equal or inside the other, the text does not name the "
        "specification value too, the model's values are not another attribute's value of the product or pieces "
        "of a longer number, the vertical's other descriptions do not explain them (the catalog's wording, "
        "template copy, a phrase that is no value), both values are the vertical's vocabulary (other sellers "
        "specify the attribute as each), and the model's confidence in its value is at least "
        f"{result.min_conflict_confidence:g}), **unconfirmed** (such a disagreement that fails one of those: most "
        "likely the model's error or the catalog's way of saying the same thing), **only in description** (no real "
        "specification value: an enrichment), **only in specification** (the model found no value in the text). "
        "Each class's rows are in `<class>.jsonl` beside this report. See the module docstring of "
        "`mtl_tagger.audit`.", "",
        "## Totals", "",
        held_out_note(summary), "",
        *_table(["pairs", *header], [[pairs, *_count_row(total)]]), "",
        *(_table(["products", "pairs", *header], [[name.replace("_", " "), sum(c.values()), *_count_row(c)]
                                                  for name, c in table["by_training"].items() if sum(c.values())])
          + [""] if table["by_training"] else []),
        f"Unconfirmed: {table['total']['unconfirmed']}: "
        + "; ".join(f"{n} {WHY_KINDS[k]}" for k, n in sorted(table["unconfirmed_why"].items())) + ".",
        f"Specified attributes the heads cannot tag (not judged): "
        f"{sum(sum(a.values()) for a in table['not_taggable'].values())}.", "",
        "## Per vertical", "",
        *_table(["vertical", "products", *header],
                [[_cell(v), table["products_per_vertical"][v], *_count_row(c)]
                 for v, c in table["per_vertical"].items()]),
        "", "## Per attribute (all verticals)", "",
        *_table(["attribute", *header],
                [[_cell(a), *_count_row(c)] for a, c in
                 sorted(table["per_attribute"].items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))]),
        "", f"## The {TOP_CONFLICTS} conflicts the model is most sure of", "",
        f"conflicts.jsonl lists all {len(rows)} in this order; {confidence_note(summary)}.", "",
        *_table(["#", "confidence", "vertical", "attribute", "description says", "specification says", "id",
                 "snippet"],
                [[n, f"{r['confidence']:.3f}", _cell(r["vertical"]), _cell(r["attribute"]),
                  _cell(r["description_value"]), _cell(r["spec_value"]), f"`{r['id']}`", _cell(r["snippet"])]
                 for n, r in enumerate(rows[:TOP_CONFLICTS], 1)]),
        "", f"## The {TOP_CONFLICTS} most frequent conflicts", "",
        "Grouped by vertical, attribute and the normalised values on both sides; the example is the first product.",
        "",
    ]
    snippets = {(r["id"], r["attribute"]): r["snippet"] for r in rows}
    groups: dict[tuple, list[int]] = defaultdict(list)
    conflicts = [v for v in result.verdicts if v.cls == "conflicts"]
    for i, v in enumerate(conflicts):
        description = {value_tokens(d["value"]) for d in v.description} - {()}
        spec = {value_tokens(s) for raw in v.spec for s in value_variants(raw)} - {()}
        groups[(v.vertical, v.attribute, _shown(description), _shown(spec))].append(i)
    ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:TOP_CONFLICTS]
    lines += _table(["#", "vertical", "attribute", "description says", "specification says", "products",
                     "ids", "example snippet"],
                    [[n, _cell(vertical), _cell(attr), _cell(d), _cell(s), len(idx),
                      ", ".join(f"`{conflicts[i].id}`" for i in idx[:3]) + (" …" if len(idx) > 3 else ""),
                      _cell(snippets[conflicts[idx[0]].id, conflicts[idx[0]].attribute])]
                     for n, ((vertical, attr, d, s), idx) in enumerate(ranked, 1)])
    return "\n".join(lines) + "\n"


def write_audit(extractions: str | Path, catalog: str | Path, out: str | Path,
                min_conflict_confidence: float = MIN_CONFLICT_CONFIDENCE) -> dict:
    """Audit and write DIR/counts.json, DIR/<class>.jsonl and DIR/report.md; returns the counts."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("is not a directory", out)
    result = audit(extractions, catalog, min_conflict_confidence)
    table = counts(result)
    rows = {c: ranked_rows([verdict_row(v, result.texts[v.id]) for v in result.verdicts if v.cls == c])
            for c in CLASSES}
    lock = dir_lock(out)
    try:
        (out / REPORT).unlink(missing_ok=True)  # written last: a DIR without it holds an unfinished audit
        write_json_atomic(out / "counts.json", table)
        for c in CLASSES:
            write_text_atomic(out / f"{c}.jsonl", "".join(json_line(r) for r in rows[c]))
        write_text_atomic(out / REPORT, report(result, table, rows["conflicts"], extractions, catalog))
    finally:
        lock.release()
    return table


def dir_lock(out: Path) -> FileLock:
    """The lock on DIR that one audit holds while it writes there, so that DIR holds the files of one audit."""
    return FileLock(out / LOCK, out, "audit", "directory", "--out")


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined when run as a program, so importing this module next to other CLIs is safe)."""
    flags.DEFINE_string("extractions", None, "extract's OUT.jsonl (its OUT.jsonl.summary.json beside it).")
    flags.DEFINE_string("catalog", None, "The catalog extract was run on.")
    flags.DEFINE_string("out", None, "Directory for counts.json, <class>.jsonl and report.md.")
    flags.DEFINE_float("min_conflict_confidence", MIN_CONFLICT_CONFIDENCE, "Claim a disagreement as a conflict only "
                       "when the model's (calibrated) confidence in its value is at least this; below, unconfirmed.")


def main(argv: list[str]) -> None:
    """CLI: audit and print the totals."""
    cli.check_args(argv, "extractions", "catalog", "out")
    check_input_file(FLAGS.catalog, "--catalog", "catalog file")
    table = write_audit(FLAGS.extractions, FLAGS.catalog, FLAGS.out, FLAGS.min_conflict_confidence)
    print(", ".join(f"{CLASS_NAMES[c]} {n}" for c, n in table["total"].items()) + f": {Path(FLAGS.out) / REPORT}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
