"""prepare: vertical mapping, spec-block stripping, distant-supervision matcher, stable splits, output and bad input."""
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import reading_line, run_cli
from test_bad_input import assert_one_error_line
from test_catalog import FIXTURES, shared_file

from mtl_tagger.catalog import Product, normalise_key, read_catalog
from mtl_tagger.conll import read_conll
from mtl_tagger.errors import InputError
from mtl_tagger.prepare import (
    DEFAULT_VERTICALS,
    assign_splits,
    bucket_of,
    build_dataset,
    distant_labels,
    find_boilerplate,
    is_placeholder,
    label_specifications,
    load_verticals,
    prepare,
    sentences,
    split_of,
    strip_boilerplate,
    strip_spec_block,
    vertical_of,
)
from mtl_tagger.text import tokenize

MAPPING = FIXTURES / "verticals.json"


def tags_of(text: str, specs: list[tuple[str | None, str]]) -> list[tuple[str, str]]:
    """(token, tag) pairs that distant_labels gives `text`."""
    tokens = [t for t, _, _ in tokenize(text)]
    return list(zip(tokens, distant_labels(tokens, specs)[0]))


def product(pid: str = "p", path: tuple[str, ...] = ("A",), name: str = "x", description: str = "d",
            specs: tuple[tuple[str | None, str], ...] = (), brand: str = "") -> Product:
    return Product(pid, name, path, brand, description, specs)


@pytest.mark.parametrize("value", ["NA", "na", "N/A", "NA g", "NA K", "NA ct", "NA - NA month", "0", "0 mm",
                                   "0.0 g", "No", "NO", "Yes", "None", "-", "...", " "])
def test_placeholders(value: str) -> None:
    assert is_placeholder(value)


@pytest.mark.parametrize("value", ["Nano", "Navy", "0.25 carat", "22 K", "2", "Yellow Gold", "No Warranty", "Noir"])
def test_real_values(value: str) -> None:
    assert not is_placeholder(value)


def test_normalise_key() -> None:
    assert normalise_key("Chain/Necklace Length") == "chain_necklace_length"
    assert normalise_key("Ideal For") == "ideal_for"
    assert normalise_key(" Precious/Artificial  Jewellery ") == "precious_artificial_jewellery"
    assert normalise_key("color") == normalise_key("Color") == "color"


def test_every_token_aligned_case_insensitive_occurrence() -> None:
    got = tags_of("GOLD ring, golden gold-plated Gold.", [("Color", "gold")])
    assert got == [("GOLD", "B-color"), ("ring", "O"), (",", "O"), ("golden", "O"), ("gold-plated", "O"),
                   ("Gold", "B-color"), (".", "O")]


def test_multi_token_values_get_b_then_i() -> None:
    got = tags_of("A Rose Gold Plated ring", [("Plating", "rose gold plated")])
    assert [t for _, t in got] == ["O", "B-plating", "I-plating", "I-plating", "O"]


def test_list_values_tag_each_part() -> None:
    got = tags_of("For Women, Girls and women", [("Ideal For", "Girls, Women")])
    assert [t for _, t in got] == ["O", "B-ideal_for", "O", "B-ideal_for", "O", "B-ideal_for"]


def test_longest_match_wins() -> None:
    got = tags_of("Yellow Gold ring in gold", [("Color", "Gold"), ("Gold Color", "Yellow Gold")])
    assert [t for _, t in got] == ["B-gold_color", "I-gold_color", "O", "O", "B-color"]


def test_equal_length_overlap_first_start_wins() -> None:
    got = tags_of("a b c", [("Y", "b c"), ("X", "a b")])
    assert [t for _, t in got] == ["B-x", "I-x", "O"]


def test_same_span_first_listed_specification_wins() -> None:
    got = tags_of("5 Dhaatu ring", [("Model Name", "5 Dhaatu"), ("Metal Purity", "5 Dhaatu")])
    assert [t for _, t in got] == ["B-model_name", "I-model_name", "O"]


def test_keyless_and_placeholder_specifications_tag_nothing() -> None:
    got = tags_of("No NA 0 mm Machine Wash", [(None, "Machine Wash"), ("Weight", "0 mm"), ("Color", "NA"),
                                              ("Belt", "No"), ("", "Machine")])
    assert {t for _, t in got} == {"O"}


def test_spans_report_key_value_and_token_span() -> None:
    tokens = [t for t, _, _ in tokenize("Acme brass, Acme")]
    _, spans = distant_labels(tokens, [("Brand", "Acme"), ("Base Material", "Brass")])
    assert [(s.key, s.value, s.attr, s.start, s.end) for s in spans] == [
        ("Brand", "Acme", "brand", 0, 1), ("Base Material", "Brass", "base_material", 1, 2),
        ("Brand", "Acme", "brand", 3, 4)]


