"""A feature CRF per vertical (sklearn-crfsuite, L-BFGS): the "CRF" baseline row of the results tables.

    python -m experiments.crf_baseline --data_dir=data/flipkart --task=all [--out=experiments/results/crf]
    python -m experiments.crf_baseline --data_dir=data/flipkart --tasks=Necklace,Ring --c1=0.1 --c2=0.1

Needs the experiments-only extra: pip install -e '.[baselines]'.

Per vertical, read through mtl_tagger.corpus.load_task exactly as the neural trainer reads it (dev held
out of train when dev.conll is missing): standard hand-made token features (word, affixes, shapes,
flags, length bucket, a ±2 window), one CRF trained on train for every (c1, c2) of the grid, the one
with the best dev macro-F1 kept (ties: the earliest in grid order, --c1 outer and --c2 inner, as given;
the defaults ascend, so the least regularised of the tied). It is trained on train only, as the neural
tagger is, and scored on test with the project's evaluate_tags. Writes <out>/<V>.test.conll (token,
gold, pred, as the trainer's predictions/) and <out>/<V>.json (dev_ties counts the grid entries that
share the best dev macro-F1: on dev splits of a few sentences the choice is often a tie).
"""
import datetime
import math
import re
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from absl import flags, logging

from experiments.common import command_line
from mtl_tagger import cli
from mtl_tagger.conll import Sentence, write_conll
from mtl_tagger.corpus import TaskData, load_task
from mtl_tagger.errors import InputError
from mtl_tagger.files import write_json_atomic
from mtl_tagger.metrics import evaluate_tags, format_table

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined when run as a program, so importing this module next to other CLIs is safe)."""
    flags.DEFINE_string("data_dir", None, "Prepared data: <data_dir>/<Vertical>/{train,dev,test}.conll.")
    flags.DEFINE_string("task", None, "One vertical, or 'all' (every dir of --data_dir with train.conll and "
                        "test.conll).")
    flags.DEFINE_list("tasks", None, "Several verticals, comma-separated (instead of --task).")
    flags.DEFINE_string("out", "experiments/results/crf", "Where <V>.json and <V>.test.conll go.")
    flags.DEFINE_list("c1", ["0", "0.05", "0.1", "0.5"], "L1 strengths of the grid, in order (one value fixes c1).")
    flags.DEFINE_list("c2", ["0.01", "0.05", "0.1", "0.5"], "L2 strengths of the grid, in order (one value fixes c2).")
    flags.DEFINE_integer("max_iterations", 150, "L-BFGS iterations per fit.")


ALGORITHM = "lbfgs"
WINDOW = 2
_PUNCT = re.compile(r"[^\w\s]+")


def _import_crfsuite() -> object:
    """The sklearn_crfsuite module, or an InputError saying how to install it (it is an optional extra)."""
    try:
        import sklearn_crfsuite
    except ImportError as e:
        raise InputError(f"sklearn_crfsuite is not installed ({e}); run: pip install -e '.[baselines]'") from None
    return sklearn_crfsuite


def crfsuite_version() -> str:
    """The installed sklearn-crfsuite version, recorded in each result file."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sklearn-crfsuite")
    except PackageNotFoundError:
        return "unknown"


def word_shape(word: str) -> str:
    """Letters as X/x, digits as d, other characters kept: 'Gold-22K' -> 'Xxxx-ddX'."""
    out = []
    for ch in word:
        if ch.isdigit():
            out.append("d")
        elif ch.isalpha():
            out.append("X" if ch.isupper() else "x")
        else:
            out.append(ch)
    return "".join(out)


def short_shape(word: str) -> str:
    """word_shape with runs of one character collapsed: 'Xxxx-ddX' -> 'Xx-dX' (generalises over lengths)."""
    return re.sub(r"(.)\1+", r"\1", word_shape(word))


def length_bucket(word: str) -> str:
    """A coarse length class, so that length is a feature without one weight per exact length."""
    n = len(word)
    return str(n) if n <= 4 else "5-6" if n <= 6 else "7-10" if n <= 10 else "11+"


def _is_punct(word: str) -> bool:
    """True when every character is punctuation or a symbol (Unicode categories P* and S*)."""
    return all(unicodedata.category(ch)[0] in "PS" for ch in word)


