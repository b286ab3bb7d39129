"""The sweep runner and the collector on synthetic verticals: results per run, resumability, tables; the scripts'
shared conventions: one result schema, no flags defined at import, every results page listed with its command."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, experiments_stack, smoke_params

from experiments import calibration as calibration_study
from experiments.all12 import _checks
from experiments.common import one_tag_prior, read_result, single, traced_run, trained_on
from experiments.defaults import _both
from experiments.make_sweep import runs as sweep_runs
from experiments.selection_rules import picked
from experiments.small_data import subsample
from experiments.tag_prior import HEADER, crf_row, rescored, rows
from experiments.unseen_words import (
    DROPPED,
    EVERY,
    FALSE_ON_DEV,
    FLOOR,
    HALF,
    PENALTY,
    UNSEEN,
    crossfit_dropped,
    decoded,
    dropped,
    false_attributes,
    floored,
    gold_classes_macro_f1,
    never_row,
    penalised,
    value_kinds,
)
from mtl_tagger.conll import read_conll
from mtl_tagger.corpus import load_task
from mtl_tagger.metrics import evaluate_tags
from mtl_tagger.params import Params, read_flagfile
from mtl_tagger.tagger import Tagger
from mtl_tagger.train import train

pytestmark = experiments_stack


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900)


def test_sweep_then_collect(data_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    base = f"--flagfile=flags/smoke.cfg\n--data_dir={data_dir}\n--epochs=1\n"
    runs = {"s1.single.Chain x": "--tasks=Chain x\n--mtl_mode=single\n",
            "s1.single.Mangal-sutra": "--tasks=Mangal-sutra\n--mtl_mode=single\n",
            "s1.shared.Chain x+Mangal-sutra": "--tasks=Chain x,Mangal-sutra\n--mtl_mode=shared\n",
            "s1.coupled.Chain x+Mangal-sutra": "--tasks=Chain x,Mangal-sutra\n--nocoupling_within\n"}
    for name, text in runs.items():
        (sweep / f"{name}.cfg").write_text(base + text)
    args = [f"--sweep_dir={sweep}", f"--runs_dir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'res'}", "--jobs=2"]
    r = _run("experiments.sweep", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {p.name for p in (tmp_path / "res").glob("*.json")} == {f"{n}.json" for n in runs}
    single = json.loads((tmp_path / "res" / "s1.single.Chain x.json").read_text())
    assert single["metrics"]["Chain x"]["selected_step"] == single["history"]["best"]["Chain x"]["step"]
    again = _run("experiments.sweep", *args)
    assert "4 finished, 0 to run" in again.stdout, "finished runs are never run again"
    variant = json.loads((tmp_path / "res" / "s1.coupled.Chain x+Mangal-sutra.json").read_text())
    variant["name"] += "@ls"  # a variant's result, as a sweep config named so writes it
    variant["params"]["coupling_score"] = "log_softmax"
    (tmp_path / "res" / f"{variant['name']}.json").write_text(json.dumps(variant))

    crf = tmp_path / "crf"
    crf.mkdir()
    for v in ("Chain x", "Mangal-sutra"):  # a stand-in for experiments/crf_baseline.py's result files
        metrics = {"macro_f1": 0.5, "entity_f1": 0.6, "entity_precision": 0.7, "entity_recall": 0.525}
        (crf / f"{v}.json").write_text(json.dumps({"metrics": metrics}))
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- collect: begin -->\nold\n<!-- collect: end -->\ntail\n")
    r = _run("experiments.collect", f"--results_dir={tmp_path / 'res'}", f"--out={tmp_path / 'out'}",
             f"--data_dir={data_dir}", f"--crf_dir={crf}", f"--readme={readme}")
    assert r.returncode == 0, r.stderr
    block = readme.read_text()
    assert "old" not in block and block.endswith("<!-- collect: end -->\ntail\n")
    assert "| Chain x | 120 | 50.0 / 60.0 |" in block, "the CRF's cell leads the summary row"
    table3 = (tmp_path / "out" / "table3.md").read_text()
    row = next(line for line in table3.splitlines() if line.startswith("| Chain x | 120 | 50.00 |"))
    assert row.count("(Chain x+Mangal-sutra)") == 4, "best pair on dev and on test, shared and coupled"
    assert "| CRF entity_f1 | 60.00 | 60.00 | 60.00 |" in table3
    assert "| CRF entity_recall | 52.50 | 52.50 | 52.50 |" in table3
    assert "Chain x+Mangal-sutra@ls" not in table3, "variant runs stay out of Table 3"
    table4 = (tmp_path / "out" / "table4.md").read_text()
    assert "## Chain x" in table4 and "## Gain by training frequency" in table4
    fig4 = (tmp_path / "out" / "fig4.md").read_text()
    assert "| Chain x | Mangal-sutra |" in fig4 and "| Mangal-sutra | Chain x |" in fig4
    assert (tmp_path / "out" / "fig4" / "Chain x__Mangal-sutra.png").is_file()

    variants = tmp_path / "out" / "coupling.md"
    r = _run("experiments.coupling_variants", f"--baseline_dir={tmp_path / 'res'}", f"--results_dir={tmp_path / 'res'}",
             f"--data_dir={data_dir}", f"--out={variants}")
    assert r.returncode == 0, r.stderr
    text = variants.read_text()
    assert "| Chain x+Mangal-sutra | Chain x |" in text and "| ls | --coupling_score=log_softmax |" in text

    every = tmp_path / "all"  # a stand-in for the twelve-vertical runs: the shared pair run is one over every vertical
    every.mkdir()
    (every / "s1.shared.all.json").write_bytes((tmp_path / "res" / "s1.shared.Chain x+Mangal-sutra.json").read_bytes())
    r = _run("experiments.all12", f"--table3_dir={tmp_path / 'res'}", f"--results_dir={every}",
             f"--out={tmp_path / 'out' / 'all12.md'}")
    assert r.returncode == 0, r.stderr
    shared = [f"{json.loads((every / 's1.shared.all.json').read_text())['metrics'][v]['macro_f1'] * 100:.2f} (n=1)"
              for v in ("Chain x", "Mangal-sutra")]
    test, rest = r.stdout.split("\nDev macro-F1")[:2]  # the test table, then the dev table, checks, entity-F1
    dev, rest = rest.split("\nAgainst single-task")
    entity = rest.split("\nTest entity-F1")[1].split("\nThe same checks")[0]
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in test.splitlines() if line.startswith("| ")}
    assert rows["vertical"][2:4] == ["best pair, coupled", "all 12, shared"]
    assert rows["Chain x"][3] == shared[0] and rows["Mangal-sutra"][3] == shared[1], "each column under its header"
    assert rows["Chain x"][4] == "– |" and rows["mean over the 2 verticals with every measured cell"][4] == "– |"
    dev_rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in dev.splitlines() if line.startswith("| ")}
    run = json.loads((every / "s1.shared.all.json").read_text())
    assert dev_rows["Chain x"][3] == f"{run['metrics']['Chain x']['dev_macro_f1'] * 100:.2f} (n=1)", "dev, not test"
    entity_rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in entity.splitlines()
                   if line.startswith("| ")}
    assert entity_rows["Chain x"][3] == f"{run['metrics']['Chain x']['entity_f1'] * 100:.2f} (n=1)"
    coupled = tmp_path / "coupled"  # a variant column takes shared runs only
    coupled.mkdir()
    pair_run = tmp_path / "res" / "s1.coupled.Chain x+Mangal-sutra.json"
    (coupled / "s1.coupled.all.json").write_bytes(pair_run.read_bytes())
    r = _run("experiments.all12", f"--table3_dir={tmp_path / 'res'}", f"--results_dir={every}", f"--variant=v:{every}",
             f"--variant=c:{coupled}", f"--out={tmp_path / 'out' / 'variants.md'}")
    assert r.returncode == 2 and "s1.coupled.all.json is a coupled run" in r.stderr, r.stderr
    r = _run("experiments.all12", f"--table3_dir={tmp_path / 'res'}", f"--results_dir={every}", f"--variant=v:{every}",
             f"--out={tmp_path / 'out' / 'variants.md'}")
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in r.stdout.split("\nDev macro-F1")[0].splitlines()
            if line.startswith("| ")}
    assert rows["vertical"][5] == "all 12, shared, v |" and rows["Chain x"][5] == shared[0] + " |", rows
    mixed = tmp_path / "mixed"  # twelve-vertical runs decoded with another tag prior than the Table 3 runs
    mixed.mkdir()
    other = json.loads((every / "s1.shared.all.json").read_text())
    other["params"]["tag_prior"] = Params.from_json(other["params"]).tag_prior + 1
    (mixed / "s1.shared.all.json").write_text(json.dumps(other))
    r = _run("experiments.all12", f"--table3_dir={tmp_path / 'res'}", f"--results_dir={mixed}",
             f"--out={tmp_path / 'out' / 'mixed.md'}")
    assert r.returncode != 0 and "the runs decode with --tag_prior" in r.stderr, r.stderr
    assert not (tmp_path / "out" / "mixed.md").exists()

    single = tmp_path / "runs" / "s1.single.Chain x"
    test = json.loads((single / "metrics.json").read_text())["Chain x"]
    crf = tmp_path / "crf_for_confidence"
    crf.mkdir()
    (crf / "Chain x.json").write_text(json.dumps({"metrics": {**test, "entity_f1": 0.125}}))
    r = _run("experiments.confidence", f"--model_dirs={single}", "--thresholds=1.01,0.5", f"--crf_dir={crf}")
    assert r.returncode == 0, r.stderr
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in r.stdout.splitlines() if line.startswith("| ")}
    assert rows["0"][0] == f"{test['macro_f1'] * 100:.2f}", "nothing dropped: the run's own test score"
    assert rows["1.01"][1] == "0.00", "everything dropped: no entity"
    assert rows["chosen on dev"] in (rows["0"], rows["0.5"], rows["1.01"]), "the dev choice is one of the grid's"
    pooled = [k for k in rows if k.startswith("one for all runs, chosen on their mean dev score (")]
    assert len(pooled) == 1 and rows[pooled[0]] == rows[pooled[0].split("(")[1][:-1]], "the row of the named threshold"
    assert rows["CRF (experiments/crf_baseline.py)"][1] == "12.50"


def test_make_sweep_variants() -> None:
    runs = sweep_runs(["1", "2"], "flags/sweep.cfg", pairs=[("Dress", "Jean")], modes=("coupled",),
                      variants=(("w1", ["--window=1"]), ("cw01", ["--coupling_weight=0.1", "--window=1"])))
    assert sorted(runs) == ["s1.coupled.Dress+Jean@cw01", "s1.coupled.Dress+Jean@w1",
                            "s2.coupled.Dress+Jean@cw01", "s2.coupled.Dress+Jean@w1"]
    assert runs["s2.coupled.Dress+Jean@cw01"].endswith("--nocoupling_within\n--seed=2\n--coupling_weight=0.1\n"
                                                         "--window=1\n"), "coupled runs sample as the paper does"
    assert len(sweep_runs(["1"], "flags/sweep.cfg")) == 26, "Table 3: 10 singles + 8 pairs × 2 modes per seed"
    assert len(sweep_runs(["1"], "flags/sweep.cfg", singles=("Bangle", "Top"))) == 28


def test_the_tables_flagfile_is_what_a_plain_train_gets() -> None:
    """flags/sweep.cfg (with the flags/paper.cfg it starts from) sets every field it names to the Params default,
    as its header and the README promise: a default changed in one place only fails here."""
    differs = {k: v for k, v in read_flagfile(REPO / "flags" / "sweep.cfg").items() if getattr(Params(), k) != v}
    assert differs == {}


def test_selection_rules_pick_their_own_evaluation() -> None:
    def evaluation(step: int, macro: float, entity: float) -> dict:
        return {"step": step, "dev": {"V": {"macro_f1": macro, "entity_f1": entity}}, "test": {"V": {"step": step}}}
    history = [evaluation(50, 0.5, 0.9), evaluation(100, 0.7, 0.6), evaluation(150, 0.7, 0.5),
               evaluation(200, 0.6, 0.85)]
    result = {"metrics": {"V": {}}, "history": {"evaluations": history}}
    assert picked(result, "latest best dev macro-F1") == {"step": 150}
    assert picked(result, "first best dev macro-F1") == {"step": 100}
    assert picked(result, "latest best dev (macro-F1 + entity-F1)") == {"step": 200}
    assert picked(result, "latest best dev entity-F1") == {"step": 50}
    assert picked(result, "last step") == {"step": 200}
    # dev macro-F1 0.5, 0.7, 0.7, 0.6; window means: trailing 2 0.5, 0.6, 0.7, 0.65; trailing 3 0.5, 0.6, 0.633, 0.667;
    # centred 3 0.6, 0.633, 0.667, 0.65
    assert picked(result, "trailing 2") == {"step": 150}
    assert picked(result, "trailing 3") == {"step": 200}
    assert picked(result, "centred 3") == {"step": 150}
    # a first evaluation that is the best alone: windows are cut at the ends, not padded (padding would halve it)
    history = [evaluation(50 * (i + 1), macro, 0.5) for i, macro in enumerate([0.9, 0.2, 0.8, 0.8, 0.7])]
    result = {"metrics": {"V": {}}, "history": {"evaluations": history}}
    assert picked(result, "trailing 2") == {"step": 50}  # means 0.9, 0.55, 0.5, 0.8, 0.75
    assert picked(result, "centred 3") == {"step": 200}  # means 0.55, 0.633, 0.6, 0.767, 0.75


def test_the_loops_rule_replayed_is_the_step_each_committed_run_was_tested_at() -> None:
    # selection_rules.md compares every rule with its replay of the loop's; the replay must pick the evaluation
    # the loop selected, whose test metrics the run recorded (the trace rounds them to 6 digits)
    paths = sorted((REPO / "experiments" / "results").glob("small_data*/*.s[0-9].json"))
    assert len(paths) > 100
    for path in paths:
        result = read_result(path)
        vertical, recorded = single(result)
        replayed = picked(result, "latest best dev macro-F1")
        assert all(abs(replayed[k] - recorded[k]) <= 1e-6 for k in ("macro_f1", "entity_f1")), path.name


def test_tag_prior_rescoring_at_weight_0_is_the_model(chain_epoch: Path, data_dir: Path, tmp_path: Path) -> None:
    train(smoke_params(data_dir, tmp_path / "m", epochs=1, tag_prior=0.0, snap_values=False))
    [run] = rescored(str(tmp_path / "m"), [0.0, 2.0], [])
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())["Chain x"]
    assert run["task"] == "Chain x" and run["scores"][0.0]["test"]["macro_f1"] == pytest.approx(metrics["macro_f1"])
    assert set(run["scores"][2.0]) == {"dev", "test"} and "snapped" not in run
    [run] = rescored(str(tmp_path / "m"), [0.0], [], snap=True)
    assert set(run["snapped"][0.0]) == {"dev", "test"}
    assert rescored(str(tmp_path / "m"), [0.0], ["Mangal-sutra"]) == []
    with pytest.raises(ValueError, match="tag_prior=0.5"):
        rescored(str(chain_epoch), [0.0], [])


def test_unseen_words_kinds_of_values() -> None:
    """True, boundary, other-attribute and made-up values, each told apart by whether it holds an unseen word."""
    tokens = ["Zaveri", "Pearls", "gold", "plated", "new", "ring"]
    gold = ["B-brand", "I-brand", "B-plating", "I-plating", "O", "O"]
    pred = ["B-brand", "O", "B-color", "I-color", "B-type", "B-type"]
    got = value_kinds(tokens, gold, pred, seen={"Zaveri", "gold", "plated", "ring"})
    assert got == {("boundary", False): 1, ("other attribute", False): 1, ("made up", True): 1,
                   ("made up", False): 1}
    assert value_kinds(tokens, gold, gold, seen=set()) == {("true", True): 2}


def test_unseen_words_penalty_0_is_the_model(chain_epoch: Path, data_dir: Path) -> None:
    """At δ = 0 and at floor 0 the model decodes as it was selected; a huge δ leaves no value at an unseen word, and
    a floor (one, or per attribute) drops only the values at unseen words whose confidence is below it, or every
    such value with `everywhere`; the floors at half the dev F1 only ever drop values."""
    [run] = decoded(str(chain_epoch), [0.0, 1e4], [0.0], half_f1=True, false_on_dev=True)
    metrics = json.loads((chain_epoch / "metrics.json").read_text())["Chain x"]
    assert run["metrics"][PENALTY, 0.0]["test"]["macro_f1"] == pytest.approx(metrics["macro_f1"])
    assert run["metrics"][FLOOR, 0.0] == run["metrics"][PENALTY, 0.0]
    for split in ("dev", "test"):
        recall = [run["metrics"][k][split]["entity_recall"] for k in ((PENALTY, 0.0), (HALF, UNSEEN), (HALF, EVERY))]
        assert recall == sorted(recall, reverse=True), "a floor drops values; every value's floor drops the most"
        assert run["metrics"][DROPPED, FALSE_ON_DEV][split]["entity_recall"] <= recall[0]
    assert sum(run["kinds"].values()) > 0
    tokens, tags = ["gold", "Zyx", "chain", "x"], ["B-color", "I-color", "O", "B-type"]
    conf, seen = [0.9, 0.4, 1.0, 0.2], {"gold", "chain", "x"}
    assert floored(tokens, tags, conf, seen, 0.5) == ["O", "O", "O", "B-type"]
    assert floored(tokens, tags, conf, seen, 0.3) == tags
    assert floored(tokens, tags, conf, seen, {"type": 0.3}, everywhere=True) == ["B-color", "I-color", "O", "O"]
    assert floored(tokens, tags, conf, seen, {"color": 0.5, "type": 0.3}) == ["O", "O", "O", "B-type"]
    tagger = Tagger.load(chain_epoch)
    sentences = read_conll(data_dir / "Chain x" / "test.conll")
    words = [s.tokens for s in sentences]
    seen = set(words[0][1:])  # every word unseen but these
    delta = penalised(tagger, "Chain x", seen)
    assert any(t != "O" for tokens, tags in zip(words, tagger.predict(words, "Chain x"))
               for w, t in zip(tokens, tags) if w not in seen)
    delta.assign(1e4)
    for tokens, tags in zip(words, tagger.predict(words, "Chain x")):
        assert all(t == "O" for w, t in zip(tokens, tags) if w not in seen)


def test_attributes_never_right_on_dev_are_dropped_and_cross_fitted_on_dev() -> None:
    """An attribute is dropped when it is predicted and never right; on dev each half of the sentences is decoded
    without the attributes the other half finds never right."""
    gold = [["B-a", "O", "B-b"], ["B-a", "O", "O"], ["O", "B-c", "O"], ["B-b", "O", "O"]]
    pred = [["B-a", "B-c", "O"], ["B-a", "O", "B-b"], ["O", "B-c", "B-b"], ["O", "O", "O"]]
    assert false_attributes(gold, pred) == {"b"}
    assert false_attributes(gold[:2], pred[:2]) == {"b", "c"}, "c is right only in the third sentence"
    assert dropped(pred[2], {"c"}) == ["O", "O", "B-b"] and dropped(pred[2], {"b"}) == ["O", "B-c", "O"]
    assert crossfit_dropped(gold, pred) == [pred[0], ["B-a", "O", "O"], ["O", "B-c", "O"], pred[3]]
    metrics = evaluate_tags(gold, pred)  # every tag predicted is a gold one; then one that gold never holds
    spurious = evaluate_tags([*gold, ["O"]], [*pred, ["B-d"]])
    assert spurious["macro_f1"] < metrics["macro_f1"]
    assert gold_classes_macro_f1(spurious) == pytest.approx(gold_classes_macro_f1(metrics)) == metrics["macro_f1"]
    assert "0.33 / 1.00 | 50.00 /" in never_row("x", [0, 1, 0], [1], [{"macro_f1": 0.5, "per_tag": {}}])


def test_calibration_study_reads_old_vocabularies_and_pools_unseen_values_apart(chain_epoch: Path) -> None:
    """A model whose vocab.json predates train_words gets it from its training split, as Vocab.build counted it;
    the table's unseen row pools only the values at unseen words."""
    tagger = Tagger.load(chain_epoch, calibrated=False)
    want, tagger.vocab.train_words = tagger.vocab.train_words, None
    p = tagger.params
    calibration_study.training_words(tagger, {"Chain x": load_task(p.data_dir, "Chain x", p.strict_bio, p.max_len)})
    assert tagger.vocab.train_words == want > 0
    right, unseen = np.array([True, False, True, False]), np.array([False, True, True, False])
    outcomes = [({m: np.array([0.9, 0.8, 0.7, 0.6]) for m in calibration_study.METHODS}, right, unseen)]
    every, apart = (calibration_study.rows("50 rand", outcomes, u).split(" | ") for u in (False, True))
    assert every[:2] == ["| 50 rand", "4"] and apart[:2] == ["| 50 rand, at an unseen word", "2"]
    assert float(apart[2]) == pytest.approx(abs(0.8 - 0.0) / 2 + abs(0.7 - 1.0) / 2)