def test_brand_column_is_a_specification_only_when_none_is() -> None:
    assert label_specifications(product(brand="Acme", specs=(("Fit", "Slim"),))) == (("Fit", "Slim"),
                                                                                    ("Brand", "Acme"))
    assert label_specifications(product(brand="Acme", specs=(("Brand", "Acme Co"),))) == (("Brand", "Acme Co"),)


def test_strip_spec_block() -> None:
    assert strip_spec_block("Navy, Red,Specifications of X Details Fabric Cotton") == "Navy, Red,"
    assert strip_spec_block("Specifications of X General") == ""
    assert strip_spec_block("No block here") == "No block here"


def test_split_is_a_fixed_function_of_the_id() -> None:
    """Hard-coded: the same on every machine, Python version and run (SHA-256, not hash())."""
    expected = {"c2d766ca982eca8304150849735ffef9": "train", "0973b37acd0c664e3de26e97e5571454": "test",
                "c002": "dev", "n002": "test", "a": "train"}
    assert {i: split_of(i) for i in expected} == expected
    counts = Counter(split_of(f"id{i}") for i in range(20000))
    assert abs(counts["train"] / 20000 - 0.7) < 0.02 and abs(counts["dev"] / 20000 - 0.1) < 0.02


def test_tiny_verticals_still_get_dev_and_test() -> None:
    ids = ["a", "b", "c", "d", "e"]
    assert {split_of(i) for i in ids} == {"train"}
    by_bucket = sorted(ids, key=bucket_of)
    assert assign_splits(ids) == {**{i: "train" for i in by_bucket[:3]}, by_bucket[4]: "dev", by_bucket[3]: "test"}
    assert assign_splits(["a"]) == {"a": "train"}
    low, high = sorted(["a", "b"], key=bucket_of)
    assert assign_splits(["a", "b"]) == {low: "train", high: "dev"}


def test_split_ignores_order_and_keeps_copies_together() -> None:
    products = read_catalog(FIXTURES / "synthetic_catalog.jsonl").products
    verticals = load_verticals(MAPPING)
    first, _, _ = build_dataset(products, verticals)
    second, _, _ = build_dataset(products[::-1], verticals)
    assert {i.product_id: i.split for i in first} == {i.product_id: i.split for i in second}
    split = {i.product_id: i.split for i in first}
    assert split["n004"] == split["n005"]  # same text up to case and spacing: one group


def test_mapping_rules_first_vertical_wins_and_name_rules() -> None:
    verticals = load_verticals(MAPPING)
    products = {p.id: p for p in read_catalog(FIXTURES / "synthetic_catalog.jsonl").products}
    assert vertical_of(products["c001"], verticals) == "Chain"  # type level "Chains"
    assert vertical_of(products["c002"], verticals) == "Chain"  # in Necklaces, but named "... Chain"
    assert vertical_of(products["n001"], verticals) == "Necklace"
    assert vertical_of(products["t001"], verticals) == "Top"
    assert vertical_of(products["x001"], verticals) is None


def test_default_mapping_names_the_paper_verticals() -> None:
    names = [v.name for v in load_verticals(DEFAULT_VERTICALS)]
    for name in ["Chain", "Mangalsutra", "Necklace", "JewellerySet", "Ring", "Earring", "Bracelet", "Bangle",
                 "Jean", "Trouser", "Dress", "Top"]:
        assert name in names


def test_counts_of_the_fixture() -> None:
    products = read_catalog(FIXTURES / "synthetic_catalog.jsonl").products
    instances, counts, unmapped = build_dataset(products, load_verticals(MAPPING))
    assert unmapped == 1
    top = counts["Top"]
    assert (top.products, top.empty_text, top.no_match, top.kept) == (3, 1, 1, 1)
    with_unmatched, _, _ = build_dataset(products, load_verticals(MAPPING), keep_unmatched=True)
    assert len(with_unmatched) == len(instances) + 1
    kept_block, _, _ = build_dataset(products, load_verticals(MAPPING), keep_spec_block=True)
    assert sum(len(i.tokens) for i in kept_block) > sum(len(i.tokens) for i in instances)


