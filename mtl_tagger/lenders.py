"""Which vertical should a vertical borrow from: a lender affinity from the training splits alone, no training.

    python -m mtl_tagger.lenders --data_dir=D --task=A [--candidates=B,C] [--word_vectors=FILE]

Each component is in [0, 1] and, like macro-F1, averages over the borrower's tag types (B-x and I-x apart):

- labels: the lender has the tag, or a near-named one (cosine of the names' character k-grams, as the label
  coupling embeds them), times n_lender / (n_borrower + n_lender) of that tag's training tokens: how much the
  lender's examples add to the borrower's own, so rare borrower tags that the lender has plenty of count most;
- values: share of the tag's training tokens whose word the lender tags with that (or a near-named) tag;
- density: share of the tag's contexts with a neighbour in the lender at --shortlist_threshold (the coupling
  shortlist L on the same word vectors and window; left out without word vectors).

score = their geometric mean: no weights to tune, and for one borrower it ranks as their product does, so
no component's scale matters. `words` (share of the borrower's running words the lender also has) and
`size` (the lender's share of both training splits' tokens) are printed beside them for comparison only.
"""
import functools
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from absl import flags

from mtl_tagger import cli, shortlist
from mtl_tagger.conll import Sentence
from mtl_tagger.corpus import TaskData, load_task
from mtl_tagger.errors import InputError
from mtl_tagger.files import check_input_file
from mtl_tagger.labels import label_kgrams
from mtl_tagger.params import Params
from mtl_tagger.progress import status
from mtl_tagger.vectors import embedding_matrix, read_vectors
from mtl_tagger.vocab import Vocab

COMPONENTS = ("labels", "values", "density", "words", "size")
SCORED = ("labels", "values", "density")  # what the score combines (density only with word vectors)


@dataclass(frozen=True)
class Affinity:
    """How much `lender` is expected to help the borrower: the score and the components it is made of."""

    lender: str
    score: float
    labels: float
    values: float
    density: float | None  # None without word vectors
    words: float
    size: float


def _tag_words(sentences: Sequence[Sentence]) -> dict[str, Counter[str]]:
    """Tag (not O) → counts of the lower-cased words it labels in `sentences`."""
    found: dict[str, Counter[str]] = {}
    for s in sentences:
        for word, tag in zip(s.tokens, s.tags):
            if tag != "O":
                found.setdefault(tag, Counter())[word.lower()] += 1
    return found


def _name_similarity(a: str, b: str, k: int) -> float:
    """Cosine of the k-gram counts of two tags' attribute names; 0 unless both are B- or both are I-."""
    if a[:2] != b[:2]:
        return 0.0
    x, y = Counter(label_kgrams(a[2:], k)), Counter(label_kgrams(b[2:], k))
    return sum(n * y[g] for g, n in x.items()) / math.sqrt(sum(n * n for n in x.values()) *
                                                            sum(n * n for n in y.values()))


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else 0.0


def _labels_and_values(borrower: dict[str, Counter[str]], lender: dict[str, Counter[str]], k: int
                       ) -> tuple[float, float]:
    """The labels and values components (module docstring), each averaged over the borrower's tags."""
    sizes = {y: sum(words.values()) for y, words in lender.items()}
    labels, values = [], []
    for x, words in borrower.items():
        near = {y: s for y in lender if (s := _name_similarity(x, y, k)) > 0}
        n_x = sum(words.values())
        labels.append(max((s * sizes[y] / (n_x + sizes[y]) for y, s in near.items()), default=0.0))
        values.append(sum(n * max((s for y, s in near.items() if w in lender[y]), default=0.0)
                          for w, n in words.items()) / n_x)
    return _mean(labels), _mean(values)


@functools.lru_cache(maxsize=1)
def _pretrained(path: str) -> tuple[list[str], np.ndarray]:
    """The word vectors of `path`, read once per process (experiments.lenders_validation ranks many borrowers)."""
    return read_vectors(path)


def _densities(p: Params, tasks: dict[str, TaskData], task: str, candidates: list[str],
               pretrained: tuple[list[str], np.ndarray]) -> dict[str, float]:
    """Per lender, the borrower's per-tag share of contexts with a shortlist neighbour in it (tag-averaged)."""
    names = [task, *candidates]
    vocab = Vocab.build((s.tokens for t in names for s in tasks[t].train), {})
    init, found = embedding_matrix(vocab.words, *pretrained, p.seed)
    vectors = init * found[:, None]  # as run.py: words without a pretrained vector count as padding

    def contexts(t: str, tagged: bool) -> shortlist.Contexts:
        train = tasks[t].train
        return shortlist.make_contexts([vocab.word_ids(s.tokens) for s in train],
                                       [np.array([tag != "O" or not tagged for tag in s.tags]) for s in train],
                                       p.window)

    anchors = contexts(task, True)
    gold = np.array([tasks[task].train[j].tags[i] for j, i in zip(anchors.sentence, anchors.position)])
    out = {}
    for b in candidates:
        nearest = shortlist.build_shortlist(anchors, contexts(b, p.shortlist_contexts == "tagged"), vectors,
                                            p.shortlist_threshold, 1)
        has = nearest.a_neighbors[:, 0] >= 0
        out[b] = _mean([float(has[gold == tag].mean()) for tag in np.unique(gold)])
    return out


