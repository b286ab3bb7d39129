"""What the BIO constraints change: the small-data protocol's runs decoded without and with them.

    python -m experiments.bio [--results_dir=experiments/results/small_data] [--runs_dir=runs/small_data]

The protocol's runs were trained and selected without the constraints (--nobio_constraints); each is decoded on its
vertical's test split as trained and again with `--bio_constraints` (the same weights and selected step), and
scored with the project's metrics. The table gives, per size and embedding condition and over all runs, the mean
test macro-F1 and entity precision, recall and F1 of both decodings, and how many test sentences decoded
without the constraints hold an I- tag that continues no value.
"""
import datetime
import statistics
from pathlib import Path

from absl import flags

from experiments import common
from experiments.common import command_line, define_scoring_flags, scored_runs
from mtl_tagger import cli
from mtl_tagger.corpus import load_task
from mtl_tagger.metrics import evaluate_tags
from mtl_tagger.tagger import Tagger

FLAGS = flags.FLAGS
KEYS = ("macro_f1", "entity_precision", "entity_recall", "entity_f1")


def orphans(tags: list[str]) -> bool:
    """Whether an I- tag continues no value (after O, at the start, or after another attribute's tag)."""
    return any(t.startswith("I-") and (i == 0 or tags[i - 1][2:] != t[2:] or tags[i - 1] == "O")
               for i, t in enumerate(tags))


def decoded(model_dir: Path) -> dict:
    """Test metrics of both decodings and the unconstrained decoding's sentences with an orphan I- tag."""
    out = {}
    for on in (False, True):
        tagger = Tagger.load(model_dir, calibrated=False, decoding={"bio_constraints": on})
        task = tagger.tasks[0]
        p = tagger.params
        test = load_task(p.data_dir, task, p.strict_bio, p.max_len).test
        pred = tagger.predict([s.tokens for s in test], task)
        out[on] = evaluate_tags([s.tags for s in test], pred)
        if not on:
            out["orphans"] = sum(orphans(t) for t in pred)
            out["sentences"] = len(pred)
        else:
            assert not any(orphans(t) for t in pred), model_dir
    return out


def main(argv: list[str]) -> None:
    """Decode every finished protocol run both ways and write the table."""
    runs, groups = scored_runs(decoded, Path(FLAGS.results_dir), Path(FLAGS.runs_dir))
    lines = ["| runs of | runs | test sentences with an orphan I- (unconstrained) | "
             + " | ".join(f"{k} without → with" for k in KEYS) + " |", "|---|---:|---:|" + "---:|" * len(KEYS)]
    for key, rs in groups.items():
        lines.append(f"| {key} | {len(rs)} | {sum(r['orphans'] for r in rs)} of {sum(r['sentences'] for r in rs)} | "
                     + " | ".join(f"{statistics.mean(r[False][k] for r in rs) * 100:.2f} → "
                                  f"{statistics.mean(r[True][k] for r in rs) * 100:.2f}" for k in KEYS) + " |")
    text = "\n".join([
        "# BIO constraints at decoding: what they change", "",
        f"The {runs} runs of the small-data protocol ({FLAGS.results_dir}, trained and selected without the "
        "constraints), each decoded on its test split without and with `--bio_constraints`; percent, mean over "
        f"runs. Written {datetime.date.today().isoformat()} by `{command_line('experiments.bio')}`.", "", *lines, ""])
    Path(FLAGS.out).write_text(text)
    print(text)


def define_flags() -> None:
    """The script's flags: the small-data protocol's (listed by --helpshort as this script's) and the table."""
    define_scoring_flags("experiments/results/bio.md")
    flags.adopt_module_key_flags(common)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
