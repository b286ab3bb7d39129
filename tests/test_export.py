"""export: SavedModels that, loaded by TensorFlow alone in a fresh process, tag as Tagger.tag does (tags and
marginals) for every vertical, incl. rows longer than max_len, unknown words and characters and tiny rows, and
extract from raw text as Tagger.extract does (tokens, tags, values, offsets, confidences, min_confidence) on every
test description, on catalog-like text and on text in other scripts, with emoji sequences and invisible characters;
the in-graph word shapes equal vocab.shape; the CLI's output and its refusals."""
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import loading_line, run_cli, smoke_params

from mtl_tagger import Tagger, calibration
from mtl_tagger.conll import read_conll, tag_structure
from mtl_tagger.errors import InputError
from mtl_tagger.export import export
from mtl_tagger.saved_model import EXTRACT_VALUES, VERTICALS_JSON, shape_ids, signature_keys, signature_summary
from mtl_tagger.tagger import scored_chunks, shown
from mtl_tagger.train import train
from mtl_tagger.vocab import shape

FAST = {"epochs": 1, "learning_rate": 0.05}  # one quick epoch that already tags more than O
PAD = "gold"  # what fills the batch past each row's length: a known word, so ignoring it is tested
TEXTS = [  # besides every test description: other scripts, emoji sequences, invisibles, values after astral characters
    "Sukkhi gold plated brass chain बहुत सुंदर 😀",
    "👨‍👩‍👧‍👦 Voylla rhodium plated alloy chain 🇮🇳",
    "सोने की चेन: Zaveri Pearls silver plated copper chain in rose gold 👍🏽",
    "क्\u200dष Acme silver plated metal chain, क्\u200cष ১২ 🏴󠁧󠁢󠁥󠁮󠁧󠁿 #️⃣1⃣ in black",
    "🏳️‍🌈 Jewel Box\u200bgold plated\xadbrass chain 👩🏽‍💻 in yellow",
    "iPhone手机 🇺🇸🇮🇳🇬 Voylla gold plated sterling silver chain with pearl ❤️",
    "",
    " \u200d\ufe0f ",
]
CATALOG = [  # descriptions as a catalog writes them: case, prices, sizes, hyphens, slashes, '&', brackets, Hindi, emoji
    "Sukkhi Gold Plated Brass Chain (Length: 2.5 cm / 24 inch) - Rs.1,499 only!",
    "VOYLLA Rose-Gold & Silver Plated Alloy Chain, 18\" | Pack of 2 [Free Size]",
    "Zaveri Pearls 22K gold-plated copper chain for Men/Women (3.5mm; 12.5 g) – ₹ 899/-",
    "Jewel Box 925 Sterling Silver chain w/ pendant *Hypoallergenic* @ Rs. 2,350 (50% OFF)",
    "मंगलसूत्र (Mangalsutra): Acme gold plated brass chain & black beads – 30 cm, सुंदर डिज़ाइन 💍✨",
    "Men's Stainless-Steel Curb Chain 5mm x 60cm; Anti-Tarnish, Colour: Gold/Black 🔥🔥 #Festive",
    "GIFT 🎁 for Diwali/Rakhi: Voylla silver plated metal chain...100% Nickel-Free!! MRP Rs.1,499",
]
PLACED = ("attribute", "value", "start", "end")  # a value's fields besides its confidence
MIN_CONFIDENCE = 0.5  # the threshold tried besides 0: it keeps some values of each vertical, not all

# Runs in a fresh interpreter (-I: no PYTHONPATH, no script dir) that must never import mtl_tagger.
FRESH = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
def plain(x):
    return [plain(y) for y in x] if isinstance(x, list) else x.decode() if isinstance(x, bytes) else x
out = []
for job in json.load(sys.stdin):
    model = tf.saved_model.load(job["dir"])
    out.append({"signatures": sorted(model.signatures), "results": []})
    for call in job["calls"]:
        fn = model.signatures[call["signature"]]
        specs = fn.structured_input_signature[1]
        r = fn(**{name: tf.constant(value, specs[name].dtype) for name, value in call["inputs"].items()})
        out[-1]["results"].append({name: plain(value.numpy().tolist()) for name, value in r.items()})
assert "mtl_tagger" not in sys.modules
json.dump(out, sys.stdout)
"""


def tag_fresh(jobs: list[dict]) -> list[dict]:
    """Per job {"dir", "calls": [{"signature", "inputs": {name: value}}]}: {"signatures", "results": [{output name:
    value}]} from one TensorFlow-only process (one, as each start of TensorFlow costs seconds)."""
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


def second_map(model_dir: Path) -> None:
    """Give a model a second map for values at unseen words that surely acts: the smoke data's test split holds no
    word its training split lacks, so vocab.json declares the rarer half of the training words unseen."""
    vocab = json.loads((model_dir / "vocab.json").read_text())
    (model_dir / "vocab.json").write_text(json.dumps({**vocab, "train_words": vocab["train_words"] // 2}))
    path = model_dir / calibration.FILE
    path.write_text(json.dumps({task: {**c, "unseen_a": 0.7, "unseen_b": -0.5, "unseen_values": 5}
                                for task, c in json.loads(path.read_text()).items()}))


@pytest.fixture(scope="module")
def single(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model dir, SavedModel dir) of a one-vertical smoke model, exported by the library function."""
    root = tmp_path_factory.mktemp("single")
    train(smoke_params(data_dir, root / "m", calibration="platt", **FAST))
    second_map(root / "m")
    export(root / "m", root / "saved")
    return root / "m", root / "saved"


