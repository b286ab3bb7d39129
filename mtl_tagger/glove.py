"""In-domain GloVe word vectors (Pennington et al. 2014) trained with TensorFlow on a catalog's descriptions.

    python -m mtl_tagger.glove --source=PATH --out=FILE [--dim=300] [--min_count=5] [--overwrite]

Corpus: every description of the source (all categories, no labels), spec block included (it is the
seller's text too, and puts values of one attribute in similar contexts), tokenised with
mtl_tagger.text.tokenize and lower-cased (the trainer looks a word up exactly, then lower-cased, so
lower-case vectors serve every casing while pooling the counts of "GOLD", "Gold" and "gold").
Words seen fewer than --min_count times are dropped before windowing, as GloVe's own tools do.

Model: symmetric co-occurrence counts within --window words, each pair weighted 1/distance;
weighted least squares  sum f(X_ij) (w_i.c_j + b_i + b~_j - log X_ij)^2  with
f(x) = min(1, (x/x_max)^alpha), minimised by AdaGrad over shuffled mini-batches of the nonzero X_ij
(per batch, gradients of a repeated row are summed before the AdaGrad step). Written vectors are
w + c, in the GloVe text format (mtl_tagger.vectors).

Cache: FILE.meta.json records the source's SHA-256 and the settings; when FILE exists and its meta
matches, the build is skipped. A FILE built otherwise (or without meta) is replaced only with
--overwrite.
"""
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from absl import flags, logging

from mtl_tagger import cli
from mtl_tagger.catalog import read_catalog
from mtl_tagger.errors import InputError
from mtl_tagger.files import check_input_file, sha256, write_json_atomic
from mtl_tagger.progress import Progress, status
from mtl_tagger.text import tokenize
from mtl_tagger.vectors import write_vectors

FORMAT_VERSION = 2  # raised whenever the vectors' corpus tokenization or file layout changes


def corpus_tokens(texts: Iterable[str]) -> list[list[str]]:
    """Each text as its lower-cased tokens (the GloVe corpus: one document per text)."""
    return [[t.lower() for t, _, _ in tokenize(text)] for text in texts]


def build_vocab(docs: Sequence[Sequence[str]], min_count: int) -> list[str]:
    """Words seen at least min_count times, most frequent first (ties alphabetical: a stable order)."""
    counts = Counter(w for doc in docs for w in doc)
    return sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))


