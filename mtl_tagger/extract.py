"""Attribute values of every product of a catalog, with the head of its vertical.

    python -m mtl_tagger.extract --model_dir=M --catalog=PATH --out=OUT.jsonl [--engine=local|ray] [--workers=N]
        [--min_confidence=X] [--batch=256] [--verticals=flags/verticals.json] [--keep_spec_block] [--keep_boilerplate]

Input. Any catalog `prepare` reads (products JSONL(.gz), Kaggle CSV). Each product goes to its vertical by
prepare's mapping (`--verticals`, default flags/verticals.json) and is tagged on prepare's text of it
(`description_text`: the description cut at "Specifications of" unless --keep_spec_block, without the sentences
that this catalog repeats across many products and verticals unless --keep_boilerplate), so the model sees
what it was trained on. Products of a vertical the model has no head for, or of no vertical, are skipped and
counted.

Order. The model's verticals in its own order, catalog order within each (one head per pass, little
padding), cut into chunks of --batch products. A chunk is the unit of tagging, writing and resuming, and
both engines tag exactly these chunks with `tag_chunk`, so their outputs are the same bytes.

OUT.jsonl: one line per tagged product (a product without values too):
    {"id": uniq_id, "vertical": V, "values": [{"attribute", "value", "start", "end", "confidence", "context"}]}
start/end are character offsets into the text the model saw; context is that text around the value on one
line, the value marked «like this», so a reviewer reads it without the catalog; U+2028, U+2029 and U+0085 are
written as \\u escapes, so every reader sees one record per line.
OUT.jsonl.progress.json: the settings (the record format; files.sha256 fingerprints of model, catalog and mapping;
batch, confidence, text option) and how many chunks, products and bytes of OUT are complete, with those bytes'
SHA-256. A chunk is appended to OUT and fsync'd, then the progress file is replaced. A new run with the same
settings first checks OUT, writing nothing: its lines must be the records of the planned products in order, the
recorded bytes exactly the recorded products' lines and of the recorded SHA-256, and what follows them the start
of the next ones (a chunk written but not recorded, a torn line). Only then is that tail cut and the run goes on
with the next chunk, so a killed run loses nothing and writes nothing twice. Other settings, or an OUT that fails
the check, are refused with OUT
left as it is.
OUT.jsonl.summary.json (written at the end): products tagged and values per vertical, products skipped per
vertical, the attributes each head can tag (what `audit` compares), what each head's confidences are (its
calibration method, or raw), the boilerplate sentences left out of the text (audit cuts the same), which of
the tagged products the model trained on (`trained_on`: the ids in its data dir's train split; or `held_out`,
how a caller such as crossfit held them out), and the settings (`audit` checks the catalog's fingerprint).
OUT.jsonl.lock: one extract command at a time writes OUT; it holds a lock on this file (flock, so it goes with
the process), which is removed when the command ends. A second command on the same OUT is refused in one
line; a lock file left by a killed command is taken over.

Engines. local tags in this process: it traces the heads the chunks need before the first chunk, and the model
works on the next chunk while one chunk's lines are made and written (Tagger.extract_ahead). ray runs the chunks
through Ray Data (`pip install -e '.[ray]'`): a callable class loads the Tagger and traces its heads once per
actor (`--workers` actors) and results are written in chunk order.
"""
import contextlib
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from absl import flags

from mtl_tagger import cli, interrupt
from mtl_tagger.catalog import read_catalog
from mtl_tagger.conll import attributes_of
from mtl_tagger.errors import InputError, Interrupted
from mtl_tagger.files import check_output_file, json_line, read_json, sha256, write_json_atomic
from mtl_tagger.lock import FileLock
from mtl_tagger.modeldir import best_checkpoint, read_model
from mtl_tagger.prepare import (
    DEFAULT_VERTICALS,
    catalog_boilerplate,
    define_text_flags,
    description_text,
    load_verticals,
    vertical_of,
)
from mtl_tagger.progress import Progress
from mtl_tagger.text import snippet

if TYPE_CHECKING:
    from mtl_tagger.tagger import Tagger  # TensorFlow is imported only where a model is loaded

ENGINES = ("local", "ray")
PROGRESS_SUFFIX = ".progress.json"
SUMMARY_SUFFIX = ".summary.json"
RECORD_FORMAT = 2  # of OUT's lines; 2: values carry their context (an OUT of another format is not resumed)
LOCK_SUFFIX = ".lock"

Item = tuple[str, str, str]  # (product id, vertical, text the model sees)


