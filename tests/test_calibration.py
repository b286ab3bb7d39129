"""Calibration of confidence: the value-level ECE and the two maps against known answers, then a trained model:
calibration.json and its diagram, the same tags before and after on every test sentence, old models unchanged."""
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_bad_input import assert_one_error_line

from mtl_tagger import Tagger, calibration
from mtl_tagger.conll import chunks, read_conll, tag_structure
from mtl_tagger.errors import InputError

TASK = "Chain x"


def test_ece_and_bins_on_known_values() -> None:
    confidence = np.array([0.95] * 10 + [0.35] * 10)
    right = np.array([True] * 5 + [False] * 5 + [True] * 3 + [False] * 7)
    assert calibration.ece(confidence, right) == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    assert calibration.ece(np.array([0.9] * 10), np.array([True] * 9 + [False])) == pytest.approx(0.0)
    assert calibration.ece(np.array([]), np.array([], bool)) == 0.0
    filled = [b for b in calibration.bins(confidence, right) if b["values"]]
    assert [(b["low"], b["values"], b["precision"]) for b in filled] == [(0.3, 10, 0.3), (0.9, 10, 0.5)]
    assert calibration.bins(np.array([1.0]), np.array([True]))[-1]["values"] == 1, "1.0 falls in the last bin"


def test_platt_recovers_a_known_map_and_stays_increasing() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(2.0, 2.0, 20000)
    raw = 1 / (1 + np.exp(-z))
    right = rng.random(z.size) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))
    a, b = calibration.fit_platt(raw, right)
    assert a == pytest.approx(0.5, abs=0.03) and b == pytest.approx(-1.0, abs=0.05)
    assert calibration.ece(calibration.platt(raw, a, b), right) < 0.01 < calibration.ece(raw, right)
    a, b = calibration.fit_platt(np.array([0.9, 0.99, 0.999]), np.array([True, True, True]))
    assert np.isfinite([a, b]).all() and a > 0, "all-right dev values still give a finite increasing map"
    grid = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(calibration.platt(grid, a, b)) > 0)
    a, b = calibration.fit_platt(raw, right, steepest=0.25)  # the free fit's 0.5 is steeper: b alone is fitted
    assert a == 0.25
    loss = [calibration.log_loss(calibration.platt(raw, 0.25, b + d), right) for d in (-0.02, 0.0, 0.02)]
    assert loss[1] < min(loss[0], loss[2])
    assert calibration.fit_platt(raw, right, steepest=2.0) == calibration.fit_platt(raw, right)


def test_no_dev_value_gives_the_identity(chain_model: Path) -> None:
    """A dev split on which the model extracts nothing (here: no sentence) leaves the confidence as it is."""
    tagger = Tagger.load(chain_model, calibrated=False)
    for method in calibration.METHODS:
        assert calibration.fit(tagger, [], TASK, method) == calibration.Calibration(method)


def test_marginals_at_many_temperatures_equal_one_temperature_at_a_time(chain_model: Path, data_dir: Path) -> None:
    """Calibration's search takes the marginals at every grid temperature from one pass of the network: the same
    tags, and the same confidences as tagging at each temperature alone, on every dev and test sentence."""
    tagger = Tagger.load(chain_model, calibrated=False)
    sentences = read_conll(data_dir / TASK / "dev.conll") + read_conll(data_dir / TASK / "test.conll")
    tokens = [s.tokens for s in sentences] + [[]]  # and an empty sentence
    grid = calibration.TEMPERATURES[::6]
    tags, at_once = tagger.tag(tokens, TASK, temperature=grid)
    assert at_once[-1] == [[]] * len(grid)
    for bad in (0.0, [1.0, -2.0], [], [[1.0, 2.0]]):
        with pytest.raises(InputError, match="must be positive"):
            tagger.tag(tokens, TASK, temperature=bad)
    for k, t in enumerate(grid):
        alone_tags, alone = tagger.tag(tokens, TASK, temperature=float(t))
        assert alone_tags == tags
        assert len({s for c in alone for s in c}) > 2, "the confidences differ from token to token"
        for one, many in zip(alone, at_once, strict=True):
            np.testing.assert_allclose(many[k], one, rtol=1e-6, atol=1e-7)
    gold = [s.tags for s in sentences]
    one_by_one = [calibration.value_outcomes(gold, *tagger.tag(tokens[:-1], TASK, temperature=float(t))) for t in grid]
    right = one_by_one[0][1]
    chosen = calibration.fit(tagger, sentences, TASK, "temperature", grid).temperature
    assert chosen == calibration.fit_temperature([raw for raw, _ in one_by_one], right, grid)


