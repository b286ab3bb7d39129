"""The one user-facing error type: raised where the fault is found, printed as one line by the CLIs."""


class InputError(Exception):
    """Bad input (file, line, flag or model dir) that the user must fix; the message says where and what."""

    def __init__(self, message: str, path: object = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class Interrupted(Exception):
    """The user stopped a command (Ctrl-C); the message says what was kept and how to go on."""
