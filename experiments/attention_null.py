"""Chance level of Fig. 4's alignment_at_1: the analysis run on attention that has learned nothing.

    python -m experiments.attention_null [--results_dir=experiments/results/runs]
        [--out=experiments/results/attention_null.md]

For every coupled pair of the Table 3 sweep, the shortlist is rebuilt from the run's own flags (it
depends on the pretrained vectors, the data and the flags, not on the seed or the trained model) and
the Fig. 4 analysis is applied to uniform attention (1/|list| for each of an anchor's neighbours), to
the attention of the untrained model (pretrained word vectors, initial a), and to the pair counts
alone. If the learned attention's alignment_at_1 is not above these, training the attention added
nothing to what the cosine shortlist and the pretrained vectors already give. A second readout that
list lengths cannot bias: the same-label lift, the mean of α × (anchor's list length) over shortlist
pairs whose two gold tags have the same name (1 = uniform; > 1 = the attention prefers same-named
labels), for the untrained model and for each seed's trained model (read from the run's model dir).
"""
import datetime
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
from absl import app, flags

from mtl_tagger.analysis import alignment_at_1, label_attention, pair_attention, top_lenders
from mtl_tagger.params import Params
from mtl_tagger.pipeline import ShortlistData
from mtl_tagger.training import Trainer, load_run_data
from mtl_tagger.vocab import Vocab

FLAGS = flags.FLAGS
flags.DEFINE_string("results_dir", "experiments/results/runs", "Table 3 result files (experiments/sweep.py).")
flags.DEFINE_string("out", "experiments/results/attention_null.md", "Markdown file to write.")


def same_label_lift(data: ShortlistData, attention: np.ndarray, tags_a: list[str], tags_b: list[str]) -> float:
    """Mean α × list length over direction-0 pairs whose gold tags share a name other than O."""
    anchors = data.anchors[data.anchors[:, 0] == 0, 1]
    nb = data.neighbors[0][anchors]
    mask = nb >= 0
    names_a = np.array(tags_a, object)[data.gold[0][anchors]][:, None]
    names_b = np.array(tags_b, object)[data.gold[1][np.where(mask, nb, 0)]]
    same = mask & (names_a == names_b) & (names_a != "O")
    lift = attention * mask.sum(axis=1, keepdims=True)
    return float(lift[same].mean()) if same.any() else float("nan")


def trained_lift(p: Params) -> float | None:
    """same_label_lift of a finished coupled run's best checkpoint, or None when its model dir is gone."""
    model_dir = Path(p.model_dir)
    if not (model_dir / "best").is_dir():
        return None
    data = load_run_data(p)
    data.vocab = Vocab.load(model_dir / "vocab.json")  # the ids the checkpoints were trained with
    trainer = Trainer(p, data)
    trainer.best_ckpt.checkpoint.restore(trainer.best_ckpt.latest_checkpoint).expect_partial()
    tags_a, tags_b = trainer.coupler.tag_names_a, trainer.coupler.tag_names_b
    return same_label_lift(trainer.shortlist, pair_attention(trainer.shortlist, trainer.net, trainer.coupler)[0],
                           tags_a, tags_b)


def null_alignment(p: Params) -> dict:
    """alignment_at_1 of uniform and of untrained attention and of the most frequent partner tag; list facts."""
    with tempfile.TemporaryDirectory() as tmp:  # the model dir only holds the shortlist cache, used in __init__
        p = Params.from_json({**p.to_json(), "model_dir": tmp})
        trainer = Trainer(p, load_run_data(p))
    data, tags_a, tags_b = trainer.shortlist, trainer.coupler.tag_names_a, trainer.coupler.tag_names_b
    anchors = data.anchors[data.anchors[:, 0] == 0, 1]
    mask = data.neighbors[0][anchors] >= 0
    untrained = pair_attention(data, trainer.net, trainer.coupler)[0]
    out = {"untrained_lift": same_label_lift(data, untrained, tags_a, tags_b)}  # uniform's lift is 1 by definition
    for name, attention in (("uniform", mask / mask.sum(axis=1, keepdims=True)), ("untrained", untrained)):
        matrix, counts = label_attention(data, attention, len(tags_a), len(tags_b))
        out[name], n = alignment_at_1(top_lenders(matrix, counts, tags_a, tags_b), tags_b)
    out["counts"], _ = alignment_at_1(top_lenders(counts.astype(float), counts, tags_a, tags_b), tags_b)
    return {**out, "tags": n, "anchors": len(anchors),
            "single_neighbour": float(np.mean(mask.sum(axis=1) == 1)), "pairs": int(mask.sum())}


def main(argv: list[str]) -> None:
    """Write the chance-level table beside the learned alignment of every seed."""
    learned: dict[str, list[float]] = {}
    lifts: dict[str, list[float]] = {}
    params: dict[str, Params] = {}
    for path in sorted(Path(FLAGS.results_dir).glob("s*.coupled.*.json")):
        r = json.loads(path.read_text())
        if "@" in r["name"]:
            continue
        pair = r["name"].split(".", 2)[2]
        params.setdefault(pair, Params.from_json(r["params"]))
        if r["analysis"]["alignment_at_1"] is not None:
            learned.setdefault(pair, []).append(r["analysis"]["alignment_at_1"])
        lift = trained_lift(Params.from_json(r["params"]))
        if lift is not None:
            lifts.setdefault(pair, []).append(lift)
    if not params:
        raise SystemExit(f"error: {FLAGS.results_dir}: no coupled result files; run experiments.sweep first")
    pct = "{:.0f}%".format
    lines = [
        "# Fig. 4 against chance: alignment_at_1 of learned vs uniform attention", "",
        f"Made {datetime.date.today().isoformat()} by `python -m experiments.attention_null` from the coupled runs "
        f"in {FLAGS.results_dir} (flags of each pair's first run). alignment_at_1 = share of borrower tags whose "
        "name also exists in the lender vertical and whose top lender (highest mean attention) is that same tag. "
        "Uniform = the same analysis with every anchor's attention spread evenly over its shortlist "
        "neighbours; untrained = the attention of the model before training (seed 1); by count = top lender "
        "is the partner tag with the most shortlist pairs. Same-label lift: mean α × list length over pairs "
        "whose gold tags have the same name (1 = uniform), untrained and trained (each seed whose model dir "
        "is still on disk).", "",
        "| pair | tags | learned (mean ± std, seeds) | uniform attention | untrained attention | by pair count | "
        "anchors | with one neighbour | pairs | same-label lift, untrained | trained (per seed) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for pair, p in sorted(params.items()):
        null = null_alignment(p)
        xs = learned.get(pair, [])
        mean = (f"{statistics.mean(xs) * 100:.0f}% ± {statistics.stdev(xs) * 100:.0f} (n={len(xs)})" if len(xs) > 1
                else f"{xs[0] * 100:.0f}% (n=1)" if xs else "n/a")
        cells = " | ".join(pct(null[k] * 100) if null[k] is not None else "n/a"
                           for k in ("uniform", "untrained", "counts"))
        trained = ", ".join(f"{x:.2f}" for x in lifts.get(pair, [])) or "–"
        lines.append(f"| {pair} | {null['tags']} | {mean} | {cells} | {null['anchors']} | "
                     f"{null['single_neighbour'] * 100:.0f}% | {null['pairs']} | {null['untrained_lift']:.2f} | "
                     f"{trained} |")
    text = "\n".join(lines) + "\n"
    Path(FLAGS.out).write_text(text)
    print(text)


if __name__ == "__main__":
    app.run(main)