def test_temperature_is_the_grid_point_of_least_log_loss() -> None:
    right = np.array([True, True, False, True])
    chosen = calibration.fit_temperature([np.full(4, 1 - 0.2 * t / 10) for t in calibration.TEMPERATURES], right)
    assert chosen == pytest.approx(min(calibration.TEMPERATURES, key=lambda t: abs(0.2 * t / 10 - 0.25)), rel=0.2)


def test_temperature_never_sharpens() -> None:
    """Dev values all right would pull the log loss toward T < 1, a sharper, more over-confident CRF: the grid stops
    at 1."""
    right = np.ones(30, bool)
    assert calibration.fit_temperature([np.full(30, 0.9 ** t) for t in calibration.TEMPERATURES], right) == 1.0
    grid = np.geomspace(0.5, 64, 29)
    assert calibration.fit_temperature([np.full(30, 0.9 ** t) for t in grid], right, grid) == 0.5
    assert min(calibration.TEMPERATURES) == 1.0


def test_in_unseen_values_marks_every_token_of_a_value_with_an_unseen_word() -> None:
    tags = ["B-brand", "I-brand", "O", "B-color", "B-color", "I-color", "O"]
    trained = np.array([True, False, False, True, True, True, False])
    structure = tag_structure(tags)
    assert calibration.in_unseen_values(*structure, trained).tolist() == [True, True, False, False, False, False, False]
    assert calibration.in_unseen_values(*structure, np.ones(7, bool)).tolist() == [False] * 7
    assert calibration.in_unseen_values(*tag_structure([]), np.zeros(0, bool)).tolist() == []
    rng = np.random.default_rng(2)  # against conll.chunks, on random tag sequences, invalid BIO among them
    for _ in range(300):
        tags = list(rng.choice(["O", "B-a", "I-a", "B-b", "I-b"], int(rng.integers(1, 12))))
        trained = rng.random(len(tags)) < 0.7
        want = np.zeros(len(tags), bool)
        for _, a, b in chunks(tags):
            want[a:b] = not trained[a:b].all()
        assert calibration.in_unseen_values(*tag_structure(tags), trained).tolist() == want.tolist()


def test_the_second_map_lowers_the_unseen_values_alone_and_never_raises() -> None:
    """Dev values holding an unseen word are right half the time at 0.9, the others 90% of the time: the second map
    brings the first near 0.5, leaves the others as the first map has them, and raises no confidence."""
    rng = np.random.default_rng(5)
    unseen = np.arange(4000) % 4 == 0
    raw = np.full(4000, 0.9)
    right = rng.random(4000) < np.where(unseen, 0.5, 0.9)
    for method in calibration.METHODS:
        fitted = calibration.fit_outcomes(method, [raw], right, [1.0], unseen)
        assert fitted.unseen_values == unseen.sum() and 0 < fitted.unseen_a <= 1.0, "it never sharpens"
        first = calibration.fit_outcomes(method, [raw], right, [1.0])
        assert first.unseen_values == 0 and fitted == replace(first, unseen_a=fitted.unseen_a,
                                                               unseen_b=fitted.unseen_b, unseen_values=1000)
        out = fitted.apply(raw, unseen)
        assert out[unseen] == pytest.approx(np.full(1000, right[unseen].mean()), abs=0.02)
        np.testing.assert_array_equal(out[~unseen], first.apply(raw)[~unseen])
        np.testing.assert_array_equal(fitted.apply(raw), first.apply(raw))  # without flags: the first map only
    grid = np.linspace(0.01, 0.99, 99)
    lifting = calibration.Calibration("temperature", unseen_a=2.0, unseen_b=3.0, unseen_values=9)
    assert np.all(lifting.apply(grid, np.ones(99, bool)) <= grid)
    assert np.all(np.diff(lifting.apply(grid, np.ones(99, bool))) >= 0), "still increasing"


def test_calibration_files_from_before_the_second_map_read_and_bad_ones_do_not(tmp_path: Path) -> None:
    old = {"method": "temperature", "temperature": 2.0, "a": 1.0, "b": 0.0, "dev_values": 7}
    (tmp_path / calibration.FILE).write_text(json.dumps({TASK: old}))
    read = calibration.read_calibration(tmp_path, [TASK])[TASK]
    assert read == calibration.Calibration("temperature", temperature=2.0, dev_values=7) and not read.unseen_values
    for bad in ({"unseen_a": -1.0}, {"unseen_b": float("nan")}, {"unseen_values": 2.5}, {"unseen": 1}):
        (tmp_path / calibration.FILE).write_text(json.dumps({TASK: {**old, **bad}}))
        with pytest.raises(InputError, match="damaged calibration"):
            calibration.read_calibration(tmp_path, [TASK])


