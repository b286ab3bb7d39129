"""CoNLL files (`token<TAB>tag`, blank line between sentences): reading with BIO checks, writing, chunks.

Every problem in a file is reported as an InputError naming `file:line`, so a user can fix the data;
BIO slips (an `I-x` that cannot continue a chunk) are repaired by default and counted, since
distantly supervised data has them and the paper's models only need well-formed BIO.
"""
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from absl import logging

from mtl_tagger.errors import InputError
from mtl_tagger.files import atomic_file

_TAG = re.compile(r"([BI])-(\S+)")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Sentence:
    """One sentence: its tokens, their tags, and the 1-based file line of its first token (for messages)."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    line: int


@dataclass
class ReadStats:
    """Counts that read_conll adds to (one object may be shared across files).

    sentences/tokens are what was returned (after splitting); repaired = I- tags turned into B-;
    split = sentences cut into chunks because they were longer than max_len.
    """

    sentences: int = 0
    tokens: int = 0
    repaired: int = 0
    split: int = 0


def _parse_tag(tag: str) -> tuple[str, str] | None:
    """("O", "") for O, (prefix, attr) for B-/I- tags, None when the tag is malformed."""
    if tag == "O":
        return "O", ""
    m = _TAG.fullmatch(tag)
    return (m.group(1), m.group(2)) if m else None


def _split_tag(tag: str) -> tuple[str, str]:
    """_parse_tag for tags already known to be valid; ValueError otherwise (a caller bug, not bad input)."""
    parsed = _parse_tag(tag)
    if parsed is None:
        raise ValueError(f"malformed tag {tag!r}: expected O, B-<attr> or I-<attr>")
    return parsed


def _bad_continuation(tags: Sequence[str]) -> list[int]:
    """Positions of I-x tags that continue nothing: at the start, after O, or after a tag of another attr."""
    bad = []
    prev_attr = ""
    for i, tag in enumerate(tags):
        prefix, attr = _split_tag(tag)
        if prefix == "I" and attr != prev_attr:
            bad.append(i)
        prev_attr = attr
    return bad


def repair_bio(tags: Sequence[str]) -> tuple[list[str], int]:
    """Turn every I-x that cannot continue a chunk into B-x (as conlleval reads it); return tags and count."""
    out = list(tags)
    bad = _bad_continuation(out)
    for i in bad:
        out[i] = "B-" + out[i][2:]
    return out, len(bad)


def chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks (attr, start, end_exclusive) under conlleval rules.

    A chunk starts at B-x, or at I-x when the previous tag is O or of another attr; it ends before
    O, before any B-, and before a tag of another attr.
    """
    found = []
    start = None
    prev_attr = ""
    for i, tag in enumerate(tags):
        prefix, attr = _split_tag(tag)
        if start is not None and (prefix != "I" or attr != prev_attr):
            found.append((prev_attr, start, i))
            start = None
        if prefix != "O" and start is None:
            start = i
        prev_attr = attr
    if start is not None:
        found.append((prev_attr, start, len(tags)))
    return found


def attributes_of(tags: Sequence[str]) -> list[str]:
    """The attributes of tags (B-/I- tags without the prefix), sorted."""
    return sorted({t[2:] for t in tags if t != "O"})


