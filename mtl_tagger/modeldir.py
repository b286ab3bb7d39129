"""The model dir: what a run leaves behind and how it is claimed, checked and read back.

Layout: params.json (every flag), vocab.json, provenance.json (a fingerprint of the data and the stack that
wrote the run, and the dtype its matrix products started in, as --matmul_dtype resolved there), history.json
(every dev evaluation and each vertical's selected step), last/ (the full training state), best/<vertical>/ (the
weights at that vertical's selected step), tensorboard/, predictions/, for coupled runs shortlist/ and
analysis.json with the heatmaps, and metrics.json, written last:
a model dir with metrics.json holds a finished run.
A run holds an exclusive lock on `.lock` for as long as it trains (mtl_tagger.lock).

Importing this module does not import TensorFlow: the commands check a model dir with it before TensorFlow loads
(seconds); the functions that read checkpoints import it.
"""
import functools
import importlib.metadata
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mtl_tagger.calibration import Calibration, read_calibration
from mtl_tagger.errors import InputError
from mtl_tagger.files import read_json, write_json_atomic
from mtl_tagger.lock import FileLock
from mtl_tagger.params import SELECTIONS, Params
from mtl_tagger.vocab import Vocab

if TYPE_CHECKING:
    import tensorflow as tf

LOCK = ".lock"


@functools.cache
def installed_version(package: str) -> str:
    """The installed version of an import package, from its distribution's metadata (TensorFlow comes as
    tensorflow, tensorflow-cpu, …): the same as its __version__, without importing it."""
    names = importlib.metadata.packages_distributions().get(package)
    return importlib.metadata.version(names[0]) if names else "?"


def stack() -> dict[str, str]:
    """The software a run is written by: Python, TensorFlow and Keras versions."""
    return {"python": platform.python_version(), "tensorflow": installed_version("tensorflow"),
            "keras": installed_version("keras")}


def stack_name(info: dict[str, str]) -> str:
    """One phrase naming a stack, e.g. 'TensorFlow 2.15.1 / Keras 2.15.0 / Python 3.11.7'."""
    get = info.get
    return f"TensorFlow {get('tensorflow', '?')} / Keras {get('keras', '?')} / Python {get('python', '?')}"


def model_dir_lock(model_dir: Path) -> FileLock:
    """The lock one train command holds on a model dir (`<model_dir>/.lock`) while it trains."""
    return FileLock(model_dir / LOCK, model_dir, "train", "model dir", "--model_dir")


