"""Word, character and per-task tag vocabularies: string ↔ id maps, saved as `<model_dir>/vocab.json`, with each
task's known values (every value of its training split, for the snap rule at decoding: snap.py) and how many words
the training splits hold (calibration reads a value holding any other word apart: calibration.py).

Id 0 is padding and id 1 the unknown symbol for words and characters; tag id 0 is always "O".
Words come from the training splits of all tasks (ids 2 … train_words + 1) plus every word of the pretrained
vectors after them, so words that only occur at test or predict time still get their pretrained vector. A word's
*shape* (casing, digits, punctuation; `SHAPES`) is a fixed feature that needs no vocabulary.
"""
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl_tagger.conll import Sentence, chunks
from mtl_tagger.errors import InputError
from mtl_tagger.files import read_json, write_text_atomic

PAD, UNK = "<pad>", "<unk>"
UNK_ID = 1
# Word shapes as NCRF++/Lample et al.'s casing feature; id 0 is padding.
SHAPES = ("<pad>", "lower", "upper", "title", "mixed", "number", "alnum", "punct", "other")
KnownValues = dict[str, list[list[str]]]  # attribute -> its values, each a list of folded words
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(word: str) -> str:
    """A word as known values compare it: ASCII letters in lower case (as tf.strings.lower folds them), the rest as
    it is."""
    return word.translate(_ASCII_LOWER)


def known_values(sentences: Iterable[Sentence]) -> KnownValues:
    """Every value of gold `sentences` per attribute, folded, each once, sorted."""
    found: dict[str, set[tuple[str, ...]]] = {}
    for s in sentences:
        for attr, a, b in chunks(s.tags):
            found.setdefault(attr, set()).add(tuple(fold(w) for w in s.tokens[a:b]))
    return {attr: [list(v) for v in sorted(vs)] for attr, vs in sorted(found.items())}


def shape(token: str) -> int:
    """The SHAPES id of a token: its casing, whether it is a number or mixes digits, or punctuation."""
    if token.isdigit() or token.replace(".", "", 1).replace(",", "").isdigit():
        return 5
    if any(c.isdigit() for c in token):
        return 6
    if not any(c.isalnum() for c in token):
        return 7
    if token.islower():
        return 1
    if token.isupper():
        return 2
    if token.istitle():
        return 3
    return 4 if any(c.isupper() for c in token) else 8


def _index(items: Sequence[str]) -> dict[str, int]:
    return {s: i for i, s in enumerate(items)}