def token_features(word: str) -> dict[str, object]:
    """The features of one token on its own (word, affixes, shapes, flags, length)."""
    lower = word.lower()
    f: dict[str, object] = {"bias": 1.0, "w": word, "lw": lower, "shape": word_shape(word),
                            "sshape": short_shape(word), "len": length_bucket(word)}
    for k in range(1, 5):
        f[f"pre{k}"] = lower[:k]
        f[f"suf{k}"] = lower[-k:]
    on = {"isdigit": word.isdigit(), "istitle": word.istitle(), "isupper": word.isupper(),
              "haslower": any(ch.islower() for ch in word), "hasdigit": any(ch.isdigit() for ch in word),
              "hashyphen": "-" in word, "ispunct": _is_punct(word), "haspunct": bool(_PUNCT.search(word))}
    f.update({name: 1.0 for name, yes in on.items() if yes})
    return f


def _context_features(word: str, near: bool) -> dict[str, object]:
    """The features a neighbour contributes: lower case, short shape, suffixes (more for ±1 than ±2)."""
    lower = word.lower()
    f: dict[str, object] = {"lw": lower, "sshape": short_shape(word), "suf3": lower[-3:]}
    if near:
        f["suf2"] = lower[-2:]
        f["shape"] = word_shape(word)
        for name, on in (("istitle", word.istitle()), ("isupper", word.isupper()), ("isdigit", word.isdigit()),
                         ("ispunct", _is_punct(word))):
            if on:
                f[name] = 1.0
    return f


def sentence_features(tokens: Sequence[str]) -> list[dict[str, object]]:
    """crfsuite feature dicts of a sentence: each token's own features, BOS/EOS and a ±2 window."""
    own = [token_features(w) for w in tokens]
    context = {near: [_context_features(w, near) for w in tokens] for near in (True, False)}
    n = len(tokens)
    out = []
    for i in range(n):
        f = dict(own[i])
        if i == 0:
            f["BOS"] = 1.0
        if i == n - 1:
            f["EOS"] = 1.0
        for off in range(-WINDOW, WINDOW + 1):
            if off == 0:
                continue
            j = i + off
            key = f"{off:+d}"
            if 0 <= j < n:
                f.update({f"{key}:{k}": v for k, v in context[abs(off) == 1][j].items()})
            else:
                f[f"{key}:pad"] = 1.0
        if i > 0:
            f["-1|0:lw"] = f"{tokens[i - 1].lower()}|{tokens[i].lower()}"
        if i < n - 1:
            f["0|+1:lw"] = f"{tokens[i].lower()}|{tokens[i + 1].lower()}"
        out.append(f)
    return out


def _features(sentences: Sequence[Sentence]) -> list[list[dict[str, object]]]:
    """sentence_features of every sentence (computed once per split, shared by the whole grid)."""
    return [sentence_features(s.tokens) for s in sentences]


def _floats(values: Sequence[str], name: str) -> list[float]:
    """The values of a list flag as distinct non-negative floats, in the order given; InputError otherwise."""
    try:
        out = list(dict.fromkeys(float(v) for v in values))
    except ValueError:
        raise InputError(f"--{name}={','.join(values)}: expected comma-separated numbers") from None
    if not out or any(v < 0 or not math.isfinite(v) for v in out):
        raise InputError(f"--{name}={','.join(values)}: expected one or more numbers >= 0")
    return out


def task_names(data_dir: str, task: str | None, tasks: Sequence[str] | None) -> list[str]:
    """The verticals to run: --task (a name or 'all') or --tasks; InputError when neither or both."""
    if bool(task) == bool(tasks):
        raise InputError("give exactly one of --task=<Vertical or all> and --tasks=A,B")
    if task != "all":
        return [task] if task else list(dict.fromkeys(tasks))
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError("data dir not found (--data_dir)", root)
    found = sorted(p.name for p in root.iterdir()
                   if p.is_dir() and (p / "train.conll").is_file() and (p / "test.conll").is_file())
    if not found:
        raise InputError("no vertical here (a dir holding train.conll and test.conll)", root)
    return found


def fit(train: Sequence[Sentence], x_train: list, c1: float, c2: float, max_iterations: int) -> object:
    """One L-BFGS CRF trained on train (every transition allowed, so unseen ones get a weight too)."""
    crf = _import_crfsuite().CRF(algorithm=ALGORITHM, c1=c1, c2=c2, max_iterations=max_iterations,
                                 all_possible_transitions=True)
    crf.fit(x_train, [list(s.tags) for s in train])
    return crf


def best_entry(grid: Sequence[dict]) -> int:
    """Index of the grid entry with the highest dev macro-F1; ties go to the earliest, so the choice is stable."""
    return max(range(len(grid)), key=lambda i: (grid[i]["dev_macro_f1"], -i))


