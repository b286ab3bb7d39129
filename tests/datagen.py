"""Synthetic tagged product descriptions for tests: two related verticals with overlapping attributes."""
import random
from pathlib import Path

from mtl_tagger.conll import write_conll

COLOURS = ["gold", "silver", "rose gold", "black", "white", "yellow"]
MATERIALS = ["brass", "alloy", "copper", "sterling silver", "metal"]
BRANDS = ["Acme", "Voylla", "Sukkhi", "Zaveri Pearls", "Jewel Box"]
PLATING = ["gold plated", "rhodium plated", "silver plated"]
FILLER = ["this", "beautiful", "piece", "is", "perfect", "for", "daily", "wear", "and", "parties", "."]


def _span(words: str, attr: str) -> list[tuple[str, str]]:
    parts = words.split()
    return [(w, ("B-" if i == 0 else "I-") + attr) for i, w in enumerate(parts)]


def _sentence(rng: random.Random, kind: str) -> list[tuple[str, str]]:
    out = _span(rng.choice(BRANDS), "brand")
    out += _span(rng.choice(PLATING), "plating")
    out += _span(rng.choice(MATERIALS), "base_material")
    out += [(kind, "O")]
    if rng.random() < 0.6:
        out += [("in", "O")] + _span(rng.choice(COLOURS), "color")
    if kind in ("mangalsutra", "ring") and rng.random() < 0.5:
        out += [("with", "O")] + _span(rng.choice(["diamond", "pearl", "ruby"]), "gemstone")
    n = rng.randint(0, 8)
    out += [(w, "O") for w in rng.sample(FILLER, n)]
    return out


def write_vertical(root: Path, name: str, kind: str, sizes: dict[str, int], seed: int) -> None:
    """Write <root>/<name>/{split}.conll with the given number of sentences per split."""
    rng = random.Random(seed)
    (root / name).mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        rows = []
        for _ in range(n):
            s = _sentence(rng, kind)
            rows.append(([w for w, _ in s], [t for _, t in s]))
        write_conll(root / name / f"{split}.conll", rows)


def make_data_dir(root: Path) -> Path:
    """Two verticals with arbitrary names ('Chain x' has a space), 120/30/40 and 80/20/30 sentences."""
    write_vertical(root, "Chain x", "chain", {"train": 120, "dev": 30, "test": 40}, seed=1)
    write_vertical(root, "Mangal-sutra", "mangalsutra", {"train": 80, "dev": 20, "test": 30}, seed=2)
    return root
