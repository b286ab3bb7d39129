"""The one tokenizer of the project, shared by `prepare` (distant supervision) and `predict` (raw text).

A token is a run of letters/digits (with inner apostrophes, hyphens, dots or slashes between
alphanumerics, so "women's", "t-shirt", "2.5", "18/20" stay whole) or a single other non-space
character. Every token keeps its character offsets into the input, so extracted values can point
back into the original text.
"""
import re

_TOKEN = re.compile(r"[^\W_]+(?:['’./\-][^\W_]+)*|\S", re.UNICODE)


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Split `text` into (token, start, end) triples with text[start:end] == token."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
