"""The progress bar: its line counts, rates and says how long is left."""
import io

import pytest

from mtl_tagger import progress
from mtl_tagger.progress import Progress, clock


@pytest.mark.parametrize("seconds, shown", [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (3725, "1h02m")])
def test_clock(seconds: float, shown: str) -> None:
    assert clock(seconds) == shown


def test_the_line_says_the_rate_and_the_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    bar = Progress(100, "steps", start=20, stream=io.StringIO())
    now[0] += 8.0
    bar.update(20, loss=0.25)  # 20 steps in 8 s: 2.5 steps/s, 60 steps left
    assert bar.text() == "[============>.................] 40/100 steps · 2.5 steps/s · 24s left · loss 0.25"
    unknown = Progress(None, "products", stream=io.StringIO())
    now[0] += 2.0
    unknown.update(5)
    assert unknown.text() == "5 products · 2.5 products/s", "no time left without a total"


class _Stderr(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("name, tty, shown", [
    ("mtl_tagger.prepare", True, "mtl_tagger.prepare: reading x.jsonl…\r\033[K"),
    ("mtl_tagger.prepare", False, "mtl_tagger.prepare: reading x.jsonl…\n"),
    (None, True, ""),
])
def test_a_status_line_is_a_commands_own(name: str | None, tty: bool, shown: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the line is cleared when the block ends, even by a fault; in a pipe it stays a line; a process
    that is not a command (a library user's) sees nothing."""
    stderr = _Stderr(tty)
    monkeypatch.setattr(progress, "command", lambda: name)
    monkeypatch.setattr(progress.sys, "stderr", stderr)
    with pytest.raises(ValueError), progress.status("reading x.jsonl"):
        assert stderr.getvalue() == shown.removesuffix("\033[K")
        raise ValueError
    assert stderr.getvalue() == shown