@dataclass
class Plan:
    """What a catalog holds for a model: the products to tag in output order, and those left out."""

    items: list[Item]
    skipped: Counter  # by vertical, for verticals the model has no head for
    no_vertical: int
    products_read: int
    unreadable_records: int
    boilerplate: list[str]  # the sentence keys left out of every text (prepare.find_boilerplate)
    not_selected: int = 0  # products left out by `only` (not counted anywhere else)


def sidecar(out: str | Path, suffix: str) -> Path:
    """OUT's progress or summary file: OUT's name with `suffix` appended."""
    out = Path(out)
    return out.with_name(out.name + suffix)


def confidence_kind(tagger: "Tagger", task: str) -> str:
    """What a vertical's confidences are: its calibration method (with " + unseen" where the second map acts), or
    "raw" (the CRF marginal, uncalibrated)."""
    calibration = tagger.calibration.get(task)
    if calibration is None:
        return "raw"
    second = calibration.unseen_values and tagger.vocab.train_words is not None
    return calibration.method + (" + unseen" if second else "")


def trained_on(tagger: "Tagger", ids: set[str]) -> list[str] | None:
    """Those of `ids` in the model's training data (its data dir's train provenance files, as prepare writes
    them), sorted; None when a vertical's file is missing, so that cannot be told."""
    found: set[str] = set()
    for task in tagger.tasks:
        path = Path(tagger.params.data_dir) / task / "train.provenance.jsonl"
        try:
            found |= {json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()}
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return sorted(found & ids)


def plan(catalog: str | Path, verticals_path: str | Path, tasks: Sequence[str], keep_spec_block: bool,
         keep_boilerplate: bool = False, only: Collection[str] | None = None) -> Plan:
    """Read the catalog and route every product and cut its text as prepare does; vertical-major order (see the
    docstring). `only`: the ids of the products to tag (None: all)."""
    verticals = load_verticals(verticals_path)
    read = read_catalog(catalog)
    boilerplate = [] if keep_boilerplate else list(catalog_boilerplate(read.products, verticals, keep_spec_block))
    cut = frozenset(boilerplate)
    by_task: dict[str, list[Item]] = {task: [] for task in tasks}
    skipped: Counter = Counter()
    no_vertical = not_selected = 0
    for product in read.products:
        if only is not None and product.id not in only:
            not_selected += 1
            continue
        vertical = vertical_of(product, verticals)
        if vertical in by_task:
            by_task[vertical].append((product.id, vertical, description_text(product, keep_spec_block, cut)))
        elif vertical is None:
            no_vertical += 1
        else:
            skipped[vertical] += 1
    items = [item for task in tasks for item in by_task[task]]
    return Plan(items, skipped, no_vertical, len(read.products), len(read.skipped), boilerplate, not_selected)


def by_vertical(chunk: Sequence[Item]) -> dict[str, list[int]]:
    """The positions of a chunk's products, per vertical in order of first appearance."""
    rows: dict[str, list[int]] = {}
    for i, (_, vertical, _) in enumerate(chunk):
        rows.setdefault(vertical, []).append(i)
    return rows


def tag_chunk(tagger: "Tagger", chunk: Sequence[Item], min_confidence: float) -> str:
    """The output lines of one chunk: every product tagged by its vertical's head, one batched pass per head."""
    values: list[list[dict]] = [[] for _ in chunk]
    for vertical, positions in by_vertical(chunk).items():
        records = tagger.extract([chunk[i][2] for i in positions], vertical, min_confidence)
        for i, record in zip(positions, records):
            values[i] = record["values"]
    return "".join(json_line({"id": pid, "vertical": vertical,
                              "values": [{**v, "context": snippet(text, v["start"], v["end"])} for v in vals]})
                   for (pid, vertical, text), vals in zip(chunk, values))


def verticals_of(tagger: "Tagger", chunks: Sequence[Sequence[Item]]) -> list[str]:
    """The verticals the chunks hold, in the model's order."""
    found = {vertical for chunk in chunks for _, vertical, _ in chunk}
    return [task for task in tagger.tasks if task in found]


def tag_ahead(tagger: "Tagger", chunk: Sequence[Item]) -> None:
    """Queue a chunk's texts on the model now, each vertical's as `tag_chunk` will ask for them."""
    for vertical, positions in by_vertical(chunk).items():
        tagger.extract_ahead([chunk[i][2] for i in positions], vertical)


