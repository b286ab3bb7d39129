"""Label-similarity discovery (paper §4.3, Fig. 4): which lender label each borrower label attends to.

For every coupled pair and each direction (borrower → lender), the learned context attention A of every
shortlist pair is grouped by the two gold tags; the mean attention per (borrower tag, lender tag) is
normalised over lender tags for each borrower tag (Fig. 4a), the row maximum is the tag's top lender
(Fig. 4b), and `alignment_at_1` is the share of borrower tags whose name exists in the lender and whose
top lender is that same tag. `alignment_at_1_uniform` is the same readout on uniform attention over each
anchor's list: the chance level the learned attention has to beat. The borrower's selected checkpoint
is read for its direction.
"""
import csv
import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging

from mtl_tagger.files import write_json_atomic, write_text_atomic
from mtl_tagger.modeldir import best_checkpoint, restore
from mtl_tagger.run import Run

BATCH = 512


def pair_attention(run: Run, pair: int, direction: int) -> tuple[np.ndarray, np.ndarray]:
    """A of every anchor of one pair and direction over its neighbours ([N, K], 0 at padding), and the rows."""
    data, coupler = run.coupling, run.coupler
    rows = data.anchors(pair, direction)
    att = np.zeros((len(rows), data.anchor_neighbors.shape[1]), np.float32)
    for s in range(0, len(rows), BATCH):
        r = rows[s:s + BATCH]
        nb = data.anchor_neighbors[r]
        mask = nb >= 0
        members = np.concatenate([data.anchor_ctx[r][:, None], np.where(mask, nb, data.anchor_ctx[r][:, None])], 1)
        att[s:s + len(r)] = coupler.context_attention(
            run.net, tf.constant(data.ctx_window[members]), tf.constant(mask), tf.constant(data.anchor_pair[r]),
            tf.constant(data.anchor_direction[r])).numpy()
    return att, rows


def label_attention(run: Run, rows: np.ndarray, attention: np.ndarray, num_a: int, num_b: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 4a: mean attention per (borrower tag, lender tag), rows normalised to sum 1; and the pair counts."""
    data = run.coupling
    nb = data.anchor_neighbors[rows]
    mask = nb >= 0
    tag_a = np.broadcast_to(data.ctx_local_gold[data.anchor_ctx[rows]][:, None], nb.shape)[mask]
    tag_b = data.ctx_local_gold[np.where(mask, nb, 0)][mask]
    total = np.zeros((num_a, num_b))
    counts = np.zeros((num_a, num_b), np.int64)
    np.add.at(total, (tag_a, tag_b), attention[mask])
    np.add.at(counts, (tag_a, tag_b), 1)
    mean = np.divide(total, counts, out=np.zeros_like(total), where=counts > 0)
    sums = mean.sum(axis=1, keepdims=True)
    return np.divide(mean, sums, out=np.zeros_like(mean), where=sums > 0), counts


def top_lenders(matrix: np.ndarray, counts: np.ndarray, tags_a: list[str], tags_b: list[str]) -> list[dict]:
    """Fig. 4b: every borrower tag with shortlist pairs, its top lender tag and the attention."""
    out = []
    for i, tag in enumerate(tags_a):
        if counts[i].sum() == 0:
            continue
        j = int(np.argmax(matrix[i]))
        out.append({"tag": tag, "lender": tags_b[j], "attention": float(matrix[i, j]), "pairs": int(counts[i].sum())})
    return out


def alignment_at_1(lenders: list[dict], tags_b: list[str]) -> tuple[float | None, int]:
    """Share of borrower tags (not O, name also in the lender, with pairs) whose top lender is the same tag."""
    named = [r for r in lenders if r["tag"] != "O" and r["tag"] in tags_b]
    if not named:
        return None, 0
    return sum(r["lender"] == r["tag"] for r in named) / len(named), len(named)


def heatmap_png(matrix: np.ndarray, tags_a: list[str], tags_b: list[str], title: str) -> bytes | None:
    """The Fig. 4a heatmap as PNG bytes, or None when matplotlib (optional extra `plots`) is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.warning("matplotlib is not installed (pip install 'mtl_tagger[plots]'): no heatmap PNG")
        return None
    fig, ax = plt.subplots(figsize=(2 + 0.28 * len(tags_b), 1.5 + 0.28 * len(tags_a)))
    im = ax.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-6), aspect="auto")
    ax.set_xticks(range(len(tags_b)), tags_b, rotation=90, fontsize=7)
    ax.set_yticks(range(len(tags_a)), tags_a, fontsize=7)
    ax.set_xlabel("lender")
    ax.set_ylabel("borrower")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _direction(run: Run, pair: int, direction: int, model_dir: Path) -> dict:
    """Fig. 4 of one borrower → lender direction, at the borrower's selected checkpoint."""
    a, b = run.coupling.pairs[pair]
    borrower, lender = (a, b) if direction == 0 else (b, a)
    restore(run.net, best_checkpoint(model_dir, borrower), model_dir,
            {"coupler": run.coupler})
    tags_a, tags_b = run.vocab.tags[borrower], run.vocab.tags[lender]
    attention, rows = pair_attention(run, pair, direction)
    matrix, counts = label_attention(run, rows, attention, len(tags_a), len(tags_b))
    lenders = top_lenders(matrix, counts, tags_a, tags_b)
    at1, n = alignment_at_1(lenders, tags_b)
    mask = run.coupling.anchor_neighbors[rows] >= 0
    uniform = mask / np.maximum(mask.sum(axis=1, keepdims=True), 1)
    chance, _ = alignment_at_1(top_lenders(*label_attention(run, rows, uniform, len(tags_a), len(tags_b)),
                                           tags_a, tags_b), tags_b)
    return {"borrower": borrower, "lender": lender, "pair": f"{a}:{b}", "tags_a": tags_a, "tags_b": tags_b,
            "attention": matrix.round(6).tolist(), "pairs": counts.tolist(), "top_lenders": lenders,
            "alignment_at_1": at1, "alignment_at_1_uniform": chance, "alignment_tags": n}


