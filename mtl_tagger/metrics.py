"""The paper's metrics (§4 "Evaluation Metric"): token-level macro P/R/F1 over tags without O,
micro accuracy, plus conlleval entity-level P/R/F1 for comparison; and the tables of paper Tables 3 and 4.

Tags are classes as they are (B-x and I-x are two classes). Macro P and R are means over the tags that
occur in gold or predictions; macro F1 is the harmonic mean of those two, which is how the paper's
Table 3 rows add up (e.g. Dress 91.28 / 84.85 → 87.95); the mean of per-tag F1 is reported beside it.
"""
from collections.abc import Sequence

import numpy as np

from mtl_tagger.conll import chunks


def f1(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall, 0 when both are 0 (the paper's F1 from its P and R)."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _ratio(num: int, den: int) -> float:
    """num / den as a float, 0 when den is 0 (sklearn's zero_division=0)."""
    return num / den if den else 0.0


def _per_tag(gold: np.ndarray, pred: np.ndarray) -> dict[str, dict]:
    """precision, recall, f1 and support of every non-O tag occurring in gold or pred, sorted by tag."""
    out = {}
    for tag in sorted((set(gold.tolist()) | set(pred.tolist())) - {"O"}):
        in_gold, in_pred = gold == tag, pred == tag
        tp = int(np.sum(in_gold & in_pred))
        p, r = _ratio(tp, int(in_pred.sum())), _ratio(tp, int(in_gold.sum()))
        out[tag] = {"precision": p, "recall": r, "f1": f1(p, r), "support": int(in_gold.sum())}
    return out


def values(sentences: Sequence[Sequence[str]]) -> set[tuple[int, str, int, int]]:
    """Every chunk of the sentences as (sentence, attr, start, end)."""
    return {(n, *c) for n, tags in enumerate(sentences) for c in chunks(tags)}


def _entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]
                   ) -> tuple[float, float, float]:
    """conlleval precision, recall and F1 over chunks (a chunk counts when attr, start and end all match)."""
    gold_chunks, pred_chunks = values(gold), values(pred)
    correct = len(gold_chunks & pred_chunks)
    p, r = _ratio(correct, len(pred_chunks)), _ratio(correct, len(gold_chunks))
    return p, r, f1(p, r)


def attribute_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Each attribute's conlleval F1 (its chunks alone), for the attributes in gold or predictions."""
    gold_chunks, pred_chunks = values(gold), values(pred)
    out = {}
    for attr in sorted({c[1] for c in gold_chunks | pred_chunks}):
        g, p = ({c for c in found if c[1] == attr} for found in (gold_chunks, pred_chunks))
        out[attr] = 2 * len(g & p) / (len(g) + len(p))
    return out