@dataclass
class Claim:
    """A model dir claimed for training: whether it resumes a run, and what --overwrite set aside."""

    path: Path
    lock: FileLock
    resume: bool
    created: bool
    aside: Path | None = None
    moved: list[str] = field(default_factory=list)

    def abandon(self) -> None:
        """Undo the claim of a run that failed before it started: remove what it wrote, restore what it moved."""
        if self.resume:
            self.lock.release()
            return
        for child in self.path.iterdir():
            if child.name != LOCK:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        if self.aside is not None:
            for name in self.moved:
                (self.aside / name).rename(self.path / name)
            self.aside.rmdir()
        self.lock.release()
        if self.created:
            self.path.rmdir()

    def commit(self) -> None:
        """The new run has started: drop what --overwrite set aside."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None


def claim(p: Params, provenance: dict) -> Claim:
    """Lock the model dir and decide: a fresh run, a resumed one, or a refusal (InputError saying why)."""
    path = Path(p.model_dir)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    lock = model_dir_lock(path)
    try:
        contents = sorted(c.name for c in path.iterdir() if c.name != LOCK)
        if not contents:
            return Claim(path, lock, resume=False, created=created)
        if p.overwrite:
            aside = path.with_name(f".{path.name}.replaced")
            shutil.rmtree(aside, ignore_errors=True)
            aside.mkdir()
            for name in contents:
                (path / name).rename(aside / name)
            return Claim(path, lock, resume=False, created=False, aside=aside, moved=contents)
        if not (path / "params.json").is_file():
            raise InputError("model dir is not empty and holds no params.json; use --overwrite or another dir", path)
        diff = p.differences(Params.load(path))
        if diff:
            raise InputError("model dir holds a run with other verticals or flags (" + "; ".join(diff)
                             + "); pass the flags it was trained with to resume it, or --overwrite to replace it", path)
        changed = data_changes(read_provenance(path), provenance)
        if changed:
            raise InputError(f"model dir was trained on other data ({changed}); pass --overwrite to retrain, "
                             "or use another --model_dir", path)
        return Claim(path, lock, resume=True, created=False)
    except BaseException:
        lock.release()
        raise


def read_model(model_dir: str | Path, calibrated: bool = True
               ) -> tuple[Params, Vocab, dict[str, Calibration] | None]:
    """A trained model dir's params.json, vocab.json and, with `calibrated`, calibration.json (None without one):
    what a Tagger is made of besides its checkpoints, checked (InputError naming what is missing or damaged), all
    without TensorFlow, so that a command refuses a wrong --model_dir before TensorFlow loads."""
    model_dir = Path(model_dir)
    params = Params.load(model_dir)
    vocab_path = model_dir / "vocab.json"
    if not vocab_path.is_file():
        raise InputError("no vocab.json: training did not get far enough to save a model", model_dir)
    vocab = Vocab.load(vocab_path, params.names)
    return params, vocab, read_calibration(model_dir, params.names) if calibrated else None


def read_provenance(model_dir: str | Path) -> dict:
    """provenance.json of a model dir ({} for runs written before it existed)."""
    path = Path(model_dir) / "provenance.json"
    data = read_json(path) if path.is_file() else {}
    if not isinstance(data, dict):
        raise InputError("damaged provenance: expected a JSON object", path)
    return data


def write_provenance(model_dir: Path, provenance: dict) -> None:
    """Record the data fingerprint, the stack and the matrix products' dtype of this run."""
    write_json_atomic(model_dir / "provenance.json", provenance)


def data_changes(old: dict, new: dict) -> str:
    """'' when the data fingerprints agree; else which files changed, were added or went missing."""
    before, after = old.get("data", {}), new.get("data", {})
    if not before:
        return ""
    changed = [f for f in sorted(set(before) | set(after)) if before.get(f) != after.get(f)]
    return ", ".join(f"{f} {'changed' if f in before and f in after else 'added' if f in after else 'missing'}"
                     for f in changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


def _evaluation_fault(e: object, verticals: Sequence[str]) -> str:
    """What is wrong with one entry of history.json's evaluations ('' when it is what Loop writes)."""
    if not isinstance(e, dict):
        return "is not an object"
    if not isinstance(e.get("step"), int) or isinstance(e["step"], bool) or e["step"] < 0:
        return f"has step {e.get('step')!r}, not a step number"
    dev = e.get("dev")
    if not isinstance(dev, dict) or not all(isinstance(m, dict) and set(SELECTIONS) <= set(m) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in m.values()) for m in dev.values()):
        scores = ", ".join(f'"{k}": number' for k in SELECTIONS)
        return f"has no dev scores ({{vertical: {{{scores}}}}})"
    missing = [t for t in verticals if t not in dev]
    return f"has no dev scores of {missing[0]}" if missing else ""


def read_history(model_dir: str | Path, verticals: Sequence[str] = ()) -> dict:
    """history.json: {"evaluations": [{"step", "dev": {vertical: {metric: value}}}], "best": {vertical: {...}}};
    InputError naming the first evaluation that is not a step with numeric dev scores (of each of `verticals`)."""
    path = Path(model_dir) / "history.json"
    data = read_json(path) if path.is_file() else {"evaluations": [], "best": {}}
    if not isinstance(data, dict) or not isinstance(data.get("evaluations"), list):
        raise InputError("damaged history: expected evaluations", path)
    for i, e in enumerate(data["evaluations"]):
        fault = _evaluation_fault(e, verticals)
        if fault:
            raise InputError(f"damaged history: evaluation {i + 1} {fault}; retrain with --overwrite", path)
    return data


