"""Run parameters: one dataclass, the single source of truth for flags, params.json and model building.

Every field becomes an absl flag of the same name (see `define_flags`), and the whole record is written
to `<model_dir>/params.json`, which evaluate/predict/Tagger.load read back and check. The defaults are the
ones BUILD_NOTES "Training that converges" measured on small verticals (flags/sweep.cfg spells them out); the
paper's own configuration is flags/paper.cfg.
"""
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from absl import flags

from mtl_tagger.calibration import METHODS as CALIBRATIONS
from mtl_tagger.errors import InputError
from mtl_tagger.files import read_json

MODES = ("single", "shared", "coupled")
DEFAULT_VECTORS = "cache/glove.flipkart.300d.txt"  # what the README's glove command builds
CHAR_ENCODERS = ("lstm", "cnn")
MATMUL_DTYPES = ("auto", "float32", "bfloat16")
CRF_IMPLS = ("own", "tfa")
SHORTLIST_CONTEXTS = ("tagged", "all")
COUPLING_SCORES = ("emission", "log_softmax", "marginal")
DISTRIBUTE = ("", "multiworker")
MAX_WORD_LEN = 1024  # characters per word the spelling features can hash (mtl_tagger/lexical.py)
LR_DECAYS = ("none", "linear", "cosine")  # how Adam's step size falls over the step budget
SELECTIONS = ("macro_f1", "entity_f1")  # dev scores that can select a vertical's best step


Check = Callable[[object], str]  # a field's constraint: "" when its value is fine, else what it must be


def positive(v: float) -> str:
    """The check of a size or rate."""
    return "" if v > 0 else "must be > 0"


def non_negative(v: float) -> str:
    """The check of a count or weight where 0 means none (or no cap)."""
    return "" if v >= 0 else "must be >= 0"


def fraction(v: float) -> str:
    """The check of a probability that must leave something: [0, 1)."""
    return "" if 0.0 <= v < 1.0 else "must be in [0, 1)"


def within(low: float, high: float, shown: str) -> Check:
    """The check of a value in [low, high), `shown` as the message writes that range."""
    return lambda v: "" if low <= v < high else f"must be in {shown}"


def one_of(allowed: Sequence[str], empty: bool = False) -> Check:
    """The check of a choice among `allowed` (or "" with `empty`)."""
    return lambda v: "" if v in allowed or (empty and not v) else f"must be one of {', '.join(allowed)}"


def _f(default: object, help: str, check: Check | None = None, *, resumable: bool = False, path: bool = False,
       legacy: object = dataclasses.MISSING) -> object:
    """A field with its flag's help and the check `Params.validate` applies to it. `resumable`: a resumed run may
    change it (it does not change the model); `path`: a resumed run compares it as a resolved path; `legacy`: for
    a field added after models were first written, the value a params.json without it was trained with."""
    metadata = {"help": help, "check": check, "resumable": resumable, "path": path}
    if legacy is not dataclasses.MISSING:
        metadata["legacy"] = legacy
    return field(default=default, metadata=metadata)


