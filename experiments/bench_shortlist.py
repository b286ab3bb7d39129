"""Time and memory of mtl_tagger.shortlist.build_shortlist at 1e3, 1e4, 1e5 contexts per side.

    python -m experiments.bench_shortlist [--sizes=1000,10000,100000] [--runs=5,3,3] [--threshold=0.9]

Synthetic data imitates catalog text: Zipfian words over a 20k vocabulary, sentences stitched from
recurring templates whose attribute slots take Zipfian values (so windows repeat as in real listings),
tagged tokens = attribute values, 300-d vectors with topic structure and GloVe-like norms. Every
measurement runs in a fresh subprocess; peak RSS (getrusage) is that process's peak, shown with its peak
before the build. Prints time (median of --runs), peak RSS, distinct windows, plan (products actually
computed), pairs and neighbours per anchor, the fitted growth exponent of time, and an exactness check
(auto plan == dense plan over distinct windows) up to --check_max contexts. With
data/flipkart/<Vertical>/train.conll present (and cache/glove.flipkart.300d.txt, else random vectors as
training would use), the same figures on vertical pairs (tagged contexts and every token).
"""
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import flags

from experiments.common import machine
from mtl_tagger import cli, shortlist
from mtl_tagger.shortlist import Contexts, Shortlist, build_shortlist, make_contexts

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    flags.DEFINE_list("sizes", ["1000", "10000", "100000"], "Contexts per side.")
    flags.DEFINE_list("runs", ["5", "3", "3"], "Timed runs per size (median reported).")
    flags.DEFINE_float("threshold", 0.9, "Cosine threshold (the training default).")
    flags.DEFINE_integer("max_neighbors", 10, "Neighbours per anchor (the training default).")
    flags.DEFINE_integer("window", 2, "Window half-width.")
    flags.DEFINE_integer("vocab", 20000, "Synthetic vocabulary size.")
    flags.DEFINE_integer("dim", 300, "Word-vector dimension.")
    flags.DEFINE_integer("check_max", 10000, "Check exactness (auto plan == dense plan) up to this size.")
    flags.DEFINE_integer("iid_size", 100000, "Also time i.i.d. Zipf words (no templates, every token) at this "
                         "size; 0 to skip. The least repetitive case: few identical windows.")
    flags.DEFINE_list("real_pairs", ["Dress:Jean", "Trouser:Jean", "Mangalsutra:Chain", "Necklace:Chain",
                                     "Bangle:Bracelet", "Necklace:Ring"],
                      "Vertical pairs for the real-data figures (skipped when their train.conll is missing).")
    flags.DEFINE_string("data_dir", str(ROOT / "data/flipkart"), "Prepared data: <dir>/<Vertical>/train.conll.")
    flags.DEFINE_string("vectors", str(ROOT / "cache/glove.flipkart.300d.txt"), "Word vectors for real data.")
    flags.DEFINE_string("report", "", "Also write the markdown report to this path.")
    flags.DEFINE_string("child", None, "Internal: run one measurement described by this JSON and print JSON.")


def synthetic_vectors(rng: np.random.Generator, vocab: int, dim: int) -> np.ndarray:
    """Rows near one of 300 topic directions (cosine ≈ 0.3 within a topic), norms lognormal around 5."""
    topics = rng.normal(size=(300, dim))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    noise = rng.normal(size=(vocab, dim)) / np.sqrt(dim)
    rows = 0.55 * topics[rng.integers(0, 300, vocab)] + 0.85 * noise
    rows *= rng.lognormal(np.log(5.0), 0.3, size=(vocab, 1)) / np.linalg.norm(rows, axis=1, keepdims=True)
    rows[0] = 0.0
    return rows.astype(np.float32)


def _zipf(rng: np.random.Generator, n: int, size: int | tuple, s: float = 1.07) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** s
    return rng.choice(n, size=size, p=weights / weights.sum())


