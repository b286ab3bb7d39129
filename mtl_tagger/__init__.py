"""mtl_tagger: multi-task attribute-value extraction (BiLSTM-CRF with a coupling loss)."""
import os
import warnings

# TensorFlow's C++ start-up chatter and tfa's end-of-life notice drown the tool's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", message=r"\s*TensorFlow Addons", category=UserWarning)

__all__ = ["Tagger"]


def __getattr__(name: str) -> object:
    """`from mtl_tagger import Tagger` without importing TensorFlow for tools that do not need it."""
    if name == "Tagger":
        from mtl_tagger.tagger import Tagger

        return Tagger
    raise AttributeError(name)
