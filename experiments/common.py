"""Helpers shared by the experiment scripts: flags, report headers (the command, the machine, its load), the one
run-writer and the result files' readers, table cells; the benchmarks' synthetic data, batches, timers, GEMM rates
and FLOP counts.

Light on purpose (no TensorFlow): bench_peer's PyTorch process imports it.
"""
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from absl import app, flags

from mtl_tagger.conll import read_conll, write_conll
from mtl_tagger.files import write_json_atomic
from mtl_tagger.modeldir import installed_version, read_run
from mtl_tagger.params import Params

SEEDS = 3  # the sweeps' seeds (make_sweep --seeds); a cell with fewer names its count
BUCKETS = [(1, 10), (11, 50), (51, 200), (201, None)]  # tag frequency bands (training tokens) of the gain tables
CATALOG = "../shared/data/flipkart/products.jsonl.gz"  # the Flipkart sample beside the repository (run from its root)
FOLD_MODEL = "runs/crossfit/fold0/model"  # fold 0's model of `mtl_tagger.crossfit --out=runs/crossfit` (11 verticals)
ATTRIBUTES = 20  # the synthetic data's attributes: 41 tags, O + B/I of each
MEDIAN_LEN, P90_LEN, MAX_LEN = 30, 70, 150  # its sentence lengths
KINDS = ("bucketed", "unbucketed")  # the benchmarks' batch plans: the training loop's length buckets, random order
Batch = dict[str, np.ndarray]  # a padded batch: words, chars, tags, length
SMALL_DATA = "small_data"  # the small-data protocol (experiments.small_data): experiments/results/<it>/, runs/<it>/
T = TypeVar("T")


# ---------------------------------------------------------------- flags and report headers


def define_catalog_flags(model_dir: bool = True) -> None:
    """--catalog (default the Flipkart sample) and, with `model_dir`, --model_dir (default the audit's first fold
    model): what the scripts that extract from the catalog read."""
    flags.DEFINE_string("catalog", CATALOG, "Catalog file (run from the repository root).")
    if model_dir:
        flags.DEFINE_string("model_dir", FOLD_MODEL, "Trained model of the catalog's verticals (the default: fold "
                            "0's model of `python -m mtl_tagger.crossfit --catalog=CATALOG --out=runs/crossfit "
                            "--flagfile=flags/sweep.cfg`).")


def define_scoring_flags(out: str) -> None:
    """The flags of a study that decodes the small-data protocol's runs (scored_runs) and writes the table `out`."""
    flags.DEFINE_string("results_dir", f"experiments/results/{SMALL_DATA}", "The protocol's result files.")
    flags.DEFINE_string("runs_dir", f"runs/{SMALL_DATA}", "The protocol's model dirs.")
    flags.DEFINE_string("out", out, "The table.")


def command_line(module: str) -> str:
    """The shell command that reruns `module` with this process's arguments, for a results page's header."""
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def machine() -> str:
    """'<CPU model> × <cores>' (the model name from /proc/cpuinfo where there is one, else platform.processor()):
    what a report's timings depend on."""
    info = Path("/proc/cpuinfo")
    names = re.findall(r"^model name\s*:\s*(.*)$", info.read_text(), re.M) if info.is_file() else []
    return f"{names[0] if names else platform.processor() or '?'} × {os.cpu_count()}"


def trained_on(results: Iterable[dict]) -> str:
    """'AMD EPYC × 2 (matmul_dtype auto)' for the result files' machines and dtypes, '; '-joined when they differ:
    `--matmul_dtype=auto` gives bfloat16 products on one CPU and float32 on another, so a page names both."""
    seen = sorted({(r.get("machine") or "machine not recorded", Params.from_json(r["params"]).matmul_dtype)
                   for r in results})
    return "; ".join(f"{m} (matmul_dtype {d})" for m, d in seen) or "–"


def versions(*names: str) -> str:
    """'Python 3.11.7, TensorFlow 2.15.0, Ray ?' for versions("TensorFlow", "Ray") (each import package the name in
    lower case, read from its metadata without importing it; ? where it is not installed): the software a report's
    timings depend on."""
    return ", ".join([f"Python {platform.python_version()}",
                      *(f"{name} {installed_version(name.lower())}" for name in names)])


def load_average(values: Sequence[float] | None = None, digits: int = 1) -> str:
    """The 1/5/15-minute load averages as 'a/b/c', now or as read before (os.getloadavg()): other work on the
    machine slows what a report times."""
    return "/".join(f"{x:.{digits}f}" for x in (os.getloadavg() if values is None else values))


