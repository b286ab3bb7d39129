"""The one tokenizer of the project, shared by `prepare` (distant supervision) and `predict` (raw text).

A token is a run of letters/digits (with inner apostrophes, hyphens, dots or slashes between
alphanumerics, so "women's", "t-shirt", "2.5", "18/20" stay whole) or a single other non-space
character. Invisible control and format characters (C0/C1 controls, zero-width spaces and joiners,
soft hyphen, BOM, direction marks) are separators, never tokens: a token is always something a
reader can see, and a BOM-only token cannot be eaten by a CoNLL reader. Every token keeps its
character offsets into the input, so extracted values can point back into the original text.
"""
import re

_INVISIBLE = "\x00-\x1f\x7f-\x9f\xad\u200b-\u200f\u2060-\u2064\ufeff"
_TOKEN = re.compile(rf"[^\W_]+(?:['’./\-][^\W_]+)*|[^\s{_INVISIBLE}]", re.UNICODE)


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Split `text` into (token, start, end) triples with text[start:end] == token."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
