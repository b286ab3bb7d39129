"""`python -m mtl_tagger.export --model_dir=M --out=DIR [--overwrite]`: a SavedModel that tags with TensorFlow alone.

Two serving signatures per vertical (`DIR/assets.extra/verticals.json` maps each vertical to their keys, e.g.
"Chain x" → `tag_Chain_x` and `extract_Chain_x`, and lists its tags).

`tag_<vertical>` takes tokens: `tokens` [B, T] string and `lengths` [B] int32 (tokens at and past a row's length
are ignored). Outputs: `tags` [B, T] string ("" past each length) and `confidence` [B, T] float32 (each token's CRF
marginal of its tag, with the tag prior and the BIO constraints, calibrated as calibration.json says where the model
has one, so that a value's confidence is its tokens' smallest, 0 past each length). The graph does what `Tagger.tag`
does: word, character and word-shape ids as `pipeline.encode`, rows cut into max_len pieces, and the vertical's own
network (its best checkpoint) with its Viterbi decoder. Its BiLSTM products are float32 whatever --matmul_dtype the
model trained with: a SavedModel runs wherever it is taken, and a CPU without bfloat16 instructions would emulate
them, slowly; on a CPU with them, `Tagger` (which follows --matmul_dtype) can differ from it in a confidence's last
digits.

`extract_<vertical>` takes raw text and gives what `Tagger.extract` gives: `text` [B] string (UTF-8) and
`min_confidence` [] float64 (values below it are left out; 0 keeps all) in; out, with V the most values and N the
most tokens of a row: `attribute`, `value` [B, V] string, `start`, `end` [B, V] int32 (character offsets, in code
points as Python's str indices: text[start:end] == value), `confidence` [B, V] float32 (to 4 places, as extract
shows it and min_confidence is compared with), `unrounded_confidence` [B, V] float32 (the same before rounding: its
tokens' smallest), `count` [B] int32 (the row's values; "" and 0 past them), and `tokens`, `tags` [B, N] string (""
past the row's tokens). The tokenizer runs in the graph (graph_text: text.tokenize's rules, with the Unicode tables
of the exporting environment's `regex`).

DIR is built in `.DIR.tmp` beside it and renamed into place (files.replace_dir), by one export at a time (a lock on
`.DIR.lock`, removed when it ends), which also clears what a killed export left there. DIR may not be the model dir,
lie in it or hold it.
"""
import glob
import shutil
from pathlib import Path

from absl import flags, logging

from mtl_tagger import cli
from mtl_tagger.errors import InputError
from mtl_tagger.files import remove, replace_dir
from mtl_tagger.lock import FileLock
from mtl_tagger.modeldir import read_model


def _check_out(out: Path, model_dir: Path, overwrite: bool) -> None:
    """InputError unless `out` may be written: it is absent or an empty dir, or --overwrite is given; and it is
    neither the model dir, nor in it, nor one holding it (replacing it would destroy the model)."""
    target, model = out.resolve(), model_dir.resolve()
    if target == model or target in model.parents or model in target.parents:
        raise InputError(f"--out is the model dir {model_dir}, lies in it or holds it: writing it would destroy the "
                         "model; choose a directory outside the model dir", out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not overwrite:
        raise InputError("--out exists and is not empty; pass --overwrite to replace it", out)


def _sidecar(out: Path, kind: str) -> Path:
    """`.<out name>.<kind>` beside `out`: the export's lock and its temp dir."""
    return out.with_name(f".{out.name}.{kind}")


def export(model_dir: str | Path, out: str | Path, overwrite: bool = False) -> dict:
    """Write the SavedModel of a trained model dir to `out` (built in a temp dir beside it, then renamed) and
    return what `assets.extra/verticals.json` holds: each vertical's signature key and tags."""
    model_dir, out = Path(model_dir), Path(out)
    _check_out(out, model_dir, overwrite)
    read_model(model_dir)  # what Tagger.load refuses without TensorFlow, refused before it loads (seconds)
    lock = FileLock(_sidecar(out, "lock"), out, "export", "output", "--out")
    try:
        _check_out(out, model_dir, overwrite)  # again under the lock: another export may have written `out` since
        from mtl_tagger.saved_model import write_saved_model
        from mtl_tagger.tagger import Tagger

        tagger = Tagger.load(model_dir, decoding={"matmul_dtype": "float32"})  # portable: see the docstring
        tmp = _sidecar(out, "tmp")
        # what a killed export left: its temp dir, and what replace_dir (or an older export, without the pid) had
        # set aside (only the lock's holder writes them)
        for leftover in (tmp, *out.parent.glob(f".{glob.escape(out.name)}.replaced*")):
            remove(leftover)
        tmp.mkdir()
        try:
            info = write_saved_model(tagger, tmp)
            replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        lock.release()
    return info


def export_summary(out: str | Path, info: dict) -> str:
    """What export prints: each vertical's two signatures with their inputs and outputs, and where the rest is."""
    from mtl_tagger.saved_model import VERTICALS_JSON  # imported by export already

    def shape(signature: dict) -> str:
        return ", ".join(f"{name} {kind}" for name, kind in signature.items())

    width = max(len(v) for v in info["verticals"])
    lines = [f"wrote {out}: {len(info['verticals'])} vertical(s), two signatures each",
             f"  tag_<vertical>:     {shape(info['inputs'])} -> {', '.join(info['outputs'])}",
             f"  extract_<vertical>: {shape(info['extract_inputs'])} -> {', '.join(info['extract_outputs'])}"]
    lines += [f"  {v:<{width}}  {d['signature']}, {d['extract_signature']}" for v, d in info["verticals"].items()]
    lines.append(f"shapes and tags: {Path(out) / VERTICALS_JSON}; --show_signatures lists every signature's tensors")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    """Export --model_dir to --out and say which signature serves which vertical (with --show_signatures, every
    signature's tensors too)."""
    cli.check_args(argv, "model_dir")
    FLAGS = flags.FLAGS
    if not FLAGS.out:
        raise InputError("--out is required (the SavedModel directory to write)")
    logging.set_verbosity(logging.WARNING)  # writing a SavedModel logs each asset, renamed input and shard at INFO
    info = export(FLAGS.model_dir, FLAGS.out, FLAGS.overwrite)
    print(export_summary(FLAGS.out, info), end="", flush=True)
    if FLAGS.show_signatures:
        from mtl_tagger.saved_model import signature_summary

        print(signature_summary(FLAGS.out), end="", flush=True)


if __name__ == "__main__":
    flags.DEFINE_string("model_dir", None, "Trained model dir (holds params.json).")
    flags.DEFINE_string("out", None, "SavedModel directory to write.")
    flags.DEFINE_bool("overwrite", False, "Replace --out when it exists and is not empty.")
    flags.DEFINE_bool("show_signatures", False, "Also print every signature's input and output tensors.")
    cli.run(main)
