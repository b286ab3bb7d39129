"""`python -m mtl_tagger.predict --model_dir=M --task=Necklace < descriptions.txt > values.jsonl`.

One JSON object per input line: the text, its tokens and tags, and the extracted values {"attribute", "value",
"start", "end", "confidence"} with character offsets into that line. Output streams: the records of the lines
read so far are written and flushed before more input is read, so predict can serve a pipe line by line; lines
that arrive together are tagged in one batched pass. A record is always exactly one line, for any reader.
"""
import sys
from collections.abc import Iterator
from io import BufferedReader

from absl import flags

from mtl_tagger import cli
from mtl_tagger.errors import InputError
from mtl_tagger.files import json_line

FLAGS = flags.FLAGS
BATCH = 64  # at most this many already-read lines are tagged in one pass
READ = 1 << 16  # bytes asked of the input per read; a read returns what is there without waiting for more


def define_flags() -> None:
    """The CLI's flags (defined when run as a program, so importing this module next to other CLIs is safe)."""
    flags.DEFINE_string("model_dir", None, "Trained model dir (holds params.json).")
    flags.DEFINE_string("task", None, "Vertical whose attributes to extract (default: the model's first task).")
    flags.DEFINE_string("input", "-", "Text file, one description per line ('-': standard input).")
    flags.DEFINE_float("min_confidence", 0.0, "Leave out values whose confidence (the smallest marginal of their "
                                              "tokens' tags) is below this, in [0, 1].")


def read_lines(stream: BufferedReader, name: str) -> Iterator[list[str]]:
    """The lines of `stream` as they arrive, in batches of at most BATCH of those already read.

    A batch never waits for input beyond what one read returned, so a caller that handles each batch before
    asking for the next answers every line as soon as it is in. A line that is not UTF-8 is an InputError
    naming it, raised after the batch of the lines before it.
    """
    lineno, parts = 0, []
    while True:
        chunk = stream.read1(READ)
        parts.append(chunk)
        if chunk and b"\n" not in chunk:
            continue  # the line goes on: keep reading (joining only once it is complete keeps this linear)
        *complete, rest = b"".join(parts).split(b"\n")
        parts = [rest]
        if not chunk and rest:  # the last line has no newline
            complete.append(rest)
        batch: list[str] = []
        for raw in complete:
            lineno += 1
            try:
                batch.append(raw.removesuffix(b"\r").decode("utf-8"))
            except UnicodeDecodeError as e:
                if batch:
                    yield batch
                raise InputError(f"not UTF-8 ({e.reason} at byte {e.start + 1} of the line)", name, lineno) from None
            if len(batch) == BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
        if not chunk:
            return


def main(argv: list[str]) -> None:
    """Tag every input line and print one JSON record per line, as the lines come in."""
    cli.check_args(argv)
    if not 0.0 <= FLAGS.min_confidence <= 1.0:
        raise InputError(f"--min_confidence={FLAGS.min_confidence}: must be in [0, 1]")
    if FLAGS.input == "-":
        stream, name = sys.stdin.buffer, "<stdin>"
    else:
        try:
            stream, name = open(FLAGS.input, "rb"), FLAGS.input
        except OSError as e:
            raise InputError(f"cannot read input ({e.strerror})", FLAGS.input) from None
    out = sys.stdout.buffer
    with stream:
        tagger, task = cli.load_tagger(FLAGS.model_dir, FLAGS.task)  # it loads TensorFlow: after the input's check
        for lines in read_lines(stream, name):
            for record in tagger.extract(lines, task, FLAGS.min_confidence):
                out.write(json_line(record).encode("utf-8"))
            out.flush()


if __name__ == "__main__":
    define_flags()
    cli.run(main)
