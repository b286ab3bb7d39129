"""audit: the four classes under prepare's value normalisation, lists and placeholders, the output files, and
extractions that do not belong to the catalog (by their records, or by the catalog's SHA-256 extract recorded);
one audit at a time writes into a DIR."""
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import reading_line, run_cli
from test_bad_input import assert_one_error_line
from test_catalog import FIXTURES

from mtl_tagger.audit import (
    CATALOG_MIN,
    CLASSES,
    FREE_TEXT,
    LOCK,
    NAMES_BOTH,
    Described,
    Verdict,
    audit,
    catalog_why,
    classify,
    dir_lock,
    judge,
    sentence_of,
    specified,
    write_audit,
)
from mtl_tagger.catalog import Product, normalise_key
from mtl_tagger.errors import InputError
from mtl_tagger.extract import PROGRESS_SUFFIX, SUMMARY_SUFFIX, sidecar
from mtl_tagger.files import json_line, sha256

TEXT_A = "Voylla Gold Plated brass necklace for Girls, in silver. Specifications of Voylla Necklace Color Gold"
PRODUCTS = [
    {"uniq_id": "a", "product_name": "Voylla Necklace", "category_path": ["Jewellery", "Necklaces"],
     "brand": "Voylla", "description": TEXT_A,
     "specifications": [{"key": "Color", "value": "Gold"}, {"key": "Ideal For", "value": "Women, Girls"},
                        {"key": "Base Material", "value": "NA"}, {"key": "Plating", "value": "Gold"},
                        {"key": "Model Number", "value": "VN-1"}, {"value": "no key"}]},
    {"uniq_id": "b", "product_name": "Sukkhi Necklace", "category_path": ["Jewellery", "Necklaces"],
     "brand": "", "description": "Sukkhi rose  gold and white necklace",
     "specifications": [{"key": "Brand", "value": "Sukkhi"}, {"key": "Color", "value": "Rose Gold"},
                        {"key": "color", "value": "Pink"}]},
    {"uniq_id": "c", "product_name": "Top", "category_path": ["Clothing", "Tops"], "brand": "",
     "description": "A red top", "specifications": [{"key": "Color", "value": "Red"}]},
]
ATTRIBUTES = {"Necklace": ["base_material", "brand", "color", "ideal_for", "plating"]}


def value(text: str, attribute: str, surface: str, nth: int = 0, confidence: float = 0.9) -> dict:
    """An extract value record for the `nth` occurrence of `surface` in `text`."""
    start = -1
    for _ in range(nth + 1):
        start = text.index(surface, start + 1)
    return {"attribute": attribute, "value": surface, "start": start, "end": start + len(surface),
            "confidence": confidence}


def write_extraction(out: Path, records: list[dict], catalog: Path | None = None) -> Path:
    """OUT.jsonl and the summary beside it, as extract writes them (with the SHA-256 of `catalog`; without one,
    as extract wrote them before it recorded it)."""
    out.write_text("".join(json_line(r) for r in records), encoding="utf-8")
    tagged = {v: sum(r["vertical"] == v for r in records) for v in ATTRIBUTES}
    summary = {"catalog": "c", "model_dir": "m", "keep_spec_block": False, "min_confidence": 0.0,
               "products_read": 3, "unreadable_records": 0, "tagged": len(records),
               "tagged_per_vertical": tagged, "values": sum(len(r["values"]) for r in records),
               "values_per_vertical": {}, "skipped": 1, "skipped_per_vertical": {}, "skipped_no_vertical": 1,
               "attributes": ATTRIBUTES}
    if catalog is not None:
        summary["settings"] = {"catalog_sha256": sha256(catalog)}
    sidecar(out, SUMMARY_SUFFIX).write_text(json.dumps(summary), encoding="utf-8")
    return out


def write_job(root: Path, records: list[dict]) -> tuple[Path, Path]:
    """PRODUCTS as a catalog, and an extraction of it."""
    catalog = root / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(p) + "\n" for p in PRODUCTS), encoding="utf-8")
    return catalog, write_extraction(root / "out.jsonl", records, catalog)


def records() -> list[dict]:
    a = TEXT_A[:TEXT_A.index("Specifications of")]
    b = PRODUCTS[1]["description"]
    return [
        {"id": "a", "vertical": "Necklace", "values": [
            value(a, "brand", "Voylla"), value(a, "color", "silver"), value(a, "ideal_for", "Girls"),
            value(a, "base_material", "brass", confidence=0.6)]},
        {"id": "b", "vertical": "Necklace", "values": [
            value(b, "color", "rose  gold"), value(b, "color", "white")]},
    ]


