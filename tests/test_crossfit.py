"""crossfit: every product of the catalog is tagged by the model of the fold that left it out, the merged
extraction says so, and the audit reports it; a rerun resumes instead of training again."""
import json
from pathlib import Path

import pytest
from conftest import SMOKE, run_cli
from test_bad_input import assert_one_error_line
from test_extract import write_catalog

from mtl_tagger.catalog import read_catalog
from mtl_tagger.crossfit import crossfit, folds_of
from mtl_tagger.errors import InputError
from mtl_tagger.extract import SUMMARY_SUFFIX, sidecar
from mtl_tagger.params import Params
from mtl_tagger.prepare import prepare


def ids_in(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").split("\n") if line]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict]:
    """A 2-fold cross-fit of 240 synthetic products (two verticals with a head, rings, tops) and its audit."""
    root = tmp_path_factory.mktemp("crossfit")
    catalog, mapping = write_catalog(root, 240)
    base = Params(**{**SMOKE, "tasks": "Chain x,Mangal-sutra"})
    table = crossfit(catalog, root / "out", 2, base, mapping)
    return catalog, mapping, root / "out", table


def test_every_product_is_tagged_by_a_model_that_did_not_train_on_it(job: tuple) -> None:
    catalog, mapping, out, _ = job
    folds = folds_of(catalog, mapping, 2, False, False)
    assert folds[0] and folds[1] and not folds[0] & folds[1]
    tagged = []
    for k in range(2):
        extracted = ids_in(out / f"fold{k}" / "values.jsonl")
        trained = {json.loads(line)["id"] for path in (out / f"fold{k}" / "data").glob("*/*.provenance.jsonl")
                   for line in path.read_text(encoding="utf-8").splitlines()}
        assert extracted and set(extracted) <= folds[k] and not set(extracted) & trained, k
        assert trained and trained <= folds[1 - k], "fold k's data holds only the other fold's products"
        tagged += extracted
    assert ids_in(out / "values.jsonl") == tagged and len(set(tagged)) == len(tagged)
    summary = json.loads(sidecar(out / "values.jsonl", SUMMARY_SUFFIX).read_text())
    assert summary["tagged"] == len(tagged) == sum(summary["tagged_per_vertical"].values()) == 172
    assert summary["held_out"].startswith("2-fold cross-fitting")
    folds = [json.loads(sidecar(out / f"fold{k}" / "values.jsonl", SUMMARY_SUFFIX).read_text()) for k in range(2)]
    assert summary["attributes"] == {v: sorted(set(folds[0]["attributes"][v]) & set(folds[1]["attributes"][v]))
                                     for v in summary["attributes"]}, "judged alike whichever fold tagged it"


def test_the_audit_says_the_products_were_held_out(job: tuple) -> None:
    _, _, out, table = job
    report = (out / "audit" / "report.md").read_text(encoding="utf-8")
    assert "Every product was extracted by a model that did not train on it: 2-fold cross-fitting" in report
    assert sum(table["by_training"]["seen"].values()) == 0
    assert table["by_training"]["held_out"] == table["total"] and sum(table["total"].values()) > 172


def test_a_rerun_resumes_and_gives_the_same_files(job: tuple) -> None:
    catalog, mapping, out, _ = job
    before = {p: p.read_bytes() for p in [out / "values.jsonl", *(out / "audit").iterdir()]}
    r = run_cli("crossfit", f"--catalog={catalog}", f"--out={out}", f"--verticals={mapping}",
                "--flagfile=flags/smoke.cfg", "--tasks=Chain x,Mangal-sutra")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("is already complete") == 2 and "partially agrees" in r.stdout.splitlines()[-1]
    assert {p: p.read_bytes() for p in before} == before


def test_bad_flags_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    catalog, mapping = write_catalog(tmp_path, 30)
    with pytest.raises(InputError, match="at least 2 folds"):
        crossfit(catalog, tmp_path / "out", 1, Params(**SMOKE), mapping)
    r = run_cli("crossfit", f"--catalog={catalog}", f"--out={tmp_path / 'out'}", f"--verticals={mapping}",
                "--flagfile=flags/smoke.cfg", "--learning_rate=-1")
    assert_one_error_line(r, "error: --learning_rate=-1.0: must be > 0")
    assert not (tmp_path / "out").exists()


def test_a_vertical_left_out_whole_is_dropped_from_that_fold(tmp_path: Path) -> None:
    """A fold holding every product of a vertical leaves it out of the rest's data instead of stopping."""
    catalog, mapping = write_catalog(tmp_path, 70)
    products = read_catalog(catalog).products
    mangalsutras = {p.id for p in products if "Mangalsutras" in " ".join(p.category_path)}
    data = prepare(catalog, tmp_path / "data", mapping, leave_out=mangalsutras)
    assert "Mangal-sutra" not in data.counts and {i.vertical for i in data.instances} == {"Chain x", "Ring"}
    assert f"left out: {len(mangalsutras)} products" in (tmp_path / "data" / "stats.md").read_text(encoding="utf-8")
