"""Label-similarity discovery (paper §4.3, Fig. 4): which task-b label each task-a label borrows from.

For every shortlist pair (anchor in task a, neighbour in task b) the learned context attention A is
grouped by the two gold tags; the mean attention per (tag_a, tag_b) is normalised over task-b tags
for each task-a tag (Fig. 4a), the row maximum is the tag's top lender (Fig. 4b), and
`alignment_at_1` is the share of task-a tags whose name exists in task b and whose top lender is
that same tag (among tags with at least one shortlist pair).
"""
import csv
import io
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging

from mtl_tagger.coupling import CouplingLoss
from mtl_tagger.files import write_json_atomic, write_text_atomic
from mtl_tagger.model import TaggerNet
from mtl_tagger.pipeline import ShortlistData

BATCH = 512


def pair_attention(data: ShortlistData, net: TaggerNet, coupler: CouplingLoss) -> tuple[np.ndarray, np.ndarray]:
    """Context attention A of every direction-0 anchor over its neighbours ([N, K], 0 at padding), and mask."""
    neighbors = data.neighbors[0]
    anchors = data.anchors[data.anchors[:, 0] == 0, 1]
    att = np.zeros((len(anchors), neighbors.shape[1]), np.float32)
    for s in range(0, len(anchors), BATCH):
        idx = anchors[s:s + BATCH]
        nb = neighbors[idx]
        mask = nb >= 0
        safe = np.where(mask, nb, 0)
        out = coupler({
            "direction": np.zeros(len(idx), np.int32), "mask": mask,
            "anchor_u": net.window_vectors(tf.constant(data.contexts[0].windows[idx])),
            "neighbor_u": net.window_vectors(tf.constant(data.contexts[1].windows[safe])),
            "anchor_tag": data.gold[0][idx], "neighbor_tag": np.where(mask, data.gold[1][safe], 0),
            "anchor_score": np.zeros(len(idx), np.float32), "neighbor_score": np.zeros(nb.shape, np.float32),
        })
        att[s:s + len(idx)] = out["attention"].numpy()
    return att, neighbors[anchors] >= 0


def label_attention(data: ShortlistData, attention: np.ndarray, num_a: int, num_b: int) -> tuple[np.ndarray, ...]:
    """Fig. 4a: mean attention per (tag_a, tag_b), rows normalised to sum 1; and the pair counts."""
    anchors = data.anchors[data.anchors[:, 0] == 0, 1]
    nb = data.neighbors[0][anchors]
    mask = nb >= 0
    tag_a = np.broadcast_to(data.gold[0][anchors][:, None], nb.shape)[mask]
    tag_b = data.gold[1][np.where(mask, nb, 0)][mask]
    total = np.zeros((num_a, num_b))
    counts = np.zeros((num_a, num_b), np.int64)
    np.add.at(total, (tag_a, tag_b), attention[mask])
    np.add.at(counts, (tag_a, tag_b), 1)
    mean = np.divide(total, counts, out=np.zeros_like(total), where=counts > 0)
    rows = mean.sum(axis=1, keepdims=True)
    return np.divide(mean, rows, out=np.zeros_like(mean), where=rows > 0), counts


def top_lenders(matrix: np.ndarray, counts: np.ndarray, tags_a: list[str], tags_b: list[str]) -> list[dict]:
    """Fig. 4b: every task-a tag with shortlist pairs, its top lender tag in task b and the attention."""
    out = []
    for i, tag in enumerate(tags_a):
        if counts[i].sum() == 0:
            continue
        j = int(np.argmax(matrix[i]))
        out.append({"tag": tag, "lender": tags_b[j], "attention": float(matrix[i, j]), "pairs": int(counts[i].sum())})
    return out


def alignment_at_1(lenders: list[dict], tags_b: list[str]) -> tuple[float | None, int]:
    """Share of task-a tags (not O, name also in task b, with pairs) whose top lender is the same tag."""
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
    ax.set_xlabel("lender (task b)")
    ax.set_ylabel("borrower (task a)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def analyse(data: ShortlistData, net: TaggerNet, coupler: CouplingLoss, task_a: str, task_b: str,
            model_dir: str | Path, writer: tf.summary.SummaryWriter | None = None) -> dict:
    """Write analysis.json, attention.csv, attention.png (and a TensorBoard image); return the analysis."""
    model_dir = Path(model_dir)
    tags_a, tags_b = coupler.tag_names_a, coupler.tag_names_b
    attention, _ = pair_attention(data, net, coupler)
    matrix, counts = label_attention(data, attention, len(tags_a), len(tags_b))
    lenders = top_lenders(matrix, counts, tags_a, tags_b)
    at1, n = alignment_at_1(lenders, tags_b)
    result = {"borrower": task_a, "lender": task_b, "tags_a": tags_a, "tags_b": tags_b,
              "attention": matrix.round(6).tolist(), "pairs": counts.tolist(), "top_lenders": lenders,
              "alignment_at_1": at1, "alignment_tags": n}
    rows = io.StringIO()
    w = csv.writer(rows)
    w.writerow([f"{task_a} \\ {task_b}", *tags_b])
    for tag, row in zip(tags_a, matrix):
        w.writerow([tag, *(f"{x:.6f}" for x in row)])
    write_text_atomic(model_dir / "attention.csv", rows.getvalue())
    png = heatmap_png(matrix, tags_a, tags_b, f"attention: {task_a} (borrower) vs {task_b} (lender)")
    if png is not None:
        (model_dir / "attention.png").write_bytes(png)
        if writer is not None:
            with writer.as_default():
                tf.summary.image("analysis/label_attention", tf.image.decode_png(png)[None], step=0)
    write_json_atomic(model_dir / "analysis.json", result)
    return result


def format_lenders(analysis: dict) -> str:
    """Fig. 4b as a printable table, with alignment_at_1."""
    width = max([len(r["tag"]) for r in analysis["top_lenders"]] + [8])
    lines = [f"{'Borrower-' + analysis['borrower']:<{width + 10}} Lender-{analysis['lender']} (attention, pairs)"]
    lines += [f"{r['tag']:<{width + 10}} {r['lender']} ({r['attention']:.2f}, {r['pairs']})"
              for r in analysis["top_lenders"]]
    at1 = analysis["alignment_at_1"]
    lines.append(f"alignment_at_1: {'n/a' if at1 is None else f'{at1:.2f}'} over {analysis['alignment_tags']} "
                 "tags present in both verticals")
    return "\n".join(lines)