@pytest.mark.parametrize("description, spec, want", [
    ({("gold",)}, {("gold",)}, "agrees"),
    ({("gold",), ("white",)}, {("gold",)}, "agrees"),
    ({("girls",)}, {("women",), ("girls",)}, "agrees"),
    ({("silver",)}, {("gold",)}, "conflicts"),
    ({("gold",)}, {("yellow",)}, "conflicts"),
    ({("krishna", "pearls", "&", "jewellers")}, {("krishna", "pearls", "and", "jewellers")}, "agrees"),
    ({("yellow", "gold")}, {("gold",)}, "partially_agrees"),  # more specific
    ({("slim",)}, {("slim", "fit")}, "partially_agrees"),  # cut short
    ({("galz4ever", "fine")}, {("galz4ever",)}, "partially_agrees"),  # run on
    ({("baby",), ("boy's",)}, {("baby", "boy's")}, "partially_agrees"),  # split in two
    ({("krishna", "pearls")}, {("krishna", "pearls", "and", "jewellers")}, "partially_agrees"),
    ({("gold", "plated")}, {("plated", "gold")}, "conflicts"),  # token-aligned runs, not bags of words
    ({("pearls", "and")}, {("pearls", "&", "x")}, "partially_agrees"),  # & is and on both sides
    ({("hook",), ("eye", "clasp")}, {("hook-and-eye",)}, "partially_agrees"),  # a hyphenated word is its parts
    ({("plazo",)}, {("palazzo",)}, "partially_agrees"),  # spelt another way: letters left out
    ({("glod",)}, {("gold",)}, "partially_agrees"),  # two letters swapped
    ({("black",)}, {("block",)}, "conflicts"),  # a substitution is another word
    ({("leather",)}, {("leatherette",)}, "conflicts"),  # a longer word is another word
    ({("car",)}, {("cars",)}, "partially_agrees"),  # a word and its plural
    ({("box",)}, {("boxes",)}, "partially_agrees"),
    ({("cap",)}, {("capes",)}, "conflicts"),  # -es only after a sibilant
    ({("glass",)}, {("glasss",)}, "partially_agrees"),  # no plural -s after s, but letters left out
    ({("ca",)}, {("cas",)}, "conflicts"),  # too short to tell
    ({("free", "size")}, {("free", "inch")}, "agrees"),  # unit words that measure no number
    ({("5", "cms")}, {("free", "size")}, "conflicts"),
    ({("2.5", "inch")}, {("2.5", "cm")}, "conflicts"),  # a unit word beside a number counts
    ({("five", "inch")}, {("five", "cm")}, "conflicts"),  # a number word too
    ({("½", "inch")}, {("½", "cm")}, "conflicts"),  # a numeric character too
    ({("size",)}, {("inch",)}, "conflicts"),  # a unit word alone is the value
    ({("red",)}, {("rd",)}, "conflicts"),  # too short to tell a spelling from another word
    ({("nd150", "adsl2", "modem")}, {("nd150", "adsl2", "+", "modem")}, "agrees"),  # punctuation only separates
    ({("tab3", "8.0", '"')}, {("tab3", "8.0", "\\", '"')}, "agrees"),  # the inch sign written \"
    ({("dap", "1320")}, {("n300/dap-1320",)}, "partially_agrees"),
    ({("5", "inch")}, {("6.5", "inch")}, "conflicts"),  # a number's point or slash does not part it
    ({("1",)}, {("1.5",)}, "conflicts"),
    ({("20",)}, {("18/20",)}, "conflicts"),
    ({("yellow",), ("white",)}, {("multicolor",)}, "partially_agrees"),  # colours of a multicolour product
    ({("multicolor",)}, {("gold",)}, "conflicts"),  # the text says several colours, the seller one
    ({("brass",)}, set(), "only_in_description"),
    (set(), {("gold",)}, "only_in_specification"),
    (set(), set(), None),
])
def test_classify(description: set, spec: set, want: str | None) -> None:
    assert classify(description, spec) == want


def test_specified_normalises_keys_splits_lists_pools_and_drops_placeholders() -> None:
    a = Product("a", "n", ("A",), "Voylla", "d", (("Ideal For", "Women, Girls"), ("Base Material", "NA"),
                                                 ("Color", "Rose  GOLD"), ("color", "Pink, NA"), (None, "x")))
    got = specified(a)
    assert got == {"ideal_for": (["Women, Girls"], {("women",), ("girls",)}),
                   "color": (["Rose  GOLD", "Pink, NA"], {("rose", "gold"), ("pink",)}),
                   "brand": (["Voylla"], {("voylla",)})}, "the brand column counts as prepare labels it"


