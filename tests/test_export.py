"""export: SavedModels that, loaded by TensorFlow alone in a fresh process, tag as Tagger.tag does (tags and
marginals) for every vertical, incl. rows longer than max_len, unknown words and characters and tiny rows; the
in-graph word shapes equal vocab.shape; the CLI's output and its refusals."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import run_cli, smoke_params

from mtl_tagger import Tagger
from mtl_tagger.conll import read_conll
from mtl_tagger.errors import InputError
from mtl_tagger.export import VERTICALS_JSON, export, shape_ids, signature_keys
from mtl_tagger.train import train
from mtl_tagger.vocab import shape

FAST = {"epochs": 1, "learning_rate": 0.05}  # one quick epoch that already tags more than O
PAD = "gold"  # what fills the batch past each row's length: a known word, so ignoring it is tested

# Runs in a fresh interpreter (-I: no PYTHONPATH, no script dir) that must never import mtl_tagger.
FRESH = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
out = []
for job in json.load(sys.stdin):
    model = tf.saved_model.load(job["dir"])
    out.append({"signatures": sorted(model.signatures), "results": []})
    for call in job["calls"]:
        r = model.signatures[call["signature"]](tokens=tf.constant(call["tokens"], tf.string),
                                                lengths=tf.constant(call["lengths"], tf.int32))
        out[-1]["results"].append({"tags": [[t.decode() for t in row] for row in r["tags"].numpy()],
                                   "confidence": r["confidence"].numpy().tolist()})
assert "mtl_tagger" not in sys.modules
json.dump(out, sys.stdout)
"""


def tag_fresh(jobs: list[dict]) -> list[dict]:
    """Per job {"dir", "calls": [{"signature", "tokens", "lengths"}]}: {"signatures", "results"} from one
    TensorFlow-only process (one, as each start of TensorFlow costs seconds)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-I", "-c", FRESH], input=json.dumps(jobs), text=True, capture_output=True,
                       env=env, cwd=Path(jobs[0]["dir"]).parent, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def padded(sentences: list[list[str]]) -> tuple[list[list[str]], list[int]]:
    """A [B, T] token batch (PAD past each length) and its lengths."""
    width = max([len(s) for s in sentences] + [1])
    return [s + [PAD] * (width - len(s)) for s in sentences], [len(s) for s in sentences]


def test_shape_ids_equal_vocab_shape() -> None:
    tokens = ["123", "2.5", "1,200", "1.2.3", "1,2.3", ".5", "5.", ",", ".", "!", "--", "…", "Gold", "gold", "GOLD",
              "iPhone", "McDonald's", "e-Mail", "Hello-World", "Hello-world", "Ab Cd", "AB-CD", "१२३", "हार",
              "ज़ेवर", "ǅemal", "ǅ", "ΑΒΓ", "Ωmega", "straße", "ß", "²", "x²", "①", "½", "ª", "Ⓐ", "ﬁ", "", "a1", "A1",
              "٣", "MiXeD", "ABCd", "10K", "Ⅻ", "ⅻ", "😀", "\n", "A\nb"]
    rng = random.Random(0)
    pool = list("aAǅ1१².,-' ßⒶªΩω_😀") + ["हा", "\u0301"]
    tokens += ["".join(rng.choice(pool) for _ in range(rng.randint(0, 6))) for _ in range(5000)]
    tokens += [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]  # every character alone
    got = shape_ids(tf.constant(tokens)).numpy()
    wrong = [(t, int(g), shape(t)) for t, g in zip(tokens, got) if g != shape(t)]
    assert not wrong, wrong[:10]


def test_signature_keys_are_valid_and_distinct() -> None:
    keys = signature_keys(["Chain x", "Chain-x", "हार", "Mangal-sutra", "Chain_x_2"])
    assert keys == {"Chain x": "tag_Chain_x", "Chain-x": "tag_Chain_x_2", "हार": "tag_vertical",
                    "Mangal-sutra": "tag_Mangal_sutra", "Chain_x_2": "tag_Chain_x_2_2"}


@pytest.fixture(scope="module")
def single(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model dir, SavedModel dir) of a one-vertical smoke model, exported by the library function."""
    root = tmp_path_factory.mktemp("single")
    train(smoke_params(data_dir, root / "m", calibration="platt", **FAST))
    export(root / "m", root / "saved")
    return root / "m", root / "saved"


