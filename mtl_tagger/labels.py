"""Tag names as character k-grams: how the label coupling embeds a label, and how lenders compare label names.

No TensorFlow here, so the tools that only compare names (mtl_tagger.lenders) start quickly.
"""
import zlib
from collections.abc import Sequence

import numpy as np

HASH_BUCKETS = 4096


def label_kgrams(name: str, k: int) -> list[str]:
    """Character k-grams of a tag name with boundary markers ("<B-color>"); the marked name if shorter."""
    marked = f"<{name}>"
    if len(marked) <= k:
        return [marked]
    return [marked[i:i + k] for i in range(len(marked) - k + 1)]


def kgram_ids(names: Sequence[str], k: int, hash_buckets: int = HASH_BUCKETS) -> tuple[np.ndarray, np.ndarray]:
    """[len(names), max_kgrams] int32 hashed k-gram rows (zlib.crc32: stable across runs) and float mask."""
    grams = [[zlib.crc32(g.encode("utf-8")) % hash_buckets for g in label_kgrams(n, k)] for n in names]
    width = max(len(g) for g in grams)
    ids = np.zeros((len(names), width), np.int32)
    mask = np.zeros((len(names), width), np.float32)
    for r, g in enumerate(grams):
        ids[r, :len(g)] = g
        mask[r, :len(g)] = 1.0
    return ids, mask