def test_verdicts_per_product_and_attribute(tmp_path: Path) -> None:
    catalog, out = write_job(tmp_path, records())
    result = audit(out, catalog)
    got = {(v.id, v.attribute): v.cls for v in result.verdicts}
    assert got == {
        ("a", "brand"): "agrees",  # the brand column
        ("a", "color"): "unconfirmed",  # silver in the text, Gold in the specification and in the text too
        ("a", "ideal_for"): "agrees",  # one item of the list "Women, Girls"
        ("a", "base_material"): "only_in_description",  # "NA" is no value
        ("a", "plating"): "only_in_specification",
        ("b", "brand"): "only_in_specification",
        ("b", "color"): "agrees",  # "rose  gold" is "Rose Gold"; the extra "white" is not flagged
    }
    unconfirmed = next(v for v in result.verdicts if v.cls == "unconfirmed")
    assert unconfirmed.why == NAMES_BOTH, "'Gold' occurs in 'Gold Plated' before the spec block"
    assert result.not_taggable == {("Necklace", "model_number"): 1}


def test_conflict_flags() -> None:
    text = "Key Features of Malabar Gold and Diamonds Ring for Women"
    ring = Product("r", "n", ("A",), "", text, (("Brand", "Malabar Gold and Diamonds"), ("Ideal For", "Men")))
    record = {"id": "r", "vertical": "Ring", "values": [value(text, "brand", "Malabar"),
                                                          value(text, "ideal_for", "Women")]}
    verdicts, _ = judge(record, ring, text, ["brand", "ideal_for"])
    assert {v.attribute: (v.cls, v.why) for v in verdicts} == {"brand": ("partially_agrees", ""),
                                                               "ideal_for": ("conflicts", "")}
    record["values"][1]["confidence"] = 0.49
    verdicts, _ = judge(record, ring, text, ["brand", "ideal_for"])
    assert verdicts[1].cls == "unconfirmed" and verdicts[1].why == "the model's confidence in its value is below 0.5"
    verdicts, _ = judge(record, ring, text, ["brand", "ideal_for"], min_conflict_confidence=0.4)
    assert verdicts[1].cls == "conflicts"


@pytest.mark.parametrize("text, spec, attr, found, why", [
    ("Gold plated ring", (("Plating", "Gold"), ("Color", "Red")), "color", "Gold",
     "the text's value is the product's plating (another attribute)"),
    ("By Leo n Babes", (("Brand", "Leo n Babes"), ("Ideal For", "Baby Girl's")), "ideal_for", "Babes",
     "the text's value is the product's brand (another attribute)"),
    ("Price Rs 1,499 pack", (("Pack of", "3"),), "pack_of", "1", "the text's value is a piece of a longer number"),
    ("Price Rs 25,213 only", (("Pack of", "3"),), "pack_of", "213", "the text's value is a piece of a longer number"),
    ("Pack of 1, for gifts", (("Pack of", "3"),), "pack_of", "1", ""),  # a number of its own: claimed
    ("Soft Comfy.Cotton fabric, nylon straps", (("Fabric", "Cotton"),), "fabric", "nylon",
     NAMES_BOTH),  # inside a token the tokenizer did not split
    ("Soft Comfy.Cottony fabric, nylon straps", (("Fabric", "Cotton"),), "fabric", "nylon", ""),
    ("Women's t-shirt, size M, 2 m of 1.5 m cloth", (("Size", "S"), ("Length", "1")), "size", "M",
     ""),  # a short value names itself only as a whole token: not the s of Women's, nor the 1 of 1.5
    ("Women's t-shirt, size M, 2 m of 1.5 m cloth", (("Size", "S"), ("Length", "1")), "length", "2", ""),
    ("Diameter 5 Cms", (("Diameter", "Free Size"), ("Other Features", "Size:- Diameter: 5 Cms Warranty:- 5 Months")),
     "diameter", "5 Cms", ""),  # free text of another attribute is not a value the model could take
])
def test_disagreements_explained_otherwise(text: str, spec: tuple, attr: str, found: str, why: str) -> None:
    product = Product("p", "n", ("A",), "", text, spec)
    record = {"id": "p", "vertical": "V", "values": [value(text, attr, found, confidence=0.9)]}
    verdicts, _ = judge(record, product, text, [normalise_key(k) for k, _ in spec])
    verdict = next(v for v in verdicts if v.attribute == attr)
    assert (verdict.cls, verdict.why) == ("unconfirmed" if why else "conflicts", why)


def described(text: str, brand: str = "", **spec: str) -> tuple[Product, Described]:
    """A product with this text (its name too, so that an unbranded one is the source its first word names), brand
    and specifications (keyword: attribute), and how the catalog rules see it."""
    product = Product(text, text, ("A",), brand, text, tuple((k.replace("_", " ").title(), v) for k, v in spec.items()))
    return product, Described.of(product, text)


def conflict(text: str, attribute: str, found: str, spec: str) -> Verdict:
    """A conflict verdict of one value found in `text`."""
    return Verdict(text, "V", attribute, "conflicts", (value(text, attribute, found),), (spec,))


