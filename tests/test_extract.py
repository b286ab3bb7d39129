"""extract: routing and text as prepare does them, the record format, resuming after a crash or SIGKILL with
byte-identical output, one command at a time on an OUT, an OUT changed since it was written refused untouched, and
the Ray engine's output equal to the local one's."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import PAPER_STACK, REPO, paper_stack_under_ci, run_cli
from datagen import BRANDS, COLOURS, MATERIALS, PLATING
from test_bad_input import assert_one_error_line
from test_catalog import FIXTURES

from mtl_tagger import extract
from mtl_tagger.catalog import read_catalog
from mtl_tagger.errors import InputError, Interrupted
from mtl_tagger.extract import (
    LOCK_SUFFIX,
    PROGRESS_SUFFIX,
    SUMMARY_SUFFIX,
    extract_catalog,
    format_summary,
    model_fingerprint,
    output_lock,
    plan,
    sidecar,
    trained_on,
)
from mtl_tagger.files import json_line
from mtl_tagger.prepare import strip_spec_block
from mtl_tagger.text import snippet

KINDS = {"Chain x": ("Jewellery", "Chains"), "Mangal-sutra": ("Jewellery", "Mangalsutras"),
         "Ring": ("Jewellery", "Rings"), None: ("Clothing", "Tops")}
NOUNS = {"Chain x": "chain", "Mangal-sutra": "mangalsutra", "Ring": "ring", None: "top"}
MAPPING = {"Chain x": ["^Jewellery >> Chains( >> |$)"], "Mangal-sutra": ["^Jewellery >> Mangalsutras( >> |$)"],
           "Ring": ["^Jewellery >> Rings( >> |$)"]}


def write_catalog(root: Path, n: int, seed: int = 0) -> tuple[Path, Path]:
    """A products JSONL of `n` products (chains, mangalsutras, rings the test model has no head for, tops of no
    vertical) with spec blocks, line separators and empty descriptions among them; and its vertical mapping."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    lines = []
    for i in range(n):
        kind = kinds[0] if i % 7 in (0, 2, 4) else kinds[1] if i % 7 in (1, 5) else kinds[2 + i % 2]
        brand, plating, material, colour = (rng.choice(BRANDS), rng.choice(PLATING), rng.choice(MATERIALS),
                                            rng.choice(COLOURS))
        noun = NOUNS[kind]
        text = f"{brand} {plating} {material} {noun} in {colour} , perfect for daily wear ."
        if i % 11 == 3:
            text += f" Specifications of {brand} {noun} Brand {brand} Color {colour}"
        if i % 13 == 5:  # a line separator inside a value (between its tokens)
            text = text.replace(plating, plating.replace(" ", "\u2028" if i % 2 else "\x85"), 1)
        if i % 50 == 7:
            text = ""
        specs = [{"key": "Brand", "value": brand}, {"key": "Plating", "value": plating},
                 {"key": "Base Material", "value": material}, {"key": "Color", "value": colour}]
        lines.append(json.dumps({"uniq_id": f"p{i:04d}", "product_name": f"{brand} {noun}",
                                 "category_path": list(KINDS[kind]), "brand": brand, "description": text,
                                 "specifications": specs}, ensure_ascii=False))
    catalog, mapping = root / "catalog.jsonl", root / "verticals.json"
    catalog.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping.write_text(json.dumps(MAPPING), encoding="utf-8")
    return catalog, mapping


@pytest.fixture(scope="module")
def model_dir(pair_model: Path) -> Path:
    """conftest's shared model of 'Chain x' and 'Mangal-sutra' (these tests copy it before changing it)."""
    return pair_model


