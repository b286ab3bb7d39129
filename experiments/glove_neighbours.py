"""Build in-domain GloVe on the full Flipkart sample, time it, and print nearest neighbours of catalog words.

    python -m experiments.glove_neighbours [--source=../shared/data/flipkart/products.jsonl.gz] [--dim=300]

A sanity check of mtl_tagger.glove: neighbours of "gold" should be metals/finishes, of "cotton"
fabrics, of "slim" fits. The report goes to stdout and to --report (markdown).
"""
import time
from pathlib import Path

import numpy as np
from absl import flags

from mtl_tagger import cli
from mtl_tagger.catalog import read_catalog
from mtl_tagger.glove import build_vectors

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
WORDS = ["gold", "silver", "cotton", "slim", "plated", "necklace", "blue", "brass", "denim", "women's",
         "casual", "zircon"]


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    flags.DEFINE_string("source", str(ROOT.parent / "shared/data/flipkart/products.jsonl.gz"), "Catalog file.")
    flags.DEFINE_integer("dim", 300, "Vector dimension.")
    flags.DEFINE_integer("min_count", 5, "Minimum word count.")
    flags.DEFINE_integer("epochs", 50, "GloVe epochs.")
    flags.DEFINE_integer("top", 8, "Neighbours per word.")
    flags.DEFINE_list("words", WORDS, "Query words.")
    flags.DEFINE_string("report", str(ROOT / "experiments/results/glove_neighbours.md"), "Markdown report path.")


def neighbours(words: list[str], matrix: np.ndarray, query: str, top: int) -> list[tuple[str, float]]:
    """The `top` words with the highest cosine to `query` (excluding itself)."""
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    q = words.index(query)
    sims = unit @ unit[q]
    order = [i for i in np.argsort(-sims) if i != q][:top]
    return [(words[i], float(sims[i])) for i in order]


def main(argv: list[str]) -> None:
    """Time the build, print the neighbour table, and write it to --report."""
    del argv
    start = time.time()
    texts = [p.description for p in read_catalog(FLAGS.source).products]
    words, matrix = build_vectors(texts, FLAGS.dim, min_count=FLAGS.min_count, epochs=FLAGS.epochs)
    seconds = time.time() - start
    lines = [f"# GloVe neighbours (dim {FLAGS.dim}, min_count {FLAGS.min_count}, epochs {FLAGS.epochs})", "",
             f"Source: {FLAGS.source}; {len(words)} words; read+count+train {seconds:.1f} s.", "",
             "| word | nearest neighbours (cosine) |", "|---|---|"]
    for query in FLAGS.words:
        if query in words:
            near = ", ".join(f"{w} {s:.2f}" for w, s in neighbours(words, matrix, query, FLAGS.top))
        else:
            near = "(not in vocabulary)"
        lines.append(f"| {query} | {near} |")
    report = "\n".join(lines) + "\n"
    print(report)
    Path(FLAGS.report).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.report).write_text(report, encoding="utf-8")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
