"""Catalog readers: the products JSONL (plain and gzip) and the original Kaggle CSV; bad records skipped by line."""
import csv
import gzip
import io
import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

from mtl_tagger.catalog import parse_category_tree, parse_ruby_specifications, read_catalog
from mtl_tagger.errors import InputError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "catalog"
SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_file(relative: str) -> Path:
    """A file of ../shared: the test fails without it under CI=true, and is skipped elsewhere."""
    path = SHARED / relative
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path} is missing (CI=true requires the shared data)")
        pytest.skip(f"{path} not available")
    return path


def test_jsonl_fields() -> None:
    products = {p.id: p for p in read_catalog(FIXTURES / "synthetic_catalog.jsonl").products}
    assert len(products) == 11
    top = products["t001"]
    assert top.category_path[-2:] == ("Tops", "MERIL Tops")
    assert top.brand == "MERIL" and top.name.endswith("Women's Top")
    assert top.specifications[0] == ("Occasion", "Casual")
    assert (None, "Machine Wash") in top.specifications


def test_gzip_is_read_like_plain(tmp_path: Path) -> None:
    packed = tmp_path / "products.jsonl.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "synthetic_catalog.jsonl").read_bytes()))
    assert read_catalog(packed).products == read_catalog(FIXTURES / "synthetic_catalog.jsonl").products


@pytest.mark.parametrize("brand, name, specifications, kept", [
    ("Pink", "S4S Stylish Women's Push-up Bra", [("Brand Color", "Pink, Black")], False),  # a value of the key
    ("Black", "Vaishna Fashion Women's Full Coverage Bra", [("Brand Color", "Beige")], False),  # a sibling's colour
    ("Slim", "Reckler Slim Fit Men's Jeans", [("Brand Fit", "Slim")], False),  # in the name, but the key's value
    ("Clovia", "Clovia Non Padded Women's Bra", [("Brand Color", "Pink")], True),
    ("Pink", "Pink Floyd Poster", [("Color", "Pink")], True),  # no Brand Color or Brand Fit key: as written
    ("RKDEAL", "RKDEAL Car", [("Brand", "RKDEAL"), ("Brand Color", "RKDEAL")], True),  # the Brand key says so too
    ("Marc N' Park", "Marc N'Park Women's Bra", [("BrandColour", "Red")], True),  # word for word, not character
    ("Red", "Marc N'Park Women's Bra", [("BrandColour", "Red")], False),
])
def test_a_brand_column_taken_from_brand_color_or_fit_is_no_brand(
        tmp_path: Path, brand: str, name: str, specifications: list[tuple[str, str]], kept: bool) -> None:
    path = tmp_path / "products.jsonl"
    path.write_text(json.dumps({"uniq_id": "b1", "product_name": name, "category_path": ["Clothing"], "brand": brand,
                                "description": name, "specifications": [{"key": k, "value": v}
                                                                        for k, v in specifications]}) + "\n")
    assert read_catalog(path).products[0].brand == (brand if kept else "")


def test_kaggle_csv_layout() -> None:
    read = read_catalog(FIXTURES / "kaggle.csv")
    products = {p.id: p for p in read.products}
    assert sorted(products) == ["k001", "k002", "k003", "k005"]
    assert products["k001"].category_path == ("Jewellery", "Necklaces & Chains", "Necklaces")
    assert products["k001"].specifications == (("Brand", "Acme"), ("Plating", "Gold"), (None, "1 Necklace"),
                                               ("Base Material", "Brass"))
    assert "\n" in products["k001"].description
    assert products["k002"].specifications == (("Brand", "Acme"),)  # a single entry, not a list
    assert products["k003"].specifications == ()  # =>nil
    # k004's category tree is not JSON: skipped, reported at the line where its record starts.
    assert len(read.skipped) == 1 and read.skipped[0].startswith(f"{FIXTURES / 'kaggle.csv'}:6: ")
    assert "product_category_tree" in read.skipped[0]


def test_ruby_and_tree_parsers() -> None:
    assert parse_category_tree('["A >> B & C >> D"]') == ["A", "B & C", "D"]
    assert parse_ruby_specifications('{"product_specification"=>[{"key"=>"K", "value"=>"a => b"}]}') == [
        {"key": "K", "value": "a => b"}]
    assert parse_ruby_specifications('{"product_specification"=>nil}') is None
    with pytest.raises(ValueError):
        parse_category_tree("A >> B")


def test_original_sample_matches_the_jsonl() -> None:
    """8 of the 9 original rows are word for word in products.jsonl.gz (the 9th has a one-level tree)."""
    original = read_catalog(shared_file("data/flipkart/original_format_sample.csv"))
    assert len(original.products) == 9 and not original.skipped
    converted = {p.id: p for p in read_catalog(shared_file("data/flipkart/products.jsonl.gz")).products}
    same = [p for p in original.products if converted.get(p.id) == p]
    assert len(same) == 8


