"""Calibration of a value's confidence: what share of values shown with confidence c are right.

A value's raw confidence is the smallest CRF marginal of its tokens' tags; the marginals of a CRF fitted to little
data are over-confident. Calibration maps it to the precision of values of that confidence, per vertical, fitted on
the vertical's dev split. Two maps are implemented, both increasing, so they never change which values are
extracted nor their order:

- temperature (Guo et al., 2017): the marginals are computed from every CRF score divided by T (emissions and the
  decoding transitions, so the Viterbi path is unchanged); one parameter, chosen on a grid from 1 to 64 by the dev
  values' log loss (never below 1: a small dev split all right by chance would sharpen an over-confident CRF);
- platt: σ(a · logit(c) + b) of the raw confidence c, a > 0, fitted by the dev values' log loss; applied per
  token it gives the same value confidence, since an increasing map commutes with the minimum over tokens.

Values that hold a word of no training sentence are right far less often than others of the same confidence: there
the model guesses from context. So, where the model's vocabulary says which words its training splits hold, a
second map, min(c, σ(a′ · logit(c) + b′)) with a′ ≤ 1, is fitted on those dev values alone (after the first map) and
applied to their tokens: it may lower or soften their confidence, never raise or sharpen it, and leaves every other
value's as it was.

A value is right when a gold value has the same attribute and the same tokens (conlleval's exact match).
Expected calibration error (ECE): 10 equal-width bins of confidence, Σ (values in bin / values) × |precision −
mean confidence| over the bins.
"""
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from absl import flags

from mtl_tagger import cli
from mtl_tagger.conll import Sentence, chunks, tag_structure
from mtl_tagger.errors import InputError
from mtl_tagger.files import read_json, write_json_atomic

if TYPE_CHECKING:
    import tensorflow as tf

    from mtl_tagger.tagger import Tagger  # TensorFlow is imported only where a model is loaded

BINS = 10
METHODS = ("temperature", "platt")
FILE = "calibration.json"  # in the model dir: vertical → Calibration.to_json()
# The grid temperature scaling chooses from: steps of 2^(1/4) from 1, so calibration only ever softens the CRF. A dev
# split of a few values, all right by chance, would otherwise pick T < 1 and make an over-confident model more so.
TEMPERATURES = np.geomspace(1.0, 64.0, 25)
_EPS = 1e-6


