"""What a command shows on stderr while it works: a status line for the seconds before its own output, and a
progress bar, each redrawn in place on a terminal and a line (now and then) in a log file."""
import contextlib
import sys
import time
from collections.abc import Iterator

PACKAGE = __name__.rpartition(".")[0]


def command() -> str | None:
    """The package's command this process runs (`python -m mtl_tagger.train …`: "mtl_tagger.train"), if any."""
    argv = getattr(sys, "orig_argv", [])
    i = argv.index("-m") if "-m" in argv else -1
    name = argv[i + 1] if 0 <= i < len(argv) - 1 else ""
    return name if name.startswith(f"{PACKAGE}.") else None


@contextlib.contextmanager
def status(doing: str) -> Iterator[None]:
    """Say at once what the command is `doing` while the block runs (seconds of loading or reading), so that its
    first line comes at once: on a terminal on a status line cleared when the block ends, so that what follows is
    the command's own; in a pipe (a log, a caller's capture) as a line of its own. Nothing in a process that is not
    one of the package's commands (a library user's, the tests')."""
    name = command()
    tty = name is not None and sys.stderr.isatty()
    if name is not None:
        sys.stderr.write(f"{name}: {doing}…" + ("\r" if tty else "\n"))
        sys.stderr.flush()
    try:
        yield
    finally:
        if tty:
            sys.stderr.write("\033[K")
            sys.stderr.flush()


def clock(seconds: float) -> str:
    """A duration as a reader takes it in: 42s, 3m05s, 1h02m."""
    s = int(round(seconds))
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Counts work done out of `total` (None: unknown) and shows the rate in `unit`s per second."""

    def __init__(self, total: int | None, unit: str, start: int = 0, every: float = 0.2, log_every: float = 30.0,
                 stream: object = None) -> None:
        self.total, self.unit, self.done = total, unit, start
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every if self.tty else log_every
        self.began, self.first = time.monotonic(), start
        self.shown = 0.0
        self.values: dict[str, float] = {}

    def rate(self) -> float:
        """Units per second since the bar began."""
        elapsed = time.monotonic() - self.began
        return (self.done - self.first) / elapsed if elapsed > 0 else 0.0

    def text(self) -> str:
        """The bar's current line."""
        if self.total:
            filled = int(30 * self.done / self.total)
            head = f"[{'=' * filled}{'>' if filled < 30 else ''}{'.' * (29 - filled)}] {self.done}/{self.total}"
        else:
            head = f"{self.done}"
        tail = "".join(f" · {k} {v:.4g}" for k, v in self.values.items())
        rate = self.rate()
        left = f" · {clock((self.total - self.done) / rate)} left" if self.total and rate > 0 else ""
        return f"{head} {self.unit} · {rate:.1f} {self.unit}/s{left}{tail}"

    def update(self, n: int = 1, **values: float) -> None:
        """Count `n` more units and show the bar if it is time."""
        self.done += n
        self.values.update(values)
        now = time.monotonic()
        if now - self.shown >= self.every:
            self.shown = now
            self._draw()

    def _draw(self) -> None:
        end = "\r" if self.tty else "\n"
        self.stream.write(f"{self.text():<100}{end}" if self.tty else self.text() + end)
        self.stream.flush()

    def line(self, message: str) -> None:
        """Print a whole line (on stdout) without tearing the bar."""
        if self.tty:
            self.stream.write(" " * 100 + "\r")
            self.stream.flush()
        print(message, flush=True)

    def close(self) -> None:
        """Show the final state and end the bar's line."""
        self._draw()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
