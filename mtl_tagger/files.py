"""Atomic file writes (a crash or a bad input never leaves a half-written output) and checked JSON reads."""
import json
import os
from pathlib import Path

from mtl_tagger.errors import InputError


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to a temp file beside `path`, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json_atomic(path: str | Path, data: object) -> None:
    """`write_text_atomic` of pretty JSON (UTF-8, keys in insertion order)."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> object:
    """Parse a JSON file; InputError naming the file (and line) when it is unreadable or damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"damaged JSON ({e.msg})", path, e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read ({getattr(e, 'strerror', None) or e})", path) from None
