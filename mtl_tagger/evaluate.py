"""`python -m mtl_tagger.evaluate --model_dir=M --task=Necklace --data=test.conll [--output=m.json]`.

Scores a trained model on a CoNLL file with the paper's metrics and prints the table; --output
writes the metrics as JSON ({"<task>": {...}}, as in metrics.json).
"""
from absl import flags, logging

from mtl_tagger import cli
from mtl_tagger.conll import read_conll
from mtl_tagger.errors import InputError
from mtl_tagger.files import write_json_atomic
from mtl_tagger.metrics import format_table
from mtl_tagger.tagger import Tagger

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Trained model dir (holds params.json).")
flags.DEFINE_string("task", None, "Vertical to score (default: the model's first task).")
flags.DEFINE_string("data", None, "CoNLL file with gold tags (token<TAB>tag).")
flags.DEFINE_string("output", None, "Write the metrics as JSON here.")


def main(argv: list[str]) -> None:
    """Load the model, tag the file, print and optionally write the metrics."""
    if len(argv) > 1:
        raise cli.usage_error(argv)
    for name in ("model_dir", "data"):
        if not getattr(FLAGS, name):
            raise InputError(f"--{name} is required")
    tagger = Tagger.load(FLAGS.model_dir)
    task = FLAGS.task or tagger.tasks[0]
    tagger.check_task(task)
    sentences = read_conll(FLAGS.data, strict_bio=tagger.params.strict_bio)
    unseen = sorted({t for s in sentences for t in s.tags} - set(tagger.vocab.tags[task]))
    if unseen:
        logging.warning("%d tag(s) the model never saw for %s count as wrong: %s", len(unseen), task,
                        ", ".join(unseen))
    metrics, _ = tagger.evaluate(sentences, task)
    results = {task: {"split": str(FLAGS.data), **metrics}}
    print(format_table(results))
    if FLAGS.output:
        write_json_atomic(FLAGS.output, results)


if __name__ == "__main__":
    cli.run(main)