def test_cli_writes_conll_provenance_and_stats(tmp_path: Path) -> None:
    source = tmp_path / "products.jsonl"
    lines = (FIXTURES / "synthetic_catalog.jsonl").read_text(encoding="utf-8").splitlines()
    source.write_text("\n".join(lines[:2] + ['{"uniq_id": "broken"'] + lines[2:]) + "\n", encoding="utf-8")
    out = tmp_path / "data"
    r = run_cli("prepare", f"--source={source}", f"--out={out}", f"--verticals={MAPPING}")
    assert r.returncode == 0, r.stderr
    assert f"{source}:3:" in r.stderr  # the malformed line is reported with its number
    stats = (out / "stats.md").read_text(encoding="utf-8")
    assert "skipped as unreadable: 1" in stats and "| Necklace |" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["Chain", "Necklace", "Top", "boilerplate.json", "stats.md"]
    again = run_cli("prepare", f"--source={source}", f"--out={out}", f"--verticals={MAPPING}")
    assert again.returncode == 0 and "| Necklace |" not in again.stdout, "an unchanged table is not printed again"
    assert again.stdout.startswith(f"{out}: 3 verticals, ") and "--show_stats prints it" in again.stdout
    shown = run_cli("prepare", f"--source={source}", f"--out={out}", f"--verticals={MAPPING}", "--show_stats")
    assert shown.stdout == r.stdout
    total = 0
    assert not (out / "Chain" / "test.conll").exists() and "Chain/test.conll" in stats  # an empty split
    for split in ("train", "dev", "test"):
        sentences = read_conll(out / "Necklace" / f"{split}.conll", strict_bio=True)
        provenance = [json.loads(x) for x in (out / "Necklace" / f"{split}.provenance.jsonl").open(encoding="utf-8")]
        assert len(sentences) == len(provenance)
        for sentence, record in zip(sentences, provenance):
            for span in record["spans"]:
                assert sentence.tags[span["start"]] == "B-" + span["attr"]
                assert " ".join(sentence.tokens[span["start"]:span["end"]]).lower().replace(" ,", ",") \
                    == " ".join(t for t, _, _ in tokenize(span["value"])).lower().replace(" ,", ",")
        total += len(sentences)
    assert total == 5
    again = run_cli("prepare", f"--source={source}", f"--out={out}", f"--verticals={MAPPING}")
    assert again.returncode == 0, again.stderr  # an earlier output is replaced
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data")]  # no temporary left behind