@pytest.fixture(scope="module")
def double(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(model dir, SavedModel dir, CLI stdout) of a two-vertical smoke model, exported by the CLI; its confidence
    calibrated by temperature scaling (the default; the single one's by Platt scaling), and its encoder reading
    each vertical through a vertical embedding, so that the SavedModel must feed each signature its own."""
    root = tmp_path_factory.mktemp("double")
    train(smoke_params(data_dir, root / "m", task_a="", tasks="Chain x,Mangal-sutra", mtl_mode="shared",
                       vertical_dim=4, **FAST))
    second_map(root / "m")
    r = run_cli("export", f"--model_dir={root / 'm'}", f"--out={root / 'saved'}")
    assert r.returncode == 0 and r.stderr == loading_line("export") + "\n", r.stderr
    return root / "m", root / "saved", r.stdout


def _job(tagger: Tagger, saved: Path, data_dir: Path) -> tuple[dict, list[tuple]]:
    """The signature calls for every vertical's test split plus a row longer than 2·max_len, one of unknown words
    and characters, one of a single token and an empty one; and (sentences, tags, marginals) by Tagger.tag."""
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
        calls += [{"signature": key, "inputs": {"tokens": tokens, "lengths": lengths}},
                  {"signature": key, "inputs": {"tokens": [[""]], "lengths": [0]}}]  # nothing to decode at all
        expected.append((sentences, *tagger.tag(sentences, task)))
        assert tagger.predict(sentences, task) == expected[-1][1]
        assert any(calibration.in_unseen_values(*tag_structure(t), tagger.vocab.trained(s)).any()
                   for s, t in zip(sentences, expected[-1][1])), "no value at an unseen word: the second map idles"
        assert len({t for s in expected[-1][1] for t in s}) > 3, "a model that tags all O would prove little"
    return {"dir": str(saved), "calls": calls}, expected


def _text_calls(tagger: Tagger, saved: Path, data_dir: Path) -> tuple[list[dict], list[tuple]]:
    """The text signature's calls on every vertical's test descriptions (tokens joined by spaces), one of them
    longer than 2·max_len tokens, CATALOG and TEXTS, at min_confidence 0 and MIN_CONFIDENCE; and per call (vertical,
    min_confidence, Tagger.extract's records, per text its values' confidences before rounding, min_confidence 0:
    the smallest of Tagger.tag's confidences, as extract takes them)."""
    info = json.loads((saved / VERTICALS_JSON).read_text())
    calls, expected = [], []
    for task in tagger.tasks:
        sentences = [s.tokens for s in read_conll(data_dir / task / "test.conll")]
        texts = [" ".join(s) for s in sentences] + [" ".join(t for s in sentences for t in s)[:1500]] + CATALOG + TEXTS
        records = tagger.extract(texts, task)
        assert len(records[len(sentences)]["tokens"]) > 2 * tagger.params.max_len
        assert sum(len(r["values"]) for r in records[len(sentences) + 1:][:len(CATALOG)]) > len(CATALOG)
        tags, confidence = tagger.tag([r["tokens"] for r in records], task)
        unrounded = [[c for *_, c in scored_chunks(t, c)] for t, c in zip(tags, confidence)]
        assert any(ord(c) > 0xFFFF for r in records for v in r["values"] for c in r["text"][:v["start"]]), \
            "no value after an astral character: offsets in code points would be untested"
        confident = tagger.extract(texts, task, MIN_CONFIDENCE)
        assert 0 < sum(len(r["values"]) for r in confident) < sum(len(r["values"]) for r in records)
        for least, extracted in ((0.0, records), (MIN_CONFIDENCE, confident)):
            calls.append({"signature": info["verticals"][task]["extract_signature"],
                          "inputs": {"text": texts, "min_confidence": least}})
            expected.append((task, least, extracted, unrounded))
    return calls, expected


@pytest.fixture(scope="module")
def fresh(single: tuple[Path, Path], double: tuple[Path, Path, str], data_dir: Path) -> dict[str, tuple]:
    """Per model: (verticals.json, Tagger.tag's results, the fresh process's results of the token signatures,
    Tagger.extract's results, the fresh process's results of the text signatures)."""
    jobs = {}
    for which, (model_dir, saved) in {"single": single, "double": double[:2]}.items():
        tagger = Tagger.load(model_dir)  # one load, so each head's decoders are traced once for both kinds of call
        (job, expected), (calls, extracted) = _job(tagger, saved, data_dir), _text_calls(tagger, saved, data_dir)
        jobs[which] = ({**job, "calls": job["calls"] + calls}, expected, extracted)
    results = tag_fresh([job for job, _, _ in jobs.values()])
    out = {}
    for (which, (job, expected, extracted)), got in zip(jobs.items(), results):
        tagged = 2 * len(expected)  # the token signatures' results come first, two per vertical
        out[which] = (json.loads((Path(job["dir"]) / VERTICALS_JSON).read_text()), expected,
                      {**got, "results": got["results"][:tagged]}, extracted, got["results"][tagged:])
    return out


@pytest.mark.parametrize("which", ["single", "double"])
def test_saved_model_tags_as_tagger(which: str, fresh: dict[str, tuple]) -> None:
    info, expected, got, _, _ = fresh[which]
    assert got["signatures"] == sorted(key for v in info["verticals"].values()
                                       for key in (v["signature"], v["extract_signature"]))
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


def _records(result: dict) -> list[dict]:
    """A text signature's padded outputs as Tagger.extract's records (without the text; each value with its
    unrounded_confidence too), after checking the padding."""
    records = []
    for i, count in enumerate(result["count"]):
        tokens = [t for t in result["tokens"][i] if t]  # a token is never empty
        assert result["tokens"][i][len(tokens):] == result["tags"][i][len(tokens):] == [""] * (
            len(result["tokens"][i]) - len(tokens))
        assert not any(x for name in EXTRACT_VALUES for x in result[name][i][count:])
        values = [{name: result[name][i][j] for name in EXTRACT_VALUES} for j in range(count)]
        records.append({"tokens": tokens, "tags": result["tags"][i][:len(tokens)], "values": values})
    return records


@pytest.mark.parametrize("which", ["single", "double"])
def test_text_signature_extracts_as_tagger(which: str, fresh: dict[str, tuple]) -> None:
    _, _, _, extracted, results = fresh[which]
    worst, values = 0.0, 0
    for (task, least, records, unrounded), result in zip(extracted, results, strict=True):
        got = _records(result)
        assert len(got) == len(records)
        for mine, theirs, confidences in zip(got, records, unrounded):
            assert (mine["tokens"], mine["tags"]) == (theirs["tokens"], theirs["tags"]), (task, theirs["text"])
            assert [[v[k] for k in PLACED] for v in mine["values"]] == [
                [v[k] for k in PLACED] for v in theirs["values"]], (task, least, theirs["text"])
            kept = [c for c in confidences if shown(c) >= least]  # the values extract kept, unrounded
            for v, w, c in zip(mine["values"], theirs["values"], kept, strict=True):
                # Each side shows its own unrounded confidence to 4 places; the two unrounded ones agree.
                assert w["confidence"] == shown(c), (task, theirs["text"], w)
                assert v["confidence"] == float(np.float32(shown(v["unrounded_confidence"]))), (task, theirs["text"], v)
                worst = max(worst, abs(v["unrounded_confidence"] - c))
            values += len(theirs["values"])
    assert worst < 1e-5
    print(f"{which}: {values} values equal; max unrounded confidence difference {worst:.2e}")


def test_lengths_are_checked(single: tuple[Path, Path]) -> None:
    fn = tf.saved_model.load(str(single[1])).signatures["tag_Chain_x"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="lengths must be <= the width of tokens"):
        fn(tokens=tf.constant([["gold", "chain"]]), lengths=tf.constant([3]))


def test_cli_prints_verticals_and_signatures(double: tuple[Path, Path, str]) -> None:
    model_dir, saved, stdout = double
    info = json.loads((saved / VERTICALS_JSON).read_text())
    tags = Tagger.load(model_dir).vocab.tags
    assert {v: (d["signature"], d["extract_signature"], d["tags"]) for v, d in info["verticals"].items()} == {
        "Chain x": ("tag_Chain_x", "extract_Chain_x", tags["Chain x"]),
        "Mangal-sutra": ("tag_Mangal_sutra", "extract_Mangal_sutra", tags["Mangal-sutra"])}
    assert stdout.startswith(f"wrote {saved}: 2 vertical(s), two signatures each\n"), stdout
    assert "  Mangal-sutra  tag_Mangal_sutra, extract_Mangal_sutra\n" in stdout
    assert "tag_<vertical>:     tokens [B, T] string, lengths [B] int32 -> tags, confidence" in stdout
    assert "extract_<vertical>: text [B] string, min_confidence [] float64 -> attribute, value" in stdout
    assert len(stdout.splitlines()) == 6, "quiet by default: no tensor dump"
    tensors = signature_summary(saved)  # what --show_signatures adds
    for key in ("tag_Chain_x", "tag_Mangal_sutra", "extract_Chain_x", "extract_Mangal_sutra"):
        assert f"signature_def['{key}']:" in tensors
    assert "  input lengths: int32 (None,)" in tensors and "  output confidence: float32 (None, None)" in tensors
    assert "  input min_confidence: float64 ()" in tensors and "  output attribute: string (None, None)" in tensors
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
