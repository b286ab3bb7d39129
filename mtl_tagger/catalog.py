"""Product catalogs from disk: the Flipkart products JSONL (optionally .gz) and the original Kaggle CSV.

Both layouts become the same `Product` (id, name, category path, brand, description, specifications), so the
rest of the project never sees a file format. The brand column is dropped where it repeats a product's "Brand
Color" or "Brand Fit" specification or, beside such a key, is missing from its name (`_brand`). The layout is
recognised from the (decompressed) content: a first line naming the Kaggle columns, or a name ending in
.csv(.gz), is the CSV; otherwise a file with a line starting with `{` is JSONL, so a garbage line is skipped
wherever it is, the first line included.

JSONL: one object a line with uniq_id, product_name, category_path (list, top level first), brand,
description and specifications (list of {"key", "value"}; key may be null).
CSV (the Kaggle "Flipkart products" sample): columns uniq_id, product_name, product_category_tree
(`["A >> B >> …"]`), brand (optional), description and product_specifications
(`{"product_specification"=>[{"key"=>"…", "value"=>"…"}, …]}`, or `=>nil`, or a single {…} entry).

A record that cannot be understood (bad JSON, a missing or mistyped field, bytes that are not UTF-8,
a uniq_id seen before) is skipped and reported with its line; a file that cannot be opened or
decompressed is an InputError.
"""
import contextlib
import csv
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from absl import logging

from mtl_tagger.errors import InputError

CSV_COLUMNS = ("uniq_id", "product_name", "product_category_tree", "description", "product_specifications")


@dataclass(frozen=True)
class Product:
    """One catalog product; specifications keep the seller's order, key None where the source had none."""

    id: str
    name: str
    category_path: tuple[str, ...]
    brand: str
    description: str
    specifications: tuple[tuple[str | None, str], ...]


@dataclass
class CatalogRead:
    """What read_catalog found: the products, and one 'path:line: why' message per skipped record."""

    products: list[Product]
    skipped: list[str]


def _open_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when they start with the gzip magic number."""
    if not path.is_file():
        raise InputError("catalog file not found", path)
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError, zlib.error) as e:
        raise InputError(f"cannot read or decompress the catalog ({e})", path) from None


def _text(value: object, field: str) -> str:
    """`value` if it is a string (None becomes ""), else TypeError naming the field."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"field {field!r} is {type(value).__name__}, expected a string")
    return value


def _specifications(entries: object) -> tuple[tuple[str | None, str], ...]:
    """(key, value) pairs from a list of {"key", "value"} dicts; entries with no string value dropped."""
    if isinstance(entries, dict):
        entries = [entries]
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise TypeError(f"specifications are {type(entries).__name__}, expected a list")
    specs = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise TypeError("a specification is not an object with key and value")
        key, value = entry.get("key"), entry.get("value")
        if isinstance(value, str) and (key is None or isinstance(key, str)):
            specs.append((key, value))
    return tuple(specs)


def _product(uniq_id: object, name: object, path: object, brand: object, description: object,
             specs: object) -> Product:
    """A Product from raw fields, or ValueError/TypeError saying which field is wrong."""
    pid = _text(uniq_id, "uniq_id").strip()
    if not pid:
        raise ValueError("no uniq_id")
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        raise TypeError("category path is not a list of strings")
    name, specifications = _text(name, "product_name"), _specifications(specs)
    return Product(pid, name, tuple(p.strip() for p in path),
                   _brand(_text(brand, "brand").strip(), name, specifications), _text(description, "description"),
                   specifications)


def normalise_key(key: str) -> str:
    """The attribute name of a specification key: lower case, runs of non-alphanumerics turned into `_`."""
    return re.sub(r"[\W_]+", "_", key.lower()).strip("_")


def _brand(brand: str, name: str, specifications: tuple[tuple[str | None, str], ...]) -> str:
    """The brand column, or "" where the product has a "Brand Color" or "Brand Fit" specification, no Brand or Brand
    Name specification says the same, and the column is one of those keys' values or is not in the product's name
    (word for word, case ignored): the Flipkart sample filled the column of such products from those keys, often a
    sibling product's (a bra's brand "Pink", a shirt's "Slim"), which name no brand."""
    keys = [(normalise_key(key).replace("_", ""), value) for key, value in specifications if key]
    keyed = {v.strip().casefold() for key, value in keys if key in ("brandcolor", "brandcolour", "brandfit")
             for v in value.split(",")}
    named = {value.strip().casefold() for key, value in keys if key in ("brand", "brandname")}
    words, said = _word_runs(brand), _word_runs(name)
    if keyed and brand.casefold() not in named and (brand.casefold() in keyed or not any(
            said[i:i + len(words)] == words for i in range(len(said) - len(words) + 1))):
        return ""
    return brand


def _word_runs(text: str) -> list[str]:
    """The case-folded runs of letters and digits of a text: how a brand and a name are compared."""
    return re.findall(r"[^\W_]+", text.casefold())


