"""The project tokenizer: offsets always point back into the text, tokens never hold whitespace or invisibles."""
import random
import re
import unicodedata

import pytest
import regex

from mtl_tagger.text import snippet, tokenize


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


# Beyond Latin: words keep their combining marks in every script, one visible symbol is one token.
# Whitespace, controls, format characters and default-ignorables, but not the visible Arabic number signs (PCM).
INVISIBLE = regex.compile(r"[\s\p{Cc}\p{Cf}\p{DI}--\p{PCM}]", regex.V1)


def words(text: str) -> list[str]:
    """The tokens of `text`, after checking that every offset points back at its token."""
    spans = tokenize(text)
    assert all(text[start:end] == token for token, start, end in spans), spans
    return [t for t, _, _ in spans]


@pytest.mark.parametrize("text, tokens", [
    ("बहुत सुंदर", ["बहुत", "सुंदर"]),
    ("सोने की चेन", ["सोने", "की", "चेन"]),
    ("तंग, क्षमा। २४ कैरेट", ["तंग", ",", "क्षमा", "।", "२४", "कैरेट"]),
    ("தங்க சங்கிலி", ["தங்க", "சங்கிலி"]),
    ("সোনার চেইন", ["সোনার", "চেইন"]),
    ("സ്വർണ്ണ മാല", ["സ്വർണ്ണ", "മാല"]),
    ("สร้อยคอทองคำ สวยมาก!", ["สร้อยคอทองคำ", "สวยมาก", "!"]),  # a Thai run is one token: no dictionary segmentation
    ("سلسلة ذهبية، ٢٤ قيراط", ["سلسلة", "ذهبية", "،", "٢٤", "قيراط"]),
    ("سِلْسِلَة", ["سِلْسِلَة"]),  # Arabic with its vowel points
    ("שַׁרְשֶׁרֶת זהב, צה״ל", ["שַׁרְשֶׁרֶת", "זהב", ",", "צה״ל"]),
    ("金项链。18K 金", ["金项链", "。", "18K", "金"]),  # a Han run is one token
    ("iPhone手机", ["iPhone手机"]),  # letters of two scripts with nothing between them: one token, as before
    ("amante\u0301 Cafe\u0301", ["amante\u0301", "Cafe\u0301"]),  # decomposed accents stay on their letter
    ("बहुत सुंदर chain 🙂", ["बहुत", "सुंदर", "chain", "🙂"]),
    ("Gold चेन🙂सुंदर,2.5 ग्राम", ["Gold", "चेन", "🙂", "सुंदर", ",", "2.5", "ग्राम"]),
])
def test_words_of_every_script_stay_whole(text: str, tokens: list[str]) -> None:
    assert words(text) == tokens


@pytest.mark.parametrize("text, tokens", [
    ("क्\u200dष क्\u200cष", ["क्\u200dष", "क्\u200cष"]),  # Devanagari half form (ZWJ) and explicit virama (ZWNJ)
    ("അവന്\u200d വന്നു", ["അവന്\u200d", "വന്നു"]),  # old-style Malayalam chillu: ZWJ after a virama, word-final
    ("ന്\u200d.", ["ന്\u200d", "."]),
    ("می\u200cخواهم", ["می\u200cخواهم"]),  # Persian ZWNJ
    ("Auf\u200clage", ["Auf\u200clage"]),  # ligature control inside a Latin word
    ("Gold \u200d Plated\u200c \u200cchain", ["Gold", "Plated", "chain"]),  # outside a word: separators
    ("a\u200d-b", ["a", "-", "b"]),
    ("🙂\u200d x \u200d🙂", ["🙂", "x", "🙂"]),  # a ZWJ joining the emoji to nothing is not part of it
])
def test_zwj_and_zwnj_belong_to_words_only_inside_them(text: str, tokens: list[str]) -> None:
    assert words(text) == tokens


