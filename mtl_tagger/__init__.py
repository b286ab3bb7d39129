"""mtl_tagger: multi-task attribute-value extraction (BiLSTM-CRF with a coupling loss)."""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings

# TensorFlow's C++ start-up chatter and tfa's end-of-life notice drown the tool's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", message=r"\s*TensorFlow Addons", category=UserWarning)

__all__ = ["Tagger"]


def _command() -> str | None:
    """The package's command this process runs (`python -m mtl_tagger.train …`: "mtl_tagger.train"), if any."""
    argv = getattr(sys, "orig_argv", [])
    i = argv.index("-m") if "-m" in argv else -1
    name = argv[i + 1] if 0 <= i < len(argv) - 1 else ""
    return name if name.startswith(f"{__name__}.") else None


class _QuietLoader(importlib.abc.Loader):
    """Loads TensorFlow with stderr (fd 2) closed: TensorFlow >= 2.16 writes C++ start-up notes there before any
    setting can silence them, and a command's only stderr lines should be its own. A command says that it is
    loading TensorFlow (seconds), so that its first line comes at once: on a terminal on a status line it clears
    when done, in a pipe (a log, a caller's capture) as a line of its own. The commands check all the input they
    can without TensorFlow before they import it, so that a refusal of it is their only line."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> object:
        return self.loader.create_module(spec)

    def exec_module(self, module: object) -> None:
        command = _command()
        status = command is not None and sys.stderr.isatty()
        if command:
            sys.stderr.write(f"{command}: loading TensorFlow…" + ("\r" if status else "\n"))
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        sys.stderr.flush()
        os.dup2(devnull, 2)
        no_keras = _NoKeras()
        if command:
            sys.meta_path.insert(0, no_keras)
        try:
            self.loader.exec_module(module)
        finally:
            if no_keras in sys.meta_path:
                sys.meta_path.remove(no_keras)
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
            if status:
                sys.stderr.write("\033[K")  # the status line goes: what follows is the command's own
                sys.stderr.flush()


class _NoKeras(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """While a command loads TensorFlow, `keras` is found (TensorFlow reads where it lies) but not loaded:
    TensorFlow then skips loading Keras' optimizers as it starts (over a second with Keras 3). The package is
    plain tf.Modules and uses no Keras; a library user's process loads TensorFlow as usual."""

    def find_spec(self, name: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name != "keras":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name)
        if spec is not None:
            spec.loader = self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: object) -> None:
        raise ImportError("the package's commands do not load Keras")


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Hands the first import of `tensorflow` to _QuietLoader, then steps aside."""

    def find_spec(self, name: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


if "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, _QuietTensorFlow())


def __getattr__(name: str) -> object:
    """`from mtl_tagger import Tagger` without importing TensorFlow for tools that do not need it."""
    if name == "Tagger":
        from mtl_tagger.tagger import Tagger

        return Tagger
    raise AttributeError(name)