@pytest.fixture(scope="module")
def double(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(model dir, SavedModel dir, CLI stdout) of a two-vertical smoke model, exported by the CLI; its confidence
    calibrated by temperature scaling (the default; the single one's by Platt scaling)."""
    root = tmp_path_factory.mktemp("double")
    train(smoke_params(data_dir, root / "m", task_a="", tasks="Chain x,Mangal-sutra", mtl_mode="shared",
                       **FAST))
    r = run_cli("export", f"--model_dir={root / 'm'}", f"--out={root / 'saved'}")
    assert r.returncode == 0 and not r.stderr, r.stderr
    return root / "m", root / "saved", r.stdout


def _job(model_dir: Path, saved: Path, data_dir: Path) -> tuple[dict, list[tuple]]:
    """The signature calls for every vertical's test split plus a row longer than 2·max_len, one of unknown words
    and characters, one of a single token and an empty one; and (sentences, tags, marginals) by Tagger.tag."""
    tagger = Tagger.load(model_dir)
    info = json.loads((saved / VERTICALS_JSON).read_text())
    max_len = tagger.params.max_len
    calls, expected = [], []
    for task in tagger.tasks:
        sentences = [list(s.tokens) for s in read_conll(data_dir / task / "test.conll")]
        long = [t for s in sentences for t in s][:2 * max_len + 7]  # three pieces, the last a short one
        assert len(long) == 2 * max_len + 7
        sentences += [long, ["Zyxq", "ज़ेवर", "😀", "Ωmega", "2.5", "1,200", "GOLD", "iPhone", "<pad>", "<unk>", ""],
                      ["gold"], []]
        tokens, lengths = padded(sentences)
        key = info["verticals"][task]["signature"]
        calls += [{"signature": key, "tokens": tokens, "lengths": lengths},
                  {"signature": key, "tokens": [[""]], "lengths": [0]}]  # nothing to decode at all
        expected.append((sentences, *tagger.tag(sentences, task)))
        assert tagger.predict(sentences, task) == expected[-1][1]
        assert len({t for s in expected[-1][1] for t in s}) > 3, "a model that tags all O would prove little"
    return {"dir": str(saved), "calls": calls}, expected


@pytest.fixture(scope="module")
def fresh(single: tuple[Path, Path], double: tuple[Path, Path, str], data_dir: Path) -> dict[str, tuple]:
    """Per model: (verticals.json, Tagger.tag's results, the fresh process's results)."""
    jobs = {"single": _job(*single, data_dir), "double": _job(*double[:2], data_dir)}
    results = tag_fresh([job for job, _ in jobs.values()])
    return {which: (json.loads((Path(job["dir"]) / VERTICALS_JSON).read_text()), expected, got)
            for (which, (job, expected)), got in zip(jobs.items(), results)}


@pytest.mark.parametrize("which", ["single", "double"])
def test_saved_model_tags_as_tagger(which: str, fresh: dict[str, tuple]) -> None:
    info, expected, got = fresh[which]
    assert got["signatures"] == sorted(v["signature"] for v in info["verticals"].values())
    worst = 0.0
    for (sentences, tags, conf), result, empty in zip(expected, got["results"][::2], got["results"][1::2]):
        for i, sentence in enumerate(sentences):
            n = len(sentence)
            assert result["tags"][i][:n] == tags[i], (i, sentence)
            assert set(result["tags"][i][n:]) <= {""} and not any(result["confidence"][i][n:])
            if n:
                worst = max(worst, float(np.max(np.abs(np.array(result["confidence"][i][:n]) - conf[i]))))
        assert empty == {"tags": [[""]], "confidence": [[0.0]]}
    assert worst < 1e-5
    print(f"{which}: {sum(len(e[0]) for e in expected)} rows equal; max confidence difference {worst:.2e}")


def test_lengths_are_checked(single: tuple[Path, Path]) -> None:
    fn = tf.saved_model.load(str(single[1])).signatures["tag_Chain_x"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="lengths must be <= the width of tokens"):
        fn(tokens=tf.constant([["gold", "chain"]]), lengths=tf.constant([3]))


def test_cli_prints_verticals_and_signatures(double: tuple[Path, Path, str]) -> None:
    model_dir, saved, stdout = double
    info = json.loads((saved / VERTICALS_JSON).read_text())
    tags = Tagger.load(model_dir).vocab.tags
    assert {v: (d["signature"], d["tags"]) for v, d in info["verticals"].items()} == {
        "Chain x": ("tag_Chain_x", tags["Chain x"]), "Mangal-sutra": ("tag_Mangal_sutra", tags["Mangal-sutra"])}
    assert '"signature": "tag_Mangal_sutra"' in stdout
    for key in ("tag_Chain_x", "tag_Mangal_sutra"):
        assert f"signature_def['{key}']:" in stdout
    assert "outputs['confidence'] tensor_info:" in stdout and "inputs['lengths'] tensor_info:" in stdout
    assert not [p.name for p in saved.parent.iterdir() if p.name.startswith(".")], "a temp dir was left behind"


def test_refusals_write_nothing(single: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, _ = single
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "nope", tmp_path / "empty"):  # missing, and not a model
        with pytest.raises(InputError, match="no params.json: not a trained model dir"):
            export(bad, tmp_path / "o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"], "a refused export writes nothing"
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = run_cli("export", f"--model_dir={model_dir}", f"--out={out}")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(out) in r.stderr and "--overwrite" in r.stderr and [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(InputError, match="--out is the model dir .*, lies in it or holds it"):
        export(model_dir, model_dir.parent, overwrite=True)
    export(model_dir, out, overwrite=True)
    assert (out / "saved_model.pb").is_file() and not (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty"], "nothing set aside or half-written is left"