def rank_lenders(p: Params, tasks: dict[str, TaskData], task: str, candidates: list[str],
                 pretrained: tuple[list[str], np.ndarray] | None) -> list[Affinity]:
    """The candidates as lenders for `task`, best first (ties by name); training splits only, deterministic.

    `pretrained`: the words and vectors of p.word_vectors as the caller read them (density is left out with None).
    Reads p.seed, p.window, p.shortlist_threshold, p.shortlist_contexts and p.label_kgram.
    """
    borrower = _tag_words(tasks[task].train)
    running = Counter(w.lower() for s in tasks[task].train for w in s.tokens)
    size_a = sum(running.values())
    density = _densities(p, tasks, task, candidates, pretrained) if pretrained is not None and candidates else {}
    ranked = []
    for b in candidates:
        labels, values = _labels_and_values(borrower, _tag_words(tasks[b].train), p.label_kgram)
        theirs = {w.lower() for s in tasks[b].train for w in s.tokens}
        size_b = sum(len(s.tokens) for s in tasks[b].train)
        parts = {"labels": labels, "values": values, "density": density.get(b)}
        scored = [v for v in parts.values() if v is not None]
        ranked.append(Affinity(b, float(np.prod(scored)) ** (1 / len(scored)), **parts,
                               words=sum(n for w, n in running.items() if w in theirs) / max(size_a, 1),
                               size=size_b / max(size_a + size_b, 1)))
    return sorted(ranked, key=lambda r: (-r.score, r.lender))


def format_ranking(task: str, ranking: list[Affinity]) -> str:
    """A markdown table of a ranking: lender, score and every component ('–' when left out)."""
    scored = [c for c in SCORED if ranking and getattr(ranking[0], c) is not None]
    lines = [f"Lenders for {task} (score = geometric mean of {', '.join(scored)}; best first)", "",
             "| lender | score | " + " | ".join(COMPONENTS) + " |", "|---|" + "---:|" * (1 + len(COMPONENTS))]
    for r in ranking:
        cells = [getattr(r, c) for c in COMPONENTS]
        lines.append(f"| {r.lender} | {r.score:.3f} | "
                     + " | ".join("–" if v is None else f"{v:.3f}" for v in cells) + " |")
    return "\n".join(lines)


def verticals(data_dir: str | Path) -> list[str]:
    """The vertical directories under data_dir that hold a train.conll, sorted; InputError without data_dir."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError("data dir not found (--data_dir)", data_dir)
    return sorted(d.name for d in data_dir.iterdir() if (d / "train.conll").is_file())


def load_ranking(p: Params, task: str, candidates: list[str]) -> list[Affinity]:
    """Read the borrower's and the candidates' training splits from p.data_dir (as training holds out dev when there
    is no dev.conll) and rank the candidates."""
    if task in candidates:
        raise InputError(f"--candidates: {task} is the borrower itself")
    known = verticals(p.data_dir)
    unknown = [t for t in [task, *candidates] if t not in known]
    if unknown:
        raise InputError(f"no vertical {', '.join(map(repr, unknown))} with a train.conll here; found: "
                         f"{', '.join(known) or 'none'}", p.data_dir)
    p = Params(**{**p.to_json(), "tasks": ",".join([task, *candidates]), "mtl_mode": ""}).validate()
    if p.word_vectors:
        check_input_file(p.word_vectors, "--word_vectors", "word-vector file")
    with status(f"reading {p.data_dir}" + (f" and {p.word_vectors}" if p.word_vectors else "")):
        tasks = {t: load_task(p.data_dir, t, p.strict_bio, p.max_len, with_test=False) for t in p.names}
        return rank_lenders(p, tasks, task, candidates, _pretrained(p.word_vectors) if p.word_vectors else None)


FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined when run as a program, so importing this module next to other CLIs is safe)."""
    flags.DEFINE_string("task", None, "The borrower: a vertical (directory name under --data_dir).")
    flags.DEFINE_list("candidates", None, "Lenders to rank (default: every other vertical with a train.conll).")
    flags.DEFINE_string("data_dir", Params.data_dir, "Directory holding <Vertical>/train.conll.")
    flags.DEFINE_string("word_vectors", Params.word_vectors, "GloVe text file for the density component "
                                                             "(empty: leave density out).")
    flags.DEFINE_integer("window", Params.window, "Context window half-width of the shortlist.")
    flags.DEFINE_float("shortlist_threshold", Params.shortlist_threshold, "Cosine a neighbour must exceed.")


def main(argv: list[str]) -> None:
    """Rank the candidates as lenders for --task, print the table and the time it took."""
    cli.check_args(argv)
    if not FLAGS.task:
        raise InputError("--task is required: the borrower vertical")
    start = time.perf_counter()
    candidates = FLAGS.candidates or [v for v in verticals(FLAGS.data_dir) if v != FLAGS.task]
    if not candidates:
        raise InputError(f"no other vertical with a train.conll to rank as lender for {FLAGS.task}", FLAGS.data_dir)
    p = Params(data_dir=FLAGS.data_dir, word_vectors=FLAGS.word_vectors, window=FLAGS.window,
               shortlist_threshold=FLAGS.shortlist_threshold)
    print(format_ranking(FLAGS.task, load_ranking(p, FLAGS.task, candidates)))
    print(f"\n{len(candidates)} candidates ranked in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
