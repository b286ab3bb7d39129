"""Where the tagger's false values sit, beside the feature CRF's: each test value told apart by whether it holds a
word its vertical's training split never has, and each false one by kind; then the models decoded with a penalty on
values at such words, or with a confidence floor for them or for every value.

    python -m experiments.unseen_words --group='random embeddings=runs/small_data/snap.rand50.*' \
        --group='in-domain vectors=runs/small_data/snap.glove50.*' \
        --crf_dir=experiments/results/small_data_cut/crf_n50 [--penalties=0,0.5,1,2,3] [--floors=0.3,0.5,0.7,0.9] \
        [--half_f1] [--out=experiments/results/unseen_words/n50.md]

Each group is a glob of single-task model dirs; each is decoded on its dev and test splits as it decodes (its own
params: tag prior, BIO constraints, snap rule). A word is unseen when no sentence of the vertical's training split
(the model's data_dir) has it, as the model's word lookup sees it (exact text). A false value is a boundary error
when it overlaps a gold value of its attribute, another attribute when it overlaps only values of others, and made
up when it overlaps none. The CRF's counts come from its test output (`<crf_dir>/<vertical>.test.conll`, written by
experiments/crf_baseline.py on the same subsamples), with the same training split.

The penalty δ is subtracted from every tag's emission score but O's at unseen words before decoding: a model that
trusts what it guesses there less. The floor instead drops, after decoding, each value that holds an unseen word
and whose calibrated confidence (its tokens' smallest, as extract reports it) is below the floor: `--min_confidence`
for these values alone, where the false ones gather. With --half_f1, each attribute's floor is also set to half its
entity-F1 on dev as the model decodes it (a lower bound on its best F1), once for the values at unseen words and once
for every value: with calibrated confidences, the threshold at half the best F1 is the one that maximises an
attribute's expected F1 (Lipton, Elkan and Narayanaswamy, 2014), and an attribute the model finds poorly keeps more
of its values than under one floor for all. Dev scores these floors in-sample. With --false_on_dev, every value of an
attribute whose values on dev are all false (at least one predicted, none right) is dropped: the model predicts
tags of rare attributes that test may hold none of, each a class of zero precision and recall in macro-F1. Its dev
scores are cross-fitted (the attributes are read off the even dev sentences for the odd ones, and the other way
round), its test scores use the whole dev split. Each lever is measured here, not a decoding option of the package;
a setting to adopt would be read off dev.
"""
import datetime
import glob
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import tensorflow as tf
from absl import app, flags

from experiments.common import command_line, mean_sd
from mtl_tagger import cli
from mtl_tagger.conll import chunks, read_columns
from mtl_tagger.corpus import load_task
from mtl_tagger.metrics import attribute_f1, evaluate_tags, f1, values
from mtl_tagger.tagger import Tagger, scored_chunks

FLAGS = flags.FLAGS

KINDS = ("true", "boundary", "other attribute", "made up")
COLUMNS = (("dev", "macro_f1"), ("dev", "entity_f1"), ("test", "macro_f1"), ("test", "entity_precision"),
           ("test", "entity_recall"), ("test", "entity_f1"))  # the protocol's margins are on the test four
NAMES = {"macro_f1": "macro-F1", "entity_f1": "entity-F1", "entity_precision": "entity precision",
         "entity_recall": "entity recall"}
Counts = Counter  # (kind, unseen: bool) -> values
PENALTY, FLOOR, HALF = "penalty δ", "floor", "floor ½ dev F1 at"  # the decoding levers, as the table names them
DROPPED, FALSE_ON_DEV = "dropped", "attributes never right on dev"
UNSEEN, EVERY = "unseen words", "every value"  # where a floor of half the dev F1 applies


def value_kinds(tokens: Sequence[str], gold: Sequence[str], pred: Sequence[str], seen: set[str]) -> Counts:
    """Each predicted value of one sentence counted by (kind, whether it holds an unseen word); see the docstring."""
    gold_values = set(chunks(gold))
    out: Counts = Counter()
    for attr, a, b in chunks(pred):
        over = [g for g in gold_values if g[1] < b and a < g[2]]
        kind = ("true" if (attr, a, b) in gold_values else "boundary" if any(g[0] == attr for g in over)
                else "other attribute" if over else "made up")
        out[kind, any(w not in seen for w in tokens[a:b])] += 1
    return out


