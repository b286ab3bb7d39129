"""Calibration of confidence: the value-level ECE and the two maps against known answers, then a trained model:
calibration.json and its diagram, the same tags before and after on every test sentence, old models unchanged."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_bad_input import assert_one_error_line

from mtl_tagger import Tagger, calibration
from mtl_tagger.conll import read_conll
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


def test_training_writes_the_calibration_and_its_diagram(chain_model: Path) -> None:
    written = json.loads((chain_model / "calibration.json").read_text())
    assert list(written) == [TASK] and written[TASK]["method"] == "temperature" and written[TASK]["dev_values"] > 0
    assert (chain_model / "calibration" / f"{TASK}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((chain_model / "tensorboard").glob("events.*"))


@pytest.mark.parametrize("method", calibration.METHODS)
def test_calibration_changes_no_tag_and_maps_every_confidence(method: str, chain_model: Path, data_dir: Path,
                                                              tmp_path: Path) -> None:
    """Over every test sentence: the calibrated model's tags are the raw model's, and each confidence is the
    stored map of the raw one (temperature: the marginals at that temperature)."""
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    r = run_cli("calibration", f"--model_dir={d}", f"--method={method}")
    assert r.returncode == 0 and f"({method}): ECE" in r.stdout, r.stderr
    if method == "temperature":  # the under-confident smoke model keeps T = 1 (the grid never sharpens): soften it
        written = json.loads((d / calibration.FILE).read_text())
        (d / calibration.FILE).write_text(json.dumps({TASK: {**written[TASK], "temperature": 2.0}}))
    fitted = calibration.read_calibration(d, [TASK])[TASK]
    sentences = [s.tokens for s in read_conll(data_dir / TASK / "test.conll")]
    raw, calibrated = Tagger.load(d, calibrated=False), Tagger.load(d)
    raw_tags, raw_conf = raw.tag(sentences, TASK, temperature=fitted.temperature)
    tags, conf = calibrated.tag(sentences, TASK)
    assert tags == raw_tags == raw.predict(sentences, TASK)
    flat, flat_raw = np.concatenate([np.array(c) for c in conf]), np.concatenate([np.array(c) for c in raw_conf])
    np.testing.assert_allclose(flat, fitted.apply(flat_raw), rtol=1e-6)
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