def local_engine(tagger: "Tagger", chunks: Sequence[Sequence[Item]], min_confidence: float) -> Iterator[str]:
    """The lines of each chunk, in order, tagged in this process: the heads the chunks need are traced first, and
    the next chunk is queued on the model before this one is collected, so that the cores stay busy while this
    chunk's last (longest) batch runs and its lines are made and written."""
    tagger.warm(verticals_of(tagger, chunks))
    try:
        if chunks:
            tag_ahead(tagger, chunks[0])
        for k, chunk in enumerate(chunks):
            if k + 1 < len(chunks):
                tag_ahead(tagger, chunks[k + 1])
            yield tag_chunk(tagger, chunk, min_confidence)
    finally:
        tagger.drop_ahead()


class ChunkTagger:
    """Ray Data's callable class: one Tagger per actor; a batch of chunk rows becomes their output lines."""

    def __init__(self, model_dir: str, min_confidence: float, tasks: list[str]) -> None:
        """Load the model and trace the heads of `tasks` (the verticals of the chunks to tag)."""
        from mtl_tagger.tagger import Tagger, one_thread_per_op

        one_thread_per_op()
        self.tagger = Tagger.load(model_dir)
        self.tagger.warm(tasks)
        self.min_confidence = min_confidence

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Tag each chunk (a JSON list of items) of the batch; the chunk index goes back with its lines."""
        lines = [tag_chunk(self.tagger, json.loads(chunk), self.min_confidence) for chunk in batch["chunk"]]
        return {"index": batch["index"], "lines": np.array(lines, dtype=object)}


def require_ray() -> ModuleType:
    """The ray module with Ray Data, or an InputError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError("--engine=ray needs Ray, which is not installed: pip install -e '.[ray]'") from None
    return ray


def ray_engine(model_dir: str | Path, chunks: Sequence[Sequence[Item]], min_confidence: float,
               workers: int, tasks: list[str]) -> Iterator[str]:
    """The lines of each chunk, in order, tagged by `workers` Ray actors, each tracing the heads of `tasks` first
    (a local Ray runtime is started when none is running, and stopped at the end)."""
    if not chunks:
        return
    ray = require_ray()
    # Ray pickles the class by its module name; under `python -m mtl_tagger.extract` that is __main__, which
    # the actors cannot import, so hand them the class of the importable module.
    from mtl_tagger.extract import ChunkTagger as Worker

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False, logging_level="WARNING",
                 configure_logging=False)
    # Ray Data's INFO and WARNING lines (execution plan, "progress bars disabled") would tear our progress bar;
    # a failing actor still raises.
    data_logger = logging.getLogger("ray.data")
    level = data_logger.level
    data_logger.setLevel(logging.ERROR)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        rows = [{"index": k, "chunk": json.dumps(chunk)} for k, chunk in enumerate(chunks)]
        data = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            Worker, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
            fn_constructor_kwargs={"model_dir": str(Path(model_dir).resolve()), "min_confidence": min_confidence,
                                   "tasks": tasks})
        pending: dict[int, str] = {}
        done = 0
        for row in data.iter_rows():  # in chunk order with preserve_order; the buffer makes sure of it
            pending[int(row["index"])] = row["lines"]
            while done in pending:
                yield pending.pop(done)
                done += 1
    finally:
        data_logger.setLevel(level)
        if started:
            ray.shutdown()


def model_fingerprint(model_dir: str | Path, tagger: "Tagger") -> str:
    """Identifies a trained model: params.json, vocab.json, each head's checkpoint index (which holds a
    checksum of every tensor) and calibration.json where there is one, so a model retrained or recalibrated in
    the same dir is another model."""
    from mtl_tagger.calibration import FILE as CALIBRATION_FILE

    model_dir = Path(model_dir)
    indexes = [Path(f"{best_checkpoint(model_dir, task)}.index") for task in tagger.tasks]
    calibration = [model_dir / CALIBRATION_FILE] if (model_dir / CALIBRATION_FILE).is_file() else []
    return sha256(model_dir / "params.json", model_dir / "vocab.json", *indexes, *calibration)


def output_lock(out: str | Path) -> FileLock:
    """The lock of OUT (OUT.lock beside it, its directory made if missing) that one extract command holds."""
    out = Path(out)
    return FileLock(sidecar(out, LOCK_SUFFIX), out, "extract", "output", "--out")