def synthetic_task(seed: int, shared_seed: int, contexts: int, vocab: int, window: int) -> Contexts:
    """One vertical's tagged contexts: templates (half shared with the other task) with attribute slots."""
    shared, own = np.random.default_rng(shared_seed), np.random.default_rng(seed)
    words = 1 + _zipf(shared, vocab - 1, 400_000)  # one Zipfian stream both tasks draw words from

    def templates(rng: np.random.Generator, n: int) -> list[list[int]]:
        """Word-id runs with attribute slots (-1 - attribute) between them."""
        out = []
        for _ in range(n):
            parts: list[int] = []
            for _ in range(rng.integers(1, 4)):
                parts += list(words[rng.integers(0, len(words), rng.integers(1, 5))])
                parts.append(-1 - int(rng.integers(0, 40)))
            out.append(parts)
        return out

    pool = templates(shared, 100) + templates(own, 100)
    values = [[list(words[shared.integers(0, len(words), shared.integers(1, 4))])
               for _ in range(int(shared.integers(5, 200)))] for _ in range(40)]
    sentences, keep, total = [], [], 0
    while total < contexts:
        tokens, tagged = [], []
        for t in _zipf(own, len(pool), own.integers(2, 7)):
            for item in pool[t]:
                if item >= 0:
                    tokens.append(item)
                    tagged.append(False)
                else:
                    value = values[-1 - item][_zipf(own, len(values[-1 - item]), 1)[0]]
                    tokens += value
                    tagged += [True] * len(value)
        sentences.append(np.array(tokens, np.int32))
        keep.append(np.array(tagged))
        total += int(np.sum(tagged))
    c = make_contexts(sentences, keep, window)
    return Contexts(c.sentence[:contexts], c.position[:contexts], c.windows[:contexts])