def test_tag_prior_rows_average_per_seed_then_over_seeds() -> None:
    def run(seed: int, score: float) -> dict:
        return {"task": "V", "seed": seed, "scores": {0.5: {
            "dev": {"macro_f1": score, "entity_f1": score + 0.01},
            "test": {"macro_f1": score + 0.02, "entity_precision": score + 0.03, "entity_f1": score + 0.04}}}}
    runs = [run(1, 0.1), run(1, 0.3), run(1, 0.5), run(2, 0.6), run(3, 0.5)]
    [row] = rows("g", runs, [0.5])
    # per-seed means 0.3, 0.6, 0.5: mean 0.4667 (the mean over runs would be 0.4), std 0.1528
    assert row == ("| g | 0.5 | 46.67 ± 15.28 | 47.67 ± 15.28 | 48.67 ± 15.28 | 49.67 ± 15.28 | "
                   "50.67 ± 15.28 |")
    assert row.count("|") == HEADER.count("|")
    crf = crf_row({"A": {"macro_f1": 0.5, "entity_precision": 0.7, "entity_f1": 0.6},
                   "B": {"macro_f1": 0.7, "entity_precision": 0.9, "entity_f1": 0.8}})
    # no weight, blank dev cells, then test macro-F1, entity precision, entity-F1, as HEADER has them
    assert [c.strip() for c in crf.strip("|").split("|")][1:] == ["", "", "", "60.00", "80.00", "70.00"]
    assert crf.count("|") == HEADER.count("|")


