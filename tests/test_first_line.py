"""A command on a terminal says at once that it is loading TensorFlow, and clears that status line once loaded,
so that what follows (an error line, the progress) is the command's own; in a pipe it says nothing of it."""
import os
import pty
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "mtl_tagger.train", "--tasks=X", "--data_dir=/nonexistent", "--model_dir=unused"]


def test_on_a_terminal_the_loading_line_comes_first_and_is_cleared(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(COMMAND, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=follower, env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait() == 2
    text = seen.decode().replace("\r\n", "\n")
    assert text.startswith("mtl_tagger.train: loading TensorFlow…\r\033[K"), text
    assert text.split("\033[K", 1)[1].startswith("error: /nonexistent: data dir not found"), text


def test_in_a_pipe_only_the_command_s_own_lines() -> None:
    r = subprocess.run(COMMAND, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.startswith("error: "), r.stderr