def test_a_failed_final_rename_keeps_the_earlier_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The earlier DATA_DIR is set aside before the new one is renamed into place; when that rename fails, it is
    put back whole and no temporary is left."""
    out = tmp_path / "data"
    prepare(FIXTURES / "synthetic_catalog.jsonl", out, MAPPING)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real, calls = Path.rename, []

    def failing(self: Path, target: Path) -> Path:
        calls.append(self)
        if len(calls) == 2:  # the first sets the earlier DATA_DIR aside, the second renames the new one into place
            raise OSError("disk gone")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="disk gone"):
        prepare(FIXTURES / "synthetic_catalog.jsonl", out, MAPPING, keep_unmatched=True)
    monkeypatch.undo()
    assert len(calls) == 3, "the earlier DATA_DIR is put back"
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_cli_mapping_that_matches_nothing_names_the_vertical(tmp_path: Path) -> None:
    mapping = tmp_path / "verticals.json"
    mapping.write_text(json.dumps({"Necklace": ["Necklaces"], "Saree": ["^Clothing >> Sarees"]}))
    out = tmp_path / "data"
    source = FIXTURES / "synthetic_catalog.jsonl"
    r = run_cli("prepare", f"--source={source}", f"--out={out}", f"--verticals={mapping}")
    assert_one_error_line(r, "Saree", "matches no product", warnings=True, read=reading_line("prepare", source))
    assert not out.exists()


def test_cli_refuses_to_replace_a_foreign_directory(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = run_cli("prepare", f"--source={FIXTURES / 'synthetic_catalog.jsonl'}", f"--out={out}", f"--verticals={MAPPING}")
    assert_one_error_line(r, "not an earlier prepare output")  # before the catalog is read
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("mapping, words", [
    ("{not json", ["JSON"]),
    ("[]", ["non-empty JSON object"]),
    ('{"Ring": ["(unclosed"]}', ["Ring", "bad regex"]),
    ('{"Ring": []}', ["Ring", "non-empty list"]),
    ('{"Ring": [{"path": "x", "colour": "y"}]}', ["Ring", "'path' and/or 'name'"]),
    ('{"../Ring": ["x"]}', ["../Ring", "directory name"]),
])
def test_bad_mappings(tmp_path: Path, mapping: str, words: list[str]) -> None:
    path = tmp_path / "verticals.json"
    path.write_text(mapping)
    with pytest.raises(InputError) as e:
        load_verticals(path)
    for w in words:
        assert w in str(e.value)


def test_full_sample_has_every_vertical_and_the_papers_skew(tmp_path: Path) -> None:
    data = prepare(shared_file("data/flipkart/products.jsonl.gz"), tmp_path / "data")
    by_vertical = Counter(i.vertical for i in data.instances)
    assert set(by_vertical) == {v.name for v in load_verticals(DEFAULT_VERTICALS)}
    assert by_vertical["Necklace"] > 1000 and by_vertical["Ring"] > 500 and by_vertical["Chain"] >= 20
    necklace_train = Counter(t for i in data.instances if i.vertical == "Necklace" and i.split == "train"
                             for t in set(i.tags) if t != "O")
    assert max(necklace_train.values()) > 500  # a few labels with hundreds of examples …
    assert sum(1 for n in necklace_train.values() if n <= 10) >= 10  # … and a long tail with 1-10
    stats = (tmp_path / "data" / "stats.md").read_text(encoding="utf-8")
    assert re.search(r"\| Necklace \| \d+ \| \d+ \| \d+ \| \d+, 1 \|", stats)


def test_sentences_end_at_punctuation_before_space_and_at_line_breaks() -> None:
    text = "Buy at Flipkart.com. Only Genuine Products!! 30 Day\nFree Shipping.  "
    assert [text[a:b] for a, b in sentences(text)] == [
        "Buy at Flipkart.com.", "Only Genuine Products!!", "30 Day\n", "Free Shipping."]


def test_boilerplate_is_repeated_across_many_products_and_verticals() -> None:
    """At least 1% of the products and 20 of them, in at least 3 verticals (no vertical counts as one)."""
    def catalog(repeats: int, verticals: list) -> list[tuple]:
        texts = [(v, f"Product {i} is red. Free  SHIPPING.") for i, v in zip(range(repeats), verticals * repeats)]
        return texts + [("A", f"Product {i} is blue.") for i in range(100 - repeats)]

    assert find_boilerplate(catalog(20, ["A", "B", None])) == {"free shipping.": (20, 3)}
    assert find_boilerplate(catalog(19, ["A", "B", None])) == {}, "fewer than 20 products"
    assert find_boilerplate(catalog(60, ["A", "B"])) == {}, "two verticals"
    many = catalog(40, ["A", "B", "C"]) * 60  # 6,000 products: 1% is 60, so 40 × 60 = 2,400 copies qualify
    assert set(find_boilerplate(many)) >= {"free shipping."}
    assert find_boilerplate(catalog(20, ["A", "B", "C"]) + [("A", "x")] * 2000) == {}, "under 1% of products"


def test_boilerplate_ties_come_in_key_order_whatever_the_hash_seed() -> None:
    """Sentences that as many products repeat are listed by key, not in a set's order, which varies per process."""
    code = ("from mtl_tagger.prepare import find_boilerplate; "
            "print(list(find_boilerplate([(v, 'Zeta. Alpha. Mid. Mid.') for v in 'ABC' * 10])))")
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(4)}
    assert seen == {"['alpha.', 'mid.', 'zeta.']\n"}


def test_strip_boilerplate_cuts_whole_sentences_only() -> None:
    text = "Gold plated ring. Free Shipping. Free size ring. Cash On Delivery!"
    assert strip_boilerplate(text, {"free shipping.", "cash on delivery!"}) == "Gold plated ring. Free size ring. "
    assert strip_boilerplate(text, set()) == text
    assert strip_boilerplate("Free Shipping.\n  Gold ring", {"free shipping."}) == "Gold ring"


def test_flipkart_boilerplate_is_gone_from_every_vertical(tmp_path: Path) -> None:
    data = prepare(shared_file("data/flipkart/products.jsonl.gz"), tmp_path / "data")
    listed = json.loads((tmp_path / "data" / "boilerplate.json").read_text(encoding="utf-8"))
    assert {"only genuine products.", "30 day replacement guarantee.", "free shipping.",
            "cash on delivery!"} <= set(listed) == set(data.boilerplate)
    assert "| free shipping. |" in (tmp_path / "data" / "stats.md").read_text(encoding="utf-8")
    phrases = [tuple(t for t, _, _ in tokenize(s)) for s in ("Free Shipping.", "Only Genuine Products.",
                                                            "30 Day Replacement Guarantee.", "Cash On Delivery!")]
    for vertical in {i.vertical for i in data.instances}:
        for split in ("train", "dev", "test"):
            path = tmp_path / "data" / vertical / f"{split}.conll"
            for sentence in read_conll(path) if path.is_file() else []:
                tokens = tuple(sentence.tokens)
                for phrase in phrases:
                    assert not any(tokens[i:i + len(phrase)] == phrase for i in range(len(tokens))), (path, phrase)
    kept = prepare(shared_file("data/flipkart/products.jsonl.gz"), tmp_path / "kept", keep_boilerplate=True)
    assert not kept.boilerplate and "Shipping" in {t for i in kept.instances for t in i.tokens}