def _jsonl_products(data: bytes, path: Path, skipped: list[str]) -> Iterator[tuple[int, Product]]:
    """(line, product) for each non-blank line of a JSONL file."""
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
            if not line:
                continue
            row = json.loads(line)
            if not isinstance(row, dict):
                raise TypeError("line is not a JSON object")
            yield lineno, _product(row.get("uniq_id"), row.get("product_name"), row.get("category_path"),
                                   row.get("brand"), row.get("description"), row.get("specifications"))
        except UnicodeDecodeError as e:
            skipped.append(f"{path}:{lineno}: not UTF-8 ({e.reason} at byte {e.start + 1} of the line)")
        except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError
            skipped.append(f"{path}:{lineno}: {e}")


@contextlib.contextmanager
def _csv_fields_up_to(size: int) -> Iterator[None]:
    """The csv module's field size limit (process-wide, 128 KiB by default: less than a long description) raised
    to `size` characters, the length of the text read, for the block."""
    before = csv.field_size_limit(max(size, csv.field_size_limit()))
    try:
        yield
    finally:
        csv.field_size_limit(before)


_RUBY_ARROW = re.compile(r'"\s*=>\s*')


def parse_category_tree(field: str) -> list[str]:
    """The Kaggle `product_category_tree` (`["A >> B >> C"]`) as a list of levels, top first."""
    try:
        tree = json.loads(field)
    except json.JSONDecodeError:
        tree = None
    if not isinstance(tree, list) or len(tree) != 1 or not isinstance(tree[0], str):
        raise ValueError(f'product_category_tree {field[:60]!r} is not of the form ["A >> B >> C"]')
    return [level.strip() for level in tree[0].split(">>")]


def parse_ruby_specifications(field: str) -> object:
    """The Kaggle `product_specifications` Ruby-hash text as JSON data (list, dict or None)."""
    if not field.strip():
        return None
    try:
        obj = json.loads(_RUBY_ARROW.sub('":', field).replace(":nil}", ":null}"))
    except json.JSONDecodeError as e:
        raise ValueError(f"product_specifications is not a Ruby hash of key/value entries ({e})") from None
    if not isinstance(obj, dict) or "product_specification" not in obj:
        raise ValueError('product_specifications has no "product_specification" entry')
    return obj["product_specification"]


def _csv_products(data: bytes, path: Path, skipped: list[str]) -> Iterator[tuple[int, Product]]:
    """(line, product) for each record of a Kaggle-layout CSV; the line is where the record starts."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 ({e.reason}); save the CSV as UTF-8", path, line) from None
    with _csv_fields_up_to(len(text)):
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"not a products JSONL, nor a CSV with columns {', '.join(missing)}", path, 1)
        start = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise InputError(f"malformed CSV ({e})", path, reader.line_num) from None
            try:
                if None in row or any(row[c] is None for c in CSV_COLUMNS):
                    raise ValueError(f"record does not have the header's {len(reader.fieldnames or [])} fields")
                tree = parse_category_tree(row["product_category_tree"])
                specs = parse_ruby_specifications(row["product_specifications"])
                yield start, _product(row["uniq_id"], row["product_name"], tree, row.get("brand"),
                                      row["description"], specs)
            except (ValueError, TypeError) as e:
                skipped.append(f"{path}:{start}: {e}")
            start = reader.line_num + 1


_FIRST_LINE = re.compile(rb"[^\n]*")
_OBJECT_LINE = re.compile(rb"^[\xef\xbb\xbf \t\r]*\{", re.MULTILINE)  # a line that starts a JSON object


def _is_jsonl(data: bytes, path: Path) -> bool:
    """False for the Kaggle CSV (its header row, or a .csv name), and for a file with no line starting with `{`:
    the CSV reader then says which columns are missing."""
    first = _FIRST_LINE.match(data).group().decode("utf-8-sig", errors="replace")
    with _csv_fields_up_to(len(first)):
        header = next(csv.reader([first]), [])
    if all(c in header for c in CSV_COLUMNS) or path.name.lower().removesuffix(".gz").endswith(".csv"):
        return False
    return _OBJECT_LINE.search(data) is not None


def read_catalog(path: str | Path) -> CatalogRead:
    """Read a products JSONL(.gz) or Kaggle CSV(.gz); unreadable records are logged, skipped and counted."""
    path = Path(path)
    data = _open_bytes(path)
    skipped: list[str] = []
    reader = _jsonl_products if _is_jsonl(data, path) else _csv_products
    products: list[Product] = []
    first_line: dict[str, int] = {}
    for lineno, product in reader(data, path, skipped):
        first = first_line.get(product.id)
        if first is not None:
            skipped.append(f"{path}:{lineno}: uniq_id {product.id!r} already on line {first}")
            continue
        first_line[product.id] = lineno
        products.append(product)
    for message in skipped:
        logging.warning("skipped record: %s", message)
    if not products:
        raise InputError(f"no readable product ({len(skipped)} record(s) skipped)", path)
    if skipped:
        logging.warning("%s: %d record(s) skipped, %d products read", path, len(skipped), len(products))
    return CatalogRead(products, skipped)