def is_record_of(line: bytes, item: Item) -> bool:
    """Whether a line of OUT is the record of `item` or, for a last line without its newline (torn), its start."""
    pid, vertical, _ = item
    head = json_line({"id": pid, "vertical": vertical, "values": []}).encode()[:-3]  # up to the values' "["
    if not line.endswith(b"\n"):
        return head.startswith(line) or line.startswith(head)
    try:
        return line.startswith(head) and isinstance(json.loads(line), dict)
    except ValueError:
        return False


class Output:
    """OUT.jsonl written chunk by chunk, with the progress file that says how much of it is complete."""

    def __init__(self, out: str | Path, settings: dict, chunks: Sequence[Sequence[Item]]) -> None:
        """Open OUT to go on where an earlier run with the same settings stopped (or to start it); `chunks`: the
        plan's chunks, which say what OUT's lines must be. The caller holds OUT's lock."""
        self.out = Path(out)
        self.progress_path = sidecar(self.out, PROGRESS_SUFFIX)
        self.settings = settings
        if self.progress_path.exists():
            self.state = self._resumed(read_json(self.progress_path), chunks)
        elif self.out.exists() and (not self.out.is_file() or self.out.stat().st_size):
            raise InputError(f"exists and is not an extract output (no {self.progress_path.name}); not replacing "
                             "it", self.out)
        else:
            self.out.write_bytes(b"")
            self.digest = hashlib.sha256()
            self.state = {"settings": settings, "chunks": 0, "products": 0, "bytes": 0,
                          "sha256": self.digest.hexdigest()}
            write_json_atomic(self.progress_path, self.state)
        self.file = open(self.out, "ab")

    def _changed(self, what: str, line: int | None = None) -> InputError:
        """The refusal of an OUT that does not hold what the progress file records (OUT is left as it is)."""
        return InputError(f"{what}: it is not what {self.progress_path.name} records; delete both to start over, "
                          "or choose another --out", self.out, line)

    def _resumed(self, state: object, chunks: Sequence[Sequence[Item]]) -> dict:
        """The recorded state, checked against the settings and OUT; then OUT is cut back to what it records."""
        counts = ("chunks", "products", "bytes")
        # older: without the hash of OUT's bytes, or with the fingerprints ("model", "catalog", "verticals") of a
        # hash before files.sha256, which this one cannot check
        if isinstance(state, dict) and {"settings", *counts} <= set(state) and (
                "sha256" not in state or isinstance(state["settings"], dict) and "catalog" in state["settings"]):
            raise InputError(f"was written by an older extract, whose output this one does not resume: delete it and "
                             f"{self.out.name} to start over", self.progress_path)
        if not isinstance(state, dict) or not {"settings", "sha256", *counts} <= set(state) or not isinstance(
                state["settings"], dict) or not all(isinstance(state[k], int) and state[k] >= 0 for k in counts):
            raise InputError("not a progress file of extract", self.progress_path)
        if state["settings"] != self.settings:
            changed = sorted(k for k in {*state["settings"], *self.settings}
                             if state["settings"].get(k) != self.settings.get(k))
            raise InputError(f"holds an extraction with other settings ({', '.join(changed)}): delete it and "
                             f"{self.progress_path.name}, or choose another --out", self.out)
        if state["products"] != sum(len(chunk) for chunk in chunks[:state["chunks"]]):
            raise InputError(f"records {state['products']} products in {state['chunks']} chunks of this "
                             f"extraction, which hold another number; delete it and {self.out.name} to start over",
                             self.progress_path)
        if not self.out.is_file():
            raise InputError(f"is missing, but {self.progress_path.name} records {state['products']} products of it: "
                             f"delete {self.progress_path.name} to start over", self.out)
        size = self.out.stat().st_size
        if size < state["bytes"]:
            raise self._changed(f"is shorter than {self.progress_path.name} records ({size} < {state['bytes']} "
                                "bytes)")
        self._check(state, [item for chunk in chunks for item in chunk])
        if size > state["bytes"]:
            with open(self.out, "r+b") as f:
                f.truncate(state["bytes"])  # the next products' lines, or the start of them, written but not recorded
        return state

    def _check(self, state: dict, items: Sequence[Item]) -> None:
        """Refuse OUT unless each line is the record of the planned product of its place (a last one may be torn),
        the recorded bytes end exactly after the recorded products' lines, and they are the bytes that were written
        (their SHA-256); keeps that hash going in self.digest."""
        offset, recorded = 0, 0 if state["bytes"] == 0 else None  # recorded: lines in the recorded bytes
        self.digest = hashlib.sha256()
        with open(self.out, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if lineno > len(items):
                    raise self._changed(f"a record after the {len(items)} products of the extraction", lineno)
                if not is_record_of(line, items[lineno - 1]):
                    raise self._changed(f"not the record of product {items[lineno - 1][0]!r}, which the extraction "
                                        "puts here", lineno)
                if offset < state["bytes"]:
                    self.digest.update(line[:state["bytes"] - offset])
                offset += len(line)
                if offset == state["bytes"] and line.endswith(b"\n"):
                    recorded = lineno
        if recorded != state["products"]:
            raise self._changed(f"its first {state['bytes']} bytes do not end after the {state['products']} records "
                                f"{self.progress_path.name} counts in them")
        if self.digest.hexdigest() != state["sha256"]:
            raise self._changed(f"its first {state['bytes']} bytes were edited since they were written (another "
                                "SHA-256)")

    def append(self, lines: str, products: int) -> None:
        """Add one chunk's lines durably, then record it."""
        data = lines.encode("utf-8")
        self.file.write(data)
        self.file.flush()
        os.fsync(self.file.fileno())
        self.digest.update(data)
        self.state = {**self.state, "chunks": self.state["chunks"] + 1,
                      "products": self.state["products"] + products, "bytes": self.state["bytes"] + len(data),
                      "sha256": self.digest.hexdigest()}
        write_json_atomic(self.progress_path, self.state)

    def close(self) -> None:
        """Close OUT (everything appended is already on disk)."""
        self.file.close()


def values_per_vertical(out: str | Path) -> Counter:
    """How many values OUT holds per vertical."""
    counts: Counter = Counter()
    with open(out, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            counts[record["vertical"]] += len(record["values"])
    return counts


def write_chunks(output: Output, todo: Sequence[Sequence[Item]], lines: Iterator[str], total: int) -> None:
    """Append each chunk's lines to OUT as they come, with a progress bar of the `total` products; Ctrl-C stops
    after the running chunk (Interrupted)."""
    bar = Progress(total, "products", start=output.state["products"])
    try:
        # closing(lines) leaves first, so the Ray engine shuts down while Ctrl-C is still held
        with interrupt.between_steps() as pressed, contextlib.closing(lines):
            for chunk, text in zip(todo, lines):
                output.append(text, len(chunk))
                bar.update(len(chunk))
                if pressed():
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {output.state['products']} of {total} products are in {output.out}; "
                          "run the same command again to go on") from None
    finally:
        output.close()
    bar.close()


def extract_catalog(model_dir: str | Path, catalog: str | Path, out: str | Path, engine: str = "local",
                    workers: int = 1, min_confidence: float = 0.0, batch: int = 256,
                    verticals_path: str | Path = DEFAULT_VERTICALS, keep_spec_block: bool = False,
                    keep_boilerplate: bool = False, only: Collection[str] | None = None, held_out: str | None = None,
                    tagger: "Tagger | None" = None) -> dict:
    """Tag the catalog into OUT (resuming an earlier run of the same settings) and return the summary it
    writes to OUT.summary.json. `only`: the ids of the products to tag (None: all); `held_out`: how they were held
    out of the model's training, for the summary (None: the summary lists those the model trained on).
    `tagger`: the model of `model_dir`, when the caller has it loaded already (else the local engine first gives
    TensorFlow's ops one thread each, see tagger.one_thread_per_op)."""
    if engine not in ENGINES:
        raise InputError(f"--engine={engine}: must be one of {', '.join(ENGINES)}")
    if workers < 1 or batch < 1:
        raise InputError("--workers and --batch must be at least 1")
    if not 0.0 <= min_confidence <= 1.0:
        raise InputError(f"--min_confidence={min_confidence}: must be in [0, 1]")
    if os.path.lexists(out):  # a missing OUT's directory is made below
        check_output_file(out, "--out")
    if engine == "ray":
        require_ray()  # before any output is touched
    # The model dir, the catalog and OUT's lock are checked before TensorFlow loads (seconds) for the model.
    tasks = tagger.tasks if tagger is not None else list(read_model(model_dir)[1].tags)
    work = plan(catalog, verticals_path, tasks, keep_spec_block, keep_boilerplate, only)
    lock = output_lock(out)
    try:
        if tagger is None:
            from mtl_tagger.tagger import Tagger, one_thread_per_op

            if engine == "local":
                one_thread_per_op()
            tagger = Tagger.load(model_dir)
        settings = {"record": RECORD_FORMAT, "model_sha256": model_fingerprint(model_dir, tagger),
                    "catalog_sha256": sha256(catalog),
                    "verticals_sha256": sha256(verticals_path), "keep_spec_block": keep_spec_block,
                    "keep_boilerplate": keep_boilerplate,
                    "only": None if only is None else hashlib.sha256("\n".join(sorted(only)).encode()).hexdigest(),
                    "min_confidence": min_confidence, "batch": batch}
        chunks = [work.items[s:s + batch] for s in range(0, len(work.items), batch)]
        output = Output(out, settings, chunks)
        todo = chunks[output.state["chunks"]:]
        if todo:
            sidecar(out, SUMMARY_SUFFIX).unlink(missing_ok=True)  # the summary stands for a complete OUT
        lines = (local_engine(tagger, todo, min_confidence) if engine == "local"
                 else ray_engine(model_dir, todo, min_confidence, workers, verticals_of(tagger, todo)))
        write_chunks(output, todo, lines, len(work.items))
        extracted = Counter(vertical for _, vertical, _ in work.items)
        values = values_per_vertical(out)
        summary = {
            "catalog": str(catalog), "model_dir": str(model_dir), "keep_spec_block": keep_spec_block,
            "boilerplate": work.boilerplate,
            "min_confidence": min_confidence, "products_read": work.products_read,
            "unreadable_records": work.unreadable_records, "tagged": len(work.items),
            "tagged_per_vertical": {task: extracted[task] for task in tagger.tasks},
            "values": sum(values.values()), "values_per_vertical": {task: values[task] for task in tagger.tasks},
            "skipped": sum(work.skipped.values()) + work.no_vertical,
            "skipped_per_vertical": dict(sorted(work.skipped.items(), key=lambda kv: (-kv[1], kv[0]))),
            "skipped_no_vertical": work.no_vertical,
            "not_selected": work.not_selected, "held_out": held_out,
            "trained_on": None if held_out else trained_on(tagger, {pid for pid, _, _ in work.items}),
            "attributes": {task: attributes_of(tagger.vocab.tags[task]) for task in tagger.tasks},
            "confidence": {task: confidence_kind(tagger, task) for task in tagger.tasks},
            "settings": settings,
        }
        write_json_atomic(sidecar(out, SUMMARY_SUFFIX), summary)
    finally:
        lock.release()
    return summary


def format_summary(summary: dict, out: str | Path) -> str:
    """The lines printed at the end: what was tagged, and what was skipped by vertical."""
    tagged = ", ".join(f"{v} {n}" for v, n in summary["tagged_per_vertical"].items())
    why = [f"of no vertical {summary['skipped_no_vertical']}"] if summary["skipped_no_vertical"] else []
    if summary["skipped_per_vertical"]:
        why.append("of verticals the model has no head for: "
                   + ", ".join(f"{v} {n}" for v, n in summary["skipped_per_vertical"].items()))
    return "\n".join([
        f"tagged {summary['tagged']} products ({tagged}): {summary['values']} values in {out}",
        f"skipped {summary['skipped']} products" + (f" ({'; '.join(why)})" if why else ""),
        f"summary: {sidecar(out, SUMMARY_SUFFIX)}"])


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined when run as a program, so importing this module next to other CLIs is safe)."""
    flags.DEFINE_string("model_dir", None, "Trained model dir (holds params.json).")
    flags.DEFINE_string("catalog", None, "Catalog: products JSONL(.gz) or Kaggle CSV(.gz).")
    flags.DEFINE_string("out", None, "Output JSONL (resumed when an earlier run of the same settings stopped).")
    flags.DEFINE_enum("engine", "local", ENGINES, "local: this process; ray: Ray Data actors "
                      "(pip install -e '.[ray]').")
    flags.DEFINE_integer("workers", 1, "Ray actors, each with its own model (--engine=ray).")
    flags.DEFINE_float("min_confidence", 0.0, "Leave out values whose confidence is below this.")
    flags.DEFINE_integer("batch", 256, "Products per chunk: tagged in one pass, written and resumed whole.")
    define_text_flags()


def main(argv: list[str]) -> None:
    """CLI: extract, then print what was tagged and skipped."""
    cli.check_args(argv, "model_dir", "catalog", "out")
    summary = extract_catalog(FLAGS.model_dir, FLAGS.catalog, FLAGS.out, FLAGS.engine, FLAGS.workers,
                              FLAGS.min_confidence, FLAGS.batch, FLAGS.verticals, FLAGS.keep_spec_block,
                              FLAGS.keep_boilerplate)
    print(format_summary(summary, FLAGS.out))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