def test_tables_refuse_runs_decoded_with_different_tag_priors() -> None:
    old = Params.from_json({"tasks": "A"})  # a result file from before the tag prior: no tag_prior field
    one_tag_prior([old, Params(tasks="B", tag_prior=0.0)], "res")
    with pytest.raises(SystemExit, match="res: the runs decode with --tag_prior 0.0 and 0.5"):
        one_tag_prior([old, Params(tasks="B")], "res")


def test_pages_name_each_machine_and_dtype_their_runs_trained_on_once() -> None:
    amd = {"machine": "AMD EPYC × 2", "params": {"matmul_dtype": "auto"}}
    old = {"params": {"tasks": "A"}}  # from before machines and --matmul_dtype were recorded: float32 then
    assert trained_on([amd, amd]) == "AMD EPYC × 2 (matmul_dtype auto)"
    assert trained_on([amd, old]) == "AMD EPYC × 2 (matmul_dtype auto); machine not recorded (matmul_dtype float32)"
    assert trained_on([]) == "–"


def test_whole_catalog_checks_name_verticals_below_single_by_more_than_its_seed_spread() -> None:
    rows = {"A": {"single": [0.80, 0.82, 0.84], "all": [0.805, 0.805, 0.805]},  # 1.5 under, within the std (2)
            "B": {"single": [0.60, 0.60, 0.63], "all": [0.55, 0.56, 0.57]},  # 5 under, std 1.73
            "C": {"single": [0.50], "all": [0.10]}}  # one seed: no spread, not judged
    assert _checks(rows, "all", ["A", "B"]) == "-3.25 | B (-5.00)"
    assert _checks({"A": rows["A"]}, "all", ["A"]) == "-1.50 | none"


