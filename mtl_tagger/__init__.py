"""mtl_tagger: multi-task attribute-value extraction (BiLSTM-CRF with a coupling loss)."""
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings

from mtl_tagger.progress import command, status

# TensorFlow's C++ start-up chatter and tfa's end-of-life notice drown the tool's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", message=r"\s*TensorFlow Addons", category=UserWarning)

__all__ = ["Tagger"]


class _QuietLoader(importlib.abc.Loader):
    """Loads TensorFlow with stderr (fd 2) closed: TensorFlow >= 2.16 writes C++ start-up notes there before any
    setting can silence them, and a command's only stderr lines should be its own. A command says that it is
    loading TensorFlow (seconds; progress.status), so that its first line comes at once. The commands check all the
    input they can without TensorFlow before they import it, so that a refusal of it is their only line."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> object:
        return self.loader.create_module(spec)

    def exec_module(self, module: object) -> None:
        with status("loading TensorFlow"):
            saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
            sys.stderr.flush()
            os.dup2(devnull, 2)
            no_keras = _NoKeras()
            if command():
                sys.meta_path.insert(0, no_keras)
            try:
                self.loader.exec_module(module)
            finally:
                if no_keras in sys.meta_path:
                    sys.meta_path.remove(no_keras)
                os.dup2(saved, 2)
                os.close(saved)
                os.close(devnull)


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