def cooccurrences(docs: Sequence[Sequence[str]], vocab: Sequence[str], window: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric 1/distance-weighted co-occurrence counts within `window` words of the same document.

    Out-of-vocabulary words are removed first. Returns (rows, cols, counts) of the nonzero entries.
    """
    index = {w: i for i, w in enumerate(vocab)}
    ids = [np.array([index[w] for w in doc if w in index], dtype=np.int64) for doc in docs]
    ids = [a for a in ids if len(a) > 1]
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    words = np.concatenate(ids)
    doc_of = np.repeat(np.arange(len(ids)), [len(a) for a in ids])
    size = len(vocab)
    codes, weights = [], []
    for d in range(1, window + 1):
        same = doc_of[:-d] == doc_of[d:]
        left, right = words[:-d][same], words[d:][same]
        for a, b in ((left, right), (right, left)):
            unique, inverse = np.unique(a * size + b, return_inverse=True)
            codes.append(unique)
            weights.append(np.bincount(inverse, minlength=len(unique)) / d)
    unique, inverse = np.unique(np.concatenate(codes), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(weights), minlength=len(unique))
    return unique // size, unique % size, counts


def train_glove(rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, vocab_size: int, dim: int,
                epochs: int, x_max: float = 100.0, alpha: float = 0.75, learning_rate: float = 0.05,
                batch_size: int = 16384, seed: int = 0) -> np.ndarray:
    """Fit GloVe to the nonzero co-occurrences with AdaGrad; returns word + context vectors (V × dim)."""
    if not len(counts):
        raise InputError("no co-occurrence to train on (corpus too small or --min_count too high)")
    import tensorflow as tf  # only here: the command checks its flags and reads the corpus first

    rng = np.random.default_rng(seed)
    init = tf.random.Generator.from_seed(seed)
    scale = 0.5 / dim
    weights = [tf.Variable(init.uniform((vocab_size, dim), -scale, scale)) for _ in range(2)]
    biases = [tf.Variable(init.uniform((vocab_size,), -scale, scale)) for _ in range(2)]
    params = weights + biases
    squares = [tf.Variable(tf.ones_like(p)) for p in params]  # AdaGrad sums start at 1, as in GloVe's C code
    rows_t, cols_t = tf.constant(rows, tf.int32), tf.constant(cols, tf.int32)
    log_x = tf.constant(np.log(counts), tf.float32)
    f_x = tf.constant(np.minimum(1.0, (counts / x_max) ** alpha), tf.float32)

    def adagrad(param: tf.Variable, square: tf.Variable, index: tf.Tensor, grad: tf.Tensor) -> None:
        unique, position = tf.unique(index)
        summed = tf.math.unsorted_segment_sum(grad, position, tf.shape(unique)[0])
        square.scatter_add(tf.IndexedSlices(summed * summed, unique))
        param.scatter_sub(tf.IndexedSlices(learning_rate * summed * tf.math.rsqrt(tf.gather(square, unique)),
                                           unique))

    @tf.function
    def step(batch: tf.Tensor) -> tf.Tensor:
        i, j = tf.gather(rows_t, batch), tf.gather(cols_t, batch)
        wi, cj = tf.gather(weights[0], i), tf.gather(weights[1], j)
        diff = (tf.reduce_sum(wi * cj, 1) + tf.gather(biases[0], i) + tf.gather(biases[1], j)
                - tf.gather(log_x, batch))
        fdiff = tf.gather(f_x, batch) * diff
        for param, square, index, grad in zip(params, squares, (i, j, i, j),
                                              (fdiff[:, None] * cj, fdiff[:, None] * wi, fdiff, fdiff)):
            adagrad(param, square, index, grad)
        return 0.5 * tf.reduce_sum(fdiff * diff)

    bar = Progress(epochs, "epochs")
    for _ in range(epochs):
        order = rng.permutation(len(counts)).astype(np.int32)
        cost = sum(float(step(tf.constant(order[s:s + batch_size])))
                   for s in range(0, len(order), batch_size))
        bar.update(1, cost=cost / len(counts))
    bar.close()
    return (weights[0] + weights[1]).numpy()


def build_vectors(texts: Iterable[str], dim: int, min_count: int = 5, window: int = 10, epochs: int = 50,
                  x_max: float = 100.0, alpha: float = 0.75, learning_rate: float = 0.05,
                  batch_size: int = 16384, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """GloVe vectors for the words of `texts` (see the module docstring): (words, matrix)."""
    docs = corpus_tokens(texts)
    vocab = build_vocab(docs, min_count)
    rows, cols, counts = cooccurrences(docs, vocab, window)
    logging.info("glove corpus: %d documents, %d tokens, %d words (min_count %d), %d nonzero co-occurrences",
                 len(docs), sum(map(len, docs)), len(vocab), min_count, len(counts))
    matrix = train_glove(rows, cols, counts, len(vocab), dim, epochs, x_max, alpha, learning_rate,
                         batch_size, seed)
    return vocab, matrix


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined when run as a program, so importing this module next to other CLIs is safe)."""
    flags.DEFINE_string("source", None, "Catalog: products JSONL(.gz) or Kaggle CSV(.gz); all its descriptions.")
    flags.DEFINE_string("out", None, "Output vectors file (GloVe text format); FILE.meta.json goes beside it.")
    flags.DEFINE_integer("dim", 300, "Vector dimension (the paper uses 300).")
    flags.DEFINE_integer("min_count", 5, "Drop words seen fewer times than this.")
    flags.DEFINE_integer("window", 10, "Context window (words on each side).")
    flags.DEFINE_integer("epochs", 50, "Passes of AdaGrad over the nonzero co-occurrences.")
    flags.DEFINE_float("x_max", 100.0, "Weighting cut-off x_max of f(x) = min(1, (x/x_max)^alpha).")
    flags.DEFINE_float("alpha", 0.75, "Weighting exponent alpha of f(x).")
    flags.DEFINE_float("learning_rate", 0.05, "AdaGrad initial learning rate.")
    flags.DEFINE_integer("batch_size", 16384, "Nonzero co-occurrences per AdaGrad step.")
    flags.DEFINE_integer("seed", 0, "Seed of initialisation and shuffling.")
    flags.DEFINE_bool("overwrite", False, "Rebuild even when --out exists.")


_SETTINGS = ("dim", "min_count", "window", "epochs", "x_max", "alpha", "learning_rate", "batch_size", "seed")


def main(argv: list[str]) -> None:
    """CLI: build (or reuse the cached) vectors and print the build time."""
    cli.check_args(argv, "source", "out")
    for name in ("dim", "min_count", "window", "epochs", "batch_size"):
        if getattr(FLAGS, name) < 1:
            raise InputError(f"--{name} must be at least 1")
    out, source = Path(FLAGS.out), Path(FLAGS.source)
    meta_path = out.with_name(out.name + ".meta.json")
    check_input_file(source, "--source", "catalog file")
    start = time.time()
    with status(f"reading {source}"):
        wanted = {"format_version": FORMAT_VERSION, "source_sha256": sha256(source),
                  **{name: getattr(FLAGS, name) for name in _SETTINGS}}
        meta = None
        if out.exists() and not FLAGS.overwrite:
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise InputError("exists without a readable .meta.json; --overwrite rebuilds it", out) from None
            changed = [k for k in wanted if meta.get(k) != wanted[k]]
            if changed:
                raise InputError(f"exists, built with other {', '.join(changed)}; --overwrite rebuilds it", out)
        else:
            meta_path.unlink(missing_ok=True)  # no stale meta may vouch for a half-replaced FILE
            texts = [p.description for p in read_catalog(source).products]
    if meta is not None:
        print(f"{out}: up to date ({meta.get('words')} words, dim {meta['dim']}), not rebuilt")
        return
    words, matrix = build_vectors(texts, **{name: getattr(FLAGS, name) for name in _SETTINGS})
    out.parent.mkdir(parents=True, exist_ok=True)
    write_vectors(out, words, matrix)
    seconds = time.time() - start
    write_json_atomic(meta_path, {**wanted, "source": str(source), "words": len(words),
                                  "build_seconds": round(seconds, 1)})
    print(f"{out}: {len(words)} words, dim {FLAGS.dim}, built in {seconds:.1f} s")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
