"""The SavedModel `mtl_tagger.export` writes: each vertical's network with the tagging graph around it (word, character
and word-shape ids, max_len pieces, Viterbi decoding and confidences, the in-graph tokenizer) and two serving
signatures per vertical, described in mtl_tagger.export's docstring.

It imports TensorFlow; the export command imports it only once its flags and the model dir are checked.
"""
import functools
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from mtl_tagger.conll import attributes_of, tag_structure
from mtl_tagger.files import write_json_atomic
from mtl_tagger.graph_text import GraphTokenizer
from mtl_tagger.model import TaggerNet
from mtl_tagger.tagger import Tagger

SIGNATURE_INPUTS = (tf.TensorSpec([None, None], tf.string, name="tokens"),
                    tf.TensorSpec([None], tf.int32, name="lengths"))
EXTRACT_INPUTS = (tf.TensorSpec([None], tf.string, name="text"), tf.TensorSpec([], tf.float64, name="min_confidence"))
EXTRACT_VALUES = {"attribute": "string", "value": "string", "start": "int32", "end": "int32", "confidence": "float32",
                  "unrounded_confidence": "float32"}
VERTICALS_JSON = Path("assets.extra") / "verticals.json"


def signature_keys(verticals: Sequence[str]) -> dict[str, str]:
    """vertical → signature key `tag_<name>`, each run of characters other than ASCII letters and digits as one
    '_'; a key already taken by an earlier vertical gets `_2`, `_3`, … (deterministic in the model's order)."""
    keys: dict[str, str] = {}
    for vertical in verticals:
        base = "tag_" + (re.sub(r"[^0-9A-Za-z]+", "_", vertical).strip("_") or "vertical")
        key, n = base, 1
        while key in keys.values():
            n += 1
            key = f"{base}_{n}"
        keys[vertical] = key
    return keys


def _char_class(codes: Iterable[int]) -> str:
    """The body of an RE2 character class matching exactly these code points (consecutive ones as ranges)."""
    parts, codes = [], sorted(codes)
    start = 0
    for i in range(1, len(codes) + 1):
        if i == len(codes) or codes[i] != codes[i - 1] + 1:
            first, last = codes[start], codes[i - 1]
            parts.append(f"\\x{{{first:x}}}" + (f"-\\x{{{last:x}}}" if last > first else ""))
            start = i
    return "".join(parts)


@functools.cache
def _shape_patterns() -> dict[str, str]:
    """RE2 full-match patterns of the tests `vocab.shape` makes, from this Python's Unicode tables.

    Per character: digit = str.isdigit, alnum = str.isalnum, upper = isupper, lower = islower, and cased = istitle
    (Python's uppercase or titlecase flag). str.islower/isupper/istitle of a token are then regular languages.
    """
    def members(test: Callable[[str], bool]) -> str:
        return _char_class(c for c in range(sys.maxunicode + 1) if test(chr(c)))

    digit, alnum, upper, lower, cased = map(members, (str.isdigit, str.isalnum, str.isupper, str.islower,
                                                      str.istitle))
    title = members(lambda ch: ch.istitle() and not ch.isupper())  # cased, yet a token with one is never upper
    cased_or_lower = f"{cased}{lower}"
    return {
        "number": f"[{digit},]*\\.?[{digit},]*",  # replace(".", "", 1).replace(",", "") leaves digits only
        "digit": f"(?s).*[{digit}].*",
        "alnum": f"(?s).*[{alnum}].*",
        "lower": f"[^{cased}]*[{lower}][^{cased}]*",
        "upper": f"[^{lower}{title}]*[{upper}][^{lower}{title}]*",
        # istitle: a cased character only after an uncased one, a lowercase one only after a cased one.
        "title": f"[^{cased_or_lower}]*[{cased}][{lower}]*(?:[^{cased_or_lower}]+[{cased}][{lower}]*)*"
                 f"[^{cased_or_lower}]*",
        "any_upper": f"(?s).*[{upper}].*",
    }


def shape_ids(tokens: tf.Tensor) -> tf.Tensor:
    """`vocab.shape` of every token of a string tensor, in-graph: int32 ids of the same shape (see SHAPES)."""
    p = _shape_patterns()

    def matches(name: str) -> tf.Tensor:
        return tf.strings.regex_full_match(tokens, p[name])

    # shape()'s rules from the last to the first, so that the first rule that holds has the last word.
    digit = matches("digit")
    ids = tf.where(matches("any_upper"), 4, 8)
    for name, value in (("title", 3), ("upper", 2), ("lower", 1)):
        ids = tf.where(matches(name), value, ids)
    ids = tf.where(matches("alnum"), ids, 7)
    ids = tf.where(digit, 6, ids)
    return tf.where(matches("number") & digit, 5, ids)