def test_bad_records_are_skipped_with_their_line(tmp_path: Path) -> None:
    good = (FIXTURES / "synthetic_catalog.jsonl").read_bytes().splitlines()
    first = json.loads(good[0])
    path_not_list = json.dumps({**first, "uniq_id": "z1", "category_path": "A"}).encode()
    latin1 = b'{"uniq_id": "z2", "description": "caf\xe9", "category_path": []}'
    lines = [good[0], b"{not json", b"", b"[1, 2]", path_not_list, latin1, good[0], good[1]]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    read = read_catalog(path)
    assert [p.id for p in read.products] == ["n001", "n002"]
    assert [m.split(": ")[0] for m in read.skipped] == [f"{path}:{n}" for n in (2, 4, 5, 6, 7)]
    assert "not UTF-8" in read.skipped[3] and "already on line 1" in read.skipped[4]


@pytest.mark.parametrize("content, words", [
    (None, ["not found"]),
    (b"\x1f\x8b\x08\x00truncated", ["decompress"]),
    (b"{broken\n{also broken\n", ["no readable product", "2 record(s) skipped"]),
    (b"name,description\nx,y\n", ["uniq_id", "product_category_tree"]),
])
def test_unreadable_catalogs_are_input_errors(tmp_path: Path, content: bytes | None, words: list[str]) -> None:
    path = tmp_path / "catalog"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as e:
        read_catalog(path)
    assert str(e.value).startswith(str(path))
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize("garbage", [b"garbage", b"\xff\xfe not text", b"uniq_id,description", b"[1, 2]",
                                     b'{"uniq_id": "cut'])
def test_garbage_first_line_is_skipped_like_any_other(tmp_path: Path, garbage: bytes) -> None:
    good = (FIXTURES / "synthetic_catalog.jsonl").read_bytes()
    path = tmp_path / "products.jsonl"
    path.write_bytes(garbage + b"\n" + good)
    read = read_catalog(path)
    assert read.products == read_catalog(FIXTURES / "synthetic_catalog.jsonl").products
    assert len(read.skipped) == 1 and read.skipped[0].startswith(f"{path}:1: ")


def test_garbage_first_line_through_prepare(tmp_path: Path) -> None:
    """prepare warns about the line and writes the same data as from the clean catalog."""
    source = tmp_path / "products.jsonl.gz"
    source.write_bytes(gzip.compress(b"oops, not a product\n" + (FIXTURES / "synthetic_catalog.jsonl").read_bytes()))
    mapping = f"--verticals={FIXTURES / 'verticals.json'}"
    r = run_cli("prepare", f"--source={source}", f"--out={tmp_path / 'dirty'}", mapping)
    assert r.returncode == 0, r.stderr
    assert f"{source}:1:" in r.stderr and "error" not in r.stderr
    clean = run_cli("prepare", f"--source={FIXTURES / 'synthetic_catalog.jsonl'}", f"--out={tmp_path / 'clean'}",
                    mapping)
    assert clean.returncode == 0, clean.stderr
    conll = {d: {p.relative_to(tmp_path / d): p.read_bytes() for p in (tmp_path / d).rglob("*.conll")}
             for d in ("clean", "dirty")}
    assert conll["clean"] and conll["dirty"] == conll["clean"]


def test_kaggle_csv_is_told_by_its_header_or_name(tmp_path: Path) -> None:
    """The Kaggle CSV whatever its name; a .csv with a wrong header says which column is missing, even when some of
    its lines start with `{` (as a JSONL's do)."""
    csv_text = (FIXTURES / "kaggle.csv").read_bytes()
    (tmp_path / "products.jsonl").write_bytes(csv_text)
    assert read_catalog(tmp_path / "products.jsonl").products == read_catalog(FIXTURES / "kaggle.csv").products
    broken = csv_text.replace(b"product_category_tree", b"category", 1) + b'{"uniq_id": "x"}\n'
    (tmp_path / "broken.csv").write_bytes(broken)
    with pytest.raises(InputError, match=r"broken\.csv:1: not a products JSONL, nor a CSV with columns "
                                         r"product_category_tree"):
        read_catalog(tmp_path / "broken.csv")


@pytest.mark.parametrize("layout", ["jsonl", "csv"])
def test_fields_over_csv_default_limit(tmp_path: Path, layout: str) -> None:
    """Descriptions longer than the csv module's default field limit (128 KiB), in the first record and in a later
    one, are read whole, and the process-wide limit is left as it was."""
    long = "long description without a comma " * 6000  # about 200 KB
    limit = csv.field_size_limit()
    if layout == "jsonl":
        rows = [json.loads(line) for line in (FIXTURES / "synthetic_catalog.jsonl").read_text().splitlines()]
        for row in rows[0], rows[2]:
            row["description"] = long
        path = tmp_path / "products.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        want = {rows[0]["uniq_id"], rows[2]["uniq_id"]}
    else:
        rows = list(csv.reader(io.StringIO((FIXTURES / "kaggle.csv").read_text(encoding="utf-8"), newline="")))
        column = rows[0].index("description")
        for row in rows[1], rows[3]:
            row[column] = long
        text = io.StringIO(newline="")
        csv.writer(text).writerows(rows)
        path = tmp_path / "products.csv"
        path.write_text(text.getvalue(), encoding="utf-8", newline="")
        want = {rows[1][0], rows[3][0]}
    read = read_catalog(path)
    assert {p.id for p in read.products if p.description == long} == want
    assert csv.field_size_limit() == limit
