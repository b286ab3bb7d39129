"""`text.tokenize` in core TensorFlow ops, for a SavedModel that takes raw text: the same tokens at the same offsets.

text.py's rules become a finite-state machine over code points, built in Python when a model is exported:
- each code point's class is the set of PROPERTIES it has, taken from the `regex` module text.py itself uses and
  stored as constant ranges that tf.searchsorted looks up;
- four context bits per code point come from vectorised ops over the whole text: a joiner run followed by a word
  character, a separator followed by an alphanumeric, a keycap ahead, and no grapheme cluster boundary before it by
  `regex`'s rules for \\X (UAX #29 GB4 to GB13, those that look back seeing the text before the cluster too; GB9c as
  `regex` has it: a linker, among InCB Extend and Linker characters, joins the next consonant whatever precedes it);
- `_step` (the machine) is tabulated over every reachable state and every (class, context), and tf.scan runs the
  table along each row, marking each code point skipped, starting a token, continuing it, or held: a joiner kept
  only if its token goes on (text.py drops a symbol's trailing joiners unless they follow a virama).

The classes and rules are those of the exporting environment's `regex`, so a SavedModel tokenizes as text.tokenize
did where it was exported. Input must be valid UTF-8; offsets count code points (Python str indices). The scan takes
one step per code point of a batch's longest text.
"""
import functools
import sys
from collections.abc import Callable

import numpy as np
import regex
import tensorflow as tf

from mtl_tagger import text

PROPERTIES = {  # name → the code points that have it, as a regex (V1) class
    "alnum": text._ALNUM,
    "mark": r"\p{M}",
    "joiner": f"[{text._JOINERS}]",
    "virama": text._VIRAMA,
    "separator": text._SEPARATOR,
    "invisible": text._INVISIBLE,
    "pcm": r"\p{PCM}",
    "keycap_base": text._KEYCAP_BASE,
    "vs16": "\ufe0f",
    "keycap": "\u20e3",
    # What the grapheme cluster rules test. CR and LF are whitespace, so never in a symbol: GB3 (CR × LF) is left out.
    "control": r"[\p{GCB=Control}\p{GCB=CR}\p{GCB=LF}]",
    "extend": r"\p{GCB=Extend}",
    "zwj": r"\p{GCB=ZWJ}",
    "spacing_mark": r"\p{GCB=SpacingMark}",
    "prepend": r"\p{GCB=Prepend}",
    "regional": r"\p{GCB=Regional_Indicator}",
    "pictographic": r"\p{ExtPict}",
    "hangul_l": r"\p{GCB=L}",
    "hangul_v": r"\p{GCB=V}",
    "hangul_t": r"\p{GCB=T}",
    "hangul_lv": r"\p{GCB=LV}",
    "hangul_lvt": r"\p{GCB=LVT}",
    "linker": r"\p{InCB=Linker}",
    "incb_extend": r"\p{InCB=Extend}",
    "consonant": r"\p{InCB=Consonant}",
}
JOINED, SEPARATES, KEYCAP, GLUED = 8, 4, 2, 1  # context bits: symbol = class * LOOKS + bits
LOOKS = 16
SKIP, START, CONTINUE, HOLD = range(4)  # what the machine does with a code point
NONE = ("none",)  # no token open


def _begin(p: frozenset[str], look: int) -> tuple[int, tuple]:
    """What a code point does where no token is open: text.py's alternatives, keycap, word, then symbol."""
    if "pcm" in p:
        return START, NONE  # a prepended concatenation mark stands alone
    if "invisible" in p:
        return SKIP, NONE
    if look & KEYCAP:
        return START, ("keycap", 1)
    if "alnum" in p:
        return START, ("word", "virama" in p)
    return START, ("symbol", "virama" in p)


def _word(state: tuple, p: frozenset[str], look: int) -> tuple[int, tuple] | None:
    """How a word goes on (text._WORD), or None where it ends: word characters, joiners before a word character or
    after a virama, a separator before an alphanumeric."""
    kind = state[0]
    if kind in ("word", "word_joiners", "word_sep") and ("alnum" in p or "mark" in p and kind != "word_sep"):
        return CONTINUE, ("word", "virama" in p)
    if "joiner" in p:
        if kind == "word_joiners" or kind == "word" and look & JOINED:
            return CONTINUE, ("word_joiners",)
        if kind == "word_tail" or kind == "word" and state[1]:
            return CONTINUE, ("word_tail",)
    if "separator" in p and look & SEPARATES and kind in ("word", "word_tail"):
        return CONTINUE, ("word_sep",)
    return None