def checked_checkpoints(directory: Path, model_dir: str | Path) -> str | None:
    """The newest checkpoint that `directory`'s state file (`checkpoint`) names, None without a state file.

    TensorFlow reads the newest checkpoint a state file lists and deletes the older ones it lists, so every name
    in it must be a checkpoint of `directory` itself, and `directory` (in the model dir) no link to elsewhere: a
    name outside it (an absolute path, `..`) or a directory that resolves to another place (a symlink), from a
    model dir edited or copied from elsewhere, is refused (InputError) before anything reads, writes or deletes.
    """
    where = directory.relative_to(model_dir)
    home = directory.resolve()
    if home != Path(model_dir).resolve() / where:
        raise InputError(f"{where}/ resolves to {home}, not to a directory of the model dir's own; a model dir's "
                         "checkpoints must lie in it: retrain the model, or copy it again without links", model_dir)
    if not (directory / "checkpoint").is_file():
        return None
    import tensorflow as tf

    try:
        state = tf.train.get_checkpoint_state(str(directory))
    except ValueError:
        state = None
    if state is None:
        raise InputError(f"{where}/checkpoint is damaged; retrain the model", model_dir)
    for name in (state.model_checkpoint_path, *state.all_model_checkpoint_paths):
        if Path(name).parent.resolve() != home or Path(name).name in ("", ".", ".."):
            raise InputError(f"{where}/checkpoint names {name!r}, outside {where}/; a model dir's checkpoints must "
                             "lie in it: retrain the model, or copy it again with its own checkpoint files",
                             model_dir)
    return state.model_checkpoint_path


def checkpoint_manager(checkpoint: "tf.train.Checkpoint", directory: Path, model_dir: str | Path
                       ) -> "tf.train.CheckpointManager":
    """A manager keeping the newest checkpoint of `directory`, once its state file is checked (the manager
    deletes what the state file lists)."""
    import tensorflow as tf

    checked_checkpoints(directory, model_dir)
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1)


def best_checkpoint(model_dir: str | Path, task: str) -> str | None:
    """The checkpoint of `task`'s selected step (None when training never evaluated it)."""
    found = checked_checkpoints(Path(model_dir) / "best" / task, model_dir)
    if found is not None and not Path(f"{found}.index").is_file():
        raise InputError(f"best/{task}/ names a checkpoint whose files are missing or damaged; retrain the model",
                         model_dir)
    return found


def read_run(model_dir: str | Path) -> dict:
    """A finished run as experiments read it: params, test metrics (with each vertical's selected step),
    dev history, and the Fig. 4 analysis of coupled runs (None otherwise)."""
    model_dir = Path(model_dir)
    params = Params.load(model_dir)
    path = model_dir / "metrics.json"
    if not path.is_file():
        raise InputError("no metrics.json: the run has not finished", model_dir)
    analysis = model_dir / "analysis.json"
    return {"params": params.to_json(), "metrics": read_json(path), "history": read_history(model_dir, params.names),
            "analysis": read_json(analysis)["directions"] if analysis.is_file() else None}


def restore(net: "tf.Module", checkpoint: str, model_dir: str | Path, extra: dict | None = None) -> None:
    """Read `checkpoint` into `net` (and `extra` trackables); InputError saying why when it cannot be read."""
    import tensorflow as tf

    try:
        status = tf.train.Checkpoint(net=net, **(extra or {})).read(checkpoint)
        status.assert_existing_objects_matched().expect_partial()
    except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:  # IndexError: a truncated file
        written = read_provenance(model_dir).get("stack")
        by = f"written by {stack_name(written)}, " if written and written != stack() else ""
        text = (e.message if isinstance(e, tf.errors.OpError) else str(e)).strip()
        reason = text.splitlines()[0][:160] if text else type(e).__name__
        raise InputError(f"cannot restore {checkpoint} ({by}{reason}): the checkpoint is damaged or does not match "
                         "params.json/vocab.json; retrain the model", model_dir) from None