def describe(code: Path) -> str:
    """The checkout `code`: its path and commit, and whether its package differs from that commit."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(code), *args], capture_output=True, text=True).stdout.strip()

    changed = " with uncommitted changes" if git("status", "--porcelain", "--", "mtl_tagger") else ""
    return f"`{code}` at {git('rev-parse', '--short', 'HEAD') or '?'}{changed}"


# ---------------------------------------------------------------- runs and their result files


def run_one(name: str, train_args: list[str], runs_dir: Path, results_dir: Path, one_thread: bool,
            module: str = "mtl_tagger.train", variant: str | None = None) -> dict | None:
    """Train the run `name` (`python -m <module> <train_args> --model_dir=<runs_dir>/<name>`, which resumes a run
    cut short) and write its result file, labelled with the study's `variant` if given; the result (read back
    when the file exists already, and then not trained again), or None when training failed. `one_thread` gives
    TensorFlow one thread, for runs trained side by side."""
    path = results_dir / f"{name}.json"
    if path.is_file():
        return read_result(path)
    model_dir = runs_dir / name
    command = [sys.executable, "-m", module, *train_args, f"--model_dir={model_dir}"]
    start = time.time()
    threads = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"} if one_thread else {}
    with open(runs_dir / f"{name}.log", "a") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **threads})
    if code != 0:
        print(f"{name}: FAILED (exit {code}); see {runs_dir / (name + '.log')}", flush=True)
        return None
    result = {
        "name": name,
        **({"variant": variant} if variant is not None else {}),
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip(),
        "machine": machine(),
        "command": " ".join(command[1:]),
        "wall_seconds": round(time.time() - start, 1),
        **read_run(model_dir),
    }
    for png in sorted((model_dir / "attention").glob("*.png")):
        shutil.copyfile(png, results_dir / f"{name}.{png.stem}.png")
    write_json_atomic(path, result)
    f1 = ", ".join(f"{v} {m['macro_f1'] * 100:.2f} (step {m['selected_step']})" for v, m in result["metrics"].items())
    print(f"{name}: done in {result['wall_seconds']:.0f} s; test macro-F1 {f1}", flush=True)
    return result


def traced_run(label: str, extra: list[str], vertical: str, seed: str, runs: Path, results: Path, base: str,
               data_dir: str, word_vectors: str | None, one_thread: bool) -> dict | None:
    """The single-task run `<label>.<vertical>.s<seed>` of a study, traced: from the flagfile `base` on
    `data_dir`; `word_vectors` overrides the flagfile's ('' = random embeddings; None keeps it), and `extra`
    flags override both. Trained and recorded by run_one (None when training failed)."""
    args = [f"--flagfile={base}", f"--task_a={vertical}", f"--data_dir={data_dir}", f"--seed={seed}",
            *([f"--word_vectors={word_vectors}"] if word_vectors is not None else []), *extra]
    return run_one(f"{label}.{vertical}.s{seed}", args, runs, results, one_thread, "experiments.traced_train", label)


def read_result(path: Path) -> dict:
    """A run's result file in the one schema run_one writes: name, date, commit, machine (where one was recorded:
    `--matmul_dtype=auto` depends on it), command, wall_seconds, params, metrics (test metrics per vertical at its
    selected step), history, analysis, and the study label `variant` where a study set one.

    Files the study runner wrote before that schema (vertical, seed, selected, steps) are read as it: metrics
    {vertical: selected}, params with the two flags such a file names (tasks, seed), no commit or analysis."""
    r = json.loads(path.read_text(encoding="utf-8"))
    if "selected" not in r:
        return r
    return {"name": r["name"], "variant": r["variant"], "date": r["date"], "commit": None, "command": r["command"],
            "wall_seconds": r["wall_seconds"], "params": {"tasks": r["vertical"], "seed": r["seed"]},
            "metrics": {r["vertical"]: r["selected"]}, "history": r["history"], "analysis": None}


def single(result: dict) -> tuple[str, dict]:
    """A single-task run's vertical and its test metrics at the selected step."""
    [(vertical, metrics)] = result["metrics"].items()
    return vertical, metrics


Runs = dict[tuple[str, str], dict[str, list[dict]]]  # (mode, "A" or "A+B") → vertical → one record per seed