def test_defaults_paired_cells_are_means_in_percent() -> None:
    """Each side of a defaults table's `a / b` cell is the mean of its own key; no values give dashes."""
    ms = [{"macro_f1": 0.5, "entity_f1": 0.8, "entity_recall": 0.1},
          {"macro_f1": 0.7, "entity_f1": 0.9, "entity_recall": 0.3}]
    assert _both(ms) == "60.00 / 85.00"
    assert _both(ms, "entity_recall", "macro_f1") == "20.00 / 60.00"
    assert _both([]) == "– / –"


def test_small_data_subsamples_nest_and_leave_dev_and_test_alone(data_dir: Path, tmp_path: Path) -> None:
    kept = subsample(data_dir, tmp_path, [5, 40, 10**6], seed=1)
    assert kept == {5: ["Chain x", "Mangal-sutra"], 40: ["Chain x", "Mangal-sutra"], 10**6: []}
    for v in kept[5]:
        small, large = (read_conll(tmp_path / f"n{n}" / v / "train.conll") for n in (5, 40))
        assert len(small) == 5 and len(large) == 40
        assert {tuple(s.tokens) for s in small} <= {tuple(s.tokens) for s in large}
        assert {tuple(s.tokens) for s in large} <= {tuple(s.tokens) for s in read_conll(data_dir / v / "train.conll")}
        for split in ("dev.conll", "test.conll"):
            assert (tmp_path / "n5" / v / split).read_bytes() == (data_dir / v / split).read_bytes()
    again = tmp_path / "again"
    subsample(data_dir, again, [5], seed=1)
    chain = Path("n5") / "Chain x" / "train.conll"
    assert (again / chain).read_bytes() == (tmp_path / chain).read_bytes(), "the same seed, the same subsample"


