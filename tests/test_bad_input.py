"""Bad input: one clear line naming the file:line or flag, exit code 2, no traceback, nothing half-written."""
import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from absl import logging
from conftest import loading_line, run_cli, smoke_params

from mtl_tagger.corpus import load_data
from mtl_tagger.errors import InputError
from mtl_tagger.params import Params
from mtl_tagger.run import build
from mtl_tagger.train import train
from mtl_tagger.vectors import read_vectors, write_vectors


def assert_one_error_line(r: subprocess.CompletedProcess, *words: str, warnings: bool = False,
                          loaded: str = "", read: str = "") -> str:
    """Exit code 2 and one stderr line `error: …` holding `words` (beside absl warning lines if `warnings`). With
    `loaded` (the command's name), a fault that only TensorFlow finds: the error follows the command's loading line
    (conftest.loading_line), which every other fault comes before. With `read` (a conftest.reading_line), likewise
    a fault found only in what the command reads, after it says so."""
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip() and not (warnings and re.match(r"W\d{4} ", x))]
    for status in (loading_line(loaded) if loaded else "", read):
        if status:
            assert lines[:1] == [status], r.stderr
            lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("flag, words", [
    ("--hidden_size=0", ["--hidden_size=0", "> 0"]),
    ("--batch_size=-3", ["--batch_size=-3"]),
    ("--dropout=1.0", ["--dropout=1.0", "[0, 1)"]),
    ("--tag_prior=-0.5", ["--tag_prior=-0.5", ">= 0"]),
    ("--char_encoder=gru", ["--char_encoder=gru", "lstm, cnn"]),
    ("--task_b=Chain x", ["Chain x", "named twice"]),
])
def test_out_of_range_flags_cli(flag: str, words: list[str], data_dir: Path, tmp_path: Path) -> None:
    r = run_cli("train", "--flagfile=flags/smoke.cfg", "--task_a=Chain x", f"--data_dir={data_dir}",
                f"--model_dir={tmp_path / 'm'}", flag)
    assert_one_error_line(r, *words)
    assert not (tmp_path / "m").exists()


def test_missing_data_dir_cli(tmp_path: Path) -> None:
    r = run_cli("train", "--flagfile=flags/smoke.cfg", "--task_a=Chain x", f"--data_dir={tmp_path / 'nope'}",
                f"--model_dir={tmp_path / 'm'}")
    assert_one_error_line(r, str(tmp_path / "nope"), "--data_dir")
    assert not (tmp_path / "m").exists()


