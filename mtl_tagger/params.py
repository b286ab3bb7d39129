"""Run parameters: one dataclass, the single source of truth for flags, params.json and model building.

Defaults are the paper's configuration (§4): hidden 700, batch 30, Adam, at most 30 epochs, 300-d
word vectors. Every field becomes an absl flag of the same name (see `define_flags`), and the whole
record is written to `<model_dir>/params.json`, which evaluate/predict/Tagger.load read back.
"""
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from absl import flags

from mtl_tagger.errors import InputError
from mtl_tagger.files import read_json

MODES = ("single", "shared", "coupled")
DEFAULT_VECTORS = "cache/glove.flipkart.300d.txt"  # what the README's glove command builds
CHAR_ENCODERS = ("lstm", "cnn")
LSTM_IMPLS = ("fused", "keras")
SHORTLIST_CONTEXTS = ("tagged", "all")
# Fields that may change when a run resumes in the same model dir (they do not change the model).
RESUMABLE = frozenset({"epochs", "patience", "overwrite", "model_dir", "lstm_impl"})
PATHS = ("data_dir", "word_vectors")  # compared as resolved paths


def _f(default: object, help: str) -> object:
    return field(default=default, metadata={"help": help})


@dataclass
class Params:
    """All knobs of a training run (paper defaults)."""

    task_a: str = _f("", "Vertical to train (a directory name under --data_dir).")
    task_b: str = _f("", "Second vertical for multi-task training (empty: single-task).")
    mtl_mode: str = _f("", "single | shared | coupled (default: coupled with --task_b, else single).")
    data_dir: str = _f("data/flipkart", "Directory holding <Vertical>/{train,dev,test}.conll.")
    model_dir: str = _f("", "Where checkpoints, params.json, metrics.json and TensorBoard logs go "
                            "(default: runs/<task_a>[+<task_b>].<mode>).")
    word_vectors: str = _f(DEFAULT_VECTORS, "GloVe-format text file to initialise word embeddings (empty: random; "
                                            "build the default with python -m mtl_tagger.glove).")
    word_dim: int = _f(300, "Word embedding size (must match --word_vectors).")
    char_dim: int = _f(25, "Character embedding size.")
    char_hidden: int = _f(25, "Char encoder size per direction (LSTM) or number of filters (CNN).")
    char_encoder: str = _f("lstm", "Character-level word encoder: lstm (Lample et al.) or cnn.")
    max_word_len: int = _f(20, "Characters kept per word for the char encoder (longer words are cut).")
    hidden_size: int = _f(700, "BiLSTM units per direction (paper: 700).")
    lstm_impl: str = _f("fused", "Sentence BiLSTM: fused (mtl_tagger.bilstm, faster on CPU) or keras "
                                 "(Bidirectional(LSTM)); same function, weights and checkpoints.")
    dropout: float = _f(0.5, "Dropout on the embeddings and on the BiLSTM output, in [0, 1).")
    batch_size: int = _f(30, "Sentences per task minibatch (paper: 30).")
    learning_rate: float = _f(0.001, "Adam learning rate.")
    clip_norm: float = _f(5.0, "Clip the global gradient norm to this (0: no clipping).")
    epochs: int = _f(30, "Maximum number of epochs (paper: 30).")
    patience: int = _f(5, "Stop after this many epochs without a better dev macro-F1.")
    max_len: int = _f(200, "Longer sentences are split into chunks of at most this many tokens.")
    seed: int = _f(42, "Random seed: same seed, data and flags give identical metrics.json.")
    strict_bio: bool = _f(False, "Make an I-x after O or after B-y an error instead of repairing it to B-x.")
    overwrite: bool = _f(False, "Replace a model dir that holds a model of other tasks or flags.")
    coupling_weight: float = _f(1.0, "Weight of the total coupling error TCE in the loss (coupled mode).")
    window: int = _f(2, "Context window half-width w for the shortlist and attention vectors.")
    shortlist_threshold: float = _f(0.5, "Keep context pairs with cosine above this.")
    shortlist_max_neighbors: int = _f(10, "At most this many neighbours per anchor context.")
    shortlist_contexts: str = _f("tagged", "tagged: both contexts carry a non-O gold tag; all: every token.")
    label_kgram: int = _f(3, "k of the character k-grams that embed label names (label coupling error).")

    @property
    def tasks(self) -> list[str]:
        """The verticals of this run, task_a first."""
        return [t for t in (self.task_a, self.task_b) if t]

    @property
    def mode(self) -> str:
        """The effective multi-task mode."""
        return self.mtl_mode or ("coupled" if self.task_b else "single")

    def validate(self) -> "Params":
        """Raise InputError naming the first out-of-range flag."""
        positive = ("word_dim", "char_dim", "char_hidden", "max_word_len", "hidden_size", "batch_size",
                    "epochs", "patience", "max_len", "shortlist_max_neighbors", "label_kgram")
        for name in positive:
            if getattr(self, name) <= 0:
                raise InputError(f"--{name}={getattr(self, name)}: must be > 0")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"--dropout={self.dropout}: must be in [0, 1)")
        if self.learning_rate <= 0:
            raise InputError(f"--learning_rate={self.learning_rate}: must be > 0")
        if not 0 <= self.seed < 2**32:
            raise InputError(f"--seed={self.seed}: must be in [0, 2**32)")
        for name in ("clip_norm", "coupling_weight", "window"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name}={getattr(self, name)}: must be >= 0")
        if not -1.0 <= self.shortlist_threshold < 1.0:
            raise InputError(f"--shortlist_threshold={self.shortlist_threshold}: must be in [-1, 1)")
        for name, allowed in (("char_encoder", CHAR_ENCODERS), ("shortlist_contexts", SHORTLIST_CONTEXTS),
                              ("lstm_impl", LSTM_IMPLS)):
            if getattr(self, name) not in allowed:
                raise InputError(f"--{name}={getattr(self, name)}: must be one of {', '.join(allowed)}")
        if self.mtl_mode and self.mtl_mode not in MODES:
            raise InputError(f"--mtl_mode={self.mtl_mode}: must be one of {', '.join(MODES)}")
        if not self.task_a:
            raise InputError("--task_a is required (a vertical: a directory name under --data_dir)")
        if self.task_a == self.task_b:
            raise InputError(f"--task_b={self.task_b}: must differ from --task_a")
        if self.mode != "single" and not self.task_b:
            raise InputError(f"--mtl_mode={self.mode} needs --task_b")
        if self.mode == "single" and self.task_b:
            raise InputError("--mtl_mode=single trains --task_a alone: drop --task_b")
        if not self.model_dir:
            self.model_dir = str(Path("runs") / f"{'+'.join(self.tasks)}.{self.mode}")
        return self

    def to_json(self) -> dict:
        """Plain dict of every field (what params.json holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Params":
        """Params from a params.json dict; unknown keys are ignored, missing ones take defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def load(cls, model_dir: str | Path) -> "Params":
        """Read `<model_dir>/params.json`."""
        path = Path(model_dir) / "params.json"
        if not path.is_file():
            raise InputError("no params.json: not a trained model dir (train one with mtl_tagger.train)", path)
        return cls.from_json(read_json(path))

    def differences(self, other: "Params") -> list[str]:
        """Fields (outside RESUMABLE) whose values differ, as 'name: old -> new'.

        The mode is compared as effective (`--task_b` alone equals `--mtl_mode=coupled`), and paths
        as resolved, so the same run spelled differently still resumes.
        """
        def canonical(p: "Params") -> dict:
            d = {**p.to_json(), "mtl_mode": p.mode}
            return d | {k: str(Path(d[k]).resolve()) if d[k] else "" for k in PATHS}

        mine, theirs = canonical(self), canonical(other)
        return [f"{k}: {theirs[k]!r} -> {v!r}" for k, v in mine.items() if k not in RESUMABLE and theirs[k] != v]


def define_flags() -> None:
    """Define one absl flag per Params field, with the field's default and help."""
    definers = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}
    for f in dataclasses.fields(Params):
        if f.name not in flags.FLAGS:
            definers[type(f.default)](f.name, f.default, f.metadata["help"])


def from_flags() -> Params:
    """Params from the parsed absl flags, validated."""
    return Params(**{f.name: getattr(flags.FLAGS, f.name) for f in dataclasses.fields(Params)}).validate()


def read_flagfile(path: str | Path) -> dict[str, object]:
    """Params fields set by an absl flagfile (`--name=value` lines, `#` comments), typed as the fields."""
    types = {f.name: type(f.default) for f in dataclasses.fields(Params)}
    values: dict[str, object] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.removeprefix("--").partition("=")
        if name.startswith("no") and name[2:] in types and types[name[2:]] is bool:
            name, value = name[2:], "false"
        if name not in types:
            raise InputError(f"unknown flag --{name}", path, lineno)
        if types[name] is bool:
            values[name] = value.lower() in ("", "true", "1")
        else:
            try:
                values[name] = types[name](value)
            except ValueError:
                raise InputError(f"--{name}={value}: not a {types[name].__name__}", path, lineno) from None
    return values