@pytest.mark.parametrize("text, tokens", [
    ("👍🏽 👍", ["👍🏽", "👍"]),  # skin-tone modifier
    ("👩\u200d👩\u200d👧", ["👩\u200d👩\u200d👧"]),  # ZWJ family
    ("🏳\ufe0f\u200d🌈", ["🏳\ufe0f\u200d🌈"]),  # rainbow flag: variation selector and ZWJ
    ("1\ufe0f\u20e3 #\ufe0f\u20e3 1\ufe0f\u20e32\ufe0f\u20e3",  # keycaps, also side by side
     ["1\ufe0f\u20e3", "#\ufe0f\u20e3", "1\ufe0f\u20e3", "2\ufe0f\u20e3"]),
    ("🇮🇳🇺🇸 🇮🇳", ["🇮🇳", "🇺🇸", "🇮🇳"]),  # country flags: regional-indicator pairs
    ("🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f!",
     ["🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "!"]),  # tag sequence (Scotland)
    ("✔\ufe0f Soft❤\ufe0f", ["✔\ufe0f", "Soft", "❤\ufe0f"]),  # variation selectors belong to their symbol
    ("😍😍😍", ["😍", "😍", "😍"]),
])
def test_one_visible_symbol_is_one_token(text: str, tokens: list[str]) -> None:
    assert words(text) == tokens


@pytest.mark.parametrize("text, tokens", [
    ("बहुत\u200bसुंदर \ufeffchain\xad🙂", ["बहुत", "सुंदर", "chain", "🙂"]),
    ("\u200fسلسلة\u200f \u202bذهبية\u202c \u061c٢٤", ["سلسلة", "ذهبية", "٢٤"]),  # direction marks and embeddings
    ("\u2066Gold\u2069 \x85 \x00चेन", ["Gold", "चेन"]),
    ("\ufe0f \u200d\u200c \u3164 \U000e0067", []),  # a lone variation selector, joiners, Hangul filler, tag
    ("\u0600١٢ \u0600 x", ["\u0600", "١٢", "\u0600", "x"]),  # the visible Arabic number sign stands alone
])
def test_invisible_characters_separate_in_every_script(text: str, tokens: list[str]) -> None:
    assert words(text) == tokens


def test_random_mixed_text_gives_exact_ordered_visible_tokens() -> None:
    letters = "aZéकबहतসসมกسلשב金ŋ"
    marks = "\u0941\u0902\u094d\u0d4d\u0bbf\u09be\u0e31\u0e49\u0650\u05bc\u0301\ufe0f\u20e3🏽"
    digits = "09٢५"
    punctuation = "'’./-_,!#*।"
    emoji = "🙂👩👧🏳🌈🇮🇳🏴\U000e0067\U000e007f"
    joiners = "\u200d\u200d\u200c"
    spaces = " \t\n\r\xa0\u2028\u3000"
    invisible = "\x00\x1c\x7f\x85\u200b\ufeff\xad\u200e\u202e\u2066\u061c\u3164\u034f\u0600"
    alphabet = letters + marks + digits + punctuation + emoji + joiners + spaces + invisible
    rng = random.Random(1)
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        covered = set()
        previous_end = 0
        for token, start, end in tokenize(text):
            assert token and text[start:end] == token and previous_end <= start < end, (text, token)
            assert not any(c.isspace() for c in token), (text, token)
            assert not INVISIBLE.fullmatch(token[0]) and not all(INVISIBLE.fullmatch(c) for c in token), (text, token)
            if token[-1] in "\u200c\u200d":  # a word-final ZWJ/ZWNJ only after a virama
                assert unicodedata.combining(token.rstrip("\u200c\u200d")[-1]) == 9, (text, token)
            covered.update(range(start, end))
            previous_end = end
        # Nothing visible is lost: every character outside the tokens is whitespace or invisible.
        assert all(INVISIBLE.fullmatch(c) for i, c in enumerate(text) if i not in covered), text


OLD_TOKEN = re.compile(r"[^\W_]+(?:['’./\-][^\W_]+)*|[^\s\x00-\x1f\x7f-\x9f\xad\u200b-\u200f\u2060-\u2064\ufeff]")


def test_latin_text_tokenizes_as_before() -> None:
    """On text without combining marks, joiners or emoji the tokens are those of the original `re` pattern."""
    alphabet = "aZ9'’./-_,;:!?()%₹& \t\n\r\xa0\u2028\u200b\ufeff\x85\x1c\x7féñÉßøæ–—•✔·°²½“”"
    rng = random.Random(2)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert tokenize(text) == [(m.group(), m.start(), m.end()) for m in OLD_TOKEN.finditer(text)], text


def test_ascii_fast_path_agrees_with_the_full_pattern() -> None:
    alphabet = "".join(map(chr, range(128))) + "aaaZZZ999'''...---///   "
    rng = random.Random(3)
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        # A non-ASCII tail sends the same text through the full `regex` pattern.
        assert tokenize(text + " é") == [*tokenize(text), ("é", len(text) + 1, len(text) + 2)], text


def test_snippet_marks_the_value_on_one_line() -> None:
    text = "x" * 100 + "Gold\u2028plated brass" + "y" * 100
    assert snippet(text, 100, 111, context=5) == "…xxxxx«Gold plated» bras…"
    assert snippet("in silver", 3, 9) == "in «silver»"