@pytest.mark.parametrize("others, why", [
    ([("Made of denim, soft", "X"), ("A denim fabric jean", "Y")], "the catalog's wording"),  # two brands
    ([("Made of denim, soft", "")], ""),  # one is not enough
    ([("Made of denim, soft", "X"), ("A denim fabric jean", "X")], ""),  # one brand's texts are one source
    ([("Made of denim, soft", ""), ("made of  DENIM, soft", "")], ""),  # copies of one text count once
    ([("Made of denim, soft", ""), ("Made with denim", "")], ""),  # unbranded, one name's first word: one seller
    ([("Made of denim, soft", "X"), ("A denim fabric jean", ""), ("Premium denim jeans", "Z")],
     "the catalog's wording"),  # copies of this text count not at all
])
def test_the_catalogs_wording_is_not_a_conflict(others: list[tuple[str, str]], why: str) -> None:
    text = "Premium denim jeans"
    _, own = described(text, fabric="Cotton")
    rest = [described(t, brand, fabric="Cotton")[1] for t, brand in others]
    got = catalog_why(conflict(text, "fabric", "denim", "Cotton"), own, rest)
    assert (why in got) if why else got.startswith(FREE_TEXT)  # denim: no other brand specifies it
    if why:  # the same texts where the specification holds denim as well: no wording, and denim is a value
        rest = [described(t, brand, fabric="Cotton, Denim")[1] for t, brand in others]
        assert catalog_why(conflict(text, "fabric", "denim", "Cotton"), own, rest) == ""


@pytest.mark.parametrize("first, spelt, why", [
    ("Made of Soft.Denim", "Cottons", "the catalog's wording"),  # words inside tokens; Cotton spelt another way
    ("Made of Softdenim", "Cottons", ""),  # no word denim
    ("Made of Soft.Denim", "Cotton Blend", "a phrase, not a fabric"),  # not a spelling of Cotton: no wording
])
def test_the_catalogs_wording_reads_words_and_spellings(first: str, spelt: str, why: str) -> None:
    """Other descriptions are read as words (punctuation only separates them), and a specification holds this
    product's value when it spells it another way, as classify reads both."""
    text = "Premium denim jeans"
    _, own = described(text, fabric="Cotton")
    rest = [described(first, "X", fabric=spelt)[1], described("A denim-blue jean", "Y", fabric="Cotton")[1]]
    got = catalog_why(conflict(text, "fabric", "denim", "Cotton"), own, rest)
    assert (why in got) if why else got.startswith(FREE_TEXT)


@pytest.mark.parametrize("others, attribute, found, spec, wording", [
    ("Stones in black gold and white", "color", "black gold", "Silver", True),
    ("Stones in black, gold and white", "color", "black gold", "Silver", False),  # not across a comma
    ("Sizes S and XL", "size", "S", "M", True),
    ("Sizes S-M-L", "size", "S", "M", False),  # a short value names itself only as a whole token
])
def test_other_descriptions_name_a_value_as_the_text_does(others: str, attribute: str, found: str, spec: str,
                                                          wording: bool) -> None:
    """Other descriptions name a value as `unconfirmed_why` finds one in the product's own text (`_names`)."""
    text = f"Our {found} pick"
    _, own = described(text, **{attribute: spec})
    rest = [described(f"{maker} {others}", **{attribute: spec})[1] for maker in ("Alpha", "Beta")]
    got = catalog_why(conflict(text, attribute, found, spec), own, rest)
    assert ("the catalog's wording" in got) == wording


@pytest.mark.parametrize("specs, why", [
    (["Ruby Set", "Pearl Line"], "a phrase, not a model_name"),  # named twice, nobody's model name
    (["Ruby Set", "Beautiful Design Pro"], ""),  # a specification holds it: it can be a name
    (["Ruby Set"], ""),  # named once
])
def test_a_phrase_of_the_catalog_is_not_a_value(specs: list[str], why: str) -> None:
    text = "A beautiful design for you"
    _, own = described(text, model_name="Emerald Set")
    rest = [described(f"Maker{i} bangles: a beautiful design", **{"model_name": m})[1] for i, m in enumerate(specs)]
    got = catalog_why(conflict(text, "model_name", "beautiful design", "Emerald Set"), own, rest)
    assert (why in got) if why else got.startswith(FREE_TEXT)  # nobody's model name: not the vocabulary either
    assert CATALOG_MIN == 2
    if why:  # a product whose specification holds it, though its text does not say it: a value after all
        rest.append(described("Bangles, gold", model_name="Beautiful Design")[1])
        assert catalog_why(conflict(text, "model_name", "beautiful design", "Emerald Set"), own, rest
                           ).startswith(FREE_TEXT)


