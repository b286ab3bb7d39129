"""Atomic file and directory writes (a crash or a bad input never leaves a half-written output), JSON lines,
checked JSON reads and file fingerprints."""
import contextlib
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from mtl_tagger.errors import InputError

# Line breaks that json.dumps leaves raw inside strings but str.splitlines and some JSONL readers split on (those
# below U+0020 it escapes already).
_LINE_BREAK_ESCAPES = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}


def check_input_file(path: str | Path, flag: str, what: str) -> None:
    """InputError naming `flag` unless `path` is a file to read (`what` says what it holds): a command checks its
    inputs so before it says it is reading them, so that a missing one is its only line."""
    if not Path(path).is_file():
        raise InputError(f"{what} not found ({flag})", path)


def check_output_file(path: str | Path, flag: str) -> None:
    """InputError naming `flag` unless `path` is a file an output may be written to: nothing there yet or a regular
    file with one name, in an existing directory (a rename would replace a link, FIFO or device, and fails on a
    directory; a lock beside one name does not guard another)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{flag}={path}: no directory {path.parent} to write it in")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise InputError(f"{flag}={path} is a directory; give the path of a file to write")
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise InputError(f"{flag}={path} is {kind}, not a regular file, and writing would replace it; give the path "
                         "of a regular file or of a new one")
    if path.lstat().st_nlink > 1:
        raise InputError(f"{flag}={path} has other names (hard links), which a second command could write through; "
                         "give the path of a file with one name")


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """The one way the package writes a file whole: an open temp file beside `path` (named by the process, so two
    writers never share one) that replaces `path` when the block ends, and is removed if it fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": "\n"})) as f:
            yield f
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """`atomic_file` holding `text`."""
    with atomic_file(path) as f:
        f.write(text)


def write_json_atomic(path: str | Path, data: object) -> None:
    """`write_text_atomic` of pretty JSON (UTF-8, keys in insertion order)."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def remove(path: Path) -> None:
    """Delete a file, a link (not what it points to) or a directory tree at `path`, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def replace_dir(tmp: Path, out: Path) -> None:
    """The one way the package puts a directory it built in `tmp` in place as `out`: what `out` holds is set aside
    (named by the process), put back if the final rename fails, and deleted only once `tmp` is in place, so a
    failure never loses the earlier output."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        tmp.replace(out)
        return
    aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    out.rename(aside)
    try:
        tmp.rename(out)
    except BaseException:
        aside.rename(out)
        raise
    remove(aside)


def json_line(record: dict) -> str:
    """`record` as one line of JSON with its newline, UTF-8 text kept and every character some reader takes for a
    line break escaped: the one line format of predict's and extract's outputs and audit's lists."""
    line = json.dumps(record, ensure_ascii=False)
    for char, escape in _LINE_BREAK_ESCAPES.items():  # str.replace: far faster than str.translate with a dict
        line = line.replace(char, escape)
    return line + "\n"


def read_json(path: str | Path) -> object:
    """Parse a JSON file; InputError naming the file (and line) when it is unreadable or damaged."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"damaged JSON ({e.msg})", path, e.lineno) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read ({getattr(e, 'strerror', None) or e})", path) from None


def sha256(*paths: str | Path) -> str:
    """The package's one file fingerprint: the hex SHA-256 of a file's bytes (what sha256sum prints), read in blocks;
    of several files, the SHA-256 of their SHA-256s in turn, so that each file counts apart."""
    if len(paths) != 1:
        return hashlib.sha256("".join(map(sha256, paths)).encode()).hexdigest()
    h = hashlib.sha256()
    with open(paths[0], "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
