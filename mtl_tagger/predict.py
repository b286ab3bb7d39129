"""`python -m mtl_tagger.predict --model_dir=M --task=Necklace < descriptions.txt > values.jsonl`.

One JSON object per input line: the tokens, their tags, and the extracted values
{"attribute", "value", "start", "end"} with character offsets into that line.
"""
import json
import sys
from typing import BinaryIO

from absl import flags

from mtl_tagger import cli
from mtl_tagger.errors import InputError

FLAGS = flags.FLAGS
CHUNK = 256  # lines tagged per batched pass
flags.DEFINE_string("model_dir", None, "Trained model dir (holds params.json).")
flags.DEFINE_string("task", None, "Vertical whose attributes to extract (default: the model's first task).")
flags.DEFINE_string("input", "-", "Text file, one description per line ('-': standard input).")


def main(argv: list[str]) -> None:
    """Tag every input line and print one JSON record per line."""
    if len(argv) > 1:
        raise cli.usage_error(argv)
    tagger, task = cli.load_tagger(FLAGS.model_dir, FLAGS.task)
    if FLAGS.input == "-":
        lines = _decoded(sys.stdin.buffer, "<stdin>")
    else:
        try:
            with open(FLAGS.input, "rb") as f:
                lines = _decoded(f, FLAGS.input)
        except OSError as e:
            raise InputError(f"cannot read input ({e.strerror})", FLAGS.input) from None
    for start in range(0, len(lines), CHUNK):
        for record in tagger.extract(lines[start:start + CHUNK], task):
            print(json.dumps(record, ensure_ascii=False), flush=True)


def _decoded(stream: BinaryIO, name: str) -> list[str]:
    """All lines of `stream` as text; InputError naming the line when one is not UTF-8."""
    lines = []
    for lineno, raw in enumerate(stream, 1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as e:
            raise InputError(f"not UTF-8 ({e.reason} at byte {e.start})", name, lineno) from None
    return lines

if __name__ == "__main__":
    cli.run(main)