def tag_structure(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """What chunks reads in tags: per tag, its attribute's place in attributes_of (-1 for O) and whether it is
    an I- tag."""
    numbers = {a: i for i, a in enumerate(attributes_of(tags))}
    return (np.array([numbers[t[2:]] if t != "O" else -1 for t in tags], np.int64),
            np.array([t.startswith("I-") for t in tags], bool))


def bio_tags(length: int, values: Iterable[tuple[str, int, int]]) -> list[str]:
    """The BIO tags of a sentence of `length` tokens holding these non-overlapping values (attr, start, end): the
    inverse of `chunks`."""
    tags = ["O"] * length
    for attr, start, end in values:
        tags[start:end] = [f"B-{attr}"] + [f"I-{attr}"] * (end - start - 1)
    return tags


def _decoded_lines(path: Path) -> list[str]:
    """The file's lines as text (BOM and CR stripped); non-UTF-8 bytes are reported with their line."""
    data = path.read_bytes().removeprefix(_BOM)
    lines = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        try:
            lines.append(raw.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as e:
            raise InputError(
                f"not valid UTF-8 ({e.reason} at byte {e.start + 1} of the line); save the file as UTF-8",
                path, lineno) from None
    return lines


def _parse_line(text: str, path: Path, lineno: int) -> tuple[str, str]:
    """(token, tag) from one non-blank line, or an InputError saying what is wrong with it."""
    fields = text.split("\t")
    if len(fields) != 2:
        hint = " (it looks space-separated)" if len(fields) == 1 and " " in text.strip() else ""
        raise InputError(
            f"line has {len(fields)} tab-separated field(s){hint}, expected 2: token<TAB>tag "
            "(the separator must be a TAB)", path, lineno)
    token, tag = fields
    if not token.strip():
        raise InputError("empty token: every line needs a non-blank token before the TAB", path, lineno)
    if _parse_tag(tag) is None:
        raise InputError(
            f"malformed tag {tag!r}: expected O, B-<attr> or I-<attr> (upper-case B/I, non-empty attr "
            "without whitespace)", path, lineno)
    return token, tag


def _raw_sentences(lines: list[str], path: Path) -> list[tuple[list[str], list[str], int]]:
    """Group parsed lines into (tokens, tags, first line); blank or whitespace-only lines separate."""
    sentences: list[tuple[list[str], list[str], int]] = []
    current: tuple[list[str], list[str], int] | None = None
    for lineno, text in enumerate(lines, 1):
        if not text.strip():
            current = None
            continue
        token, tag = _parse_line(text, path, lineno)
        if current is None:
            current = ([], [], lineno)
            sentences.append(current)
        current[0].append(token)
        current[1].append(tag)
    return sentences


def split_long(sentences: Iterable[Sentence], max_len: int, path: str | Path) -> tuple[list[Sentence], int]:
    """Sentences of `path` longer than max_len tokens cut into consecutive pieces (a piece never starts with I-), and
    how many were cut (logged). Apart from reading, so that what needs whole sentences (known values) sees them."""
    pieces: list[Sentence] = []
    split = 0
    for s in sentences:
        if len(s.tokens) <= max_len:
            pieces.append(s)
            continue
        split += 1
        for start in range(0, len(s.tokens), max_len):
            piece_tags, _ = repair_bio(s.tags[start:start + max_len])
            pieces.append(Sentence(s.tokens[start:start + max_len], tuple(piece_tags), s.line + start))
    if split:
        logging.warning("%s: split %d sentence(s) longer than %d tokens into pieces", path, split, max_len)
    return pieces, split


def read_conll(path: str | Path, strict_bio: bool = False, max_len: int | None = None,
               stats: ReadStats | None = None) -> list[Sentence]:
    """Read a CoNLL file into sentences, checking every line; see the module docstring for the policy.

    strict_bio: a dangling I-x is an error instead of being repaired to B-x.
    max_len: sentences longer than this are split into consecutive pieces (each a Sentence).
    stats: when given, the counts of this file are added to it.
    """
    path = Path(path)
    if max_len is not None and max_len < 1:
        raise InputError(f"max_len must be a positive number of tokens, got {max_len}")
    if not path.is_file():
        raise InputError("CoNLL file not found (or not a regular file); check the path", path)
    raw = _raw_sentences(_decoded_lines(path), path)
    if not raw:
        raise InputError("no sentences: the file is empty or holds only blank lines; "
                         "expected token<TAB>tag lines", path)
    sentences: list[Sentence] = []
    repaired = split = 0
    for tokens, tags, line in raw:
        bad = _bad_continuation(tags)
        if bad and strict_bio:
            i = bad[0]
            after = f"after {tags[i - 1]}" if i else "at the start of a sentence"
            raise InputError(
                f"{tags[i]} {after} continues no chunk; use B-{tags[i][2:]} "
                "(or read without strict BIO to repair it)", path, line + i)
        tags, count = repair_bio(tags)
        repaired += count
        sentences.append(Sentence(tuple(tokens), tuple(tags), line))
    if repaired:
        logging.warning("%s: repaired %d I- tag(s) that continued no chunk into B-", path, repaired)
    if max_len is not None:
        sentences, split = split_long(sentences, max_len, path)
    if stats is not None:
        stats.sentences += len(sentences)
        stats.tokens += sum(len(s.tokens) for s in sentences)
        stats.repaired += repaired
        stats.split += split
    return sentences


def read_columns(path: str | Path) -> list[tuple[list[str], ...]]:
    """The sentences of a file write_conll wrote (predictions/<V>.test.conll: token, gold, predicted), each as its
    columns; InputError naming the line where a row has another number of cells than its sentence's first."""
    path = Path(path)
    sentences, rows, first = [], [], 0
    for lineno, line in enumerate(_decoded_lines(path) + [""], 1):
        if not line.strip():
            if rows:
                sentences.append(tuple(list(column) for column in zip(*rows)))
            rows = []
            continue
        cells = line.split("\t")
        if not rows:
            first = lineno
        elif len(cells) != len(rows[0]):
            raise InputError(f"{len(cells)} tab-separated cells where line {first} has {len(rows[0])}", path, lineno)
        rows.append(cells)
    return sentences


def write_conll(path: str | Path, columns: Iterable[Sequence[Sequence[str]]]) -> None:
    """Write sentences given as columns (tokens, gold[, pred]) as tab-joined rows, atomically.

    A blank line follows every sentence. Cells must be non-blank and hold no tab or newline, so
    that the file reads back unchanged.
    """
    with atomic_file(path) as f:
        for n, cols in enumerate(columns):
            lengths = {len(c) for c in cols}
            if len(lengths) != 1 or 0 in lengths:
                raise ValueError(f"sentence {n}: columns must be non-empty, of one length: {lengths}")
            for row in zip(*cols):
                if any(not cell.strip() or "\t" in cell or "\n" in cell or "\r" in cell for cell in row):
                    raise ValueError(f"sentence {n}: cell blank or holding a tab/newline in {row!r}")
                f.write("\t".join(row) + "\n")
            f.write("\n")
