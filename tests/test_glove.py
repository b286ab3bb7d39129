"""GloVe: exact co-occurrence counts, shared contexts give close vectors, GloVe-format round trip, cached CLI."""
import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_catalog import FIXTURES

from mtl_tagger.glove import build_vectors, build_vocab, cooccurrences, corpus_tokens
from mtl_tagger.vectors import read_vectors, write_vectors


def as_dict(vocab: list[str], rows: np.ndarray, cols: np.ndarray, counts: np.ndarray) -> dict[tuple, float]:
    return {(vocab[r], vocab[c]): round(float(x), 6) for r, c, x in zip(rows, cols, counts)}


def test_counts_are_symmetric_and_weighted_by_inverse_distance() -> None:
    vocab = ["a", "b", "c"]
    got = as_dict(vocab, *cooccurrences([["a", "b", "c", "a"]], vocab, window=2))
    # a-b: distance 1 (1) and, via the last a, distance 2 (1/2); a-c: 1/2 + 1; b-c: 1.
    assert got == {("a", "b"): 1.5, ("b", "a"): 1.5, ("b", "c"): 1.0, ("c", "b"): 1.0,
                   ("a", "c"): 1.5, ("c", "a"): 1.5}
    assert ("a", "a") not in got  # distance 3 is outside the window


def test_documents_are_separate_and_unknown_words_dropped_first() -> None:
    vocab = ["a", "b"]
    got = as_dict(vocab, *cooccurrences([["a", "zz", "b"], ["b"], ["a"]], vocab, window=1))
    assert got == {("a", "b"): 1.0, ("b", "a"): 1.0}


def test_vocab_is_lower_case_frequency_ordered_and_cut_at_min_count() -> None:
    docs = corpus_tokens(["Gold GOLD gold silver Silver brass"])
    assert docs == [["gold", "gold", "gold", "silver", "silver", "brass"]]
    assert build_vocab(docs, 2) == ["gold", "silver"]
    assert build_vocab(docs, 1) == ["gold", "silver", "brass"]


def cosine(words: list[str], matrix: np.ndarray, a: str, b: str) -> float:
    u, v = matrix[words.index(a)], matrix[words.index(b)]
    return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))


def test_shared_contexts_make_close_vectors() -> None:
    rng = random.Random(0)
    topics = [(["cat", "dog"], ["pet", "fur", "tail", "paw", "vet", "leash", "bowl", "kennel"]),
              (["car", "truck"], ["engine", "wheel", "road", "fuel", "garage", "brake", "tyre", "gear"])]
    texts = []
    for _ in range(300):
        heads, contexts = rng.choice(topics)
        texts.append(" ".join(rng.choice(heads) if rng.random() < 0.3 else rng.choice(contexts) for _ in range(12)))
    words, matrix = build_vectors(texts, dim=12, min_count=1, window=4, epochs=40, batch_size=32, seed=1)
    assert matrix.shape == (len(words), 12)
    assert cosine(words, matrix, "cat", "dog") > cosine(words, matrix, "cat", "car") + 0.5
    assert cosine(words, matrix, "car", "truck") > cosine(words, matrix, "truck", "dog") + 0.5


def test_writer_and_reader_round_trip(tmp_path: Path) -> None:
    words = ["gold", "women's", "18/20", "zircon", "ñandú"]
    matrix = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    write_vectors(tmp_path / "v.txt", words, matrix)
    got_words, got = read_vectors(tmp_path / "v.txt", dim=7)
    assert got_words == words
    np.testing.assert_allclose(got, matrix, rtol=1e-5, atol=1e-6)


def test_cli_builds_once_then_reuses_the_cache(tmp_path: Path) -> None:
    out = tmp_path / "cache" / "glove.txt"
    args = [f"--source={FIXTURES / 'synthetic_catalog.jsonl'}", f"--out={out}", "--dim=8", "--epochs=2",
            "--min_count=1"]
    r = run_cli("glove", *args)
    assert r.returncode == 0, r.stderr
    assert "built in" in r.stdout
    words, matrix = read_vectors(out, dim=8)
    assert "necklace" in words and all(w == w.lower() for w in words)
    meta = json.loads((tmp_path / "cache" / "glove.txt.meta.json").read_text())
    assert meta["dim"] == 8 and meta["words"] == len(words) and len(meta["source_sha256"]) == 64
    before = out.stat().st_mtime_ns
    again = run_cli("glove", *args)
    assert again.returncode == 0 and "up to date" in again.stdout and out.stat().st_mtime_ns == before
    other = run_cli("glove", *args[:-1], "--min_count=2")
    assert other.returncode == 2 and "min_count" in other.stderr and "--overwrite" in other.stderr
    assert "Traceback" not in other.stderr and out.stat().st_mtime_ns == before


@pytest.mark.parametrize("flag, words", [("--dim=0", ["--dim", "at least 1"]),
                                         ("--source=/no/such.jsonl", ["not found"])])
def test_cli_bad_flags(tmp_path: Path, flag: str, words: list[str]) -> None:
    r = run_cli("glove", f"--source={FIXTURES / 'synthetic_catalog.jsonl'}", f"--out={tmp_path / 'g.txt'}", flag)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: ")
    for w in words:
        assert w in r.stderr
    assert not (tmp_path / "g.txt").exists()