def test_training_writes_the_calibration_and_its_diagram(chain_model: Path) -> None:
    written = json.loads((chain_model / "calibration.json").read_text())
    assert list(written) == [TASK] and written[TASK]["method"] == "temperature" and written[TASK]["dev_values"] > 0
    assert {"unseen_a", "unseen_b", "unseen_values"} <= set(written[TASK])
    assert (chain_model / "calibration" / f"{TASK}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((chain_model / "tensorboard").glob("events.*"))


@pytest.mark.parametrize("method", calibration.METHODS)
def test_calibration_changes_no_tag_and_maps_every_confidence(method: str, chain_model: Path, data_dir: Path,
                                                              tmp_path: Path) -> None:
    """Over every test sentence: the calibrated model's tags are the raw model's, and each confidence is the
    stored map of the raw one (temperature: the marginals at that temperature), the second map's where a value holds
    an unseen word. The smoke data's dev and test splits hold no word their training split lacks, so the copy's
    vocab.json declares the rarer half of its training words unseen."""
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    vocab = json.loads((d / "vocab.json").read_text())
    (d / "vocab.json").write_text(json.dumps({**vocab, "train_words": vocab["train_words"] // 2}))
    r = run_cli("calibration", f"--model_dir={d}", f"--method={method}")
    assert r.returncode == 0 and "also by their own map): ECE" in r.stdout, r.stderr
    if method == "temperature":  # the under-confident smoke model keeps T = 1 (the grid never sharpens): soften it
        written = json.loads((d / calibration.FILE).read_text())
        (d / calibration.FILE).write_text(json.dumps({TASK: {**written[TASK], "temperature": 2.0}}))
    fitted = calibration.read_calibration(d, [TASK])[TASK]
    sentences = [s.tokens for s in read_conll(data_dir / TASK / "test.conll")] + [["Zyxq", "gold", "Qwv", "chain"]]
    raw, calibrated = Tagger.load(d, calibrated=False), Tagger.load(d)
    raw_tags, raw_conf = raw.tag(sentences, TASK, temperature=fitted.temperature)
    tags, conf = calibrated.tag(sentences, TASK)
    assert tags == raw_tags == raw.predict(sentences, TASK)
    unseen = np.concatenate([calibration.in_unseen_values(*tag_structure(t), raw.vocab.trained(s))
                             for s, t in zip(sentences, tags)])
    flat, flat_raw = np.concatenate([np.array(c) for c in conf]), np.concatenate([np.array(c) for c in raw_conf])
    np.testing.assert_allclose(flat, fitted.apply(flat_raw, unseen), rtol=1e-6)
    assert unseen.any() and fitted.unseen_values  # whether it lowers any here depends on the smoke model's dev values
    dev = read_conll(data_dir / TASK / "dev.conll")
    _, _, flags = calibration.outcomes(raw, dev, TASK)  # per value, in the order of the values
    want = [not raw.vocab.trained(s.tokens)[a:b].all() for s, t in zip(dev, raw.predict([s.tokens for s in dev], TASK))
            for _, a, b in chunks(t)]
    assert flags.tolist() == want and 0 < sum(want) < len(want) == fitted.dev_values
    assert sum(want) == fitted.unseen_values
    assert not np.allclose(flat, np.concatenate([np.array(c) for c in raw.tag(sentences, TASK)[1]]))


def test_a_model_without_calibration_decodes_as_before_and_says_so_once(chain_model: Path, tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    (d / "calibration.json").unlink()
    r = run_cli("predict", f"--model_dir={d}", stdin="Acme gold plated brass chain\nAcme chain\n")
    assert r.returncode == 0
    notes = [line for line in r.stderr.splitlines() if "calibration.json" in line]
    assert len(notes) == 1 and "raw CRF marginals" in notes[0]
    got = [v["confidence"] for line in r.stdout.splitlines() for v in json.loads(line)["values"]]
    tagger = Tagger.load(chain_model, calibrated=False)
    want = [v["confidence"] for rec in tagger.extract(["Acme gold plated brass chain", "Acme chain"], TASK)
            for v in rec["values"]]
    assert got == want and got


def test_a_damaged_calibration_is_one_line(chain_model: Path, tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    (d / "calibration.json").write_text(json.dumps({TASK: {"method": "platt", "a": -1.0, "b": 0.0,
                                                           "temperature": 1.0, "dev_values": 3}}))
    r = run_cli("predict", f"--model_dir={d}", stdin="Acme chain\n")
    assert_one_error_line(r, "calibration.json", "damaged calibration")
