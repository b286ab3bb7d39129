"""Ctrl-C at step boundaries: a first SIGINT is held until the running step (a training step, an extraction chunk)
ends, because a KeyboardInterrupt raised inside cleanup code such as TensorFlow's `__del__` methods is only printed
and lost. A second SIGINT interrupts at once."""
import contextlib
import signal
import threading
import types
from collections.abc import Callable, Iterator

_PRESSED = threading.Event()


def _on_sigint(signum: int, frame: types.FrameType | None) -> None:
    if _PRESSED.is_set():
        raise KeyboardInterrupt
    _PRESSED.set()


@contextlib.contextmanager
def between_steps() -> Iterator[Callable[[], bool]]:
    """Yield `pressed()`, to be checked after each step (raise KeyboardInterrupt when true); a press not yet acted on
    is raised on leaving. Where SIGINT is not Python's default (ignored, another handler) or off the main thread,
    nothing is installed and `pressed()` stays false; nested, the outer block's flag is shared."""
    handler = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if handler is not signal.default_int_handler:
        yield _PRESSED.is_set if handler is _on_sigint else lambda: False
        return
    _PRESSED.clear()
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield _PRESSED.is_set
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if _PRESSED.is_set():
        raise KeyboardInterrupt