def _step(state: tuple, p: frozenset[str], look: int) -> tuple[int, tuple]:
    """The machine: (action, next state) for a code point with properties `p` and context bits `look`.

    States: NONE; ("word", last is a virama), ("word_joiners",), ("word_tail",) (joiners after a virama),
    ("word_sep",); ("keycap", characters taken); ("symbol", its last character other than a joiner is a virama),
    a grapheme cluster that goes on while no boundary comes.
    """
    if state[0] == "keycap":  # the look-ahead found the rest: an optional VS16, then U+20E3
        return CONTINUE, (("keycap", 2) if state[1] == 1 and "vs16" in p else NONE)
    if state[0] == "symbol":
        if not look & GLUED:
            return _begin(p, look)
        if "joiner" in p:
            return (CONTINUE if state[1] else HOLD), state
        return CONTINUE, ("symbol", "virama" in p)
    return (None if state == NONE else _word(state, p, look)) or _begin(p, look)


@functools.cache
def _classes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first code point of each run of one class, that run's class, each class's PROPERTIES bits); class 0 has
    none (e.g. '!') and also closes each row."""
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    bits = np.zeros(len(every), np.int32)
    for bit, pattern in enumerate(PROPERTIES.values()):
        for m in regex.finditer(f"(?:{pattern})+", every, regex.V1):
            bits[m.start():m.end()] |= 1 << bit
    masks, classes = np.unique(bits, return_inverse=True)
    assert masks[0] == 0
    starts = np.flatnonzero(np.diff(classes, prepend=-1))
    return starts, classes[starts], masks


@functools.cache
def _table() -> tuple[np.ndarray, int]:
    """The machine as a flat table, and its number of states: entry state * symbols + symbol holds action * states
    + next state, where symbol = class * LOOKS + context bits. State 0 is NONE."""
    masks = _classes()[2]
    props = [frozenset(name for b, name in enumerate(PROPERTIES) if mask >> b & 1) for mask in masks]
    states, index, rows = [NONE], {NONE: 0}, []
    while len(rows) < len(states):
        row = []
        for p in props:
            for look in range(LOOKS):
                action, state = _step(states[len(rows)], p, look)
                if state not in index:
                    index[state] = len(states)
                    states.append(state)
                row.append((action, index[state]))
        rows.append(row)
    return np.array([[action * len(states) + state for action, state in row] for row in rows]).ravel(), len(states)


def _shift(x: tf.Tensor, n: int) -> tf.Tensor:
    """A flat tensor moved n places later (each position sees the one n before it; n < 0: after it), 0-filled."""
    pad = tf.zeros([abs(n)], x.dtype)
    return tf.concat([pad, x], 0)[:tf.size(x)] if n > 0 else tf.concat([x, pad], 0)[-n:]


def _seen(reset: tf.Tensor, counted: tf.Tensor) -> tf.Tensor:
    """At each position of flat masks (never both true at one), how many `counted` positions lie after the last
    `reset` one, up to and including it: the look-back of a rule over a run of characters."""
    total = tf.cumsum(tf.cast(counted, tf.int32))
    group = tf.cumsum(tf.cast(reset, tf.int32))
    before = tf.math.unsorted_segment_min(total - tf.cast(counted, tf.int32), group, tf.size(group) + 1)
    return total - tf.gather(before, group)


def _glued(has: Callable[..., tf.Tensor]) -> tf.Tensor:
    """Whether no grapheme cluster boundary lies before each code point by regex's rules for \\X (UAX #29 GB4 to
    GB13; the rules that look back see the text before the cluster too). `has(*names)`: a property mask."""
    def left(*names: str) -> tf.Tensor:
        return _shift(has(*names), 1)

    hangul = (left("hangul_l") & has("hangul_l", "hangul_v", "hangul_lv", "hangul_lvt")
              | left("hangul_lv", "hangul_v") & has("hangul_v", "hangul_t")
              | left("hangul_lvt", "hangul_t") & has("hangul_t"))  # GB6-8
    conjunct = _shift(_seen(~has("linker", "incb_extend"), has("linker")) > 0, 1) & has("consonant")  # GB9c
    pict, extend, regional = has("pictographic"), has("extend"), has("regional")
    emoji = _shift(_seen(~pict & ~extend, pict) > 0, 2) & left("zwj") & pict  # GB11
    flag = _shift(_seen(~regional, regional) % 2 == 1, 1) & regional  # GB12, GB13
    glue = hangul | has("extend", "zwj", "spacing_mark") | left("prepend") | conjunct | emoji | flag
    return glue & ~left("control") & ~has("control")  # GB4, GB5


class GraphTokenizer:
    """text.tokenize of a batch of texts in TensorFlow ops: its tables are constants of the graphs that call it."""

    def __init__(self) -> None:
        starts, classes, masks = _classes()
        table, self.states = _table()
        self.run_starts, self.run_classes = tf.constant(starts, tf.int32), tf.constant(classes, tf.int32)
        self.masks, self.table = tf.constant(masks, tf.int32), tf.constant(table, tf.int32)
        self.symbols = len(masks) * LOOKS

    def _has(self, classes: tf.Tensor, *names: str) -> tf.Tensor:
        """Whether each class has any of these properties."""
        bits = sum(1 << list(PROPERTIES).index(name) for name in names)
        return tf.bitwise.bitwise_and(tf.gather(self.masks, classes), bits) != 0

    def _symbols(self, classes: tf.Tensor) -> tf.Tensor:
        """The machine's input for a flat run of classes whose rows each end with class 0: class and context."""
        has = functools.partial(self._has, classes)
        word, joiner = has("alnum", "mark"), has("joiner")
        backwards = functools.partial(tf.reverse, axis=[0])  # the first code point after a joiner run, looked back to
        joined = joiner & backwards(_seen(backwards(~joiner & ~word), backwards(word)) > 0)
        separates = has("separator") & _shift(has("alnum"), -1)
        cap, vs16 = has("keycap"), has("vs16")
        keycap = has("keycap_base") & (_shift(cap, -1) | _shift(vs16, -1) & _shift(cap, -2))
        bits = ((joined, JOINED), (separates, SEPARATES), (keycap, KEYCAP), (_glued(has), GLUED))
        return classes * LOOKS + tf.add_n([tf.where(bit, value, 0) for bit, value in bits])

    def _run(self, symbols: tf.Tensor) -> tf.Tensor:
        """The machine's action on each code point of [B, L] symbols, each row from state NONE ([B, L + 1]: a column
        is added so that the scan has a step even for an empty batch)."""
        def step(state: tf.Tensor, symbol: tf.Tensor) -> tf.Tensor:  # action * states + state, from the last one
            return tf.gather(self.table, state % self.states * self.symbols + symbol)

        packed = tf.scan(step, tf.transpose(tf.pad(symbols, [[0, 0], [0, 1]])),
                         initializer=tf.zeros(tf.shape(symbols)[:1], tf.int32))
        return tf.transpose(packed) // self.states

    def __call__(self, texts: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor, tf.RaggedTensor]:
        """Tokens [B, (n)] string of texts [B], with their start and end offsets in code points [B, (n)] int32."""
        codes = tf.strings.unicode_decode(texts, "UTF-8", errors="strict")
        index = tf.searchsorted(self.run_starts, codes.flat_values, side="right") - 1
        classes = tf.concat([codes.with_flat_values(tf.gather(self.run_classes, index)),
                             tf.zeros([tf.shape(texts)[0], 1], tf.int32)], axis=1)
        symbols = classes.with_flat_values(self._symbols(classes.flat_values))
        actions = tf.RaggedTensor.from_tensor(self._run(symbols.to_tensor()), lengths=codes.row_lengths())
        rows, action = actions.value_rowids(), actions.flat_values
        at = tf.cast(tf.range(tf.size(action, tf.int64)) - tf.gather(actions.row_starts(), rows), tf.int32)
        begins = action == START
        count = tf.reduce_sum(tf.cast(begins, tf.int32))
        token = tf.where(action != SKIP, tf.cumsum(tf.cast(begins, tf.int32)) - 1, count)  # count: outside tokens
        kept = begins | (action == CONTINUE)
        ends = tf.math.unsorted_segment_max(tf.where(kept, at + 1, 0), token, count + 1)[:count]
        starts, token_rows = tf.boolean_mask(at, begins), tf.boolean_mask(rows, begins)
        strings = tf.strings.substr(tf.gather(texts, token_rows), starts, ends - starts, unit="UTF8_CHAR")

        def ragged(values: tf.Tensor) -> tf.RaggedTensor:
            return tf.RaggedTensor.from_value_rowids(values, token_rows, nrows=tf.shape(texts, tf.int64)[0])

        return ragged(strings), ragged(starts), ragged(ends)
