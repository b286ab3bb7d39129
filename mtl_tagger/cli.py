"""Shared entry point of the command-line tools: bad input becomes one line on stderr, not a traceback.

Exit codes: 2 for bad input (InputError, unwritable outputs, bad flags), 130 for Ctrl-C, which a training
step or an extraction chunk finishes first (pressed twice, it interrupts at once). A closed output pipe
(`predict | head -1`) ends the command quietly.
"""
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from absl import app, flags
from absl import logging as absl_logging

from mtl_tagger.errors import InputError, Interrupted

if TYPE_CHECKING:
    from mtl_tagger.params import Params
    from mtl_tagger.tagger import Tagger

LIBRARIES = ("tensorflow", "keras", "tf_keras")  # whose log records the commands drop


def _fail(message: str, code: int = 2) -> NoReturn:
    print(f"error: {message}" if code == 2 else message, file=sys.stderr, flush=True)
    if code == 130:
        # Interrupted: every output is closed and on disk by now; skip the interpreter's teardown of TensorFlow's
        # objects and threads, which takes seconds after the line that says the command stopped.
        sys.stdout.flush()
        os._exit(code)
    sys.exit(code)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing whose errors (unknown flag, bad value, missing flagfile) are one line, exit 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _fail(str(e))


def _not_from_libraries(record: logging.LogRecord) -> bool:
    """False for a log record of TensorFlow's or Keras's own code: their notes (a checkpoint read only in part or
    not at all, how long a save took) would stand beside the one line that says what is wrong."""
    dirs = [os.path.dirname(m.__file__) + os.sep for m in map(sys.modules.get, LIBRARIES) if m and m.__file__]
    return not record.pathname.startswith(tuple(dirs))


def _quiet_broken_pipe() -> NoReturn:
    """The reader of our stdout went away: stop without a message (as Unix tools do)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's final flush cannot fail again
    sys.exit(0)


def run(main: Callable[[list[str]], None]) -> None:
    """absl app.run(main), turning InputError (and unwritable outputs) into one line on stderr, exit code 2."""

    def wrapped(argv: list[str]) -> None:
        absl_logging.get_absl_handler().addFilter(_not_from_libraries)
        for name in LIBRARIES:  # their own handlers too (TensorFlow's notes on unrestored values at exit)
            logging.getLogger(name).addFilter(_not_from_libraries)
        try:
            main(argv)
            sys.stdout.flush()
        except InputError as e:
            _fail(str(e))
        except Interrupted as e:
            _fail(str(e), 130)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except OSError as e:  # e.g. an output path in a missing or read-only directory
            _fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))

    app.run(wrapped, flags_parser=_parse_flags)


def check_args(argv: list[str], *required: str) -> None:
    """Raise InputError for stray positional arguments (absl leaves them in argv) or a required flag left empty."""
    if len(argv) > 1:
        raise InputError(f"unexpected argument(s) {' '.join(argv[1:])!r}: flags are written --name=value")
    missing = [f"--{name}" for name in required if not flags.FLAGS[name].value]
    if missing:
        names = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + f" and {missing[-1]}"
        raise InputError(f"{names} {'is' if len(missing) == 1 else 'are'} required")


def check_model(model_dir: str | None, task: str | None) -> "tuple[Params, str]":
    """params.json of --model_dir and the task to use (--task, default the model's first), with all that Tagger.load
    refuses without TensorFlow checked (modeldir.read_model): a command refuses a wrong --model_dir or --task in one
    line before TensorFlow loads (seconds, and a line of its own in a pipe)."""
    from mtl_tagger.modeldir import read_model

    if not model_dir:
        raise InputError("--model_dir is required")
    params, vocab, _ = read_model(model_dir)
    task = task or next(iter(vocab.tags))
    vocab.check_task(task)
    return params, task


def load_tagger(model_dir: str | None, task: str | None) -> "tuple[Tagger, str]":
    """The Tagger of --model_dir and the task to use (--task, default the model's first), checked (check_model)
    before TensorFlow is imported."""
    _, task = check_model(model_dir, task)
    from mtl_tagger.tagger import Tagger  # TensorFlow is imported only by the CLIs that need it, once checked

    return Tagger.load(model_dir), task