def read_sweep(results_dir: Path) -> Runs:
    """A sweep's result records grouped by (mode, pair) and vertical; variant runs (`<name>@<label>`) are left out."""
    runs: Runs = defaultdict(lambda: defaultdict(list))
    seen = []
    for path in sorted(results_dir.glob("*.json")):
        r = read_result(path)
        if "@" in r["name"]:
            continue
        p = Params.from_json(r["params"])
        seen.append(p)
        for vertical, m in r["metrics"].items():
            runs[(p.mode, "+".join(p.names))][vertical].append({**r, "m": m})
    one_tag_prior(seen, results_dir)
    return runs


def best_pair(runs: Runs, mode: str, vertical: str, on: str) -> str | None:
    """The pair whose runs give `vertical` the highest mean macro-F1 on `on` ('dev': the selected step's dev
    score, an honest choice; 'test': as the paper reports)."""
    cands = {pair: rs[vertical] for (m, pair), rs in runs.items() if m == mode and "+" in pair and vertical in rs}
    if not cands:
        return None
    key = "dev_macro_f1" if on == "dev" else "macro_f1"
    return max(sorted(cands), key=lambda pair: statistics.mean(r["m"][key] for r in cands[pair]))


def scored_runs(score: Callable[[Path], T], results_dir: Path, runs_dir: Path, variants: Sequence[str] = ()
                ) -> tuple[int, dict[str, list[T]]]:
    """`score` of the model dir of every finished run of the small-data protocol (experiments.small_data), or of
    those of `variants` alone, grouped by '<size> <condition>', then 'all <condition>' and 'all', in that order; and
    how many runs there were. For the studies that decode them."""
    groups: dict[str, list[T]] = defaultdict(list)
    results = [path for path in sorted(results_dir.glob("*.s[0-9]*.json"))
               if not variants or path.name.split(".")[0] in variants]
    for path in results:
        result = read_result(path)
        label = result["variant"]
        size, condition = label.lstrip("abcdefghijklmnopqrstuvwxyz.") or "?", label.rstrip("0123456789")
        value = score(runs_dir / result["name"])
        print(result["name"], flush=True)
        for key in (f"{size} {condition}", f"all {condition}", "all"):
            groups[key].append(value)
    return len(results), {k: groups[k] for k in sorted(groups, key=lambda k: (k.split()[0] == "all", k))}


def one_tag_prior(params: Iterable[Params], where: object) -> None:
    """Stop unless every run decodes with the same --tag_prior: runs from before it became a default (0) beside
    newer ones (e.g. a sweep continued after the change) would compare unlike models."""
    values = sorted({p.tag_prior for p in params})
    if len(values) > 1:
        raise SystemExit(f"error: {where}: the runs decode with --tag_prior {' and '.join(map(str, values))}; rerun "
                         "the older ones, or pin --tag_prior in the sweep's flagfiles")


def crf_results(crf_dir: Path) -> dict[str, dict]:
    """The CRF baseline's (experiments/crf_baseline.py) test metrics per vertical."""
    return {p.stem: json.loads(p.read_text())["metrics"] for p in sorted(crf_dir.glob("*.json"))}


def parse_variant(spec: str, allow_empty: bool = False) -> tuple[str, list[str]]:
    """'label:--a=1 --b=2' → ('label', ['--a=1', '--b=2']); 'label:' is allowed (no flags) with allow_empty."""
    label, sep, rest = spec.partition(":")
    extra = rest.split()
    if (not sep or not label or "." in label or (not extra and not allow_empty)
            or not all(f.startswith("--") for f in extra)):
        raise app.UsageError(f"--variant={spec!r}: expected label:--flag=value[ --flag=value], label without dots")
    return label, extra


# ---------------------------------------------------------------- table cells


def mean_sd(values: list[float]) -> str:
    """Percent mean ± std over seeds, with (n=k) when fewer than SEEDS seeds went in; – when none did."""
    if not values:
        return "–"
    sd = f" ± {statistics.stdev(values) * 100:.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values) * 100:.2f}{sd}" + (f" (n={len(values)})" if len(values) < SEEDS else "")


def train_counts(data_dir: Path, vertical: str) -> Counter:
    """Training tokens per tag of a prepared vertical (empty when its train split is missing)."""
    path = data_dir / vertical / "train.conll"
    return Counter(t for s in read_conll(path) for t in s.tags) if path.is_file() else Counter()


def bucket(count: int) -> tuple[int, int | None] | None:
    """The BUCKETS band of a tag seen `count` times in training (None for an unseen tag)."""
    return next((b for b in BUCKETS if b[0] <= count and (b[1] is None or count <= b[1])), None)


# ---------------------------------------------------------------- synthetic data (bench_peer, bench_verticals)