def _chunking(tags: Sequence[str]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """What conll.chunks reads in a vertical's tags: its attributes, and per tag id its attribute's index (-1 for
    O) and whether it is an I- tag (conll.tag_structure)."""
    index, inner = tag_structure(tags)
    return tf.constant(attributes_of(tags), tf.string), tf.constant(index, tf.int32), tf.constant(inner)


def _table(keys: Sequence, values: np.ndarray, key_dtype: tf.DType) -> tf.lookup.StaticHashTable:
    """An in-graph map keys → int32 values, 1 (unknown) for any other key."""
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, key_dtype), tf.constant(values, tf.int32))
    return tf.lookup.StaticHashTable(init, default_value=1)


def _platt(confidence: tf.Tensor, a: float, b: float) -> tf.Tensor:
    """calibration.platt in-graph: σ(a · logit(c) + b), c kept 1e-6 away from 0 and 1."""
    c = tf.clip_by_value(confidence, 1e-6, 1 - 1e-6)
    return tf.sigmoid(a * (tf.math.log(c) - tf.math.log1p(-c)) + b)


class Exported(tf.Module):
    """What the SavedModel holds: each vertical's network, the word and character tables, and the tagging graph."""

    def __init__(self, tagger: Tagger) -> None:
        super().__init__(name="mtl_tagger")
        vocab = tagger.vocab
        self.tags = {task: list(vocab.tags[task]) for task in tagger.tasks}
        self.max_len, self.max_word_len = tagger.params.max_len, tagger.params.max_word_len
        self.nets = {task: tagger.nets[task] for task in tagger.tasks}  # tracked, so their weights are saved
        self.calibration = dict(tagger.calibration)  # constants of the graph (confidence as Tagger gives it)
        # The maps Vocab.word_ids / char_ids use (the tables are built from them, so ties resolve alike).
        self.word_table = _table(vocab.words, vocab.word_ids(vocab.words), tf.string)
        self.train_words = vocab.train_words  # None: the vocabulary does not say, so no second map (Vocab.trained)
        chars = [c for c in vocab.chars if len(c) == 1]  # not <pad>/<unk>: a code point never equals them
        self.char_table = _table([ord(c) for c in chars], vocab.char_ids(chars, 1)[:, 0], tf.int32)
        self.tokenizer = GraphTokenizer()
        self.chunking = {task: _chunking(self.tags[task]) for task in tagger.tasks}
        rules = {task: tagger.snap_rule(task) for task in tagger.tasks}
        self.snap_rules = {task: rule for task, rule in rules.items() if rule is not None}

    def signature(self, task: str) -> tf.types.experimental.ConcreteFunction:
        """The serving function of one vertical: (tokens, lengths) → {"tags", "confidence"}."""
        fn = tf.function(lambda tokens, lengths: self.tag(task, tokens, lengths), input_signature=SIGNATURE_INPUTS,
                         autograph=False)
        return fn.get_concrete_function()

    def extract_signature(self, task: str) -> tf.types.experimental.ConcreteFunction:
        """The raw-text serving function of one vertical: (text, min_confidence) → values, tokens and tags."""
        fn = tf.function(lambda text, min_confidence: self.extract(task, text, min_confidence),
                         input_signature=EXTRACT_INPUTS, autograph=False)
        return fn.get_concrete_function()

    def encode(self, tokens: tf.Tensor, lengths: tf.Tensor) -> dict[str, tf.Tensor]:
        """The padded batch `pipeline.encode` and `pad` make of tokens [N, T] with these lengths, in-graph."""
        tokens = tokens[:, :tf.maximum(tf.reduce_max(lengths), 1)]
        mask = tf.sequence_mask(lengths, tf.shape(tokens)[1])
        tokens = tf.where(mask, tokens, "")
        codes = tf.strings.unicode_decode(tokens, "UTF-8")
        chars = codes.with_flat_values(self.char_table.lookup(codes.flat_values))
        width = tf.clip_by_value(tf.cast(chars.bounding_shape(2), tf.int32), 1, self.max_word_len)
        return {
            "words": tf.where(mask, self.word_table.lookup(tokens), 0),
            "chars": chars.to_tensor(shape=tf.concat([tf.shape(tokens), [width]], 0)),
            "case": tf.where(mask, shape_ids(tokens), 0),
            "length": lengths,
        }

    def tag(self, task: str, tokens: tf.Tensor, lengths: tf.Tensor) -> dict[str, tf.Tensor]:
        """Tags ("" past each length) and confidences [B, T] of a token batch."""
        ids, confidence = self.decode(task, tokens, lengths)
        return {"tags": self.tag_names(task, ids, lengths), "confidence": confidence}

    def tag_names(self, task: str, ids: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """The names of tag ids [B, T], "" past each length."""
        names = tf.gather(tf.constant(self.tags[task]), ids)
        return tf.where(tf.sequence_mask(lengths, tf.shape(ids)[1]), names, "")

    def extract(self, task: str, text: tf.Tensor, min_confidence: tf.Tensor) -> dict[str, tf.Tensor]:
        """What Tagger.extract gives for texts [B]: their values at or above min_confidence, tokens and tags, padded
        as the module docstring says."""
        tokens, starts, ends = self.tokenizer(text)
        lengths = tf.cast(tokens.row_lengths(), tf.int32)
        ids, confidence = self.decode(task, tokens.to_tensor(), lengths)
        every = self.values(task, ids, confidence)
        shown = tf.round(tf.cast(every[-1], tf.float64) * 1e4) / 1e4  # tagger.shown (a float32 times 1e4 is exact)
        kept = shown >= min_confidence
        rows, first, last, attribute, lowest, shown = (tf.boolean_mask(x, kept) for x in (*every, shown))
        start = tf.gather_nd(starts.to_tensor(), tf.stack([rows, first], 1))
        end = tf.gather_nd(ends.to_tensor(), tf.stack([rows, last], 1))
        value = tf.strings.substr(tf.gather(text, rows), start, end - start, unit="UTF8_CHAR")
        batch = tf.shape(text)[0]
        found = {"attribute": attribute, "value": value, "start": start, "end": end, "confidence": shown,
                 "unrounded_confidence": lowest}
        out = {name: tf.RaggedTensor.from_value_rowids(tf.cast(found[name], kind), rows, tf.cast(batch, tf.int64))
               .to_tensor() for name, kind in EXTRACT_VALUES.items()}
        out["count"] = tf.math.bincount(tf.cast(rows, tf.int32), minlength=batch, maxlength=batch, dtype=tf.int32)
        return {**out, "tokens": tokens.to_tensor(), "tags": self.tag_names(task, ids, lengths)}

    def numbered(self, task: str, ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The values of tag ids [B, T] as conll.chunks reads them, numbered in order: each one's first token (row,
        token), each token's value number (the count of values for a token in none), and that count."""
        _, attribute_of, inner = self.chunking[task]
        attribute = tf.gather(attribute_of, ids)  # -1 for O, as past each length (tag id 0)
        before = tf.pad(attribute[:, :-1], [[0, 0], [1, 0]], constant_values=-1)
        begins = (attribute >= 0) & ~(tf.gather(inner, ids) & (attribute == before))  # I-x after x continues it
        firsts = tf.where(begins)  # [values, 2]: (row, token), row-major
        count = tf.shape(firsts)[0]
        number = tf.reshape(tf.cumsum(tf.reshape(tf.cast(begins, tf.int32), [-1])), tf.shape(ids)) - 1
        return firsts, tf.where(attribute >= 0, number, count), count

    def values(self, task: str, ids: tf.Tensor, confidence: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """The values of tag ids [B, T] as conll.chunks reads them, in order: each one's row, first and last token,
        attribute, and confidence (its tokens' smallest, unrounded)."""
        attributes, attribute_of, _ = self.chunking[task]
        firsts, value, count = self.numbered(task, ids)
        token = tf.broadcast_to(tf.range(tf.shape(ids, tf.int64)[1]), tf.shape(ids, tf.int64))
        last = tf.math.unsorted_segment_max(token, value, count + 1)[:count]
        lowest = tf.math.unsorted_segment_min(confidence, value, count + 1)[:count]
        attribute = tf.gather(attributes, tf.gather(attribute_of, tf.gather_nd(ids, firsts)))
        return firsts[:, 0], firsts[:, 1], last, attribute, lowest

    def decode(self, task: str, tokens: tf.Tensor, lengths: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Tag ids and confidences [B, T] of a token batch, each row decoded in max_len pieces and then snapped whole
        as Tagger.tag does."""
        net: TaggerNet = self.nets[task]
        batch, time = tf.shape(tokens)[0], tf.shape(tokens)[1]
        checks = [tf.debugging.assert_equal(tf.shape(lengths)[0], batch, message="lengths: one per row of tokens"),
                  tf.debugging.assert_non_negative(lengths, message="lengths must be >= 0"),
                  tf.debugging.assert_less_equal(lengths, time, message="lengths must be <= the width of tokens")]
        with tf.control_dependencies(checks):
            lengths = tf.identity(lengths)
        width = tf.maximum(tf.minimum(time, self.max_len), 1)
        count = (time + width - 1) // width  # pieces per row
        pieces = tf.reshape(tf.pad(tokens, [[0, 0], [0, count * width - time]]), [batch * count, width])
        starts = tf.tile(tf.range(count) * width, [batch])
        piece_lengths = tf.clip_by_value(tf.repeat(lengths, count) - starts, 0, width)
        live = tf.where(piece_lengths > 0)  # only non-empty pieces are decoded
        calibration = self.calibration.get(task)
        live_lengths = tf.gather_nd(piece_lengths, live)
        ids, marginals = net.decode_with_marginals(task, self.encode(tf.gather_nd(pieces, live), live_lengths),
                                                   [calibration.temperature if calibration else 1.0], every_tag=True)
        marginals = marginals[0]  # at the one temperature

        def rows(x: tf.Tensor) -> tf.Tensor:
            """Decoded pieces [live, ≤ width, ...] back into rows [B, T, ...], 0 wherever nothing was decoded."""
            rest = tf.shape(x)[2:]
            x = tf.pad(x, tf.concat([[[0, 0], [0, width - tf.shape(x)[1]]], tf.zeros([tf.size(rest), 2], tf.int32)], 0))
            rows = tf.scatter_nd(live, x, tf.cast(tf.concat([[batch * count, width], rest], 0), tf.int64))
            return tf.reshape(rows, tf.concat([[batch, count * width], rest], 0))[:, :time]

        ids = rows(ids)
        if task in self.snap_rules:
            ids = self.snap_rules[task](tokens, lengths, ids)
        confidence = tf.gather(rows(marginals), ids, batch_dims=2)
        mask = tf.sequence_mask(lengths, time)
        if calibration is not None and calibration.method == "platt":  # Calibration.apply, per token
            confidence = tf.where(mask, _platt(confidence, calibration.a, calibration.b), 0.0)
        if calibration is not None and calibration.unseen_values and self.train_words is not None:
            words = self.word_table.lookup(tf.where(mask, tokens, ""))
            untrained = mask & ((words <= 1) | (words > 1 + self.train_words))  # Vocab.trained, negated
            _, value, count = self.numbered(task, ids)
            holds = tf.math.unsorted_segment_max(tf.cast(untrained, tf.int32), value, count + 1)
            unseen = tf.gather(tf.concat([holds[:count], [0]], 0), value) > 0  # calibration.in_unseen_values
            second = tf.minimum(confidence, _platt(confidence, calibration.unseen_a, calibration.unseen_b))
            confidence = tf.where(unseen, second, confidence)
        return ids, confidence


def write_saved_model(tagger: Tagger, directory: Path) -> dict:
    """Write the SavedModel of a tagger's networks as they are and its `assets.extra/verticals.json` into
    `directory`; return what that file holds: each vertical's signature keys and tags."""
    keys = signature_keys(tagger.tasks)
    extract_keys = {task: "extract_" + key.removeprefix("tag_") for task, key in keys.items()}
    module = Exported(tagger)
    info = {"inputs": {"tokens": "[B, T] string", "lengths": "[B] int32"},
            "outputs": {"tags": "[B, T] string", "confidence": "[B, T] float32"},
            "extract_inputs": {"text": "[B] string", "min_confidence": "[] float64"},
            "extract_outputs": {**{name: "[B, V] " + kind for name, kind in EXTRACT_VALUES.items()},
                                "count": "[B] int32", "tokens": "[B, N] string", "tags": "[B, N] string"},
            "max_len": tagger.params.max_len,
            "verticals": {task: {"signature": keys[task], "extract_signature": extract_keys[task],
                                 "tags": tagger.vocab.tags[task]} for task in tagger.tasks}}
    signatures = {keys[t]: module.signature(t) for t in tagger.tasks}
    signatures.update({extract_keys[t]: module.extract_signature(t) for t in tagger.tasks})
    tf.saved_model.save(module, str(directory), signatures=signatures)
    (directory / VERTICALS_JSON).parent.mkdir(exist_ok=True)
    write_json_atomic(directory / VERTICALS_JSON, info)
    return info


def signature_summary(out: str | Path) -> str:
    """Each signature's input and output tensors as tf.saved_model.load sees them (--show_signatures)."""
    lines = []
    for key, fn in sorted(tf.saved_model.load(str(out)).signatures.items()):
        lines.append(f"signature_def['{key}']:")
        for kind, specs in (("input", fn.structured_input_signature[1]), ("output", fn.structured_outputs)):
            lines += [f"  {kind} {name}: {spec.dtype.name} {spec.shape}" for name, spec in sorted(specs.items())]
    return "\n".join(lines) + "\n"