@dataclass
class Params:
    """All knobs of a training run."""

    tasks: str = _f("", "Comma-separated verticals trained in one model (directory names under --data_dir); "
                        "--task_a/--task_b is the two-task spelling.")
    task_a: str = _f("", "Vertical to train (a directory name under --data_dir).")
    task_b: str = _f("", "Second vertical for two-task training (empty: single-task).")
    mtl_mode: str = _f("", "single | shared | coupled (default: coupled with several verticals, else single).",
                       one_of(MODES, empty=True))
    couple: str = _f("all", "Coupled mode: the pairs to couple: all, auto (each vertical with its top "
                            "--lenders_k lenders, python -m mtl_tagger.lenders) or A:B,C:D.")
    lenders_k: int = _f(1, "With --couple=auto: lenders per vertical.", positive)
    data_dir: str = _f("data/flipkart", "Directory holding <Vertical>/{train,dev,test}.conll.", path=True)
    model_dir: str = _f("", "Where checkpoints, params.json, metrics.json and TensorBoard logs go "
                            "(default: runs/<A>[+<B>…].<mode>).", resumable=True)
    word_vectors: str = _f(DEFAULT_VECTORS, "GloVe-format text file to initialise word embeddings (empty: random; "
                                            "build the default with python -m mtl_tagger.glove).", path=True)
    word_dim: int = _f(300, "Word embedding size (must match --word_vectors).", positive)
    char_dim: int = _f(25, "Character embedding size.", positive)
    char_hidden: int = _f(25, "Char encoder size per direction (LSTM) or number of filters (CNN).", positive)
    char_encoder: str = _f("lstm", "Character-level word encoder: lstm (Lample et al.) or cnn.", one_of(CHAR_ENCODERS))
    max_word_len: int = _f(20, "Characters kept per word for the char encoder and the spelling features (longer words "
                                "are cut).", within(1, MAX_WORD_LEN + 1, f"[1, {MAX_WORD_LEN}]"))
    case_dim: int = _f(16, "Size of the word-shape feature embedding (casing, digits, punctuation); 0: none.",
                       non_negative)
    lexical_buckets: int = _f(65536, "Add to each head's emission scores a learned score per tag for each spelling "
                              "feature of the word and its neighbours (the feature CRF's templates, "
                              "mtl_tagger/lexical.py), hashed into this many buckets (0: none).", non_negative,
                              legacy=0)
    lexical_pairs: bool = _f(False, "Add to the spelling features the lower-case word pairs each token forms with its "
                                    "left and its right neighbour, and its place among the sentence's first and last "
                                    "two tokens (the feature CRF's word-pair features, extended to the sentence's "
                                    "edges, and its BOS/EOS features; needs --lexical_buckets).")
    lexical_step: float = _f(1.0, "Each head scales its summed spelling-feature score by this, so that with Adam the "
                                  "score moves about this many times faster than the rest (exactly while gradient "
                                  "clipping does not bind); --lexical_l2 and --weight_decay act on the unscaled "
                                  "weights, so on the scores they weigh less (needs --lexical_buckets).", positive)
    lexical_l2: float = _f(0.0, "L2 penalty on the spelling-feature weights: this × the sum of their squares, per "
                                "vertical in the step, added to its mean sentence loss (the feature CRF's c2).",
                           non_negative)
    lexical_l1: float = _f(0.0, "Sparse spelling-feature weights: after each update every spelling weight moves the "
                                "step size × this towards 0 and stops at 0 (a proximal L1 step, as the feature CRF's "
                                "c1 but not on its scale), so a weight that the gradients do not push that far each "
                                "update ends at exactly 0 (under --average the averaged weights are not). Adam moves "
                                "a weight by at most about the step size, hence [0, 1) (needs --lexical_buckets).",
                           fraction)
    size_weight: float = _f(0.0, "Weight each vertical's CRF loss by (its training sentences / their mean over the "
                                 "run's verticals) to this power: 0 weighs them alike (the paper), 1 as if the "
                                 "step's sentences were drawn from all verticals pooled, so that small verticals "
                                 "pull the shared layers less.", non_negative)
    vertical_dim: int = _f(0, "Size of a learned embedding of the sentence's vertical, appended to every token's "
                              "input of the shared BiLSTM, so that one encoder can read each vertical its own way "
                              "(0: none; for shared mode: in single mode it is one constant, and coupled mode's "
                              "coupling minibatches mix verticals).", non_negative)
    hidden_size: int = _f(128, "BiLSTM units per direction (paper: 700, flags/paper.cfg).", positive)
    matmul_dtype: str = _f("auto", "The word BiLSTM's matrix products, in training and tagging: bfloat16 takes "
                                   "bfloat16 factors and rounds each product to bfloat16 (weights, gates and state "
                                   "stay float32); float32 keeps full precision; auto is bfloat16 where the CPU has "
                                   "bfloat16 instructions (AMX or AVX512_BF16, faster there: bench_bf16.md, "
                                   "bench_bf16_amd.md) and float32 elsewhere (where bfloat16 would be emulated, "
                                   "slowly).",
                           one_of(MATMUL_DTYPES), legacy="float32")
    dropout: float = _f(0.5, "Dropout on the embeddings and on the BiLSTM output, in [0, 1).", fraction)
    word_dropout: float = _f(0.1, "In training, replace a word by the unknown word with this probability (its chars "
                                  "stay), so the unknown word's embedding is trained; in [0, 1).", fraction)
    batch_size: int = _f(30, "Sentences per vertical minibatch (paper: 30).", positive)
    learning_rate: float = _f(0.003, "Adam learning rate.", positive)
    lr_decay: str = _f("none", "Learning-rate schedule over the step budget: none (constant), linear (to 0 at the "
                               "budget) or cosine (half a cosine to 0 at the budget).", one_of(LR_DECAYS))
    clip_norm: float = _f(5.0, "Clip the global gradient norm to this (0: no clipping).", non_negative)
    weight_decay: float = _f(0.0, "Decoupled weight decay (AdamW): every update also shrinks each variable of rank "
                                  "≥ 2 (kernels, embedding and spelling tables, CRF transitions, the coupler's "
                                  "attention; not biases) by the step size × this (0: none).", non_negative)
    average: float = _f(0.0, "Score dev and keep checkpoints with an exponential moving average of the weights of "
                             "this decay, e.g. 0.99 (0: the weights themselves).", fraction)
    tag_prior: float = _f(0.5, "Weight of a prior added to each vertical's CRF transitions when decoding: how much "
                               "more or less often than chance adjacent gold tags follow each other in its training "
                               "split (crf.bigram_pmi), which penalises pairs the data rarely or never shows, such "
                               "as B-x B-x, as far as the tags' counts can tell (0: none).", non_negative,
                          legacy=0.0)
    bio_constraints: bool = _f(True, "Decoding forbids the tag pairs the BIO scheme forbids (an I-x at the start or "
                                     "after anything but B-x/I-x), in Viterbi and in the marginals that give "
                                     "confidence; training's likelihood only with --bio_training.", legacy=False)
    bio_training: bool = _f(False, "Train each CRF's likelihood under the BIO constraints too: its normaliser sums "
                                   "over the tag sequences --bio_constraints allows only, as decoding does (needs "
                                   "--bio_constraints).")
    snap_values: bool = _f(True, "Decoding snaps values to the vertical's training values: where a multi-word one "
                                 "occurs, decoded values of its attribute overlap it and none of them is itself a "
                                 "training value of its attribute, it replaces them (mtl_tagger.snap).", legacy=False)
    selection: str = _f("macro_f1", "The dev score that selects each vertical's best step: macro_f1 (the paper's "
                                    "mean F1 over B-/I- tags) or entity_f1 (conlleval's F1 over whole values).",
                                    one_of(SELECTIONS))
    calibration: str = _f("temperature", "How the end of training calibrates each vertical's confidence on its "
                                         "dev split (mtl_tagger.calibration): temperature (the CRF's scores divided "
                                         "by one fitted number) or platt (a logistic map of the value's raw "
                                         "confidence).", one_of(CALIBRATIONS), resumable=True)
    epochs: int = _f(30, "Epochs of the largest vertical; the step budget is epochs × its minibatches, "
                         "clipped to [--min_steps, --max_steps].", positive, resumable=True)
    min_steps: int = _f(1000, "Train at least this many optimiser steps, however small the verticals.", non_negative,
                         resumable=True)
    max_steps: int = _f(3000, "Train at most this many optimiser steps (0: no cap).", non_negative,
                         resumable=True)
    eval_every: int = _f(50, "Score dev every this many steps (0: once per epoch of the largest vertical).",
                         non_negative, resumable=True)
    patience: int = _f(10, "Stop after this many dev evaluations in which no vertical improved (0: never).",
                       non_negative, resumable=True)
    max_len: int = _f(200, "Longer sentences are split into chunks of at most this many tokens.", positive)
    seed: int = _f(42, "Random seed: same seed, data and flags give identical metrics.json.",
                   within(0, 2**31, "[0, 2**31)"))
    strict_bio: bool = _f(False, "Make an I-x after O or after B-y an error instead of repairing it to B-x.")
    overwrite: bool = _f(False, "Replace a model dir that holds a model of other verticals, flags or data.",
                         resumable=True)
    distribute: str = _f("", "multiworker: train on the workers TF_CONFIG lists (MultiWorkerMirroredStrategy; "
                             "README); empty: this process alone.", one_of(DISTRIBUTE), resumable=True)
    crf_impl: str = _f("own", "CRF implementation: own (mtl_tagger.crf) or tfa (tensorflow-addons, paper stack "
                              "only; the same function).", one_of(CRF_IMPLS), resumable=True)
    coupling_weight: float = _f(1.0, "Weight of the total coupling error TCE in the loss (coupled mode).", non_negative)
    coupling_score: str = _f("emission", "Score compared by the coupling loss: emission (the paper's s_i(y|x)), "
                                         "log_softmax (per position over the tags) or marginal (CRF log P(y_i|x)).",
                                         one_of(COUPLING_SCORES))
    coupling_sample: int = _f(1, "Coupling: neighbours per anchor whose scores a step compares (the attention still "
                                 "normalises over the anchor's whole list): 1 reads the paper's coupling minibatch "
                                 "of 30 as 30 pairs of L; 0: all of them.", non_negative)
    coupling_within: bool = _f(True, "Coupling (coupled mode): draw each step's anchors and the neighbours they are "
                                     "compared with from the sentences of the step's own vertical minibatches, and "
                                     "score them from those minibatches' encodings (no second encoding); "
                                     "--nocoupling_within draws them from the whole shortlist, as the paper does "
                                     "(flags/paper.cfg). With --distribute, an anchor and its neighbours lie in one "
                                     "worker's share.", legacy=False)
    coupling_stop_lender: bool = _f(False, "Coupling: stop the gradient through the neighbour's score, so only "
                                           "the anchor's score moves towards it.")
    attention_temperature: float = _f(1.0, "Coupling: divide the attention logits α by this.", positive)
    window: int = _f(2, "Context window half-width w for the shortlist and attention vectors.", non_negative)
    shortlist_threshold: float = _f(0.5, "Keep context pairs with cosine above this.", within(-1.0, 1.0, "[-1, 1)"))
    shortlist_max_neighbors: int = _f(10, "At most this many neighbours per anchor context.", positive)
    shortlist_contexts: str = _f("tagged", "tagged: both contexts carry a non-O gold tag; all: every token.",
                                 one_of(SHORTLIST_CONTEXTS))
    label_kgram: int = _f(3, "k of the character k-grams that embed label names (label coupling error).", positive)

    @property
    def names(self) -> list[str]:
        """The verticals of this run, in order (valid after `validate`)."""
        return [t for t in self.tasks.split(",") if t]

    @property
    def mode(self) -> str:
        """The effective multi-task mode."""
        return self.mtl_mode or ("coupled" if len(self.names) > 1 else "single")

    def validate(self) -> "Params":
        """Check every flag (InputError naming the first bad one) and spell the verticals as --tasks."""
        for f in dataclasses.fields(self):
            fault = f.metadata["check"](getattr(self, f.name)) if f.metadata.get("check") else ""
            if fault:
                raise InputError(f"--{f.name}={getattr(self, f.name)}: {fault}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in ("lexical_pairs", "lexical_step", "lexical_l1"):  # options of the spelling features
            value = getattr(self, name)
            if value != defaults[name] and not self.lexical_buckets:
                shown = f"--{name}" if value is True else f"--{name}={value}"  # as the command line spells it
                raise InputError(f"{shown} acts on the spelling features: it needs --lexical_buckets > 0")
        if self.bio_training and not self.bio_constraints:
            raise InputError("--bio_training trains under the BIO constraints: it needs --bio_constraints")
        if self.max_steps and self.min_steps > self.max_steps:
            raise InputError(f"--min_steps={self.min_steps}: must not exceed --max_steps={self.max_steps}")
        self._canonical_tasks()
        if self.vertical_dim and self.mode == "coupled":
            raise InputError(f"--vertical_dim={self.vertical_dim}: the coupling minibatches mix verticals, so coupled "
                             "mode has no vertical per sentence; use --mtl_mode=shared, or --vertical_dim=0")
        names = self.names
        if self.mode != "single" and len(names) < 2:
            raise InputError(f"--mtl_mode={self.mode} needs two or more verticals (--tasks=A,B or --task_b)")
        if self.mode == "single" and len(names) > 1:
            raise InputError("--mtl_mode=single trains one vertical: give only --task_a (or one --tasks)")
        if self.mode != "coupled" and self.couple != "all":
            raise InputError(f"--couple={self.couple}: pairs are coupled only in coupled mode, and this run is "
                             f"{self.mode} ({', '.join(names)}); drop --couple, or train two or more verticals with "
                             "--mtl_mode=coupled")
        self.couple_pairs()  # checks --couple against the verticals
        if not self.model_dir:
            self.model_dir = str(Path("runs") / f"{'+'.join(names)}.{self.mode}")
        return self

    def _canonical_tasks(self) -> None:
        """--task_a/--task_b and --tasks are two spellings of one list; params.json holds --tasks only."""
        pair = [t for t in (self.task_a, self.task_b) if t]
        listed = [t.strip() for t in self.tasks.split(",")] if self.tasks else []
        if self.task_b and not self.task_a:
            raise InputError("--task_b needs --task_a")
        if listed and pair and listed[:len(pair)] != pair:
            raise InputError(f"--tasks={self.tasks} and --task_a/--task_b name different verticals: give one")
        names = listed or pair
        if not names:
            raise InputError("--task_a (or --tasks) is required: a vertical, i.e. a directory name under --data_dir")
        for t in names:
            if not t or t in (".", "..") or "/" in t or ":" in t:
                raise InputError(f"--tasks={self.tasks or ','.join(pair)}: {t!r} is not a vertical name "
                                 "(no empty names, '/' or ':')")
        dup = sorted({t for t in names if names.count(t) > 1})
        if dup:
            raise InputError(f"--tasks: {', '.join(dup)} named twice; each vertical must differ")
        self.tasks, self.task_a, self.task_b = ",".join(names), "", ""

    def couple_pairs(self, ranking: dict[str, list[str]] | None = None) -> list[tuple[str, str]]:
        """The coupled pairs (borrower, lender) in a fixed order; `auto` needs the lenders ranking per vertical.

        all: every unordered pair once, in --tasks order; A:B: as listed; auto: each vertical with its top
        --lenders_k lenders, a pair kept once. Empty outside coupled mode.
        """
        names = self.names
        if self.mode != "coupled":
            return []
        if self.couple == "all":
            return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        if self.couple == "auto":
            if ranking is None:
                return []
            pairs: list[tuple[str, str]] = []
            for a in names:
                for b in ranking[a][: self.lenders_k]:
                    if (a, b) not in pairs and (b, a) not in pairs:
                        pairs.append((a, b))
            return pairs
        pairs = []
        for spec in self.couple.split(","):
            a, sep, b = spec.strip().partition(":")
            if not sep or a not in names or b not in names or a == b:
                raise InputError(f"--couple={self.couple}: {spec!r} is not A:B with two different verticals of "
                                 f"--tasks ({', '.join(names)}); or use all / auto")
            if (a, b) in pairs or (b, a) in pairs:
                raise InputError(f"--couple={self.couple}: the pair {a}:{b} is listed twice")
            pairs.append((a, b))
        return pairs

    def to_json(self) -> dict:
        """Plain dict of every field (what params.json holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object, path: str | Path = "params.json") -> "Params":
        """Params from a params.json value, every known field type-checked; unknown keys are ignored, and a
        missing field takes its legacy value if it has one, else its default."""
        if not isinstance(data, dict):
            raise InputError(f"expected a JSON object of flag values, found a {type(data).__name__}", path)
        values = {f.name: f.metadata["legacy"] for f in dataclasses.fields(cls) if "legacy" in f.metadata}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            v, want = data[f.name], type(f.default)
            ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v, ok = float(v), True
            if not ok:
                raise InputError(f"{f.name} must be a {want.__name__}, found {v!r}", path)
            values[f.name] = v
        return cls(**values)

    @classmethod
    def load(cls, model_dir: str | Path) -> "Params":
        """Read and check `<model_dir>/params.json`."""
        path = Path(model_dir) / "params.json"
        if not path.is_file():
            raise InputError("no params.json: not a trained model dir (train one with mtl_tagger.train)", path)
        p = cls.from_json(read_json(path), path)
        try:
            return p.validate()
        except InputError as e:
            raise InputError(f"holds a bad setting: {e}", path) from None

    def differences(self, other: "Params") -> list[str]:
        """Fields (but the resumable ones) whose values differ, as 'name: old -> new'.

        The mode is compared as effective (two verticals alone equal `--mtl_mode=coupled`), and paths
        as resolved, so the same run spelled differently still resumes.
        """
        fields = dataclasses.fields(self)
        paths = [f.name for f in fields if f.metadata["path"]]
        compared = [f.name for f in fields if not f.metadata["resumable"]]

        def canonical(p: "Params") -> dict:
            d = {**p.to_json(), "mtl_mode": p.mode}
            return d | {k: str(Path(d[k]).resolve()) if d[k] else "" for k in paths}

        mine, theirs = canonical(self), canonical(other)
        return [f"{k}: {theirs[k]!r} -> {mine[k]!r}" for k in compared if theirs[k] != mine[k]]


def define_flags() -> None:
    """Define one absl flag per Params field, with the field's default and help."""
    definers = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}
    for f in dataclasses.fields(Params):
        if f.name not in flags.FLAGS:
            definers[type(f.default)](f.name, f.default, f.metadata["help"])


def from_flags(validate: bool = True) -> Params:
    """Params from the parsed absl flags, validated unless the caller completes them first (crossfit sets the
    verticals, data and model dir of each fold)."""
    p = Params(**{f.name: getattr(flags.FLAGS, f.name) for f in dataclasses.fields(Params)})
    return p.validate() if validate else p


def read_flagfile(path: str | Path) -> dict[str, object]:
    """Params fields set by an absl flagfile (`--name=value` lines, `#` comments), typed as the fields.

    A nested `--flagfile=` line is read too (relative to the working directory, as absl does).
    """
    types = {f.name: type(f.default) for f in dataclasses.fields(Params)}
    values: dict[str, object] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.removeprefix("--").partition("=")
        if name == "flagfile":
            values.update(read_flagfile(value))
            continue
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