def analyse(run: Run, model_dir: str | Path, writer: tf.summary.SummaryWriter | None = None) -> list[dict]:
    """Write analysis.json and attention/<borrower>__<lender>.{csv,png} (and TensorBoard images); return them."""
    model_dir = Path(model_dir)
    (model_dir / "attention").mkdir(exist_ok=True)
    results = []
    for pair in range(len(run.coupling.pairs)):
        for direction in (0, 1):
            r = _direction(run, pair, direction, model_dir)
            results.append(r)
            stem = model_dir / "attention" / f"{r['borrower']}__{r['lender']}"
            rows = io.StringIO()
            w = csv.writer(rows)
            w.writerow([f"{r['borrower']} \\ {r['lender']}", *r["tags_b"]])
            for tag, row in zip(r["tags_a"], r["attention"]):
                w.writerow([tag, *(f"{x:.6f}" for x in row)])
            write_text_atomic(stem.with_suffix(".csv"), rows.getvalue())
            png = heatmap_png(np.array(r["attention"]), r["tags_a"], r["tags_b"],
                              f"attention: {r['borrower']} (borrower) vs {r['lender']} (lender)")
            if png is not None:
                stem.with_suffix(".png").write_bytes(png)
                if writer is not None:
                    with writer.as_default():
                        tf.summary.image(f"analysis/{r['borrower']}__{r['lender']}", tf.image.decode_png(png)[None],
                                         step=0)
    write_json_atomic(model_dir / "analysis.json", {"directions": results})
    return results


def format_lenders(analysis: dict) -> str:
    """Fig. 4b of one direction as a printable table, with alignment_at_1 and its chance level."""
    width = max([len(r["tag"]) for r in analysis["top_lenders"]] + [8])
    lines = [f"{'Borrower-' + analysis['borrower']:<{width + 10}} Lender-{analysis['lender']} (attention, pairs)"]
    lines += [f"{r['tag']:<{width + 10}} {r['lender']} ({r['attention']:.2f}, {r['pairs']})"
              for r in analysis["top_lenders"]]
    at1, chance = analysis["alignment_at_1"], analysis["alignment_at_1_uniform"]
    lines.append(f"alignment_at_1: {'n/a' if at1 is None else f'{at1:.2f}'} over {analysis['alignment_tags']} "
                 f"tags present in both verticals (uniform attention: {'n/a' if chance is None else f'{chance:.2f}'})")
    return "\n".join(lines)