def value_outcomes(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                   token_confidence: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Each predicted value's confidence (the smallest of its tokens') and whether a gold value matches it."""
    confidence, right = [], []
    for g, p, c in zip(gold, pred, token_confidence):
        truth = set(chunks(g))
        for value in chunks(p):
            confidence.append(min(c[value[1]:value[2]]))
            right.append(value in truth)
    return np.array(confidence, np.float64), np.array(right, bool)


def in_unseen_values(attribute: np.ndarray, inner: np.ndarray, trained: np.ndarray) -> np.ndarray:
    """Per token, whether it is in a value that holds a word no training sentence has (`trained`: per token). The
    values are conll.chunks' of tags given as `tag_structure` gives them; array operations, as the SavedModel runs
    them, since this runs on every sentence the tagger decodes."""
    inside = attribute >= 0
    if np.all(trained) or not inside.any():
        return np.zeros(len(attribute), bool)
    before = np.concatenate([[-1], attribute[:-1]])
    value = np.cumsum(inside & ~(inner & (attribute == before))) - 1  # I-x after x continues the value
    holds = np.bincount(value[inside & ~trained], minlength=value[-1] + 1)
    return inside & (holds[np.maximum(value, 0)] > 0)


def bins(confidence: np.ndarray, right: np.ndarray, count: int = BINS) -> list[dict]:
    """Per equal-width bin of confidence: its range, how many values, their mean confidence and precision."""
    index = np.minimum((confidence * count).astype(int), count - 1)
    out = []
    for b in range(count):
        inside = index == b
        n = int(inside.sum())
        out.append({"low": b / count, "high": (b + 1) / count, "values": n,
                    "confidence": float(confidence[inside].mean()) if n else None,
                    "precision": float(right[inside].mean()) if n else None})
    return out


def ece(confidence: np.ndarray, right: np.ndarray, count: int = BINS) -> float:
    """Expected calibration error over `count` equal-width bins (0.0 without values)."""
    if not len(confidence):
        return 0.0
    return float(sum(b["values"] * abs(b["precision"] - b["confidence"]) for b in bins(confidence, right, count)
                     if b["values"]) / len(confidence))


def log_loss(confidence: np.ndarray, right: np.ndarray) -> float:
    """Mean negative log-likelihood of the outcomes under the confidences (clipped away from 0 and 1)."""
    c = np.clip(confidence, _EPS, 1 - _EPS)
    return float(-np.mean(np.where(right, np.log(c), np.log1p(-c))))


def _logit(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, _EPS, 1 - _EPS)
    return np.log(c) - np.log1p(-c)


def platt(confidence: np.ndarray, a: float, b: float) -> np.ndarray:
    """σ(a · logit(c) + b)."""
    return 1.0 / (1.0 + np.exp(-(a * _logit(confidence) + b)))


def fit_platt(confidence: np.ndarray, right: np.ndarray, steps: int = 100, steepest: float | None = None
              ) -> tuple[float, float]:
    """(a, b) minimising the log loss by Newton's method, each step halved until the loss falls, with a small ridge
    toward the identity map (1, 0), so that a dev split of a few values, or of values all right, still gets a
    finite, increasing map. With `steepest`, a is at most that: where the free fit is steeper, a = steepest and b
    alone is fitted."""
    x, y = _logit(confidence), right.astype(np.float64)
    identity, ridge = np.array([1.0, 0.0]), 1e-2

    def loss(w: np.ndarray) -> float:
        z = w[0] * x + w[1]
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + ridge / 2 * np.sum((w - identity) ** 2))

    def newton(w: np.ndarray, free: np.ndarray) -> np.ndarray:
        for _ in range(steps):
            p = 1.0 / (1.0 + np.exp(-np.clip(w[0] * x + w[1], -500, 500)))
            grad = np.array([np.sum((p - y) * x), np.sum(p - y)]) + ridge * (w - identity)
            s = p * (1 - p)
            hess = np.array([[np.sum(s * x * x), np.sum(s * x)], [np.sum(s * x), np.sum(s)]]) + ridge * np.eye(2)
            step, before = np.zeros(2), loss(w)
            step[free] = np.linalg.solve(hess[np.ix_(free, free)], grad[free])
            while loss(w - step) > before and np.abs(step).max() > 1e-12:
                step = step / 2
            w = w - step
            if np.abs(step).max() < 1e-9:
                break
        return w

    w = newton(identity.copy(), np.array([True, True]))
    if steepest is not None and w[0] > steepest:
        w = newton(np.array([steepest, w[1]]), np.array([False, True]))
    return max(float(w[0]), _EPS), float(w[1])


def fit_temperature(confidences: Sequence[np.ndarray], right: np.ndarray, grid: np.ndarray = TEMPERATURES
                    ) -> float:
    """The temperature of the grid whose confidences (one array per grid temperature) have the smallest log loss
    (the lowest of equal ones)."""
    losses = [log_loss(c, right) for c in confidences]
    return float(grid[int(np.argmin(losses))])


@dataclass(frozen=True)
class Calibration:
    """One vertical's fitted map: its method and parameters, and what it was fitted on."""

    method: str
    temperature: float = 1.0
    a: float = 1.0
    b: float = 0.0
    dev_values: int = 0
    unseen_a: float = 1.0  # the second map, of values that hold a word no training sentence has
    unseen_b: float = 0.0
    unseen_values: int = 0  # the dev values it was fitted on; 0: none, no second map

    def apply(self, confidence: np.ndarray, unseen: np.ndarray | None = None) -> np.ndarray:
        """The calibrated confidence of raw ones (temperature acts inside the CRF: its confidences come in
        calibrated already); `unseen`: where the second map applies (in_unseen_values), if it was fitted. The second
        map's σ is fitted by log loss and then taken no higher than the first map's confidence."""
        c = platt(confidence, self.a, self.b) if self.method == "platt" else confidence
        if unseen is None or not self.unseen_values:
            return c
        return np.where(unseen, np.minimum(c, platt(c, self.unseen_a, self.unseen_b)), c)

    def to_json(self) -> dict:
        """What calibration.json holds for the vertical."""
        return {"method": self.method, "temperature": self.temperature, "a": self.a, "b": self.b,
                "dev_values": self.dev_values, "unseen_a": self.unseen_a, "unseen_b": self.unseen_b,
                "unseen_values": self.unseen_values}