def run_task(data: TaskData, c1s: Sequence[float], c2s: Sequence[float], max_iterations: int
             ) -> tuple[dict, list[list[str]]]:
    """Grid-search c1/c2 on dev, keep the best model (trained on train only), predict test.

    Returns the result record (without task/date/command) and the test predictions.
    """
    x_train, x_dev, x_test = _features(data.train), _features(data.dev), _features(data.test)
    dev_gold = [list(s.tags) for s in data.dev]
    grid, best_model = [], None
    for c1 in c1s:
        for c2 in c2s:
            crf = fit(data.train, x_train, c1, c2, max_iterations)
            score = evaluate_tags(dev_gold, crf.predict(x_dev))["macro_f1"]
            grid.append({"c1": c1, "c2": c2, "dev_macro_f1": score})
            logging.info("%s: c1=%g c2=%g dev macro-F1 %.4f", data.name, c1, c2, score)
            if best_entry(grid) == len(grid) - 1:
                best_model = crf  # trained on train only: the final model (a refit would be identical)
    best = grid[best_entry(grid)]
    pred = [list(tags) for tags in best_model.predict(x_test)]
    metrics = evaluate_tags([list(s.tags) for s in data.test], pred)
    record = {
        "c1": best["c1"],
        "c2": best["c2"],
        "dev_macro_f1": best["dev_macro_f1"],
        "dev_ties": sum(g["dev_macro_f1"] == best["dev_macro_f1"] for g in grid),
        "grid": grid,
        "train_sentences": len(data.train),
        "dev_sentences": len(data.dev),
        "dev_held_out": data.dev_held_out,
        "test_sentences": len(data.test),
        "crf": {"package": f"sklearn-crfsuite {crfsuite_version()}", "algorithm": ALGORITHM,
                "max_iterations": max_iterations, "all_possible_transitions": True, "window": WINDOW},
        "metrics": {"split": "test", **metrics},
    }
    return record, pred


def _summary(rows: dict[str, dict], seconds: dict[str, float]) -> str:
    """The selection side of the results: chosen c1/c2, dev macro-F1, grid size, train size, time."""
    width = max([len("Vertical"), *map(len, rows)])
    lines = [f"{'Vertical':<{width}} {'c1':>6} {'c2':>6} {'dev-F1':>7} {'grid':>5} {'#train':>7} {'sec':>6}"]
    for name, r in rows.items():
        lines.append(f"{name:<{width}} {r['c1']:>6g} {r['c2']:>6g} {100 * r['dev_macro_f1']:7.2f} "
                     f"{len(r['grid']):>5} {r['train_sentences']:>7} {seconds[name]:6.1f}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Run the CRF baseline on every requested vertical; write and print its results."""
    cli.check_args(argv)
    if not FLAGS.data_dir:
        raise InputError("--data_dir is required")
    if FLAGS.max_iterations < 1:
        raise InputError(f"--max_iterations={FLAGS.max_iterations}: expected a positive number")
    c1s, c2s = _floats(FLAGS.c1, "c1"), _floats(FLAGS.c2, "c2")
    _import_crfsuite()
    names = task_names(FLAGS.data_dir, FLAGS.task, FLAGS.tasks)
    # Read (and so validate) every vertical before the first fit: bad input fails at once.
    datasets = {t: load_task(FLAGS.data_dir, t, strict_bio=False, max_len=10**9) for t in names}
    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    command = command_line("experiments.crf_baseline")
    records, seconds = {}, {}
    start = time.time()
    for name, data in datasets.items():
        t0 = time.time()
        record, pred = run_task(data, c1s, c2s, FLAGS.max_iterations)
        write_conll(out / f"{name}.test.conll", ((s.tokens, s.tags, tags) for s, tags in zip(data.test, pred)))
        record = {"task": name, "date": datetime.date.today().isoformat(), "command": command, **record}
        write_json_atomic(out / f"{name}.json", record)
        records[name], seconds[name] = record, time.time() - t0
        print(f"{name}: c1={record['c1']:g} c2={record['c2']:g} dev macro-F1 {100 * record['dev_macro_f1']:.2f}, "
              f"test macro-F1 {100 * record['metrics']['macro_f1']:.2f} ({seconds[name]:.1f} s)", flush=True)
    print()
    print(format_table({n: r["metrics"] for n, r in records.items()}, per_tag=False))
    print()
    print(_summary(records, seconds))
    print(f"\n{len(records)} vertical(s) in {time.time() - start:.1f} s; results in {out}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
