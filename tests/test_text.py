"""The project tokenizer: offsets always point back into the text, tokens never hold whitespace or invisibles."""
import random

import pytest

from mtl_tagger.text import tokenize


@pytest.mark.parametrize("text, tokens", [
    ("Women's Gold-Plated 2.5 cm", ["Women's", "Gold-Plated", "2.5", "cm"]),
    ("Size 18/20, t-shirt.", ["Size", "18/20", ",", "t-shirt", "."]),
    ("Women’s Rs.358", ["Women’s", "Rs.358"]),
    ("ALTHT_3P_21", ["ALTHT", "_", "3P", "_", "21"]),
    ("Navy,Specifications of", ["Navy", ",", "Specifications", "of"]),
    ("end.", ["end", "."]),
    ("", []),
])
def test_examples(text: str, tokens: list[str]) -> None:
    assert [t for t, _, _ in tokenize(text)] == tokens


def test_invisible_characters_separate_and_are_never_tokens() -> None:
    text = "\ufeffGold\u200bPlated \x80 soft\xadhyphen \u200e"
    assert [t for t, _, _ in tokenize(text)] == ["Gold", "Plated", "soft", "hyphen"]


def test_offsets_and_no_whitespace_on_random_text() -> None:
    rng = random.Random(0)
    alphabet = "aZ9'’./-_,;:!? \t\n\r\xa0\u2028\u200b\ufeff\x85\x1céñ–•✔"
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        previous_end = 0
        for token, start, end in tokenize(text):
            assert text[start:end] == token and start >= previous_end
            assert token.strip() == token and not any(c.isspace() for c in token)
            assert token.isprintable(), repr(token)
            previous_end = end