@pytest.fixture(scope="module")
def tagger(model_dir: Path) -> object:
    from mtl_tagger import Tagger

    return Tagger.load(model_dir)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(catalog, mapping) of 700 products."""
    return write_catalog(tmp_path_factory.mktemp("catalog"), 700)


@pytest.fixture(scope="module")
def reference(model_dir: Path, tagger: object, job: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
              ) -> Path:
    """An uninterrupted local run with --batch=16."""
    out = tmp_path_factory.mktemp("reference") / "out.jsonl"
    extract_catalog(model_dir, job[0], out, batch=16, verticals_path=job[1], tagger=tagger)
    return out


def test_json_line_is_one_line_for_every_reader() -> None:
    record = {"id": "a", "values": [{"value": "x\u2028y\u2029z\x85w\nv\r"}]}
    line = json_line(record)
    assert line.endswith("\n") and len(line.splitlines()) == 1 and "\u2028" not in line and "\x85" not in line
    assert json.loads(line) == record


def test_plan_routes_and_cuts_text_as_prepare(job: tuple[Path, Path]) -> None:
    work = plan(job[0], job[1], ["Mangal-sutra", "Chain x"], keep_spec_block=False)
    products = {p.id: p for p in read_catalog(job[0]).products}
    order = ["Mangal-sutra", "Chain x"]
    assert work.items == sorted(work.items, key=lambda item: (order.index(item[1]), item[0])), \
        "the model's verticals in its order, catalog (= id) order within each"
    assert all(text == strip_spec_block(products[pid].description) for pid, _, text in work.items)
    assert any("Specifications of" in products[pid].description for pid, _, _ in work.items)
    assert work.skipped == {"Ring": 100} and work.no_vertical == 100 and len(work.items) == 500
    kept = plan(job[0], job[1], ["Chain x"], keep_spec_block=True)
    assert all(text == products[pid].description for pid, _, text in kept.items)
    assert kept.skipped == {"Ring": 100, "Mangal-sutra": 200}


def test_plan_cuts_the_catalogs_boilerplate_as_prepare(job: tuple[Path, Path], tmp_path: Path) -> None:
    products = [json.loads(line) for line in job[0].read_text(encoding="utf-8").split("\n") if line]
    for product in products:
        product["description"] = "Free  Shipping! " + product["description"]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(p) + "\n" for p in products), encoding="utf-8")
    by_id = {p["uniq_id"]: p["description"] for p in products}
    work = plan(catalog, job[1], ["Chain x"], keep_spec_block=False)
    assert work.boilerplate == ["free shipping!"]
    assert all(text == strip_spec_block(by_id[pid])[len("Free  Shipping! "):] for pid, _, text in work.items)
    kept = plan(catalog, job[1], ["Chain x"], keep_spec_block=False, keep_boilerplate=True)
    assert kept.boilerplate == [] and all(text == strip_spec_block(by_id[pid]) for pid, _, text in kept.items)


def test_trained_on_reads_the_models_train_provenance(tmp_path: Path) -> None:
    tagger = SimpleNamespace(tasks=["A", "B"], params=SimpleNamespace(data_dir=str(tmp_path)))
    for task, ids in (("A", ["p1", "p2"]), ("B", ["p3"])):
        (tmp_path / task).mkdir()
        (tmp_path / task / "train.provenance.jsonl").write_text("".join(
            json.dumps({"id": i, "name": "n", "spans": []}) + "\n" for i in ids))
    assert trained_on(tagger, {"p2", "p3", "p9"}) == ["p2", "p3"]
    (tmp_path / "B" / "train.provenance.jsonl").unlink()
    assert trained_on(tagger, {"p2"}) is None, "a data dir without provenance cannot tell"


def test_plan_reads_the_kaggle_csv() -> None:
    work = plan(FIXTURES / "kaggle.csv", FIXTURES / "verticals.json", ["Necklace"], keep_spec_block=False)
    assert [pid for pid, _, _ in work.items] == ["k001"] and work.unreadable_records == 1


def test_the_records_do_not_depend_on_the_thread_count(model_dir: Path, job: tuple[Path, Path], reference: Path,
                                                      tmp_path: Path) -> None:
    """The extract command gives each op one thread (`tagger.one_thread_per_op`), as conftest gives this process:
    an in-process run with two threads per op writes the same bytes."""
    code = ("import sys; from mtl_tagger import Tagger; from mtl_tagger.extract import extract_catalog; "
            "extract_catalog(sys.argv[1], sys.argv[2], sys.argv[3], batch=16, verticals_path=sys.argv[4], "
            "tagger=Tagger.load(sys.argv[1]))")
    out = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, "-c", code, str(model_dir), str(job[0]), str(out), str(job[1])], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO), "TF_NUM_INTRAOP_THREADS": "2"},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == reference.read_bytes()


def test_records_summary_and_offsets(reference: Path, job: tuple[Path, Path], tagger: object) -> None:
    products = {p.id: p for p in read_catalog(job[0]).products}
    raw = reference.read_bytes()
    lines = raw.decode("utf-8").split("\n")[:-1]
    assert len(lines) == 500 and raw.endswith(b"\n")
    records = [json.loads(line) for line in lines]
    assert any("\\u2028" in line for line in lines) and any("\\u0085" in line for line in lines)
    assert any("\u2028" in v["value"] for r in records for v in r["values"])
    values = 0
    for r in records:
        assert list(r) == ["id", "vertical", "values"]
        text = strip_spec_block(products[r["id"]].description)
        for v in r["values"]:
            assert list(v) == ["attribute", "value", "start", "end", "confidence", "context"]
            assert text[v["start"]:v["end"]] == v["value"] and 0.0 <= v["confidence"] <= 1.0
            assert v["context"] == snippet(text, v["start"], v["end"])
            assert "«" + " ".join(v["value"].split()) + "»" in v["context"]
        values += len(r["values"])
    assert values > 500, "the smoke model finds brands, platings and materials"
    summary = json.loads(sidecar(reference, SUMMARY_SUFFIX).read_text())
    assert summary["tagged_per_vertical"] == {"Chain x": 300, "Mangal-sutra": 200} and summary["values"] == values
    assert summary["skipped_per_vertical"] == {"Ring": 100} and summary["skipped_no_vertical"] == 100
    assert "brand" in summary["attributes"]["Chain x"]
    assert summary["confidence"] == {"Chain x": "temperature", "Mangal-sutra": "temperature"}, \
        "training calibrates each head, and the summary says how the confidences were made"
    assert format_summary(summary, reference).splitlines()[1] == (
        "skipped 200 products (of no vertical 100; of verticals the model has no head for: Ring 100)")
    progress = json.loads(sidecar(reference, PROGRESS_SUFFIX).read_text())
    assert progress["chunks"] == 32 and progress["products"] == 500 and progress["bytes"] == len(raw)


def test_min_confidence_drops_values(model_dir: Path, tagger: object, job: tuple[Path, Path], reference: Path,
                                     tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    extract_catalog(model_dir, job[0], out, batch=16, verticals_path=job[1], tagger=tagger, min_confidence=0.9)
    kept = [v for line in out.read_text().splitlines() for v in json.loads(line)["values"]]
    every = [v for line in reference.read_text().splitlines() for v in json.loads(line)["values"]]
    assert kept == [v for v in every if v["confidence"] >= 0.9] and len(kept) < len(every)


def _copy(reference: Path, out: Path, data: bytes) -> None:
    """`data` as OUT, beside a copy of the reference's progress file."""
    out.write_bytes(data)
    shutil.copyfile(sidecar(reference, PROGRESS_SUFFIX), sidecar(out, PROGRESS_SUFFIX))