def test_study_runs_go_through_the_one_run_writer(data_dir: Path, tmp_path: Path) -> None:
    """A study's traced run is written by common.run_one in the sweep's schema, labelled, with the test curve."""
    runs, results = tmp_path / "runs", tmp_path / "res"
    runs.mkdir()
    results.mkdir()
    r = traced_run("base", ["--epochs=1"], "Chain x", "2", runs, results, "flags/smoke.cfg", str(data_dir), "", False)
    assert r is not None, (runs / "base.Chain x.s2.log").read_text()
    assert r == read_result(results / "base.Chain x.s2.json"), "the result it returns is the file it wrote"
    assert r["variant"] == "base" and r["params"]["seed"] == 2 and r["params"]["word_vectors"] == ""
    vertical, metrics = single(r)
    assert vertical == "Chain x" and metrics["selected_step"] == r["history"]["best"]["Chain x"]["step"]
    assert picked(r, "last step").keys() == {"macro_f1", "entity_f1"}, "the traced history scores test"
    again = traced_run("base", ["--epochs=1"], "Chain x", "2", runs, results, "flags/smoke.cfg", str(data_dir), "",
                       False)
    assert again == r, "a run with a result file is read back, not trained again"


def test_study_files_of_the_old_schema_read_as_the_one_schema(tmp_path: Path) -> None:
    history = {"evaluations": [{"step": 50, "dev": {"V": {"macro_f1": 0.5}}}], "best": {"V": {"step": 50}}}
    old = {"name": "rand50.V.s3", "variant": "rand50", "vertical": "V", "seed": 3, "flags": ["--word_vectors="],
           "command": "-m experiments.traced_train --task_a=V", "date": "2026-11-29", "wall_seconds": 1.0,
           "steps": 50, "selected": {"macro_f1": 0.25, "selected_step": 50}, "history": history}
    (tmp_path / "old.json").write_text(json.dumps(old))
    r = read_result(tmp_path / "old.json")
    assert single(r) == ("V", old["selected"]) and r["params"]["seed"] == 3 and r["variant"] == "rand50"
    assert r["history"] == history and r["analysis"] is None
    new = {**r, "commit": "abc", "params": {"tasks": "V", "seed": 3}}
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert read_result(tmp_path / "new.json") == new, "a file of the one schema is read as it is"