@dataclass
class Vocab:
    """Id maps shared by all tasks (words, chars), one tag list per task and, for models written since the snap
    rule, each task's known values, and since unseen-word calibration, how many of the words come from the training
    splits (None before)."""

    words: list[str]
    chars: list[str]
    tags: dict[str, list[str]]
    values: dict[str, KnownValues] | None = None
    train_words: int | None = None

    def __post_init__(self) -> None:
        self._word_ids = _index(self.words)
        self._char_ids = _index(self.chars)
        self._tag_ids = {task: _index(tags) for task, tags in self.tags.items()}

    @classmethod
    def build(
        cls,
        train_tokens: Iterable[Sequence[str]],
        train_tags: dict[str, Iterable[Sequence[str]]],
        pretrained_words: Sequence[str] = (),
        values: dict[str, KnownValues] | None = None,
    ) -> "Vocab":
        """Vocabularies from training sentences (tokens of all tasks; tags per task) and pretrained words, with the
        tasks' known values as given."""
        word_counts: Counter[str] = Counter()
        char_counts: Counter[str] = Counter()
        for tokens in train_tokens:
            word_counts.update(tokens)
            for token in tokens:
                char_counts.update(token)
        words = [PAD, UNK] + sorted(word_counts, key=lambda w: (-word_counts[w], w))
        seen = set(words)
        words += [w for w in dict.fromkeys(pretrained_words) if w not in seen]
        chars = [PAD, UNK] + sorted(char_counts, key=lambda c: (-char_counts[c], c))
        tags = {}
        for task, sentences in train_tags.items():
            found = {t for s in sentences for t in s} - {"O"}
            # B-x before I-x for each attribute: stable, readable order in tables and heatmaps.
            tags[task] = ["O"] + sorted(found, key=lambda t: (t[2:], t[0]))
        return cls(words=words, chars=chars, tags=tags, values=values, train_words=len(word_counts))

    def word_ids(self, tokens: Sequence[str]) -> np.ndarray:
        """Word ids of a sentence (1 for unknown words)."""
        return np.array([self._word_ids.get(t, 1) for t in tokens], dtype=np.int32)

    def trained(self, tokens: Sequence[str]) -> np.ndarray:
        """Whether each token is a word of the training splits (all True for a vocabulary that does not say)."""
        if self.train_words is None:
            return np.ones(len(tokens), bool)
        ids = self.word_ids(tokens)
        return (ids > UNK_ID) & (ids <= UNK_ID + self.train_words)

    def char_ids(self, tokens: Sequence[str], max_word_len: int) -> np.ndarray:
        """[len, max chars in sentence] char ids, words cut to `max_word_len` characters, 0-padded."""
        width = max(1, min(max_word_len, max((len(t) for t in tokens), default=1)))
        out = np.zeros((len(tokens), width), dtype=np.int32)
        for i, token in enumerate(tokens):
            ids = [self._char_ids.get(c, 1) for c in token[:width]]
            out[i, : len(ids)] = ids
        return out

    def shape_ids(self, tokens: Sequence[str]) -> np.ndarray:
        """Word-shape ids of a sentence (see SHAPES)."""
        return np.array([shape(t) for t in tokens], dtype=np.int32)

    def tag_ids(self, task: str, tags: Sequence[str]) -> np.ndarray:
        """Tag ids for `task`; a tag never seen in training maps to O (0) for the loss only."""
        ids = self._tag_ids[task]
        return np.array([ids.get(t, 0) for t in tags], dtype=np.int32)

    def tag_names(self, task: str, ids: Iterable[int]) -> list[str]:
        """Tag strings for ids of `task`."""
        names = self.tags[task]
        return [names[i] for i in ids]

    def check_task(self, task: str) -> None:
        """InputError unless there are tags for `task`: the vertical --task names is one the model tags."""
        if task not in self.tags:
            raise InputError(f"--task={task}: this model tags {', '.join(self.tags)}")

    def save(self, path: str | Path) -> None:
        """Write the vocabularies as JSON."""
        data = {"words": self.words, "chars": self.chars, "tags": self.tags}
        extra = {k: v for k, v in (("values", self.values), ("train_words", self.train_words)) if v is not None}
        write_text_atomic(path, json.dumps({**data, **extra}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path, tasks: Sequence[str] | None = None) -> "Vocab":
        """Read and check vocabularies written by `save` (for `tasks` in that order, when given); InputError naming
        the file when they are damaged."""
        data = read_json(path)
        if not isinstance(data, dict) or not {"words", "chars", "tags"} <= set(data):
            raise InputError("damaged vocabulary: expected a JSON object with words, chars and tags", path)
        words, chars, tags = data["words"], data["chars"], data["tags"]
        for name, items in (("words", words), ("chars", chars)):
            if not isinstance(items, list) or len(items) < 2 or items[:2] != [PAD, UNK] \
                    or not all(isinstance(w, str) for w in items):
                raise InputError(f"damaged vocabulary: {name} must be a list of strings starting with {PAD}, {UNK}",
                                 path)
        if not isinstance(tags, dict) or not tags or not all(
                isinstance(v, list) and v[:1] == ["O"] and all(isinstance(t, str) for t in v) for v in tags.values()):
            raise InputError("damaged vocabulary: tags must map each vertical to a list of tags starting with O",
                             path)
        for task, names in tags.items():
            bad = [t for t in names[1:] if not (t[:2] in ("B-", "I-") and len(t) > 2)] + [
                t for t in names if names.count(t) > 1]
            if bad:
                raise InputError(f"damaged vocabulary: tags of {task} list {bad[0]!r}, which is not a tag (O, "
                                 "B-<attribute> or I-<attribute>) or is listed twice", path)
        if tasks is not None and list(tags) != list(tasks):
            raise InputError(f"vocab.json has tags for {', '.join(tags)} but params.json trains {', '.join(tasks)}",
                             path)
        values = data.get("values")
        if values is not None and not (isinstance(values, dict) and set(values) == set(tags) and all(
                isinstance(known, dict) and all(
                    isinstance(vs, list) and all(isinstance(v, list) and v and all(isinstance(w, str) for w in v)
                                                 for v in vs) for vs in known.values()) for known in values.values())):
            raise InputError("damaged vocabulary: values must map each vertical to {attribute: [[word, ...], ...]}",
                             path)
        train_words = data.get("train_words")
        if train_words is not None and not (type(train_words) is int and 0 <= train_words <= len(words) - 2):
            raise InputError(f"damaged vocabulary: train_words must be a whole number from 0 to {len(words) - 2}, the "
                             "words after <pad> and <unk>", path)
        return cls(words=words, chars=chars, tags=tags, values=values, train_words=train_words)