def _interrupted_at(n: int, out: Path, model_dir: Path, job: tuple[Path, Path], tagger: object,
                    monkeypatch: pytest.MonkeyPatch) -> str:
    """OUT as a run stopped before its `n`th chunk of 16 leaves it; the run's message."""
    real, calls = extract.tag_chunk, []

    def stopping(*args: object) -> str:
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args)

    with monkeypatch.context() as m:
        m.setattr(extract, "tag_chunk", stopping)
        with pytest.raises(Interrupted) as stopped:
            extract_catalog(model_dir, job[0], out, batch=16, verticals_path=job[1], tagger=tagger)
    return str(stopped.value)


def test_resume_after_crash_and_torn_write(model_dir: Path, tagger: object, job: tuple[Path, Path],
                                           reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.jsonl"
    assert "144 of 500 products" in _interrupted_at(10, out, model_dir, job, tagger, monkeypatch)
    real = extract.tag_chunk
    assert not sidecar(out, SUMMARY_SUFFIX).exists(), "no summary until OUT is complete"
    # What a kill between append and the progress update leaves: a whole unrecorded chunk, then a torn line.
    items = plan(job[0], job[1], tagger.tasks, False).items
    with open(out, "ab") as f:
        f.write(real(tagger, items[144:160], 0.0).encode())
        f.write(real(tagger, items[160:176], 0.0).encode()[:11])
    extract_catalog(model_dir, job[0], out, batch=16, verticals_path=job[1], tagger=tagger)
    assert out.read_bytes() == reference.read_bytes()
    assert sidecar(out, SUMMARY_SUFFIX).read_text() == sidecar(reference, SUMMARY_SUFFIX).read_text()
    extract_catalog(model_dir, job[0], out, batch=16, verticals_path=job[1], tagger=tagger)  # complete: no-op
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.usefixtures("default_sigint")
def test_ctrl_c_lets_the_running_chunk_land(model_dir: Path, tagger: object, job: tuple[Path, Path], reference: Path,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGINT while chunk 10 is tagged stops the run after that chunk is written, not before."""
    out = tmp_path / "out.jsonl"
    real, calls = extract.tag_chunk, []

    def signalled(*args: object) -> str:
        calls.append(1)
        if len(calls) == 10:
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(extract, "tag_chunk", signalled)
    with pytest.raises(Interrupted, match="160 of 500 products"):
        extract_catalog(model_dir, job[0], out, batch=16, verticals_path=job[1], tagger=tagger)
    assert out.read_bytes() == b"".join(reference.read_bytes().splitlines(keepends=True)[:160])


def test_resume_refuses_other_settings_and_foreign_files(model_dir: Path, tagger: object, job: tuple[Path, Path],
                                                        reference: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"other settings \(batch\)"):
        extract_catalog(model_dir, job[0], reference, batch=32, verticals_path=job[1], tagger=tagger)
    foreign = tmp_path / "notes.jsonl"
    foreign.write_text("mine\n")
    with pytest.raises(InputError, match="not an extract output"):
        extract_catalog(model_dir, job[0], foreign, batch=16, verticals_path=job[1], tagger=tagger)
    assert foreign.read_text() == "mine\n"
    older = tmp_path / "older.jsonl"
    _copy(reference, older, reference.read_bytes())
    progress = json.loads(sidecar(older, PROGRESS_SUFFIX).read_text())
    sidecar(older, PROGRESS_SUFFIX).write_text(json.dumps({k: v for k, v in progress.items() if k != "sha256"}))
    with pytest.raises(InputError, match="written by an older extract"):
        extract_catalog(model_dir, job[0], older, batch=16, verticals_path=job[1], tagger=tagger)
    fingerprints = {"model": "0" * 64, "catalog": "0" * 64, "verticals": "0" * 64}  # of the hash before files.sha256
    settings = {k: v for k, v in progress["settings"].items() if not k.endswith("_sha256")}
    sidecar(older, PROGRESS_SUFFIX).write_text(json.dumps({**progress, "settings": {**settings, **fingerprints}}))
    with pytest.raises(InputError, match="written by an older extract"):
        extract_catalog(model_dir, job[0], older, batch=16, verticals_path=job[1], tagger=tagger)
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(reference.read_bytes()[:100])
    sidecar(cut, PROGRESS_SUFFIX).write_bytes(sidecar(reference, PROGRESS_SUFFIX).read_bytes())
    with pytest.raises(InputError, match="shorter than"):
        extract_catalog(model_dir, job[0], cut, batch=16, verticals_path=job[1], tagger=tagger)
    cut.unlink()
    with pytest.raises(InputError, match="is missing, but cut.jsonl.progress.json records 500 products"):
        extract_catalog(model_dir, job[0], cut, batch=16, verticals_path=job[1], tagger=tagger)


def test_a_recalibrated_model_is_another_model(model_dir: Path, tagger: object, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    calibrated = model_fingerprint(copy, tagger)
    calibration = json.loads((copy / "calibration.json").read_text())
    calibration["Chain x"]["temperature"] *= 2
    (copy / "calibration.json").write_text(json.dumps(calibration))
    recalibrated = model_fingerprint(copy, tagger)
    (copy / "calibration.json").unlink()
    assert len({calibrated, recalibrated, model_fingerprint(copy, tagger)}) == 3, \
        "a resumed extract must not mix confidences of two calibrations"


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_an_out_with_another_name_is_refused(kind: str, model_dir: Path, tagger: object, job: tuple[Path, Path],
                                             reference: Path, tmp_path: Path) -> None:
    """A lock beside one name of OUT would not guard the other: two commands could append the same records."""
    real, other = tmp_path / "out.jsonl", tmp_path / "other.jsonl"
    _copy(reference, real, reference.read_bytes())
    other.symlink_to(real) if kind == "symlink" else os.link(real, other)
    before = real.read_bytes()
    with pytest.raises(InputError, match="symbolic link" if kind == "symlink" else "hard links"):
        extract_catalog(model_dir, job[0], other, batch=16, verticals_path=job[1], tagger=tagger)
    assert real.read_bytes() == before and not sidecar(other, PROGRESS_SUFFIX).exists()


def test_a_second_extract_on_one_out_is_refused_in_one_line(model_dir: Path, tagger: object, job: tuple[Path, Path],
                                                            reference: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """While one extract holds OUT (here: this test), another is refused in one line and touches nothing; the lock
    file goes with its holder, and one left by a killed command is taken over."""
    out = tmp_path / "out.jsonl"
    _interrupted_at(5, out, model_dir, job, tagger, monkeypatch)
    lock = output_lock(out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    try:
        r = run_cli("extract", f"--model_dir={model_dir}", f"--catalog={job[0]}", f"--out={out}",
                    f"--verticals={job[1]}", "--batch=16")
        assert_one_error_line(r, str(out), f"another extract command (pid {os.getpid()}) is using this output",
                              "choose another --out")
        with pytest.raises(InputError, match="another extract command"):
            extract_catalog(model_dir, job[0], out, batch=16, verticals_path=job[1], tagger=tagger)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    finally:
        lock.release()
    assert not sidecar(out, LOCK_SUFFIX).exists()
    sidecar(out, LOCK_SUFFIX).write_text("999999")  # what a SIGKILLed command leaves
    extract_catalog(model_dir, job[0], out, batch=16, verticals_path=job[1], tagger=tagger)
    assert out.read_bytes() == reference.read_bytes() and not sidecar(out, LOCK_SUFFIX).exists()


def test_two_extract_commands_on_one_out(model_dir: Path, job: tuple[Path, Path], reference: Path,
                                         tmp_path: Path) -> None:
    """Started together: each either writes OUT or is refused in one line (the second may also start after the
    first ended, and find OUT complete); OUT holds every product once."""
    out = tmp_path / "out.jsonl"
    args = (f"--model_dir={model_dir}", f"--catalog={job[0]}", f"--out={out}", f"--verticals={job[1]}", "--batch=16")
    procs = [_cli(*args) for _ in range(2)]
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    assert sorted(r.returncode for r in results) in ([0, 0], [0, 2]), [r.stderr for r in results]
    for r in results:
        if r.returncode == 2:
            assert_one_error_line(r, str(out), "another extract command (pid ")
    assert out.read_bytes() == reference.read_bytes() and not sidecar(out, LOCK_SUFFIX).exists()


@pytest.mark.parametrize("damage", ["interleaved", "duplicates_after_complete", "duplicates_after_partial",
                                    "foreign_tail", "progress_beyond_a_record", "same_length_edit"])
def test_rerun_refuses_a_changed_out_and_leaves_it(damage: str, model_dir: Path, tagger: object,
                                                   job: tuple[Path, Path], reference: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An OUT that is not what its progress file records is refused before anything is written or cut: two
    commands' chunks interleaved (what two extracts on one OUT used to leave), records written twice after a
    complete or a partial OUT, a tail that is not the next products' records, recorded bytes that end inside a
    record, a record edited in place."""
    out = tmp_path / "out.jsonl"
    lines = reference.read_bytes().splitlines(keepends=True)
    chunks = [b"".join(lines[s:s + 16]) for s in range(0, len(lines), 16)]
    if damage == "interleaved":
        _copy(reference, out, b"".join(c + c for c in chunks))
    elif damage == "duplicates_after_complete":
        _copy(reference, out, reference.read_bytes() + chunks[-1])
    else:
        _interrupted_at(5, out, model_dir, job, tagger, monkeypatch)
        if damage == "duplicates_after_partial":
            out.write_bytes(out.read_bytes() + chunks[3])
        elif damage == "foreign_tail":
            out.write_bytes(out.read_bytes() + b"notes\n")
        elif damage == "same_length_edit":  # a value's first letter in another case: every record still parses
            data = bytearray(out.read_bytes())
            at = data.index(b'"value": "') + len(b'"value": "')
            data[at:at + 1] = bytes(data[at:at + 1]).swapcase()
            out.write_bytes(bytes(data))
        else:
            progress = json.loads(sidecar(out, PROGRESS_SUFFIX).read_text())
            sidecar(out, PROGRESS_SUFFIX).write_text(json.dumps({**progress, "bytes": progress["bytes"] + 10}))
            out.write_bytes(out.read_bytes() + chunks[4])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(InputError, match=r"it is not what out\.jsonl\.progress\.json records; delete both"):
        extract_catalog(model_dir, job[0], out, batch=16, verticals_path=job[1], tagger=tagger)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "mtl_tagger.extract", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@paper_stack_under_ci
def test_sigkill_at_random_moments_then_resume_is_byte_identical(model_dir: Path, job: tuple[Path, Path],
                                                                  reference: Path, tmp_path: Path) -> None:
    """Three SIGKILLs at random points of the writing, then a run to the end: the same bytes as no kill."""
    seed = int(os.environ.get("KILL_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    out = tmp_path / "out.jsonl"
    args = (f"--model_dir={model_dir}", f"--catalog={job[0]}", f"--out={out}", f"--verticals={job[1]}", "--batch=16")
    total = reference.stat().st_size
    kills = 0
    for threshold in sorted(rng.uniform(0.05, 0.9) * total for _ in range(3)):
        start = out.stat().st_size if out.exists() else 0
        proc = _cli(*args)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            size = out.stat().st_size if out.exists() else 0
            if size > start and size >= threshold:
                time.sleep(rng.uniform(0, 0.02))
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        proc.communicate(timeout=120)
        kills += proc.returncode == -signal.SIGKILL
    proc = _cli(*args)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert kills >= 2, f"seed {seed}: the runs ended before they could be killed"
    assert out.read_bytes() == reference.read_bytes(), f"seed {seed}"
    assert stdout.startswith("tagged 500 products (Chain x 300, Mangal-sutra 200)")


def test_unknown_engine_and_missing_ray_are_input_errors(model_dir: Path, tagger: object, job: tuple[Path, Path],
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out.jsonl"
    with pytest.raises(InputError, match="--engine=spark"):
        extract_catalog(model_dir, job[0], out, engine="spark", verticals_path=job[1], tagger=tagger)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(InputError, match=r"pip install -e '\.\[ray\]'"):
        extract_catalog(model_dir, job[0], out, engine="ray", verticals_path=job[1], tagger=tagger)
    assert not out.exists(), "the check comes before any output"


def _ray() -> object:
    """The ray module; skipped without it, except under CI=true on the paper stack, where the README's test command
    installs it (on that stack alone: the engine's code is the same on both, and the current stack's suite, which
    also runs the tests of experiments/, is the longer of the two)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true" and PAPER_STACK:
            pytest.fail("ray is not installed (CI=true requires it: pip install -e '.[ray]')")
        pytest.skip("ray is not installed")
    return ray


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own DataContext fields
def test_ray_engine_output_equals_local(model_dir: Path, tagger: object, job: tuple[Path, Path], reference: Path,
                                        tmp_path: Path) -> None:
    ray = _ray()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", configure_logging=False)
    try:
        out = tmp_path / "out.jsonl"
        summary = extract_catalog(model_dir, job[0], out, engine="ray", workers=2, batch=16,
                                  verticals_path=job[1], tagger=tagger)
    finally:
        ray.shutdown()
    assert out.read_bytes() == reference.read_bytes()
    assert summary == json.loads(sidecar(reference, SUMMARY_SUFFIX).read_text())


def test_a_model_that_fails_to_load_leaves_no_new_directory(model_dir: Path, job: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    """extract and export make OUT's missing directories for their lock; a model that only fails once TensorFlow
    reads it (a checkpoint index gone) leaves none of them behind."""
    from mtl_tagger.export import export

    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    next((damaged / "best" / "Chain x").glob("*.index")).unlink()
    for run in (lambda out: extract_catalog(damaged, job[0], out, verticals_path=job[1]),
                lambda out: export(damaged, out)):
        with pytest.raises(InputError, match="missing or damaged"):
            run(tmp_path / "new" / "deeper" / "out")
        assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    lock = extract.output_lock(tmp_path / "kept" / "a" / "out.jsonl")
    (tmp_path / "kept" / "a" / "out.jsonl").write_text("")
    lock.release()
    assert (tmp_path / "kept" / "a" / "out.jsonl").is_file(), "a directory that holds OUT stays"