@pytest.mark.parametrize("specs, glued, why", [
    (["Women", "Men"], "", "template copy"),  # the sentence stands under either value: it says nothing of this ring
    (["Women", "Mens"], "", "template copy"),  # this product's value spelt another way
    (["Men", "Men"], "", ""),  # only under this product's value: the brand's repeated claim stands against its specs
    (["Women", "Men"], "Flav", ""),  # "flavour rings speak …": not the sentence, though its characters are there
])
def test_template_copy_is_not_a_conflict(specs: list[str], glued: str, why: str) -> None:
    sentence = "Our rings speak to the women of today."
    text = f"Silver band. {sentence}"
    _, own = described(text, "PC", ideal_for="Men")
    rest = [described(f"Ring {i}. {glued}{sentence}", "PC", ideal_for=s)[1] for i, s in enumerate(specs)]
    got = catalog_why(conflict(text, "ideal_for", "women", "Men"), own, rest)
    assert (why in got) if why else got.startswith(FREE_TEXT)  # Men: this brand's own value only


@pytest.mark.parametrize("specs, why", [
    ([("X", "Denim"), ("Y", "Denim"), ("X", "Cotton"), ("Z", "Cotton, Silk")], ""),  # both the vertical's words
    ([("X", "Denim"), ("X", "Denim"), ("X", "Cotton"), ("Z", "Cotton")], "the text's 'denim'"),  # one brand's
    ([("X", "Denim"), ("Y", "Denim"), ("Q", "Cotton"), ("Z", "Cotton Blend")], "the specification's value"),
    ([("X", "Denim"), ("X", "Cotton")], "the text's 'denim' and the specification's value"),
])
def test_both_values_must_be_the_verticals_vocabulary(specs: list[tuple[str, str]], why: str) -> None:
    """A conflict is claimed only between values that other sellers specify for the attribute: free text or one
    seller's wording against the text cannot tell a contradiction from other words."""
    text = "Premium denim jeans"
    _, own = described(text, "Q", fabric="Cotton")
    rest = [described(f"Jeans {i}", brand, fabric=value)[1] for i, (brand, value) in enumerate(specs)]
    got = catalog_why(conflict(text, "fabric", "denim", "Cotton"), own, rest)
    assert got == (f"{FREE_TEXT}{why} (fewer than 2 other sellers specify it as the fabric)"
                   if why else "")
    copies = [described(text, "", fabric="Denim, Cotton")[1] for _ in range(2)]  # copies of this text: no evidence
    assert catalog_why(conflict(text, "fabric", "denim", "Cotton"), own, copies).startswith(FREE_TEXT)


def test_catalog_rules_run_in_the_audit(tmp_path: Path) -> None:
    """A conflict that the other descriptions of its vertical explain is unconfirmed in the files, counted as such."""
    texts = {"p": "A denim jean", "q": "Soft denim for all", "r": "In denim washed", "s": "A silk jean",
             "t": "A jean", "u": "The jean"}  # t and u specify Silk: a colour of the vertical's vocabulary
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps({"uniq_id": i, "product_name": f"{i} {t}", "category_path": ["J"],
                                           "brand": "", "description": t, "specifications": [
                                               {"key": "Color", "value": "Silk" if i in "tu" else "Cotton"}]})
                               + "\n" for i, t in texts.items()), encoding="utf-8")
    out = write_extraction(tmp_path / "out.jsonl", [
        {"id": i, "vertical": "Necklace", "values": [value(t, "color", t.split()[1])] if i not in "tu" else []}
        for i, t in texts.items()], catalog)
    r = run_cli("audit", f"--extractions={out}", f"--catalog={catalog}", f"--out={tmp_path / 'audit'}")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "audit" / "unconfirmed.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in rows) == ["p", "q", "r"]
    assert all("the catalog's wording" in row["why"] for row in rows)
    assert [json.loads(line)["id"] for line in (tmp_path / "audit" / "conflicts.jsonl").read_text().splitlines()] \
        == ["s"]
    assert json.loads((tmp_path / "audit" / "counts.json").read_text())["unconfirmed_why"] == {"catalog": 3}