_SCRIPT_FLAGS = """
import importlib, json, pathlib
import tensorflow
from absl import app, flags
library = set(flags.FLAGS)  # what absl and TensorFlow define, before any script is imported
modules = [p.stem for p in sorted(pathlib.Path("experiments").glob("*.py")) if p.stem != "__init__"]
loaded = {}
for m in modules:
    try:
        loaded[m] = importlib.import_module("experiments." + m)
    except ModuleNotFoundError as e:  # an optional extra (the peer's torch)
        if e.name.startswith("experiments"):
            raise
at_import = sorted(set(flags.FLAGS) - library)
defined = {}
for m, module in loaded.items():
    if hasattr(module, "define_flags"):
        before = set(flags.FLAGS)
        module.define_flags()
        defined[m] = sorted(set(flags.FLAGS) - before)
        for name in defined[m]:
            delattr(flags.FLAGS, name)
print(json.dumps({"at_import": at_import, "defined": defined, "modules": modules}))
"""


@pytest.fixture(scope="module")
def script_flags() -> dict:
    """Every experiments script imported in one process: the flags defined at import, and each one's define_flags."""
    r = subprocess.run([sys.executable, "-c", _SCRIPT_FLAGS], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def test_scripts_define_flags_only_when_run(script_flags: dict) -> None:
    assert script_flags["at_import"] == [], "importing a script defines no flags (so scripts can import each other)"
    assert "sweep" in script_flags["defined"] and "collect" in script_flags["defined"]


def _readme_commands() -> list[list[str]]:
    """The commands of experiments/results/README.md's code blocks, as argv lists (continuation lines joined)."""
    text = (REPO / "experiments" / "results" / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            if line.strip():
                commands.append(shlex.split(line, comments=True))
    return commands


def test_results_readme_lists_every_page_with_a_command_that_exists(script_flags: dict) -> None:
    results = REPO / "experiments" / "results"
    readme = (results / "README.md").read_text(encoding="utf-8")
    listed = "\n".join(line for line in readme.splitlines() if re.match(r"\d+\. \*\*", line.strip()) or
                       line.startswith("   ") and "**" in line)
    for entry in sorted(p.name for p in results.iterdir() if p.name != "README.md"):
        assert re.search(rf"[`\[(]{re.escape(entry)}[`/\])*]", listed), f"{entry}: no entry of the list names it"
    commands = _readme_commands()
    assert len(commands) >= 25
    trains = [argv for argv in commands if argv[:3] == ["python", "-m", "mtl_tagger.train"]]  # models pages read
    for argv in trains:
        for arg in argv[3:]:
            name = arg[2:].split("=", 1)[0]
            assert name == "flagfile" or name in Params.__dataclass_fields__, f"mtl_tagger.train: no flag --{name}"
    for argv in (a for a in commands if a not in trains):
        assert argv[:2] == ["python", "-m"] and argv[2].startswith("experiments."), argv
        script = argv[2].removeprefix("experiments.")
        assert script in script_flags["modules"], f"{script}: no such script"
        defined = set(script_flags["defined"].get(script, []))
        for arg in argv[3:]:
            name = arg[2:].split("=", 1)[0]
            assert name in defined or name.removeprefix("no") in defined, f"{' '.join(argv[:3])}: no flag --{name}"
