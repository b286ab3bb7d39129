"""Shared entry point of the command-line tools: bad input becomes one line on stderr, not a traceback."""
import sys
from collections.abc import Callable

from absl import app

from mtl_tagger.errors import InputError


def run(main: Callable[[list[str]], None]) -> None:
    """absl app.run(main), turning InputError into one line on stderr and exit code 2 (no traceback)."""

    def wrapped(argv: list[str]) -> None:
        try:
            main(argv)
        except InputError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    app.run(wrapped)


def usage_error(argv: list[str]) -> InputError:
    """The error for stray positional arguments (absl leaves them in argv)."""
    return InputError(f"unexpected argument(s) {' '.join(argv[1:])!r}: flags are written --name=value")