def evaluate_tags(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """All metrics of one test split from gold and predicted tag sequences (fractions in [0, 1]).

    Returns macro_precision, macro_recall, macro_f1 (harmonic of the two), macro_f1_mean (mean of
    per-tag F1), micro_accuracy (all tokens, O included), entity_precision/recall/f1 (conlleval) and
    per_tag {tag: {precision, recall, f1, support}}; plain Python types, so json.dump works.
    """
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    for n, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {n}: {len(g)} gold tags but {len(p)} predicted")
    flat_gold = np.array([t for tags in gold for t in tags], dtype=object)
    flat_pred = np.array([t for tags in pred for t in tags], dtype=object)
    if not len(flat_gold):
        raise ValueError("nothing to evaluate: no tokens")
    per_tag = _per_tag(flat_gold, flat_pred)
    scores = list(per_tag.values())
    macro_p = float(np.mean([s["precision"] for s in scores])) if scores else 0.0
    macro_r = float(np.mean([s["recall"] for s in scores])) if scores else 0.0
    entity_p, entity_r, entity_f1 = _entity_scores(gold, pred)
    return {
        "macro_precision": macro_p,
        "macro_recall": macro_r,
        "macro_f1": f1(macro_p, macro_r),
        "macro_f1_mean": float(np.mean([s["f1"] for s in scores])) if scores else 0.0,
        "micro_accuracy": float(np.mean(flat_gold == flat_pred)),
        "entity_precision": entity_p,
        "entity_recall": entity_r,
        "entity_f1": entity_f1,
        "per_tag": per_tag,
    }


def _pct(x: float) -> str:
    """A fraction as a percent with 2 decimals, right-aligned in 7 columns."""
    return f"{100 * x:7.2f}"


def _summary_row(name: str, width: int, r: dict) -> str:
    """One row: name, macro P, R, micro Acc, macro F1, mean per-tag F1, entity P/R/F1."""
    keys = ["macro_precision", "macro_recall", "micro_accuracy", "macro_f1", "macro_f1_mean",
            "entity_precision", "entity_recall", "entity_f1"]
    return f"{name:<{width}}" + "".join(" " + _pct(r[k]) for k in keys)


def _summary_header(first: str, width: int) -> str:
    """Header matching _summary_row."""
    names = ["P", "R", "Acc", "F1", "F1-mean", "Ent-P", "Ent-R", "Ent-F1"]
    return f"{first:<{width}}" + "".join(f" {n:>7}" for n in names)


def format_table(results: dict[str, dict], per_tag: bool = True) -> str:
    """A fixed-width table in percent of evaluate_tags results keyed by vertical (paper Table 3 layout).

    One summary row per vertical; then, if per_tag, each vertical's per-tag P, R, F1 and gold support.
    """
    width = max([len("Vertical"), *map(len, results)])
    lines = [_summary_header("Vertical", width)]
    lines += [_summary_row(name, width, r) for name, r in results.items()]
    if per_tag:
        for name, r in results.items():
            tag_width = max([len("Tag"), *map(len, r["per_tag"])])
            head = f"{'Tag':<{tag_width}}" + "".join(f" {n:>7}" for n in ["P", "R", "F1", "Support"])
            lines += ["", f"{name}: per tag", head]
            lines += [f"{tag:<{tag_width}} {_pct(s['precision'])} {_pct(s['recall'])} {_pct(s['f1'])} "
                      f"{s['support']:>7}" for tag, s in r["per_tag"].items()]
    return "\n".join(lines)


def compare_table(single: dict, multi: dict, top: int = 5, train_counts: dict[str, int] | None = None) -> str:
    """Single- vs multi-task results of one vertical, in percent (paper Tables 3 and 4).

    The summary rows side by side, then the `top` tags by F1 gain (multi − single, in points, as the
    paper's "%Imp." column), with their #train examples when train_counts is given. A tag missing from
    one result's per_tag (never in its gold nor predictions) counts as 0 there.
    """
    lines = [_summary_header("Model", 6), _summary_row("single", 6, single), _summary_row("multi", 6, multi)]
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    tags = set(single["per_tag"]) | set(multi["per_tag"])
    rows = [(tag, single["per_tag"].get(tag, zero), multi["per_tag"].get(tag, zero)) for tag in tags]
    rows.sort(key=lambda row: (row[1]["f1"] - row[2]["f1"], row[0]))
    tag_width = max([len("Tag"), *map(len, tags)])
    names = (["#Train"] if train_counts is not None else []) + [
        "sgl-P", "sgl-R", "sgl-F1", "mtl-P", "mtl-R", "mtl-F1", "Gain"]
    lines += ["", f"Top {min(top, len(rows))} tags by F1 gain (multi - single)",
              f"{'Tag':<{tag_width}}" + "".join(f" {n:>7}" for n in names)]
    for tag, s, m in rows[:top]:
        train = f" {train_counts.get(tag, 0):>7}" if train_counts is not None else ""
        cells = [s["precision"], s["recall"], s["f1"], m["precision"], m["recall"], m["f1"],
                 m["f1"] - s["f1"]]
        lines.append(f"{tag:<{tag_width}}{train}" + "".join(" " + _pct(x) for x in cells))
    return "\n".join(lines)