def iid_task(seed: int, contexts: int, vocab: int, window: int) -> Contexts:
    """Every token of sentences of i.i.d. Zipfian words: no templates, so windows rarely repeat."""
    rng = np.random.default_rng(seed)
    words = (1 + _zipf(rng, vocab - 1, contexts)).astype(np.int32)
    cuts = np.cumsum(rng.integers(10, 40, contexts // 10 + 1))
    sentences = [s for s in np.split(words, cuts[cuts < contexts]) if len(s)]
    return make_contexts(sentences, [np.ones(len(s), bool) for s in sentences], window)


def _real_task(path: Path, index: dict[str, int], window: int, all_tokens: bool) -> Contexts:
    """Contexts of one vertical's train split: tagged tokens (training's default) or every token."""
    from mtl_tagger.conll import read_conll

    sents = read_conll(path)
    ids = [np.array([index.setdefault(w, len(index)) for w in s.tokens], np.int32) for s in sents]
    return make_contexts(ids, [np.array([all_tokens or t != "O" for t in s.tags]) for s in sents], window)


def _inputs(spec: dict) -> tuple[Contexts, Contexts, np.ndarray]:
    if spec["kind"] in ("synthetic", "iid"):
        emb = synthetic_vectors(np.random.default_rng(1), FLAGS.vocab, FLAGS.dim)
        if spec["kind"] == "iid":
            return iid_task(11, spec["size"], FLAGS.vocab, FLAGS.window), iid_task(
                12, spec["size"], FLAGS.vocab, FLAGS.window), emb
        a = synthetic_task(11, 7, spec["size"], FLAGS.vocab, FLAGS.window)
        b = synthetic_task(12, 7, spec["size"], FLAGS.vocab, FLAGS.window)
        return a, b, emb
    from mtl_tagger.vectors import embedding_matrix, read_vectors

    index = {"<pad>": 0}
    a, b = (_real_task(Path(FLAGS.data_dir) / v / "train.conll", index, FLAGS.window, spec["all_tokens"])
            for v in spec["pair"])
    words = sorted(index, key=index.get)
    if Path(FLAGS.vectors).is_file():
        vec_words, matrix = read_vectors(FLAGS.vectors)
        emb, _ = embedding_matrix(words, vec_words, matrix, seed=0)
    else:
        dim = FLAGS.dim
        emb = np.random.default_rng(0).uniform(-np.sqrt(3 / dim), np.sqrt(3 / dim), (len(words), dim))
    return a, b, emb.astype(np.float32)


def _stats(s: Shortlist) -> dict:
    per = np.concatenate([(s.a_neighbors >= 0).sum(axis=1), (s.b_neighbors >= 0).sum(axis=1)])
    return {"pairs": s.num_pairs, "anchors_with": int((per > 0).sum()), "anchors": len(per),
            "per_anchor": float(per[per > 0].mean()) if (per > 0).any() else 0.0}


def child(spec: dict) -> dict:
    """One measurement in this (fresh) process: build once, report time, peak RSS, plan and counts."""
    a, b, emb = _inputs(spec)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    plans: list = []
    original = shortlist._plan

    def recording(*args) -> shortlist._Plan:  # the plan build_shortlist chooses, for the report
        plans.append(original(*args))
        return plans[-1]

    shortlist._plan = recording
    start = time.perf_counter()
    got = build_shortlist(a, b, emb, spec["threshold"], FLAGS.max_neighbors)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    plan = plans[0]
    out = {"seconds": seconds, "peak_mb": peak, "base_mb": base, "na": len(a), "nb": len(b),
           "ua": len(np.unique(a.windows, axis=0)), "ub": len(np.unique(b.windows, axis=0)),
           "tau": plan.tau, "products": plan.products, "blocks": len(plan.blocks), **_stats(got)}
    if spec.get("check"):
        shortlist._plan = lambda *args: shortlist._plans(*args)[0]  # dense over distinct windows
        dense = build_shortlist(a, b, emb, spec["threshold"], FLAGS.max_neighbors)
        out["exact"] = bool(np.array_equal(dense.a_neighbors, got.a_neighbors)
                            and np.array_equal(dense.b_neighbors, got.b_neighbors)
                            and np.allclose(dense.a_cosine, got.a_cosine, atol=1e-6))
    return out


def _run(spec: dict) -> dict:
    cmd = [sys.executable, "-m", "experiments.bench_shortlist", f"--child={json.dumps(spec)}",
           *[f"--{k}={v}" for k, v in (("vocab", FLAGS.vocab), ("dim", FLAGS.dim), ("window", FLAGS.window),
                                       ("max_neighbors", FLAGS.max_neighbors), ("data_dir", FLAGS.data_dir),
                                       ("vectors", FLAGS.vectors))]]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(name: str, runs: list[dict]) -> str:
    r = runs[0]
    secs = [x["seconds"] for x in runs]
    plan = "dense" if r["tau"] is None else f"prefix τ={r['tau']:.2f}"
    exact = {True: "yes", False: "NO", None: "–"}[r.get("exact")]
    return (f"| {name} | {r['na']}×{r['nb']} | {r['ua']}×{r['ub']} | {np.median(secs):.2f} "
            f"({min(secs):.2f}–{max(secs):.2f}, n={len(secs)}) | {max(x['peak_mb'] for x in runs):.0f} "
            f"({max(x['base_mb'] for x in runs):.0f}) | {plan}: {r['products']:.3g} "
            f"products, {r['blocks']} blocks | {r['pairs']} | {r['anchors_with']}/{r['anchors']} "
            f"| {r['per_anchor']:.2f} | {exact} |")


def main(argv: list[str]) -> None:
    """Measure every size (and real pair), print the markdown table and the growth exponent."""
    if FLAGS.child:
        print(json.dumps(child(json.loads(FLAGS.child))))
        return
    lines = [f"# Shortlist benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {machine()}, load "
             f"{os.getloadavg()[0]:.1f} at start; threshold {FLAGS.threshold}, K={FLAGS.max_neighbors}, "
             f"window {FLAGS.window}, dim {FLAGS.dim})", "",
             "| data | contexts a×b | distinct windows | seconds median (range, runs) "
             "| peak RSS MB (before build) | plan | pairs | anchors with neighbours "
             "| neighbours/anchor | exact |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    sizes, timings = [int(s) for s in FLAGS.sizes], []
    for size, runs in zip(sizes, [int(r) for r in FLAGS.runs]):
        spec = {"kind": "synthetic", "size": size, "threshold": FLAGS.threshold}
        results = [_run({**spec, "check": i == 0 and size <= FLAGS.check_max}) for i in range(runs)]
        timings.append(float(np.median([r["seconds"] for r in results])))
        lines.append(_row(f"synthetic {size:g}", results))
        print(lines[-1], flush=True)
    if FLAGS.iid_size:
        spec = {"kind": "iid", "size": FLAGS.iid_size, "threshold": FLAGS.threshold,
                "check": FLAGS.iid_size <= FLAGS.check_max}
        lines.append(_row(f"i.i.d. Zipf {FLAGS.iid_size:g}", [_run(spec)]))
        print(lines[-1], flush=True)
    for pair in FLAGS.real_pairs:
        verticals = pair.split(":")
        if all((Path(FLAGS.data_dir) / v / "train.conll").is_file() for v in verticals):
            for all_tokens in (False, True):
                spec = {"kind": "real", "pair": verticals, "all_tokens": all_tokens,
                        "threshold": FLAGS.threshold}
                results = [_run({**spec, "check": i == 0}) for i in range(3)]
                lines.append(_row(f"{pair} {'all tokens' if all_tokens else 'tagged'}", results))
                print(lines[-1], flush=True)
    if len(sizes) > 1:
        slope = np.polyfit(np.log(sizes), np.log(timings), 1)[0]
        lines += ["", f"Fitted growth exponent of time in contexts per side (synthetic rows): {slope:.2f} "
                      f"(dense all-pairs would be 2)."]
    print("\n".join(lines))
    if FLAGS.report:
        Path(FLAGS.report).write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
