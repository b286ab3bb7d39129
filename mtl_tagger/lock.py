"""An exclusive lock through a lock file, so that one command at a time writes an output.

The lock is flock(2) on the file, so it goes with its holder's process, even a killed one. The file holds the
holder's pid, for the refusal of the next command, and is removed on release; one left by a killed holder is
simply taken over.
"""
import fcntl
import os
import time
from pathlib import Path

from mtl_tagger.errors import InputError


def _same_file(fd: int, path: Path) -> bool:
    """True when `path` still names the file open as `fd` (not removed, nor replaced by a new one)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _holder(fd: int) -> str:
    """The pid in a lock file another process holds ('?' if it has not written it within a second)."""
    for _ in range(50):  # the holder writes its pid just after it locks
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if pid:
            return pid
        time.sleep(0.02)
    return "?"


class FileLock:
    """An exclusive lock on the file `path`, held by this process until `release` (or its exit).

    Another holder is an InputError on `subject`: "another <command> command (pid N) is using this <what>; wait
    for it or choose another <flag>". The directories missing on the way to `path` are made, and those left
    empty at `release` removed: a command that fails leaves no empty directory behind.
    """

    def __init__(self, path: Path, subject: object, command: str, what: str, flag: str) -> None:
        self.path = path
        self.made = [d for d in path.parents if not d.exists()]  # deepest first
        while True:
            path.parent.mkdir(parents=True, exist_ok=True)  # again after a holder removed the dirs it had made
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(fd)
                os.close(fd)
                self._remove_made()
                raise InputError(f"another {command} command (pid {pid}) is using this {what}; wait for it or "
                                 f"choose another {flag}", subject) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # its holder removed it between our open and our lock: lock the file at `path` now
        self.fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        """Remove the lock file, then unlock: a process that opened the file meanwhile sees it gone and locks anew.
        Then remove the directories this lock made that are empty."""
        self.path.unlink(missing_ok=True)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self._remove_made()

    def _remove_made(self) -> None:
        """Remove the directories the lock made, deepest first, up to the first that is not empty."""
        for d in self.made:
            try:
                d.rmdir()
            except OSError:
                return
