"""The one tokenizer of the project, shared by `prepare` (distant supervision), `glove` and `predict` (raw text).

Every token keeps its character offsets (text[start:end] == token), so extracted values can point back
into the original text. A token is a word or a symbol:

Word: a run of letters/digits of any script with their combining marks (Indic vowel signs and viramas,
Arabic/Hebrew points, accents, variation selectors), with inner apostrophes, hyphens, dots, slashes or
Hebrew gereshes between alphanumerics ("women's", "t-shirt", "2.5", "18/20"). ZWJ/ZWNJ belong to a word
between its characters (Indic conjunct control, Persian ZWNJ) and after a virama at its end (old-style
Malayalam chillu). No dictionary segmentation: a run of Thai letters, or of Han/Kana, is one token, and
so are letters of different scripts with nothing between them ("iPhone手机"), as before.

Symbol: any other visible character with all that extends it (an extended grapheme cluster), so an
emoji with its skin tone or variation selector, a ZWJ sequence (family, rainbow flag), a keycap or a
country flag is one token.

Whitespace, control and format characters (zero-width spaces, soft hyphen, BOM, direction marks, ZWJ/ZWNJ
outside words and emoji sequences) and other default-ignorables separate tokens, never are tokens: a
token is always something a reader can see, and cannot be eaten by a CoNLL reader. (The visible Arabic
number signs, format characters too, are symbols.)

Pure-ASCII text (96% of the catalog's descriptions) takes an equivalent stdlib `re` pattern, about twice
as fast as the `regex` one.
"""
import re

import regex

_JOINERS = "\u200c\u200d"  # ZWNJ, ZWJ
_ALNUM = r"[\p{L}\p{N}--\p{DI}]"  # DI (default-ignorable) letters: the invisible Hangul fillers
_WORD_CHAR = rf"[\p{{M}}{_ALNUM}]"
_VIRAMA = r"\p{ccc=9}"
_RUN = rf"{_ALNUM}{_WORD_CHAR}*(?:[{_JOINERS}]+{_WORD_CHAR}+)*(?:(?<={_VIRAMA})[{_JOINERS}]+)?"
_SEPARATOR = r"['’./\-\u05f3\u05f4]"  # joins two runs into one word
_INVISIBLE = r"[\s\p{Cc}\p{Cf}\p{DI}]"  # never (in) a symbol
_KEYCAP_BASE = "[#*0-9]"
_WORD = rf"{_RUN}(?:{_SEPARATOR}{_RUN})*"
_KEYCAP = rf"{_KEYCAP_BASE}\ufe0f?\u20e3"  # tried before _WORD, so that two keycaps side by side are two tokens
# \X after a prepended concatenation mark (PCM) would take the next character, even a space: a PCM stands alone.
_SYMBOL = rf"\p{{PCM}}|(?!{_INVISIBLE})\X"
_TOKEN = regex.compile(rf"{_KEYCAP}|{_WORD}|{_SYMBOL}", regex.V1)
_DANGLING_JOINERS = regex.compile(rf"(?<![{_VIRAMA}{_JOINERS}])[{_JOINERS}]+\Z", regex.V1)
# A token's pieces: its runs joined only by an apostrophe inside a word or a point or slash inside a number.
_PIECE = regex.compile(rf"{_RUN}(?:(?:['’]|(?<=\p{{N}})[./](?=\p{{N}})){_RUN})*", regex.V1)
# _TOKEN restricted to ASCII, where there are no marks, format characters or clusters of several characters.
_ASCII_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['./\-][A-Za-z0-9]+)*|[!-~]")
CONTEXT = 60  # characters shown on each side of a value in its snippet


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Split `text` into (token, start, end) triples with text[start:end] == token."""
    if text.isascii():
        return [(m.group(), m.start(), m.end()) for m in _ASCII_TOKEN.finditer(text)]
    tokens = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    if "\u200d" in text or "\u200c" in text:
        tokens = [_drop_dangling_joiners(*t) for t in tokens]
    return tokens


def pieces(token: str) -> list[str]:
    """The words a token joins (Comfy.Cotton, Hook-and-Eye: the tokenizer keeps a word with '.' or '-' whole), each
    a run of letters and digits; an apostrophe inside a word (women's) and a point or slash inside a number (8.0,
    18/20) do not part it, and a symbol (+, ") has none."""
    return _PIECE.findall(token)


def _drop_dangling_joiners(token: str, start: int, end: int) -> tuple[str, int, int]:
    """Without a trailing ZWJ/ZWNJ that joins the symbol to nothing (\\X keeps it), unless it follows a virama."""
    dangling = _DANGLING_JOINERS.search(token) if token[-1] in _JOINERS else None
    if dangling is None:
        return token, start, end
    return token[:dangling.start()], start, start + dangling.start()


def snippet(text: str, start: int, end: int, context: int = CONTEXT) -> str:
    """The text around [start, end) on one line (whitespace runs as one space), the value marked «like this»:
    how extract and audit show a value in its context."""
    left, right = max(0, start - context), min(len(text), end + context)
    show = f"{text[left:start]}«{text[start:end]}»{text[end:right]}"
    return ("…" if left else "") + " ".join(show.split()) + ("…" if right < len(text) else "")