class Language:
    """A fixed vocabulary of letter words with Zipf frequencies, and per-attribute cue words and values.

    Attribute values recur (each attribute has 30 values of 1–3 words, each after its cue word), so
    contexts of tagged words repeat within and across verticals, as in catalog text, and a coupled
    run's shortlist is not empty.
    """

    def __init__(self, seed: int, vocab: int) -> None:
        rng = np.random.default_rng([seed, 0])
        words: list[str] = []
        seen: set[str] = set()
        while len(words) < vocab:
            w = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), min(15, 1 + rng.poisson(4.5))))
            if w not in seen:
                seen.add(w)
                words.append(w)
        self.words = words
        weights = 1.0 / np.arange(1, vocab + 1) ** 1.07
        self.cdf = np.cumsum(weights / weights.sum())
        self.cues = rng.choice(np.arange(50, 50 + 10 * ATTRIBUTES), ATTRIBUTES, replace=False)
        self.values = [[self.draw(rng, int(rng.integers(1, 4))) for _ in range(30)] for _ in range(ATTRIBUTES)]

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n word ids by Zipf frequency."""
        return np.minimum(np.searchsorted(self.cdf, rng.random(n)), len(self.words) - 1)

    def sentence(self, rng: np.random.Generator, length: int) -> tuple[list[int], list[str]]:
        """Word ids and tags of one sentence: Zipf filler with attribute mentions (cue word + value)."""
        ids: list[int] = []
        tags: list[str] = []
        filler = self.draw(rng, length)
        while len(ids) < length:
            if rng.random() < 0.12 and len(ids) + 4 <= length:
                a = int(rng.integers(ATTRIBUTES))
                value = self.values[a][min(int(rng.zipf(1.5)) - 1, 29)]
                ids += [int(self.cues[a]), *value.tolist()]
                tags += ["O"] + [("B-" if i == 0 else "I-") + f"attr{a:02d}" for i in range(len(value))]
            else:
                ids.append(int(filler[len(ids)]))
                tags.append("O")
        return ids, tags


def sentence_lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    """Lognormal lengths with the given median and 90th percentile, cut to [1, MAX_LEN]."""
    sigma = np.log(P90_LEN / MEDIAN_LEN) / 1.2815515655446004  # z of the 90th percentile
    return np.clip(np.round(rng.lognormal(np.log(MEDIAN_LEN), sigma, n)), 1, MAX_LEN).astype(int)


def write_data(root: Path, sizes: Mapping[str, Mapping[str, int]], seed: int, vocab: int) -> None:
    """<root>/<vertical>/{train,dev,test}.conll; every vocabulary word occurs in the first vertical's train."""
    language = Language(seed, vocab)
    for v, (name, splits) in enumerate(sizes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for s, (split, n) in enumerate(splits.items()):
            rng = np.random.default_rng([seed, 1 + v, s])
            sentences = [language.sentence(rng, int(k)) for k in sentence_lengths(rng, n)]
            if v == 0 and split == "train":  # unseen words replace repeated O words, so the vocabulary is complete
                counts = np.bincount([i for ids, _ in sentences for i in ids], minlength=vocab)
                missing = list(np.flatnonzero(counts == 0))
                slots = [(j, i) for j, (_, tags) in enumerate(sentences) for i, t in enumerate(tags) if t == "O"]
                for k in rng.permutation(len(slots)):
                    j, i = slots[k]
                    if not missing:
                        break
                    if counts[sentences[j][0][i]] > 1:
                        counts[sentences[j][0][i]] -= 1
                        sentences[j][0][i] = int(missing.pop())
            write_conll(root / name / f"{split}.conll",
                        (([language.words[i] for i in ids], tags) for ids, tags in sentences))


# ---------------------------------------------------------------- batches, timing, GEMMs, FLOPs (the benchmarks)


class Sentences:
    """One set of encoded sentences as bench_peer.export writes them (flat id arrays); pads the batches of a plan as
    the project does."""

    def __init__(self, arrays: Mapping[str, np.ndarray], name: str) -> None:
        self.length = arrays[f"{name}_length"]
        self.start = np.concatenate([[0], np.cumsum(self.length)[:-1]]).astype(np.int64)
        self.words, self.chars, self.tags = (arrays[f"{name}_{k}"] for k in ("words", "chars", "tags"))

    def batch(self, row: np.ndarray) -> Batch:
        """The padded batch of the plan row's sentences (in row order): time to the longest sentence,
        characters to the longest word, as pipeline.SentenceTable.batch and pipeline.pad both pad."""
        rows = row[row >= 0]
        lengths = self.length[rows]
        spans = [slice(self.start[r], self.start[r] + n) for r, n in zip(rows, lengths)]
        width = max([1] + [int((self.chars[s] > 0).sum(1).max()) for s in spans if s.stop > s.start])
        t = max(1, int(lengths.max()))
        out = {k: np.zeros((len(rows), t), np.int32) for k in ("words", "tags")}
        out["chars"] = np.zeros((len(rows), t, width), np.int32)
        for b, (s, n) in enumerate(zip(spans, lengths)):
            out["words"][b, :n], out["tags"][b, :n] = self.words[s], self.tags[s]
            out["chars"][b, :n] = self.chars[s, :width]
        out["length"] = lengths.astype(np.int32)
        return out

    def batches(self, plan: np.ndarray) -> list[Batch]:
        """Every row of a plan, padded."""
        return [self.batch(row) for row in plan]


def timed(step: Callable[[Any], object], batches: Sequence[Any], tokens: int) -> dict[str, float]:
    """One untimed pass over the batches (tracing, first-seen shapes), then one timed pass: real tokens/s."""
    for b in batches:
        step(b)
    start = time.perf_counter()
    for b in batches:
        step(b)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens": tokens, "batches": len(batches), "tokens_per_s": tokens / seconds}


def per_batch(fn: Callable[..., object], *columns: Sequence[Any]) -> Callable[[int], object]:
    """A profiled part: called with a batch index i, it runs fn on the i-th item of each column."""
    return lambda i: fn(*(c[i] for c in columns))


def time_parts(parts: Mapping[str, Callable[[int], object]], batches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean milliseconds per batch of each part (`per_batch` callables; one untimed pass first, as `timed`), with the
    number of batches and their real tokens."""
    n = len(batches)
    return {"ms_per_batch": {k: timed(fn, range(n), 0)["seconds"] * 1e3 / n for k, fn in parts.items()},
            "batches": n, "tokens": int(sum(int(np.asarray(b["length"]).sum()) for b in batches))}


def gemm_shapes(model: Mapping[str, int]) -> dict[str, tuple[int, int, int]]:
    """(m, k, n) of a big square GEMM and of the model's recurrence and input-projection GEMMs."""
    h, width = model["hidden_size"], model["word_dim"] + 2 * model["char_hidden"]
    return {"2048×2048×2048": (2048, 2048, 2048),
            f"recurrence {model['batch_size']}×{h}×{4 * h}": (model["batch_size"], h, 4 * h),
            f"projection {model['batch_size'] * 40}×{width}×{4 * h}": (model["batch_size"] * 40, width, 4 * h)}


def gemm_rates(shapes: Mapping[str, tuple[int, int, int]], convert: Callable[[np.ndarray], Any],
               matmul: Callable[[Any, Any], object], blocks: int = 5, block_seconds: float = 0.1) -> dict[str, float]:
    """Best GFLOP/s over `blocks` timed blocks of matmuls of each shape (2·m·k·n FLOPs each), of float32 draws
    passed through `convert` (a framework's tensor, a cast)."""
    rng = np.random.default_rng(0)
    rates = {}
    for name, (m, k, n) in shapes.items():
        a = convert(rng.standard_normal((m, k), np.float32))
        b = convert(rng.standard_normal((k, n), np.float32))
        start, reps = time.perf_counter(), 0
        while reps < 2 or time.perf_counter() - start < block_seconds:  # calibrate the block's repetitions
            matmul(a, b)
            reps += 1
        best = 0.0
        for _ in range(blocks):
            start = time.perf_counter()
            for _ in range(reps):
                matmul(a, b)
            best = max(best, 2.0 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
        rates[name] = best
    return rates


def flops_per_token(model: Mapping[str, int], num_tags: int, chars_per_token: float) -> dict[str, float]:
    """Forward FLOPs per real token (2 per multiply-add) of each part of the network; elementwise work excluded."""
    h, ch, cd = model["hidden_size"], model["char_hidden"], model["char_dim"]
    width = model["word_dim"] + 2 * ch + model.get("case_dim", 0)  # the word-shape embedding, when the model has one
    return {"char BiLSTM (real chars)": chars_per_token * 2 * 2 * (cd + ch) * 4 * ch,
            "BiLSTM input projections": 2 * 2 * width * 4 * h,
            "BiLSTM recurrences": 2 * 2 * h * 4 * h,
            "Dense": 2 * 2 * h * num_tags,
            "CRF (forward algorithm / Viterbi)": 2 * num_tags * num_tags}
