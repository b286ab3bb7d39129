"""The paper's metrics: token-level macro P/R/F1 without O (checked against sklearn), accuracy, conlleval."""
import json

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support

from mtl_tagger.metrics import attribute_f1, compare_table, evaluate_tags, f1, format_table

TAGS = ["O", "O", "O", "B-a", "I-a", "B-b", "I-b", "B-c-d", "I-c-d", "B-e"]


def _random_split(seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """Random gold tags and predictions that agree ~60% of the time, over sentences of varied length."""
    rng = np.random.default_rng(seed)
    gold, pred = [], []
    for length in rng.integers(1, 12, size=40):
        g = list(rng.choice(TAGS, size=length))
        p = [t if rng.random() < 0.6 else str(rng.choice(TAGS)) for t in g]
        gold.append([str(t) for t in g])
        pred.append(p)
    return gold, pred


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_tag_level_matches_sklearn(seed: int) -> None:
    gold, pred = _random_split(seed)
    flat_gold = [t for s in gold for t in s]
    flat_pred = [t for s in pred for t in s]
    labels = sorted((set(flat_gold) | set(flat_pred)) - {"O"})
    p, r, f, support = precision_recall_fscore_support(
        flat_gold, flat_pred, labels=labels, average=None, zero_division=0)
    got = evaluate_tags(gold, pred)
    assert list(got["per_tag"]) == labels
    for i, tag in enumerate(labels):
        row = got["per_tag"][tag]
        assert row["precision"] == pytest.approx(p[i]) and row["recall"] == pytest.approx(r[i])
        assert row["f1"] == pytest.approx(f[i]) and row["support"] == support[i]
    assert got["macro_precision"] == pytest.approx(np.mean(p))
    assert got["macro_recall"] == pytest.approx(np.mean(r))
    mp, mr = np.mean(p), np.mean(r)
    assert got["macro_f1"] == pytest.approx(2 * mp * mr / (mp + mr))
    assert got["macro_f1_mean"] == pytest.approx(np.mean(f))
    assert got["micro_accuracy"] == pytest.approx(np.mean(np.array(flat_gold) == np.array(flat_pred)))


def test_unseen_tags_count_as_zero() -> None:
    # B-b never predicted (precision 0), B-z never in gold (recall 0): both enter the macro means.
    got = evaluate_tags([["B-a", "B-b", "O"]], [["B-a", "O", "B-z"]])
    assert list(got["per_tag"]) == ["B-a", "B-b", "B-z"]
    assert got["per_tag"]["B-b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert got["per_tag"]["B-z"]["support"] == 0
    assert got["macro_precision"] == pytest.approx(1 / 3) and got["macro_recall"] == pytest.approx(1 / 3)


def test_paper_table3_macro_f1_is_harmonic_mean_of_macro_p_and_r() -> None:
    assert f"{100 * f1(0.9128, 0.8485):.2f}" == "87.95"  # Dress, single-task
    assert f"{100 * f1(0.8466, 0.7641):.2f}" == "80.32"  # Jean, multi-task
    assert f1(0.0, 0.0) == 0.0


def test_micro_accuracy_includes_o() -> None:
    got = evaluate_tags([["O", "O", "O", "B-a"]], [["O", "O", "O", "O"]])
    assert got["micro_accuracy"] == 0.75
    assert got["macro_precision"] == 0.0 and got["macro_recall"] == 0.0 and got["macro_f1"] == 0.0


def test_all_o_gives_zero_macro_and_full_accuracy() -> None:
    got = evaluate_tags([["O", "O"], ["O"]], [["O", "O"], ["O"]])
    assert got["per_tag"] == {}
    assert got["micro_accuracy"] == 1.0
    for key in ["macro_precision", "macro_recall", "macro_f1", "macro_f1_mean", "entity_f1"]:
        assert got[key] == 0.0


@pytest.mark.parametrize("gold, pred, correct, n_gold, n_pred", [
    # I- after O starts a chunk: gold I-a I-a is one chunk "a" at 1..3, so B-a I-a there matches it.
    ([["O", "I-a", "I-a"]], [["O", "B-a", "I-a"]], 1, 1, 1),
    # B-x I-y is two chunks; a prediction B-x I-x is one chunk matching neither.
    ([["B-x", "I-y"]], [["B-x", "I-x"]], 0, 2, 1),
    # I-x I-y is two chunks too, both matched by B-x B-y.
    ([["I-x", "I-y"]], [["B-x", "B-y"]], 2, 2, 2),
    # A chunk running to the sentence end; a shorter prediction is wrong.
    ([["O", "B-a", "I-a"], ["B-b"]], [["O", "B-a", "O"], ["B-b"]], 1, 2, 2),
    # Chunks never cross sentences: "a" at the end of one and I-a at the start of the next are two.
    ([["B-a"], ["I-a", "O"]], [["B-a"], ["B-a", "O"]], 2, 2, 2),
    # An attr holding '-': I-x-y continues B-x-y, I-x does not.
    ([["B-x-y", "I-x-y", "I-x"]], [["B-x-y", "I-x-y", "B-x"]], 2, 2, 2),
    # Same span but another attr is wrong.
    ([["B-a", "I-a"]], [["B-b", "I-b"]], 0, 1, 1),
])
def test_entity_level_conlleval(gold: list, pred: list, correct: int, n_gold: int, n_pred: int) -> None:
    got = evaluate_tags(gold, pred)
    p, r = correct / n_pred, correct / n_gold
    assert got["entity_precision"] == pytest.approx(p)
    assert got["entity_recall"] == pytest.approx(r)
    assert got["entity_f1"] == pytest.approx(f1(p, r))


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="sentence 1"):
        evaluate_tags([["O"], ["O", "B-a"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="sentences"):
        evaluate_tags([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="no tokens"):
        evaluate_tags([], [])


def test_results_are_plain_json() -> None:
    gold, pred = _random_split(7)
    got = evaluate_tags(gold, pred)
    assert json.loads(json.dumps(got)) == got
    assert set(got) == {"macro_precision", "macro_recall", "macro_f1", "macro_f1_mean", "micro_accuracy",
                        "entity_precision", "entity_recall", "entity_f1", "per_tag"}
    assert all(0.0 <= v <= 1.0 for k, v in got.items() if k != "per_tag")


def test_format_table() -> None:
    dress = evaluate_tags([["B-a", "I-a", "O"]], [["B-a", "O", "O"]])
    chain = evaluate_tags([["B-long-attr", "O"]], [["B-long-attr", "O"]])
    text = format_table({"Dress": dress, "Chain": chain})
    lines = text.splitlines()
    assert lines[0].split() == ["Vertical", "P", "R", "Acc", "F1", "F1-mean", "Ent-P", "Ent-R", "Ent-F1"]
    assert lines[1].split() == ["Dress", "50.00", "50.00", "66.67", "50.00", "50.00", "0.00", "0.00", "0.00"]
    assert lines[2].split()[:2] == ["Chain", "100.00"]
    assert len({len(line) for line in lines[:3]}) == 1  # fixed width
    assert "\nI-a    0.00    0.00    0.00       1\n" in text
    assert "B-long-attr  100.00  100.00  100.00       1" in text
    assert format_table({"Dress": dress}, per_tag=False).count("\n") == 1


def test_compare_table_ranks_tags_by_f1_gain() -> None:
    gold = [["B-a", "I-a", "B-b", "O", "B-c"]]
    single = evaluate_tags(gold, [["B-a", "O", "O", "O", "B-c"]])
    multi = evaluate_tags(gold, [["B-a", "I-a", "B-b", "O", "O"]])
    text = compare_table(single, multi, top=2, train_counts={"I-a": 6, "B-b": 15})
    lines = text.splitlines()
    assert lines[1].split()[0] == "single" and lines[2].split()[0] == "multi"
    assert "Top 2 tags by F1 gain" in text
    table = [line.split() for line in lines[6:]]
    assert [row[:2] for row in table] == [["B-b", "15"], ["I-a", "6"]]  # tie on +100 broken by name
    assert table[0][-1] == "100.00" and len(table) == 2
    worst = compare_table(single, multi, top=10).splitlines()[-1].split()
    assert worst[0] == "B-c" and worst[-1] == "-100.00" and "#Train" not in compare_table(single, multi)


def test_attribute_f1_matches_whole_values_per_attribute() -> None:
    """An attribute's F1 counts its own values, whole (a brand cut short is wrong), and only attributes that occur."""
    gold = [["B-brand", "I-brand", "O", "B-color"], ["B-color", "O"]]
    pred = [["B-brand", "O", "O", "B-color"], ["B-color", "B-type"]]
    assert attribute_f1(gold, pred) == {"brand": 0.0, "color": 1.0, "type": 0.0}
    assert attribute_f1(gold, gold) == {"brand": 1.0, "color": 1.0}
    assert attribute_f1([["B-size", "I-size", "B-size"]], [["B-size", "B-size", "B-size"]]) == {"size": 0.4}
