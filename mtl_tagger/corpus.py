"""A vertical's splits on disk: `<data_dir>/<Vertical>/{train,dev,test}.conll`, read and checked.

When dev.conll is missing, a deterministic 10% of train (by a CRC of each sentence's text, so the
same on every machine and independent of order and seed) is held out as dev, and the log says so.
"""
import zlib
from dataclasses import dataclass
from pathlib import Path

from absl import logging

from mtl_tagger.conll import Sentence, read_conll
from mtl_tagger.errors import InputError


@dataclass
class TaskData:
    """The three splits of one vertical, and whether dev was held out of train."""

    name: str
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    dev_held_out: bool = False


def _held_out(sentence: Sentence) -> bool:
    return zlib.crc32("\n".join(sentence.tokens).encode("utf-8")) % 10 == 0


def load_task(data_dir: str | Path, task: str, strict_bio: bool, max_len: int, with_test: bool = True) -> TaskData:
    """Read and validate one vertical's splits; InputError names what is missing or malformed. Without `with_test`,
    test.conll is neither needed nor read (the test split is empty): lender ranking reads the training split alone."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError("data dir not found (--data_dir)", data_dir)
    task_dir = data_dir / task
    if not task_dir.is_dir():
        known = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
        raise InputError(f"no vertical {task!r} here; found: {', '.join(known) or 'none'}", data_dir)
    for split in ("train", "test") if with_test else ("train",):
        if not (task_dir / f"{split}.conll").is_file():
            raise InputError(f"missing {split}.conll", task_dir)

    def read(split: str) -> list[Sentence]:
        # Only training sentences are cut at max_len; dev/test stay whole (the tagger decodes long
        # sentences in pieces) so chunk-level metrics see the true spans.
        return read_conll(task_dir / f"{split}.conll", strict_bio=strict_bio,
                          max_len=max_len if split == "train" else None)

    train, test = read("train"), read("test") if with_test else []
    if (task_dir / "dev.conll").is_file():
        return TaskData(task, train, read("dev"), test)
    dev = [s for s in train if _held_out(s)]
    train = [s for s in train if not _held_out(s)]
    if not dev or not train:
        raise InputError("too few sentences to hold out a dev split; add dev.conll", task_dir / "train.conll")
    logging.info("%s: no dev.conll; holding out %d of %d train sentences as dev", task, len(dev),
                 len(dev) + len(train))
    return TaskData(task, train, dev, test, dev_held_out=True)


def unseen_tags(train: list[Sentence], other: list[Sentence]) -> dict[str, int]:
    """Tags of `other` that never occur in `train`, with their token counts (they will count as wrong)."""
    known = {t for s in train for t in s.tags}
    counts: dict[str, int] = {}
    for s in other:
        for t in s.tags:
            if t not in known:
                counts[t] = counts.get(t, 0) + 1
    return counts
