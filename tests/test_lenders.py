"""Lender ranking (mtl_tagger.lenders) and its validation script on synthetic verticals."""
import itertools
import json
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import experiments_stack, run_cli
from datagen import make_data_dir
from scipy.stats import spearmanr

from experiments.lenders_validation import load_gains, permutation_p, report, spearman
from mtl_tagger.conll import read_conll, write_conll
from mtl_tagger.corpus import load_task
from mtl_tagger.errors import InputError
from mtl_tagger.lenders import load_ranking, rank_lenders
from mtl_tagger.lenders import verticals as lenders_verticals
from mtl_tagger.params import Params
from mtl_tagger.vectors import read_vectors, write_vectors

SHIRT = {"sleeve": ["full sleeve", "half sleeve", "sleeveless"], "neck": ["round neck", "v neck", "collar"],
         "fabric": ["cotton", "linen", "polyester"]}


def _write_shirts(root: Path) -> None:
    """A vertical that shares no attribute name and no word with datagen's jewellery verticals."""
    rng = random.Random(3)
    (root / "Shirt").mkdir()
    for split, n in (("train", 60), ("dev", 10), ("test", 10)):
        rows = []
        for _ in range(n):
            words, tags = ["casual", "shirt"], ["O", "O"]
            for attr, values in SHIRT.items():
                value = rng.choice(values).split()
                words += value + ["with"]
                tags += [f"B-{attr}"] + [f"I-{attr}"] * (len(value) - 1) + ["O"]
            rows.append((words, tags))
        write_conll(root / "Shirt" / f"{split}.conll", rows)


@pytest.fixture(scope="module")
def verticals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """'Chain x' and 'Mangal-sutra' (same attributes and values) and 'Shirt' (nothing in common)."""
    root = make_data_dir(tmp_path_factory.mktemp("lenders"))
    _write_shirts(root)
    return root


def _tasks(root: Path) -> dict:
    return {t: load_task(root, t, False, 200) for t in ("Chain x", "Mangal-sutra", "Shirt")}


def test_related_lender_ranks_first_without_vectors(verticals: Path) -> None:
    ranking = rank_lenders(Params(data_dir=str(verticals), word_vectors=""), _tasks(verticals), "Chain x",
                           ["Shirt", "Mangal-sutra"], None)
    assert [r.lender for r in ranking] == ["Mangal-sutra", "Shirt"]
    related, unrelated = ranking
    assert related.labels > 0.3 and related.values > 0.5 and related.density is None
    assert unrelated.labels == unrelated.values == unrelated.score == 0.0


def test_with_vectors_density_and_determinism(verticals: Path, tmp_path: Path) -> None:
    words = sorted({w for d in verticals.iterdir() for s in read_conll(d / "train.conll") for w in s.tokens})
    write_vectors(tmp_path / "v.txt", words, np.random.default_rng(0).normal(size=(len(words), 32)))
    p = Params(data_dir=str(verticals), word_vectors=str(tmp_path / "v.txt"))
    pretrained = read_vectors(p.word_vectors)
    first = rank_lenders(p, _tasks(verticals), "Mangal-sutra", ["Shirt", "Chain x"], pretrained)
    assert [r.lender for r in first] == ["Chain x", "Shirt"]
    assert first[0].density > 0.5 > 0.1 > first[1].density
    assert first == rank_lenders(p, _tasks(verticals), "Mangal-sutra", ["Shirt", "Chain x"], pretrained)
    (tmp_path / "v.txt").unlink()  # the vectors given are used, not read again from p.word_vectors (run.py's)
    assert first == rank_lenders(p, _tasks(verticals), "Mangal-sutra", ["Shirt", "Chain x"], pretrained)


def test_cli_table_and_bad_input(verticals: Path) -> None:
    with ThreadPoolExecutor(2) as pool:  # two interpreter starts (TensorFlow import) side by side
        r, bad = pool.map(lambda task: run_cli("lenders", f"--data_dir={verticals}", f"--task={task}",
                                               "--word_vectors="), ["Chain x", "Necklace"])
    assert r.returncode == 0, r.stderr
    rows = [line.split("|")[1].strip() for line in r.stdout.splitlines() if line.startswith("| ")]
    assert rows == ["lender", "Mangal-sutra", "Shirt"], r.stdout
    lines = [x for x in bad.stderr.splitlines() if x.strip()]
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), bad.stderr
    assert "'Necklace'" in lines[0] and "Chain x, Mangal-sutra, Shirt" in lines[0]


def test_bad_input_in_process(verticals: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="data dir not found"):
        load_ranking(Params(data_dir=str(tmp_path / "nope")), "Chain x", ["Shirt"])
    with pytest.raises(InputError, match="borrower itself"):
        load_ranking(Params(data_dir=str(verticals)), "Chain x", ["Chain x"])
    with pytest.raises(InputError, match="'Top'"):
        load_ranking(Params(data_dir=str(verticals), word_vectors=""), "Chain x", ["Shirt", "Top"])