def test_output_files(tmp_path: Path) -> None:
    catalog, out = write_job(tmp_path, records())
    r = run_cli("audit", f"--extractions={out}", f"--catalog={catalog}", f"--out={tmp_path / 'audit'}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("agrees 3, partially agrees 0, conflicts 0, unconfirmed 1, only in description 1, "
                               "only in specification 2: ")
    table = json.loads((tmp_path / "audit" / "counts.json").read_text())
    assert table["total"] == {"agrees": 3, "partially_agrees": 0, "conflicts": 0, "unconfirmed": 1,
                              "only_in_description": 1, "only_in_specification": 2}
    assert table["per_vertical"]["Necklace"] == table["total"]
    assert table["per_attribute"]["color"] == {"agrees": 1, "partially_agrees": 0, "conflicts": 0, "unconfirmed": 1,
                                               "only_in_description": 0, "only_in_specification": 0}
    assert table["per_vertical_attribute"]["Necklace"]["plating"]["only_in_specification"] == 1
    assert table["not_taggable"] == {"Necklace": {"model_number": 1}}
    rows = [json.loads(line) for line in (tmp_path / "audit" / "unconfirmed.jsonl").read_text().splitlines()]
    assert rows == [{"id": "a", "vertical": "Necklace", "attribute": "color", "description_value": "silver",
                     "spec_value": "Gold", "snippet": "Voylla Gold Plated brass necklace for Girls, in «silver».",
                     "sentence": "Voylla Gold Plated brass necklace for Girls, in «silver».",
                     "start": 48, "end": 54, "confidence": 0.9, "why": NAMES_BOTH}]
    listed = {c: [json.loads(line) for line in (tmp_path / "audit" / f"{c}.jsonl").read_text().splitlines()]
              for c in CLASSES}
    assert {c: [(row["id"], row["attribute"]) for row in rows] for c, rows in listed.items()} == {
        "agrees": [("a", "brand"), ("a", "ideal_for"), ("b", "color")], "partially_agrees": [], "conflicts": [],
        "unconfirmed": [("a", "color")], "only_in_description": [("a", "base_material")],
        "only_in_specification": [("a", "plating"), ("b", "brand")]}, "ranked by confidence, then id"
    assert listed["only_in_specification"][0] == {
        "id": "a", "vertical": "Necklace", "attribute": "plating", "description_value": "", "spec_value": "Gold",
        "snippet": None, "sentence": None, "start": None, "end": None, "confidence": None}
    assert listed["only_in_description"][0]["snippet"] == "Voylla Gold Plated «brass» necklace for Girls, in silver."
    report = (tmp_path / "audit" / "report.md").read_text()
    for heading in ("## Totals", "## Per vertical", "## Per attribute", "most frequent conflicts"):
        assert heading in report
    assert "Unconfirmed: 1: 1 because the text names the specification value too" in report


def test_sentence_of_a_value() -> None:
    text = "Gold ring. Made of 925  Sterling\nSilver by Voylla. Free size."
    start = text.index("Sterling")
    assert sentence_of(text, start, start + len("Sterling\nSilver")) == "Made of 925 «Sterling Silver» by Voylla."
    assert sentence_of(text, 0, len("Gold ring. Made")) == "«Gold ring. Made» of 925 Sterling", "across sentences"


def test_conflicts_are_ranked_by_confidence(tmp_path: Path) -> None:
    texts = {"p": "A blue necklace", "q": "A green necklace", "r": "A pink necklace", "v": "A chain", "w": "A set"}
    catalog = tmp_path / "catalog.jsonl"  # v and w make the colours the vertical's vocabulary
    catalog.write_text("".join(json.dumps({"uniq_id": i, "product_name": f"{i} {t}", "category_path": ["J"],
                                           "brand": "", "description": t, "specifications": [
                                               {"key": "Color", "value": "Blue, Green, Pink" if i in "vw" else "Red"}]})
                               + "\n" for i, t in texts.items()), encoding="utf-8")
    confidence = {"p": 0.55, "q": 0.97, "r": 0.3}
    out = write_extraction(tmp_path / "out.jsonl", [
        {"id": i, "vertical": "Necklace", "values": [value(t, "color", t.split()[1], confidence=confidence[i])]
         if i in confidence else []} for i, t in texts.items()], catalog)
    summary = json.loads(sidecar(out, SUMMARY_SUFFIX).read_text())
    for kinds, note in ((None, "did not record whether"), ({"Necklace": "raw"}, "of Necklace are raw"),
                        ({"Necklace": "temperature"}, "calibrated on each vertical's dev split")):
        if kinds is not None:
            summary["confidence"] = kinds
            sidecar(out, SUMMARY_SUFFIX).write_text(json.dumps(summary), encoding="utf-8")
        r = run_cli("audit", f"--extractions={out}", f"--catalog={catalog}", f"--out={tmp_path / 'audit'}")
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line) for line in (tmp_path / "audit" / "conflicts.jsonl").read_text().splitlines()]
        assert [(row["id"], row["confidence"]) for row in rows] == [("q", 0.97), ("p", 0.55)]
        report = (tmp_path / "audit" / "report.md").read_text()
        sure = report[report.index("conflicts the model is most sure of"):report.index("most frequent conflicts")]
        assert note in sure
        assert sure.index("| 1 | 0.970 | Necklace | color | green | Red | `q` |") < sure.index(
            "| 2 | 0.550 | Necklace | color | blue | Red | `p` |")
    unconfirmed = (tmp_path / "audit" / "unconfirmed.jsonl").read_text()
    assert json.loads(unconfirmed)["why"] == "the model's confidence in its value is below 0.5"
    r = run_cli("audit", f"--extractions={out}", f"--catalog={catalog}", f"--out={tmp_path / 'audit'}",
                "--min_conflict_confidence=0.6")
    assert r.returncode == 0 and "conflicts 1, unconfirmed 2" in r.stdout, r.stderr