def floored(tokens: Sequence[str], tags: Sequence[str], confidence: Sequence[float], seen: set[str],
            floor: float | Mapping[str, float], everywhere: bool = False) -> list[str]:
    """The tags with every value that holds an unseen word (with `everywhere`, every value) and whose confidence is
    below `floor` (one, or per attribute: 0 for one it lacks) turned to O."""
    out = list(tags)
    for attr, a, b, least in scored_chunks(tags, confidence):
        below = least < (floor.get(attr, 0.0) if isinstance(floor, Mapping) else floor)
        if below and (everywhere or any(w not in seen for w in tokens[a:b])):
            out[a:b] = ["O"] * (b - a)
    return out


def false_attributes(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> set[str]:
    """The attributes with at least one predicted value and no true one in these sentences."""
    predicted = values(pred)
    return {v[1] for v in predicted} - {v[1] for v in predicted & values(gold)}


def gold_classes_macro_f1(metrics: dict) -> float:
    """Macro-F1 over the tags the gold holds only: without the classes that only predictions hold, each of which
    enters metrics.evaluate_tags' macro precision and recall at 0."""
    held = [m for m in metrics["per_tag"].values() if m["support"]]
    if not held:
        return 0.0
    return f1(statistics.mean(m["precision"] for m in held), statistics.mean(m["recall"] for m in held))


def dropped(tags: Sequence[str], attributes: set[str]) -> list[str]:
    """The tags with every value of these attributes turned to O."""
    out = list(tags)
    for attr, a, b in chunks(tags):
        if attr in attributes:
            out[a:b] = ["O"] * (b - a)
    return out


def crossfit_dropped(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each sentence's tags without the attributes never right in the other half of the sentences (even, odd)."""
    halves = [range(0, len(pred), 2), range(1, len(pred), 2)]
    out = [list(p) for p in pred]
    for mine, other in (halves, halves[::-1]):
        attributes = false_attributes([gold[i] for i in other], [pred[i] for i in other])
        for i in mine:
            out[i] = dropped(pred[i], attributes)
    return out


def penalised(tagger: Tagger, task: str, seen: set[str]) -> tf.Variable:
    """Make `task`'s net subtract δ (the returned variable, 0 at first) from every tag's score but O's at unseen
    words, in every decoder the tagger traces from now on."""
    net = tagger.nets[task]
    known = tf.constant([w in seen for w in tagger.vocab.words])
    delta = tf.Variable(0.0)
    original: Callable = net.scores

    def scores(name: str, batch: dict, seed: tf.Tensor | None = None, hidden: tf.Tensor | None = None) -> tf.Tensor:
        s = original(name, batch, seed, hidden)
        unseen = tf.cast(~tf.gather(known, batch["words"]), s.dtype)[..., None]
        return s - delta * unseen * tf.cast(tf.range(tf.shape(s)[-1]) > 0, s.dtype)

    net.scores = scores
    return delta


def decoded(model_dir: str, penalties: list[float], floors: Sequence[float] = (), half_f1: bool = False,
            false_on_dev: bool = False) -> list[dict]:
    """Per vertical of the model: its seed, the training split's words, its test output at penalty 0 counted by
    value_kinds, and per ("penalty δ", δ), ("floor", floor), with `half_f1` (HALF, UNSEEN | EVERY) and with
    `false_on_dev` (DROPPED, FALSE_ON_DEV) each split's metrics."""
    tagger = Tagger.load(model_dir)
    p = tagger.params
    out = []
    for task in tagger.tasks:
        data = load_task(p.data_dir, task, p.strict_bio, p.max_len)
        seen = {w for s in data.train for w in s.tokens}
        delta = penalised(tagger, task, seen)
        run: dict = {"task": task, "seed": p.seed, "seen": seen, "metrics": {}}
        half: dict[str, float] = {}
        dev_false: set[str] = set()
        for split in ("dev", "test"):  # the model as it is (δ 0), with the confidences the floors read
            sentences = getattr(data, split)
            gold = [s.tags for s in sentences]
            tags, confidence = tagger.tag([s.tokens for s in sentences], task)
            run["metrics"].setdefault((PENALTY, 0.0), {})[split] = evaluate_tags(gold, tags)
            if split == "dev":
                half = {attr: f / 2 for attr, f in attribute_f1(gold, tags).items()}
            if false_on_dev:
                never = false_attributes(gold, tags)
                run.setdefault("never right", {})[split] = len(never)
                dev_false = never if split == "dev" else dev_false  # test drops what the whole dev split says
                pred = crossfit_dropped(gold, tags) if split == "dev" else [dropped(t, dev_false) for t in tags]
                run["metrics"].setdefault((DROPPED, FALSE_ON_DEV), {})[split] = evaluate_tags(gold, pred)
            settings = [((FLOOR, f), f, False) for f in floors]
            settings += [((HALF, UNSEEN), half, False), ((HALF, EVERY), half, True)] if half_f1 else []
            for key, floor, everywhere in settings:
                pred = [floored(s.tokens, t, c, seen, floor, everywhere)
                        for s, t, c in zip(sentences, tags, confidence)]
                run["metrics"].setdefault(key, {})[split] = evaluate_tags(gold, pred)
            if split == "test":
                run["kinds"] = sum((value_kinds(s.tokens, s.tags, t, seen) for s, t in zip(sentences, tags)), Counter())
        for d in (d for d in penalties if d):
            delta.assign(d)
            run["metrics"][PENALTY, d] = {}
            for split in ("dev", "test"):
                sentences = getattr(data, split)
                pred = tagger.predict([s.tokens for s in sentences], task)
                run["metrics"][PENALTY, d][split] = evaluate_tags([s.tags for s in sentences], pred)
        delta.assign(0.0)
        out.append(run)
    return out


def kinds_row(label: str, counts: Iterable[Counts], runs_per_count: int) -> str:
    """A markdown row of value counts (per run: divided by `runs_per_count`) by kind, seen | unseen, and the
    precision of values without and with an unseen word."""
    total: Counts = sum(counts, Counter())
    cells = [f"{total[k, False] / runs_per_count:.1f} / {total[k, True] / runs_per_count:.1f}" for k in KINDS]
    for unseen in (False, True):
        values = sum(total[k, unseen] for k in KINDS)
        cells.append(f"{total['true', unseen] / values * 100:.1f}" if values else "–")
    return f"| {label} | " + " | ".join(cells) + " |"


def score_rows(label: str, runs: list[dict], settings: Sequence[tuple[str, float | str]]) -> list[str]:
    """Markdown rows of one group: per decoding setting (PENALTY, FLOOR or HALF, value) the COLUMNS' metrics, mean
    over the verticals and seeds ± std of the per-seed means."""
    seeds = sorted({r["seed"] for r in runs})
    return [f"| {label} | {lever} {f'{v:g}' if isinstance(v, float) else v} | " + " | ".join(
        mean_sd([statistics.mean(r["metrics"][lever, v][split][key] for r in runs if r["seed"] == s) for s in seeds])
        for split, key in COLUMNS) + " |" for lever, v in settings]


def never_row(label: str, dev: list[int] | None, test: list[int], metrics: list[dict]) -> str:
    """A markdown row: attributes never right per run on dev (None: not decoded there) and test, and the mean test
    macro-F1 beside the same over the tags test holds (gold_classes_macro_f1)."""
    counts = f"{statistics.mean(dev):.2f}" if dev is not None else "–"
    return (f"| {label} | {counts} / {statistics.mean(test):.2f} | "
            f"{statistics.mean(m['macro_f1'] for m in metrics) * 100:.2f} / "
            f"{statistics.mean(gold_classes_macro_f1(m) for m in metrics) * 100:.2f} |")


def main(argv: list[str]) -> None:
    """Decode every group at every penalty and floor, count the CRF's values alike, and print (and with --out write)
    both tables."""
    penalties = sorted({0.0, *(float(d) for d in FLAGS.penalties)})
    floors = sorted(float(f) for f in FLAGS.floors if float(f) > 0)  # floor 0 is penalty 0: the model as it is
    settings = [(PENALTY, d) for d in penalties] + [(FLOOR, f) for f in floors]
    settings += [(HALF, UNSEEN), (HALF, EVERY)] if FLAGS.half_f1 else []
    settings += [(DROPPED, FALSE_ON_DEV)] if FLAGS.false_on_dev else []
    kinds = ["| values of | " + " | ".join(f"{k} (seen / unseen)" for k in KINDS)
             + " | precision, all words seen | precision, an unseen word |", "|---|" + "---:|" * (len(KINDS) + 2)]
    scores = ["| models | decoding | " + " | ".join(f"{split} {NAMES[key]}" for split, key in COLUMNS) + " |",
              "|---|---|" + "---:|" * len(COLUMNS)]
    never = ["| models | attributes never right per run, dev / test | test macro-F1 / over the tags test holds |",
             "|---|---:|---:|"]
    crf: dict[str, Counts] = {}
    crf_never: dict[str, tuple[int, dict]] = {}
    for spec in FLAGS.group:
        label, sep, pattern = spec.partition("=")
        runs = [r for d in sorted(glob.glob(pattern)) if not d.endswith(".log")
                for r in decoded(d, penalties, floors, FLAGS.half_f1, FLAGS.false_on_dev)]
        if not sep or not runs:
            raise app.UsageError(f"--group={spec}: give label=glob matching trained model dirs")
        seeds = len({r["seed"] for r in runs})
        kinds.append(kinds_row(f"{label} ({len(runs)} vertical runs, per seed)", (r["kinds"] for r in runs), seeds))
        scores += score_rows(f"{label} ({len(runs)} vertical runs)", runs, settings)
        if FLAGS.false_on_dev:
            test = [r["metrics"][PENALTY, 0.0]["test"] for r in runs]
            never.append(never_row(label, [r["never right"]["dev"] for r in runs],
                                   [r["never right"]["test"] for r in runs], test))
        for r in runs:
            path = Path(FLAGS.crf_dir) / f"{r['task']}.test.conll"
            if r["task"] not in crf and path.is_file():
                sentences = read_columns(path)
                crf[r["task"]] = sum((value_kinds(*s, r["seen"]) for s in sentences), Counter())
                if FLAGS.false_on_dev:
                    gold, pred = [s[1] for s in sentences], [s[2] for s in sentences]
                    crf_never[r["task"]] = len(false_attributes(gold, pred)), evaluate_tags(gold, pred)
    if crf:
        kinds.append(kinds_row(f"CRF ({', '.join(sorted(crf))})", crf.values(), 1))
    if crf_never:
        never.append(never_row("CRF", None, [n for n, _ in crf_never.values()], [m for _, m in crf_never.values()]))
    text = "\n".join(kinds) + "\n\n" + "\n".join(scores) + ("\n\n" + "\n".join(never) if FLAGS.false_on_dev else "")
    print(text)
    if FLAGS.out:
        Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
        Path(FLAGS.out).write_text(
            "# Values at words the training split never has, and a penalty or confidence floors on them or on every "
            "value\n\n"
            "Test values by kind (see experiments/unseen_words.py: true; false at other boundaries of a gold value of "
            "its attribute; false on a value of another attribute; made up where no gold value is), each as values "
            "whose words all occur in the vertical's training split / values holding a word it never has, per "
            "model run (the tagger's summed over verticals and averaged over seeds); then the models decoded with "
            "δ subtracted from every tag's score but O's at those words, or with each value that holds such a word "
            "dropped where its calibrated confidence is below the floor; with a floor of half the dev F1, each "
            "attribute's floor is half its entity-F1 on dev, for the values at unseen words or for every value; "
            "`dropped attributes never right on dev` drops every value of an attribute whose values on dev are all "
            "false, its dev scores cross-fitted over the dev split's even and odd sentences (percent, mean over "
            "vertical runs ± std over seeds' means); with it, the last table counts per run the attributes "
            "predicted and never right on dev and on test, beside test macro-F1 and the same over only the tags test "
            "holds (a tag that only the predictions hold enters macro precision and recall at 0). "
            f"Written {datetime.date.today().isoformat()} by "
            f"`{command_line('experiments.unseen_words')}`.\n\n{text}\n", encoding="utf-8")


def define_flags() -> None:
    """The script's flags (defined when run as a program, so tests can import its functions)."""
    flags.DEFINE_multi_string("group", None, "label=glob of single-task model dirs.")
    flags.DEFINE_list("penalties", ["0", "0.5", "1", "2", "3"], "Penalties δ to decode with (0 is always in).")
    flags.DEFINE_list("floors", ["0.3", "0.5", "0.7", "0.9"], "Confidence floors for values that hold an unseen word.")
    flags.DEFINE_bool("half_f1", False, "Also decode with each attribute's floor at half its dev entity-F1, for "
                      "the values at unseen words and for every value.")
    flags.DEFINE_bool("false_on_dev", False, "Also decode with every value of an attribute never right on dev "
                      "dropped (dev scores cross-fitted over its halves).")
    flags.DEFINE_string("crf_dir", None, "The CRF baseline's results on the same subsamples (<vertical>.test.conll).")
    flags.DEFINE_string("out", None, "Also write the tables (with the command and date) to this markdown file.")
    flags.mark_flag_as_required("group")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