def test_a_vertical_is_ranked_from_its_train_conll_alone(verticals: Path, tmp_path: Path) -> None:
    """The candidates are the dirs with a train.conll, and ranking reads nothing else (dev held out as training
    does when dev.conll is missing)."""
    root = tmp_path / "data"
    shutil.copytree(verticals, root)
    for split in ("test", "dev"):
        (root / "Shirt" / f"{split}.conll").unlink()
    assert lenders_verticals(root) == ["Chain x", "Mangal-sutra", "Shirt"]
    ranking = load_ranking(Params(data_dir=str(root), word_vectors=""), "Chain x", ["Shirt", "Mangal-sutra"])
    assert [r.lender for r in ranking] == ["Mangal-sutra", "Shirt"]


@experiments_stack
def test_spearman_equals_scipy() -> None:
    x, y = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0], [2.0, 7.0, 1.0, 8.0, 2.0, 8.0]
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert spearman([1, 2, 3], [4, 4, 4]) != spearman([1, 2, 3], [4, 4, 4])  # nan: a constant has no ranking
    assert permutation_p(range(8), range(8)) < 0.001
    rho = abs(spearman(x, y))
    exact = np.mean([abs(spearman(x, q)) >= rho - 1e-12 for q in itertools.permutations(y)])
    assert permutation_p(x, y) == pytest.approx(exact, abs=0.02)


def _result(root: Path, name: str, tasks: str, mode: str, seed: int, f1: dict[str, float]) -> None:
    record = {"name": name, "params": {"tasks": tasks, "mtl_mode": mode, "seed": seed},
              "metrics": {v: {"macro_f1": f, "entity_f1": f} for v, f in f1.items()}}
    (root / f"{name}.json").write_text(json.dumps(record))


@experiments_stack
def test_validation_on_synthetic_results(verticals: Path, tmp_path: Path) -> None:
    res = tmp_path / "res"
    res.mkdir()
    for seed in (1, 2):
        _result(res, f"s{seed}.single.Chain x", "Chain x", "single", seed, {"Chain x": 0.5})
        _result(res, f"s{seed}.single.Mangal-sutra", "Mangal-sutra", "single", seed, {"Mangal-sutra": 0.4})
        _result(res, f"s{seed}.shared.Chain x+Mangal-sutra", "Chain x,Mangal-sutra", "shared", seed,
                {"Chain x": 0.5 + 0.1 * seed, "Mangal-sutra": 0.6})
    _result(res, "s1.single.Shirt", "Shirt", "single", 1, {"Shirt": 0.9})
    _result(res, "s1.shared.Chain x+Shirt", "Chain x,Shirt", "shared", 1, {"Chain x": 0.45, "Shirt": 0.8})
    _result(res, "s1.shared.Mangal-sutra+Shirt", "Mangal-sutra,Shirt", "shared", 1,
            {"Mangal-sutra": 0.3, "Shirt": 0.95})
    _result(res, "s1.shared.Chain x+Shirt@w1", "Chain x,Shirt", "shared", 1, {"Chain x": 0.0, "Shirt": 0.0})
    _result(res, "s1.coupled.Chain x+Shirt", "Chain x,Shirt", "coupled", 1, {"Chain x": 0.0, "Shirt": 0.0})
    _result(res, "s3.shared.Chain x+Shirt", "Chain x,Shirt", "shared", 3, {"Chain x": 0.0, "Shirt": 0.0})
    gains, notes = load_gains([res], "shared")
    assert gains.keys() == {("Chain x", "Mangal-sutra"), ("Mangal-sutra", "Chain x"), ("Chain x", "Shirt"),
                            ("Shirt", "Chain x"), ("Mangal-sutra", "Shirt"), ("Shirt", "Mangal-sutra")}
    assert gains[("Chain x", "Mangal-sutra")] == pytest.approx([10.0, 20.0])
    assert gains[("Shirt", "Mangal-sutra")] == pytest.approx([5.0])
    assert len(notes) == 2 and all("seed 3" in n for n in notes), notes
    p = Params(data_dir=str(verticals), word_vectors="")
    affinity = {(a, r.lender): r for a in ("Chain x", "Mangal-sutra", "Shirt")
                for r in load_ranking(p, a, [b for b in ("Chain x", "Mangal-sutra", "Shirt") if b != a])}
    text = report(gains, {k: affinity[k] for k in gains}, "shared")
    assert "| Chain x | Mangal-sutra | 2 | +15.00 ± 7.07 |" in text
    score_row = next(line for line in text.splitlines() if line.startswith("| score |"))
    # Shirt's two lenders tie at score 0, so its pick is the first listed (Chain x), which gained less.
    assert score_row.split("|")[3].strip() == "6" and score_row.endswith("| 2/3 |"), score_row
    with pytest.raises(InputError, match="second shared run"):
        _result(res, "copy", "Chain x,Shirt", "shared", 1, {"Chain x": 0.1, "Shirt": 0.1})
        load_gains([res], "shared")