def test_boilerplate_that_extract_cut_is_cut_again(tmp_path: Path) -> None:
    """Offsets point into the text without the boilerplate extract recorded in its summary."""
    products = [dict(PRODUCTS[0], description="Only Genuine Products. " + TEXT_A)]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(p) + "\n" for p in products), encoding="utf-8")
    a = TEXT_A[:TEXT_A.index("Specifications of")]
    out = write_extraction(tmp_path / "out.jsonl", [{"id": "a", "vertical": "Necklace", "values": [
        value(a, "color", "silver")]}], catalog)
    summary = json.loads(sidecar(out, SUMMARY_SUFFIX).read_text())
    with pytest.raises(InputError, match="is not at"):
        audit(out, catalog)
    sidecar(out, SUMMARY_SUFFIX).write_text(json.dumps({**summary, "boilerplate": ["only genuine products."]}))
    assert {(v.attribute, v.cls) for v in audit(out, catalog).verdicts} >= {("color", "unconfirmed")}
    sidecar(out, SUMMARY_SUFFIX).write_text(json.dumps({**summary, "boilerplate": "only genuine products."}))
    with pytest.raises(InputError, match="boilerplate is not a list"):
        audit(out, catalog)


def test_kaggle_csv_catalog(tmp_path: Path) -> None:
    text = "Acme Gold Plated Brass Necklace.\nMade of brass, gold plated."
    out = write_extraction(tmp_path / "out.jsonl", [{"id": "k001", "vertical": "Necklace", "values": [
        value(text, "base_material", "brass"), value(text, "plating", "gold")]}])
    got = {(v.attribute, v.cls) for v in audit(out, FIXTURES / "kaggle.csv").verdicts}
    assert got == {("base_material", "agrees"), ("plating", "agrees"), ("brand", "only_in_specification")}


def test_extractions_of_another_catalog_or_unfinished(tmp_path: Path) -> None:
    catalog, out = write_job(tmp_path, records())
    moved = [dict(r) for r in records()]
    moved[1]["values"] = [{**moved[1]["values"][0], "start": 0}]
    out.write_text("".join(json_line(r) for r in moved))
    with pytest.raises(InputError, match=r"out\.jsonl:2: value 'rose  gold' is not at \[0, 17\)"):
        audit(out, catalog)
    out.write_text(json_line({"id": "zz", "vertical": "Necklace", "values": []}))
    with pytest.raises(InputError, match="out.jsonl:1: product 'zz' is not in"):
        audit(out, catalog)
    out.write_text("")
    with pytest.raises(InputError, match="holds 0 records but"):
        audit(out, catalog)
    sidecar(out, SUMMARY_SUFFIX).unlink()
    r = run_cli("audit", f"--extractions={out}", f"--catalog={catalog}", f"--out={tmp_path / 'audit'}")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith(f"error: {out}: no out.jsonl.summary.json: the extraction has not finished")
    assert not (tmp_path / "audit").exists()


def _audit_cli(out: Path, catalog: Path, audit_dir: Path) -> subprocess.CompletedProcess:
    return run_cli("audit", f"--extractions={out}", f"--catalog={catalog}", f"--out={audit_dir}")


def test_catalog_with_changed_specifications_is_refused(tmp_path: Path) -> None:
    """Same ids, other specifications: not the catalog the extraction read, refused in one line naming it."""
    catalog, out = write_job(tmp_path, records())
    catalog.write_text(catalog.read_text().replace('"Rose Gold"', '"Pink"'), encoding="utf-8")
    r = _audit_cli(out, catalog, tmp_path / "audit")
    assert_one_error_line(r, f"error: {catalog}: is not the catalog {out} was extracted from",
                          "pass that catalog, or extract this one", read=reading_line("audit", catalog))
    assert not (tmp_path / "audit").exists()


def test_older_extractions_are_checked_by_their_progress_file_or_audited_with_a_note(tmp_path: Path) -> None:
    """A summary without the catalog's SHA-256: the progress file's is checked; without that either, or with the
    fingerprint of the hash extract used before files.sha256 (as "catalog"), one note."""
    catalog, out = write_job(tmp_path, records())
    old = write_extraction(out, records())
    sidecar(old, PROGRESS_SUFFIX).write_text(json.dumps({"settings": {"catalog_sha256": "0" * 64}}),
                                             encoding="utf-8")
    with pytest.raises(InputError, match="is not the catalog"):
        audit(old, catalog)
    sidecar(old, PROGRESS_SUFFIX).write_text(json.dumps({"settings": {"catalog_sha256": sha256(catalog)}}))
    assert len(audit(old, catalog).verdicts) == 7
    for older in ({"settings": {"catalog": "0" * 64}}, None):
        if older is None:
            sidecar(old, PROGRESS_SUFFIX).unlink()
        else:
            sidecar(old, PROGRESS_SUFFIX).write_text(json.dumps(older))
        r = _audit_cli(old, catalog, tmp_path / "audit")
        assert r.returncode == 0, r.stderr
        reading, *notes = r.stderr.strip().splitlines()
        assert reading == reading_line("audit", catalog), r.stderr
        assert len(notes) == 1 and "records no SHA-256 of the catalog" in notes[0], r.stderr