def reliability_png(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> bytes | None:
    """A reliability diagram (precision against confidence per bin, the diagonal, ECE in the legend) of one or more
    curves as PNG bytes; None when matplotlib (the `plots` extra) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=100)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    for label, (confidence, right) in curves.items():
        points = [(b["confidence"], b["precision"], b["values"]) for b in bins(confidence, right) if b["values"]]
        if points:
            xs, ys, ns = zip(*points)
            ax.plot(xs, ys, marker="o", label=f"{label} (ECE {ece(confidence, right):.3f}, {len(confidence)} values)")
            for x, y, n in zip(xs, ys, ns):
                ax.annotate(str(n), (x, y), fontsize=6, textcoords="offset points", xytext=(2, -8))
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence", ylabel="precision of the values", title=title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def read_calibration(model_dir: str | Path, tasks: Sequence[str]) -> dict[str, Calibration] | None:
    """The model dir's calibration per vertical (None without calibration.json); InputError when it is damaged."""
    path = Path(model_dir) / FILE
    if not path.is_file():
        return None
    data = read_json(path)

    def number(c: dict, key: str) -> bool:
        try:
            return type(c.get(key)) in (int, float) and math.isfinite(c[key])
        except OverflowError:  # an integer beyond any float
            return False

    def count(c: dict, key: str) -> bool:
        return type(c.get(key)) is int and c[key] >= 0

    if not isinstance(data, dict) or set(data) - set(tasks) or not all(
            isinstance(c, dict) and c.get("method") in METHODS and set(c) <= {*Calibration.__dataclass_fields__}
            and all(number(c, k) for k in ("temperature", "a", "b"))
            and all(number(c, k) for k in ("unseen_a", "unseen_b") if k in c)  # files before the second map lack them
            and c["temperature"] > 0 and c["a"] > 0 and c.get("unseen_a", 1.0) > 0
            and count(c, "dev_values") and count({"unseen_values": 0, **c}, "unseen_values")
            for c in data.values()):
        raise InputError(f"damaged calibration: expected each vertical's method ({', '.join(METHODS)}) with a positive "
                         "temperature and a, b and dev_values (and, where given, a positive unseen_a, unseen_b and "
                         "unseen_values); calibrate again with python -m mtl_tagger.calibration", path)
    return {task: Calibration(**c) for task, c in data.items()}


def outcomes_at(tagger: "Tagger", sentences: Sequence[Sentence], task: str, temperatures: Sequence[float]
                ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The raw confidence at each temperature of every value the tagger extracts from gold sentences (one pass of
    the network: the values are the same at any temperature), whether each is right, and whether it holds a word no
    training sentence has (never, where the model's vocabulary does not say)."""
    tags, confidence = tagger.tag([s.tokens for s in sentences], task, temperature=[float(t) for t in temperatures])
    gold = [s.tags for s in sentences]
    scored = [value_outcomes(gold, tags, [c[k] for c in confidence]) for k in range(len(temperatures))]
    unseen = [in_unseen_values(*tag_structure(t), tagger.vocab.trained(s.tokens)) for s, t in zip(sentences, tags)]
    return [raw for raw, _ in scored], scored[0][1], np.array(
        [u[a] for t, u in zip(tags, unseen) for _, a, _ in chunks(t)], bool)


def outcomes(tagger: "Tagger", sentences: Sequence[Sentence], task: str, temperature: float = 1.0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw confidence (at `temperature`) of every value the tagger extracts from gold sentences, whether it
    is right and whether it holds an unseen word (outcomes_at)."""
    raw, right, unseen = outcomes_at(tagger, sentences, task, [temperature])
    return raw[0], right, unseen


def searched(method: str, grid: Sequence[float] = TEMPERATURES) -> list[float]:
    """The temperatures whose raw confidences `method` is fitted from: the grid for temperature scaling, 1 alone
    for Platt scaling."""
    return [float(t) for t in grid] if method == "temperature" else [1.0]


def fit_outcomes(method: str, raw: Sequence[np.ndarray], right: np.ndarray, temperatures: Sequence[float],
                 unseen: np.ndarray | None = None) -> Calibration:
    """One vertical's map from its dev values' raw confidences at each of `searched(method)`'s `temperatures`
    (outcomes_at) and whether each is right: the identity when there is no value to fit on. With `unseen` (per
    value, outcomes_at), the second map is fitted on the values it marks, as the first map leaves them."""
    if not len(right):
        return Calibration(method)
    if method == "platt":
        a, b = fit_platt(raw[0], right)
        fitted = Calibration("platt", a=a, b=b, dev_values=len(right))
    else:
        fitted = Calibration("temperature", temperature=fit_temperature(raw, right, np.asarray(temperatures)),
                             dev_values=len(right))
    if unseen is None or not unseen.any():
        return fitted
    first = fitted.apply(raw[list(temperatures).index(fitted.temperature)])[unseen]
    a, b = fit_platt(first, right[unseen], steepest=1.0)  # steeper, a few dozen dev values pushed right ones to 0
    return replace(fitted, unseen_a=a, unseen_b=b, unseen_values=int(unseen.sum()))


def fit(tagger: "Tagger", sentences: Sequence[Sentence], task: str, method: str, grid: np.ndarray = TEMPERATURES,
        second: bool = True) -> Calibration:
    """One vertical's map, fitted on its dev sentences; `grid`: the temperatures to choose from; `second`: with the
    second map of values that hold an unseen word."""
    temperatures = searched(method, grid)
    raw, right, unseen = outcomes_at(tagger, sentences, task, temperatures)
    return fit_outcomes(method, raw, right, temperatures, unseen if second else None)


def calibrate(model_dir: str | Path, method: str, dev: dict[str, Sequence[Sentence]],
              writer: "tf.summary.SummaryWriter | None" = None, tagger: "Tagger | None" = None,
              select: Callable[[str], None] = lambda task: None) -> list[str]:
    """Fit each vertical's map on its dev sentences and write calibration.json, and calibration/<vertical>.png with
    the dev values' reliability diagram before and after (also in TensorBoard: `writer`, the training's, or one of
    its own); returns one report line each. `tagger`: the model's, without calibration, whose weights
    `select(task)` sets to the vertical's selected step (the training's, which spares loading the model again);
    by default the model dir's."""
    if method not in METHODS:
        raise InputError(f"--calibration={method}: must be one of {', '.join(METHODS)}")
    import tensorflow as tf

    from mtl_tagger.tagger import Tagger

    model_dir = Path(model_dir)
    tagger = tagger or Tagger.load(model_dir, calibrated=False)
    fitted, lines = {}, []
    if tagger.vocab.train_words is None:
        lines.append("vocab.json does not say which words the training splits hold (a model written before it did): "
                     "no second map for values at unseen words")
    (model_dir / "calibration").mkdir(exist_ok=True)
    own = writer is None
    writer = tf.summary.create_file_writer(str(model_dir / "tensorboard")) if own else writer
    temperatures = searched(method)  # from 1: the raw confidences before calibration are among them
    for task in tagger.tasks:
        select(task)
        raw, right, unseen = outcomes_at(tagger, dev[task], task, temperatures)  # one pass of the network each
        fitted[task] = fit_outcomes(method, raw, right, temperatures, unseen)
        before = raw[temperatures.index(1.0)], right
        after = fitted[task].apply(raw[temperatures.index(fitted[task].temperature)], unseen), right
        png = reliability_png({"raw": before, "calibrated": after}, f"{task}: dev values")
        if png is not None:
            (model_dir / "calibration" / f"{task}.png").write_bytes(png)
            with writer.as_default():
                tf.summary.image(f"calibration/{task}", tf.image.decode_png(png)[None], step=0)
        second = fitted[task].unseen_values
        lines.append(f"{task}: confidence calibrated on {len(before[0])} dev values ({method}"
                     f"{f'; the {second} holding an unseen word, also by their own map' if second else ''}): ECE "
                     f"{ece(*before):.3f} -> {ece(*after):.3f}")
    if own:
        writer.close()
    write_json_atomic(model_dir / FILE, {task: c.to_json() for task, c in fitted.items()})
    return lines


def main(argv: list[str]) -> None:
    """CLI: calibrate a trained model dir on its verticals' dev splits (as training does at its end)."""
    from mtl_tagger.corpus import load_task
    from mtl_tagger.modeldir import model_dir_lock, read_model

    cli.check_args(argv, "model_dir")
    model_dir = Path(FLAGS.model_dir)
    p = read_model(model_dir, calibrated=False)[0]  # checked before calibrate imports TensorFlow
    dev = {t: load_task(p.data_dir, t, p.strict_bio, p.max_len).dev for t in p.names}
    lock = model_dir_lock(model_dir)
    try:
        for line in calibrate(model_dir, FLAGS.method or p.calibration, dev):
            print(line)
    finally:
        lock.release()


FLAGS = flags.FLAGS

if __name__ == "__main__":
    flags.DEFINE_string("model_dir", None, "Trained model dir (holds params.json).")
    flags.DEFINE_string("method", None, f"One of {', '.join(METHODS)} (default: the model's --calibration).")
    cli.run(main)
