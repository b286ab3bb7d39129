"""graph_text: the in-graph tokenizer gives exactly text.tokenize's tokens and code-point offsets, on every script's
examples, emoji sequences, invisible characters, the grapheme rules that look back before a cluster, and random
text over characters that exercise every rule; an empty batch and empty texts; invalid UTF-8 is refused."""
import random

import pytest
import tensorflow as tf

from mtl_tagger.graph_text import GraphTokenizer
from mtl_tagger.text import tokenize

EXAMPLES = [
    "Women's Gold-Plated 2.5 cm", "Size 18/20, t-shirt.", "Women’s Rs.358", "ALTHT_3P_21", "end.", "",
    "\ufeffGold\u200bPlated \x80 soft\xadhyphen \u200e", "बहुत सुंदर chain 🙂", "तंग, क्षमा। २४ कैरेट", "தங்க சங்கிலி",
    "সোনার চেইন", "സ്വർണ്ണ മാല", "สร้อยคอทองคำ สวยมาก!", "سلسلة ذهبية، ٢٤ قيراط", "שַׁרְשֶׁרֶת זהב, צה״ל",
    "金项链。18K 金", "iPhone手机", "amante\u0301 Cafe\u0301", "Gold चेन🙂सुंदर,2.5 ग्राम",
    "क्\u200dष क्\u200cष", "അവന്\u200d വന്നു", "ന്\u200d.", "می\u200cخواهم", "\u0600\u0661\u0662 ۝١",
    "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 👩🏽‍💻 🇮🇳🇺🇸🇬 🏴󠁧󠁢󠁥󠁮󠁧󠁿 #️⃣1⃣2⃣ 12⃣ ❤️ 😀\u200d x😀\u200dy",
    "ℹ🏽\u200d😀 x🏽\u200d😀 !\u094d\u0915 क्🏽क ᄀ\u1161\u11a8 \u0e33 ﾞ!ﾞ",  # look-back rules, Hangul, odd letters
]
# Characters that exercise every rule: word characters, marks, joiners and viramas, separators, invisibles, keycap
# parts, PCM, Extend/SpacingMark/Prepend, regional indicators, pictographs and modifiers, tags, Hangul jamo, InCB.
POOL = list("aZ9'’./-_,;:!? \t\n\r\xa0\u2028\u200b\ufeff\x85\x1céñ–•✔#*") + [
    "\u200d", "\u200c", "\u094d", "क", "ष", "\u0301", "\ufe0f", "\u20e3", "😀", "👍", "🏽", "🇮", "🇳", "\U000e0067",
    "\U000e007f", "🏴", "ำ", "ﾞ", "\u0600", "ℹ", "\u0d4e", "한", "\u1100", "\u1161", "\u11a8", "\u115f", "\u093f",
    "\u0903", "\u102b", "❤", "ா", "்", "\u0d4d", "\u17d2", "ក", "\u05f3", "\U0001F9D1", "\u2640"]


@pytest.fixture(scope="module")
def graph_tokenize() -> tf.types.experimental.ConcreteFunction:
    """The tokenizer as a traced function of texts [B]."""
    tokenizer = GraphTokenizer()
    return tf.function(tokenizer, input_signature=[tf.TensorSpec([None], tf.string)]).get_concrete_function()


def spans(graph_tokenize: tf.types.experimental.ConcreteFunction, texts: list[str]) -> list[list[tuple]]:
    """Per text, (token, start, end) as the graph gives them."""
    tokens, starts, ends = (x.to_list() for x in graph_tokenize(tf.constant(texts, tf.string)))
    return [[(t.decode(), s, e) for t, s, e in zip(*row)] for row in zip(tokens, starts, ends)]


def test_examples_and_random_text(graph_tokenize: tf.types.experimental.ConcreteFunction) -> None:
    rng = random.Random(0)
    rare = [chr(c) for c in rng.sample(range(0x110000), 2000) if not 0xD800 <= c <= 0xDFFF]  # any code point
    texts = EXAMPLES + ["".join(rng.choice(POOL) if rng.random() < 0.85 else rng.choice(rare)
                                for _ in range(rng.randint(0, 30))) for _ in range(10000)]
    wrong = [(text, got, tokenize(text)) for text, got in zip(texts, spans(graph_tokenize, texts))
             if got != tokenize(text)]
    assert not wrong, wrong[:3]


def test_empty_batch_and_bad_utf8(graph_tokenize: tf.types.experimental.ConcreteFunction) -> None:
    assert spans(graph_tokenize, []) == [] and spans(graph_tokenize, ["", " \u200d"]) == [[], []]
    with pytest.raises(tf.errors.InvalidArgumentError):
        graph_tokenize(tf.constant([b"gold \xff chain"]))
