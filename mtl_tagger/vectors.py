"""Word vectors in the GloVe text format (`word v1 … vd` per line) and embedding matrices built from them."""
from pathlib import Path

import numpy as np

from mtl_tagger.errors import InputError
from mtl_tagger.files import atomic_file


def write_vectors(path: str | Path, words: list[str], matrix: np.ndarray) -> None:
    """Write `words` with their rows of `matrix` in GloVe text format, atomically."""
    if len(words) != len(matrix):
        raise ValueError(f"{len(words)} words but {len(matrix)} vectors")
    with atomic_file(path) as f:
        for word, row in zip(words, matrix):
            if not word or any(c.isspace() for c in word):
                raise ValueError(f"word {word!r} is empty or holds whitespace")
            f.write(word + " " + " ".join(f"{x:.6g}" for x in row) + "\n")


def read_vectors(path: str | Path, dim: int | None = None) -> tuple[list[str], np.ndarray]:
    """Read a GloVe text file; every line must have the same dimension (== `dim` when given)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("word-vector file not found (build one with python -m mtl_tagger.glove, or pass "
                         "--word_vectors= for random initial embeddings)", path)
    words: list[str] = []
    rows: list[np.ndarray] = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if len(parts) == 2 and lineno == 1 and all(p.isdigit() for p in parts):
                    continue  # word2vec-style header "count dim"
                if len(parts) < 2:
                    raise InputError("expected a word followed by its vector", path, lineno)
                want = dim if dim is not None else (len(rows[0]) if rows else None)
                if want is not None and len(parts) - 1 != want:
                    raise InputError(f"vector has {len(parts) - 1} values, expected {want}", path, lineno)
                try:
                    row = np.asarray(parts[1:], dtype=np.float32)
                except ValueError:
                    raise InputError("vector holds a value that is not a number", path, lineno) from None
                if not np.isfinite(row).all():
                    raise InputError("vector holds nan or inf", path, lineno)
                rows.append(row)
                words.append(parts[0])
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 ({e.reason} at byte {e.start})", path) from None
    if not rows:
        raise InputError("word-vector file is empty", path)
    return words, np.stack(rows)


def embedding_matrix(
    vocab_words: list[str], words: list[str], matrix: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows for `vocab_words` from pretrained (words, matrix): exact match, else lower-case, else random.

    Random rows are uniform in ±sqrt(3/d) (unit variance per dimension / d, as Lample et al.).
    Returns the matrix and a bool mask of the vocabulary words that had a pretrained vector.
    """
    index = {w: i for i, w in enumerate(words)}
    lower = {}
    for i, w in enumerate(words):
        lower.setdefault(w.lower(), i)
    dim = matrix.shape[1]
    rng = np.random.default_rng(seed)
    scale = np.sqrt(3.0 / dim)
    out = rng.uniform(-scale, scale, size=(len(vocab_words), dim)).astype(np.float32)
    found = np.zeros(len(vocab_words), bool)
    for r, w in enumerate(vocab_words):
        i = index.get(w, lower.get(w.lower()))
        if i is not None:
            out[r] = matrix[i]
            found[r] = True
    return out, found
