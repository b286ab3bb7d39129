"""Score a model, or put a single-task and a multi-task model side by side.

    python -m mtl_tagger.evaluate --model_dir=M --task=Necklace --data=test.conll [--output=m.json]
    python -m mtl_tagger.evaluate --model_dir=SINGLE --compare=MULTI [--top=5]

The first tags a CoNLL file and prints the paper's metrics (--output writes them as JSON, keyed by
vertical as metrics.json is). The second reads both dirs' metrics.json and prints, per shared
vertical, the paper's Table 3 rows (P, R, Acc, F1) and Table 4 (top tags by F1 gain, with #train).
"""
from collections import Counter
from pathlib import Path

from absl import flags, logging

from mtl_tagger import cli
from mtl_tagger.conll import read_conll
from mtl_tagger.errors import InputError
from mtl_tagger.files import check_output_file, read_json, write_json_atomic
from mtl_tagger.metrics import compare_table, format_table
from mtl_tagger.params import Params

FLAGS = flags.FLAGS
# What the comparison reads of each vertical's results in metrics.json, besides per_tag.
SCORES = ("macro_precision", "macro_recall", "micro_accuracy", "macro_f1", "macro_f1_mean", "entity_precision",
          "entity_recall", "entity_f1")


def _numbers(d: object, keys: tuple[str, ...]) -> bool:
    return isinstance(d, dict) and all(isinstance(d.get(k), (int, float)) for k in keys)


def _metrics(model_dir: str) -> dict[str, dict]:
    """A model dir's metrics.json, checked: each vertical's scores are numbers, per_tag maps tags to P/R/F1."""
    path = Path(model_dir) / "metrics.json"
    if not path.is_file():
        raise InputError("no metrics.json: train the model to the end first", path)
    data = read_json(path)
    if not isinstance(data, dict) or not all(
            _numbers(r, SCORES) and isinstance(r.get("per_tag"), dict)
            and all(_numbers(t, ("precision", "recall", "f1")) for t in r["per_tag"].values()) for r in data.values()):
        raise InputError("damaged metrics: expected each vertical's scores and per-tag precision, recall and f1 "
                         "(rerun the training to rewrite it)", path)
    strays = [t for t in data if t not in Params.load(model_dir).names]
    if strays:  # a key is used as a vertical's directory name below
        raise InputError(f"damaged metrics: {strays[0]!r} is not a vertical of params.json (rerun the training to "
                         "rewrite it)", path)
    return data


def _train_counts(model_dir: str, task: str) -> dict[str, int] | None:
    """Gold tag counts of the vertical's training split (None when the data is no longer there)."""
    path = Path(Params.load(model_dir).data_dir) / task / "train.conll"
    if not path.is_file():
        return None
    return dict(Counter(t for s in read_conll(path) for t in s.tags))


def compare(single_dir: str, multi_dir: str, top: int) -> str:
    """The Table 3 / Table 4 comparison of every vertical both model dirs were tested on."""
    single, multi = _metrics(single_dir), _metrics(multi_dir)
    shared = [t for t in single if t in multi]
    if not shared:
        raise InputError(f"--compare={multi_dir}: no vertical in common with {single_dir} "
                         f"({', '.join(single)} vs {', '.join(multi)})")
    return "\n\n".join(f"== {t}: single ({single_dir}) vs multi ({multi_dir})\n"
                       + compare_table(single[t], multi[t], top, _train_counts(single_dir, t)) for t in shared)


def define_flags() -> None:
    """The CLI's flags (defined when run as a program, so importing this module next to other CLIs is safe)."""
    flags.DEFINE_string("model_dir", None, "Trained model dir (holds params.json).")
    flags.DEFINE_string("task", None, "Vertical to score (default: the model's first task).")
    flags.DEFINE_string("data", None, "CoNLL file with gold tags (token<TAB>tag).")
    flags.DEFINE_string("output", None, "Write the metrics as JSON here.")
    flags.DEFINE_string("compare", None, "A second (multi-task) model dir to compare --model_dir with.")
    flags.DEFINE_integer("top", 5, "Tags listed by F1 gain in the comparison.", lower_bound=0)


def main(argv: list[str]) -> None:
    """Load the model, tag the file, print and optionally write the metrics."""
    cli.check_args(argv)
    if FLAGS.compare:
        if not FLAGS.model_dir:
            raise InputError("--model_dir is required")
        print(compare(FLAGS.model_dir, FLAGS.compare, FLAGS.top))
        return
    if not FLAGS.data:
        raise InputError("--data is required (a CoNLL file), or --compare")
    if FLAGS.output:
        check_output_file(FLAGS.output, "--output")
    params, task = cli.check_model(FLAGS.model_dir, FLAGS.task)
    sentences = read_conll(FLAGS.data, strict_bio=params.strict_bio)  # checked before TensorFlow loads
    tagger, _ = cli.load_tagger(FLAGS.model_dir, task)
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
    define_flags()
    cli.run(main)
