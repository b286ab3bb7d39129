"""A run's data on disk, read and checked: each vertical's splits `<data_dir>/<Vertical>/{train,dev,test}.conll`
and the word vectors, with the vocabularies built from them (`load_data`), all without TensorFlow, so that train
refuses bad data before TensorFlow loads.

When dev.conll is missing, a deterministic 10% of train (by a CRC of each sentence's text, so the
same on every machine and independent of order and seed) is held out as dev, and the log says so.
"""
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from absl import logging

from mtl_tagger.conll import Sentence, read_conll, split_long
from mtl_tagger.errors import InputError
from mtl_tagger.files import sha256
from mtl_tagger.modeldir import stack
from mtl_tagger.params import Params
from mtl_tagger.vectors import read_vectors
from mtl_tagger.vocab import KnownValues, Vocab, known_values


@dataclass
class TaskData:
    """The three splits of one vertical, and whether dev was held out of train."""

    name: str
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    values: KnownValues  # each attribute's values in the whole training sentences (vocab.known_values)
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
        return read_conll(task_dir / f"{split}.conll", strict_bio=strict_bio)

    # Dev and test stay whole (the tagger decodes long sentences in pieces) so chunk-level metrics see the true
    # spans; training sentences are cut at max_len after their known values are read, so no value is cut in two.
    train, test = read("train"), read("test") if with_test else []
    held_out = not (task_dir / "dev.conll").is_file()
    if held_out:
        dev = [s for s in train if _held_out(s)]
        train = [s for s in train if not _held_out(s)]
        if not dev or not train:
            raise InputError("too few sentences to hold out a dev split; add dev.conll", task_dir / "train.conll")
        logging.info("%s: no dev.conll; holding out %d of %d train sentences as dev", task, len(dev),
                     len(dev) + len(train))
    else:
        dev = read("dev")
    values = known_values(train)
    train, _ = split_long(train, max_len, task_dir / "train.conll")
    return TaskData(task, train, dev, test, values, dev_held_out=held_out)


def unseen_tags(train: list[Sentence], other: list[Sentence]) -> dict[str, int]:
    """Tags of `other` that never occur in `train`, with their token counts (they will count as wrong)."""
    known = {t for s in train for t in s.tags}
    counts: dict[str, int] = {}
    for s in other:
        for t in s.tags:
            if t not in known:
                counts[t] = counts.get(t, 0) + 1
    return counts


@dataclass
class RunData:
    """Everything read from disk for a run."""

    tasks: dict[str, TaskData]
    vocab: Vocab
    pretrained: tuple[list[str], np.ndarray] | None  # (words, vectors) of --word_vectors
    provenance: dict  # data fingerprint and stack (modeldir.provenance.json)
    notes: list[str]  # warnings about the data, for the caller to log once the run is under way


def load_data(p: Params) -> RunData:
    """Read and check every vertical's splits and the word vectors, and build the vocabularies."""
    tasks = {t: load_task(p.data_dir, t, p.strict_bio, p.max_len) for t in p.names}
    notes = []
    for t, data in tasks.items():
        for split in ("dev", "test"):
            unseen = unseen_tags(data.train, getattr(data, split))
            if unseen:
                notes.append(f"{t} {split}: {len(unseen)} tag(s) never seen in train will count as wrong: "
                             + ", ".join(f"{k} ({v})" for k, v in sorted(unseen.items())))
    pretrained = None
    if p.word_vectors:
        pretrained = read_vectors(p.word_vectors)
        if pretrained[1].shape[1] != p.word_dim:
            raise InputError(f"vectors are {pretrained[1].shape[1]}-d but --word_dim={p.word_dim}", p.word_vectors)
    vocab = Vocab.build(
        (s.tokens for data in tasks.values() for s in data.train),
        {t: [s.tags for s in data.train] for t, data in tasks.items()},
        pretrained[0] if pretrained else (),
        {t: data.values for t, data in tasks.items()},
    )
    files = {f"{t}/{f.name}": sha256(f) for t in p.names
             for f in sorted((Path(p.data_dir) / t).glob("*.conll"))}
    if p.word_vectors:
        files["word_vectors"] = sha256(p.word_vectors)
    return RunData(tasks, vocab, pretrained, {"data": files, "stack": stack()}, notes)