def test_unknown_vertical_lists_known(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no vertical 'Necklace'.*Chain x, Mangal-sutra"):
        train(smoke_params(data_dir, tmp_path / "m", task_a="Necklace"))
    assert not (tmp_path / "m").exists()


def test_missing_split_file(data_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "data"
    shutil.copytree(data_dir / "Chain x", d / "V")
    (d / "V" / "test.conll").unlink()
    with pytest.raises(InputError, match=r"V: missing test\.conll"):
        train(smoke_params(d, tmp_path / "m", task_a="V"))
    assert not (tmp_path / "m").exists()


def test_malformed_train_line_names_file_and_line_and_leaves_nothing(data_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "data"
    shutil.copytree(data_dir / "Chain x", d / "V")
    lines = (d / "V" / "train.conll").read_text().splitlines()
    lines[4] = lines[4].replace("\t", " ")
    (d / "V" / "train.conll").write_text("\n".join(lines) + "\n")
    r = run_cli("train", "--flagfile=flags/smoke.cfg", "--task_a=V", f"--data_dir={d}", f"--model_dir={tmp_path / 'm'}")
    assert_one_error_line(r, "train.conll:5:")
    assert not (tmp_path / "m").exists()


def test_missing_dev_is_held_out_of_train(data_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "data"
    shutil.copytree(data_dir / "Chain x", d / "V")
    (d / "V" / "dev.conll").unlink()
    data = load_data(smoke_params(d, tmp_path / "m", task_a="V")).tasks["V"]
    again = load_data(smoke_params(d, tmp_path / "m", task_a="V")).tasks["V"]
    assert data.dev_held_out and 0 < len(data.dev) < len(data.train)
    assert data.dev == again.dev, "the held-out dev split must be deterministic"
    assert not {s.tokens for s in data.dev} & {s.tokens for s in data.train}


def test_unseen_test_tag_is_warned(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "data"
    shutil.copytree(data_dir / "Chain x", d / "V")
    with open(d / "V" / "test.conll", "a") as f:
        f.write("Acme\tB-brand\nzircon\tB-stone\n\n")
    assert any("B-stone (1)" in n and "count as wrong" in n for n in load_data(smoke_params(d, tmp_path / "m",
                                                                                            task_a="V")).notes)
    warnings: list[str] = []
    monkeypatch.setattr(logging, "warning", lambda msg, *a: warnings.append(msg % a))
    train(smoke_params(d, tmp_path / "m", task_a="V", epochs=1))
    assert any("B-stone (1)" in w for w in warnings), "train logs the note once the model dir is claimed"


def test_long_train_sentence_is_split_with_warning(data_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "data"
    shutil.copytree(data_dir / "Chain x", d / "V")
    with open(d / "V" / "train.conll", "a") as f:
        f.write("".join(f"w{i}\tO\n" for i in range(130)) + "\n")
    warnings: list[str] = []
    monkeypatch.setattr(logging, "warning", lambda msg, *a: warnings.append(msg % a))
    data = load_data(smoke_params(d, tmp_path / "m", task_a="V")).tasks["V"]
    assert max(len(s.tokens) for s in data.train) <= 60
    assert any("split 1 sentence" in w for w in warnings), warnings


@pytest.mark.parametrize("content, words", [
    ("a 0.1 0.2 0.3\nb 0.1 0.2\n", [":2:", "2 values, expected 3"]),
    ("a 0.1 x 0.3\n", [":1:", "not a number"]),
    ("", ["empty"]),
])
def test_bad_vector_file(content: str, words: list[str], tmp_path: Path) -> None:
    path = tmp_path / "v.txt"
    path.write_text(content)
    with pytest.raises(InputError) as e:
        read_vectors(path)
    assert str(path) in str(e.value) and all(w in str(e.value) for w in words)


def test_vectors_of_wrong_dimension(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "v.txt"
    write_vectors(path, ["gold", "chain"], np.ones((2, 7), np.float32))
    with pytest.raises(InputError, match=r"v\.txt: vectors are 7-d but --word_dim=16"):
        train(smoke_params(data_dir, tmp_path / "m", word_vectors=str(path)))
    assert not (tmp_path / "m").exists()


def test_word_vectors_initialise_embeddings(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "v.txt"
    write_vectors(path, ["Acme", "brass", "unseen_elsewhere"], np.arange(48, dtype=np.float32).reshape(3, 16))
    data = load_data(smoke_params(data_dir, tmp_path / "m", word_vectors=str(path)))
    row = data.vocab.words.index("brass")
    net = build(smoke_params(data_dir, tmp_path / "m", word_vectors=str(path)), data, tmp_path / "m").net
    np.testing.assert_allclose(net.word_embeddings.numpy()[row], np.arange(16, 32))
    assert "unseen_elsewhere" in data.vocab.words, "pretrained words join the vocabulary"


@pytest.mark.parametrize("module", ["evaluate", "predict"])
def test_unknown_task_at_evaluate_and_predict(module: str, chain_epoch: Path, data_dir: Path) -> None:
    args = [f"--model_dir={chain_epoch}", "--task=Necklace"]
    if module == "evaluate":
        args.append(f"--data={data_dir / 'Chain x' / 'test.conll'}")
    r = run_cli(module, *args, stdin="gold chain\n")
    assert_one_error_line(r, "--task=Necklace", "Chain x")


def test_model_dir_of_other_run_is_refused_unless_overwrite(chain_epoch: Path, data_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(chain_epoch, tmp_path / "m")
    before = (tmp_path / "m" / "params.json").read_text()
    with pytest.raises(InputError, match=r"other verticals or flags.*tasks: 'Chain x' -> 'Mangal-sutra'.*--overwrite"):
        train(smoke_params(data_dir, tmp_path / "m", task_a="Mangal-sutra", epochs=1))
    with pytest.raises(InputError, match=r"hidden_size: 16 -> 8"):
        train(smoke_params(data_dir, tmp_path / "m", hidden_size=8, epochs=1))
    assert (tmp_path / "m" / "params.json").read_text() == before
    train(smoke_params(data_dir, tmp_path / "m", task_a="Mangal-sutra", epochs=1, overwrite=True))
    assert json.loads((tmp_path / "m" / "metrics.json").read_text()).keys() == {"Mangal-sutra"}


def test_non_model_dir_is_refused(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds no params.json"):
        train(smoke_params(data_dir, tmp_path / "m"))
    assert (tmp_path / "m" / "notes.txt").exists()


@pytest.mark.parametrize("module", ["evaluate", "predict"])
def test_evaluate_and_predict_on_a_non_model_dir(module: str, tmp_path: Path) -> None:
    extra = [f"--data={tmp_path / 'x.conll'}"] if module == "evaluate" else []
    r = run_cli(module, f"--model_dir={tmp_path}", *extra, stdin="x\n")
    assert_one_error_line(r, "params.json")


@pytest.mark.parametrize("flag, words", [
    ("--hidden_size=big", ["--hidden_size", "big"]),
    ("--no_such_flag=1", ["no_such_flag"]),
    ("--flagfile=/nonexistent.cfg", ["/nonexistent.cfg"]),
    ("--seed=-1", ["--seed=-1"]),
])
def test_flag_parse_errors_are_one_line(flag: str, words: list[str], tmp_path: Path) -> None:
    r = run_cli("train", "--task_a=X", f"--data_dir={tmp_path}", f"--model_dir={tmp_path / 'm'}", flag)
    assert_one_error_line(r, *words)


def test_damaged_params_json(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "params.json").write_text('{"task_a": "Chain x",\n oops')
    with pytest.raises(InputError, match=r"params\.json:2: damaged JSON"):
        train(smoke_params(data_dir, tmp_path / "m"))


def test_nan_in_vectors(tmp_path: Path) -> None:
    (tmp_path / "v.txt").write_text("a 0.1 0.2\nb nan 0.3\n")
    with pytest.raises(InputError, match=r"v\.txt:2: vector holds nan or inf"):
        read_vectors(tmp_path / "v.txt")


def test_same_run_spelled_differently_resumes(data_dir: Path, tmp_path: Path) -> None:
    train(smoke_params(data_dir, tmp_path / "m", epochs=1, task_b="Mangal-sutra", mtl_mode="shared"))
    again = smoke_params(f"{data_dir}/", f"{tmp_path}/./m/", epochs=1, task_b="Mangal-sutra", mtl_mode="shared")
    assert again.differences(Params.load(tmp_path / "m")) == []
    implicit = Params(task_a="A", task_b="B").validate()
    assert implicit.differences(Params(task_a="A", task_b="B", mtl_mode="coupled").validate()) == []


def test_overwrite_that_fails_gives_the_old_run_back(chain_epoch: Path, data_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(chain_epoch, tmp_path / "m")
    before = (tmp_path / "m" / "metrics.json").read_text()
    d = tmp_path / "data"
    d.mkdir()
    (d / "Chain x").symlink_to(data_dir / "Chain x")
    (d / "Other").mkdir()
    for split in ("train", "test"):
        (d / "Other" / f"{split}.conll").write_text("".join(f"zz{i}\tB-k\n\n" for i in range(20)))
    with pytest.raises(InputError, match="the shortlist of Chain x and Other is empty"):
        train(smoke_params(d, tmp_path / "m", task_b="Other", overwrite=True))
    assert (tmp_path / "m" / "metrics.json").read_text() == before


def test_params_json_round_trip() -> None:
    p = Params(task_a="A", task_b="B", hidden_size=7).validate()
    assert Params.from_json(json.loads(json.dumps(p.to_json()))) == p
    assert p.mode == "coupled" and p.names == ["A", "B"] and p.model_dir == "runs/A+B.coupled"


def test_params_json_without_a_newer_field_keeps_the_old_behaviour() -> None:
    old = Params(task_a="A").validate().to_json()
    del old["tag_prior"]
    assert Params.from_json(old).tag_prior == 0.0, "models written before the tag prior decode without one"
    assert Params.from_json({"tasks": "A"}).hidden_size == Params().hidden_size


def test_a_field_s_legacy_value_is_what_an_older_params_json_reads_back() -> None:
    legacy = {f.name: f.metadata["legacy"] for f in dataclasses.fields(Params) if "legacy" in f.metadata}
    assert legacy.keys() >= {"tag_prior", "bio_constraints", "lexical_buckets"}
    old = Params.from_json({k: v for k, v in Params(task_a="A").validate().to_json().items() if k not in legacy})
    assert {k: getattr(old, k) for k in legacy} == legacy
    assert all(getattr(Params(), k) != v for k, v in legacy.items()), "a legacy value equal to the default says nothing"


def test_a_resumed_run_may_change_its_resumable_fields_and_no_other() -> None:
    def other(v: object) -> object:
        return not v if isinstance(v, bool) else v + 1 if isinstance(v, int | float) else f"{v}x"

    p = Params(task_a="A").validate()
    for f in dataclasses.fields(Params):
        changed = dataclasses.replace(p, **{f.name: other(getattr(p, f.name))})
        diff = changed.differences(p)
        assert diff == [] if f.metadata["resumable"] else len(diff) == 1 and diff[0].startswith(f"{f.name}: "), diff
