"""Model-selection rules replayed on a traced run (experiments/traced_train.py scores test at every dev
evaluation), so rules can be compared on the same runs without training again."""

RULES = {  # model-selection rules compared on the traced test curves: name → key of an evaluation
    "latest best dev macro-F1": lambda e, t: (e["dev"][t]["macro_f1"], e["step"]),
    "first best dev macro-F1": lambda e, t: (e["dev"][t]["macro_f1"], -e["step"]),
    "latest best dev (macro-F1 + entity-F1)": lambda e, t: (e["dev"][t]["macro_f1"] + e["dev"][t]["entity_f1"],
                                                           e["step"]),
    "latest best dev entity-F1": lambda e, t: (e["dev"][t]["entity_f1"], e["step"]),
    "last step": lambda e, t: (e["step"],),
}


def picked(result: dict, rule: str) -> dict:
    """The test metrics at the evaluation a selection rule picks from the run's traced history."""
    evaluations = result["history"]["evaluations"]
    best = max(evaluations, key=lambda e: RULES[rule](e, result["vertical"]))
    return best["test"][result["vertical"]]