def test_a_second_audit_into_one_dir_is_refused(tmp_path: Path) -> None:
    """While one audit writes DIR (here: this test holds its lock), another is refused in one line and DIR keeps
    the first audit's files; the lock file goes with its holder."""
    catalog, out = write_job(tmp_path, records())
    audit_dir = tmp_path / "audit"
    assert _audit_cli(out, catalog, audit_dir).returncode == 0
    before = {p.name: p.read_bytes() for p in audit_dir.iterdir()}
    assert sorted(before) == sorted(["counts.json", "report.md", *(f"{c}.jsonl" for c in CLASSES)])
    write_extraction(out, records()[:1], catalog)
    lock = dir_lock(audit_dir)
    try:
        r = _audit_cli(out, catalog, audit_dir)
        assert_one_error_line(r, f"error: {audit_dir}: another audit command (pid {os.getpid()}) is using this "
                                 "directory", "choose another --out", read=reading_line("audit", catalog))
    finally:
        lock.release()
    assert {p.name: p.read_bytes() for p in audit_dir.iterdir()} == before
    assert _audit_cli(out, catalog, audit_dir).returncode == 0 and not (audit_dir / LOCK).exists()
    assert json.loads((audit_dir / "counts.json").read_text())["products"] == 1


def test_an_interrupted_audit_leaves_no_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """report.md is written last and removed first, so a DIR with one holds one whole audit."""
    catalog, out = write_job(tmp_path, records())
    audit_dir = tmp_path / "audit"
    write_audit(out, catalog, audit_dir)
    assert (audit_dir / "report.md").is_file()

    def crash(path: Path, text: str) -> None:
        if path.name == "conflicts.jsonl":
            raise OSError("disk full")
        path.write_text(text)

    monkeypatch.setattr("mtl_tagger.audit.write_text_atomic", crash)
    with pytest.raises(OSError):
        write_audit(out, catalog, audit_dir)
    assert not (audit_dir / "report.md").exists() and not (audit_dir / LOCK).exists()


def test_seen_and_held_out_products_are_counted_apart(tmp_path: Path) -> None:
    catalog, out = write_job(tmp_path, records())
    assert audit_counts(out, catalog)["by_training"] is None
    report = (tmp_path / "audit" / "report.md").read_text()
    assert "does not record which products the model trained on" in report
    summary = json.loads(sidecar(out, SUMMARY_SUFFIX).read_text())
    sidecar(out, SUMMARY_SUFFIX).write_text(json.dumps({**summary, "trained_on": ["a"]}))
    table = audit_counts(out, catalog)
    assert table["by_training"]["seen"] == {"agrees": 2, "partially_agrees": 0, "conflicts": 0, "unconfirmed": 1,
                                            "only_in_description": 1, "only_in_specification": 1}
    assert table["by_training"]["held_out"]["agrees"] == 1
    report = (tmp_path / "audit" / "report.md").read_text()
    assert "1 of the 2 products were in the model's training split" in report
    assert "| seen | 5 | 2 | 0 | 0 | 1 | 1 | 1 | 100% |" in report


def audit_counts(out: Path, catalog: Path) -> dict:
    """The counts of an audit into out's sibling audit/."""
    return write_audit(out, catalog, out.parent / "audit")


@pytest.mark.parametrize("key, bad", [("attributes", {"Necklace": "brand"}), ("tagged", "2"),
                                      ("tagged_per_vertical", {"Necklace": "x"}), ("trained_on", "a"),
                                      ("trained_on", [{}])])
def test_a_damaged_summary_is_one_error(key: str, bad: object, tmp_path: Path) -> None:
    catalog, out = write_job(tmp_path, records())
    summary = json.loads(sidecar(out, SUMMARY_SUFFIX).read_text())
    summary[key] = bad
    sidecar(out, SUMMARY_SUFFIX).write_text(json.dumps(summary))
    r = _audit_cli(out, catalog, tmp_path / "audit")
    assert_one_error_line(r, f"error: {sidecar(out, SUMMARY_SUFFIX)}: not a summary of extract")
    assert not (tmp_path / "audit").exists()


def test_a_line_that_is_not_utf8_is_one_error(tmp_path: Path) -> None:
    catalog, out = write_job(tmp_path, records())
    lines = out.read_bytes().split(b"\n")
    out.write_bytes(lines[0] + b"\n" + lines[1].replace(b"rose", b"r\xffse") + b"\n")
    r = _audit_cli(out, catalog, tmp_path / "audit")
    assert_one_error_line(r, f"error: {out}:2: damaged extract record", read=reading_line("audit", catalog))
