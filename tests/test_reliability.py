"""The model dir under faults: a crash at each write of an evaluation, checkpoint state files that name files
outside the model dir or dirs linked there, a damaged vocab.json or history.json on resume, flags that would be
ignored, metrics.json keys used as paths, the line that says which rule stopped a run or that it is complete, a
refused resume that writes nothing, outputs of evaluate and export that are not theirs to replace, and export's
lock."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import REPO, run_cli, smoke_params
from test_bad_input import assert_one_error_line

from mtl_tagger import Tagger, hooks
from mtl_tagger.errors import InputError, Interrupted
from mtl_tagger.export import export
from mtl_tagger.files import write_json_atomic
from mtl_tagger.lock import FileLock
from mtl_tagger.loop import Loop
from mtl_tagger.modeldir import read_history
from mtl_tagger.train import train

TASK = "Chain x"
PAIR = dict(tasks=f"{TASK},Mangal-sutra", task_a="", mtl_mode="shared", epochs=1, min_steps=12, max_steps=12,
            eval_every=4, patience=0)


CRASHES = (1, 2, 3)  # the first evaluation's writes (best/ of both verticals, the history, last/) done before dying


@pytest.fixture(scope="module")
def whole(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, Path]]:
    """The two-vertical run of PAIR, uninterrupted, and per k in CRASHES a copy of its model dir taken after the
    first k writes of its first evaluation, as the next began: what a process killed there leaves behind."""
    root = tmp_path_factory.mktemp("whole")
    out, copies = root / "m", {}
    writes = 0
    save, write = tf.train.CheckpointManager.save, hooks.write_json_atomic

    def counted() -> None:
        nonlocal writes
        if writes in CRASHES:
            copies[writes] = Path(shutil.copytree(out, root / f"crash{writes}"))
        writes += 1

    def copying_save(self: tf.train.CheckpointManager, *args: object, **kwargs: object) -> str:
        counted()
        return save(self, *args, **kwargs)

    def copying_write(path: Path, data: object) -> None:
        if path.name == "history.json":
            counted()
        write(path, data)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tf.train.CheckpointManager, "save", copying_save)
        patch.setattr(hooks, "write_json_atomic", copying_write)
        train(smoke_params(data_dir, out, **PAIR))
    return out, copies


@pytest.mark.parametrize("crash_before", CRASHES)
def test_a_crash_at_any_write_of_an_evaluation_resumes_to_the_same_run(
        crash_before: int, data_dir: Path, whole: tuple[Path, dict[int, Path]], tmp_path: Path) -> None:
    """The first evaluation writes best/ of both verticals, the history and last/; the process dies after the
    first, second or third of those writes, and the rerun ends with the history and metrics of the uninterrupted
    run."""
    out = Path(shutil.copytree(whole[1][crash_before], tmp_path / "m"))
    assert not (out / "metrics.json").exists() and (out / "history.json").exists() == (crash_before == 3)
    assert len(list(out.glob("best/*/checkpoint"))) == min(crash_before, 2), "the crash falls inside the evaluation"
    train(smoke_params(data_dir, out, **PAIR))
    assert read_history(out) == read_history(whole[0])
    assert (out / "metrics.json").read_text() == (whole[0] / "metrics.json").read_text()


def _point_outside(state_file: Path, name: str) -> None:
    """Make a checkpoint state file list `name` (an absolute path) as its newest checkpoint."""
    state_file.write_text(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')


def test_a_last_checkpoint_outside_the_model_dir_is_refused_and_left_alone(chain_model: Path, data_dir: Path,
                                                                           tmp_path: Path) -> None:
    """A resumed run's checkpoint manager deletes the older checkpoints its state file lists: an outside one must
    be refused before that, and nothing in or outside the model dir changes."""
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    victim = tmp_path / "elsewhere" / "ckpt-1"
    victim.parent.mkdir()
    for f in (d / "last").glob("ckpt-*"):
        shutil.copy(f, victim.parent / f.name.replace(f.name.split(".")[0], "ckpt-1"))
    state = d / "last" / "checkpoint"
    state.write_text(state.read_text() + f'all_model_checkpoint_paths: "{victim}"\n')
    before = sorted(p.name for p in victim.parent.iterdir()), (d / "params.json").read_text()
    r = run_cli("train", "--flagfile=flags/smoke.cfg", f"--task_a={TASK}", f"--data_dir={data_dir}",
                f"--model_dir={d}", "--epochs=4")
    assert_one_error_line(r, "last/checkpoint names", str(victim), "outside", loaded="train")
    assert (sorted(p.name for p in victim.parent.iterdir()), (d / "params.json").read_text()) == before


def test_a_best_checkpoint_outside_the_model_dir_is_refused(chain_model: Path, data_dir: Path, tmp_path: Path) -> None:
    """predict, evaluate, extract and export (all at once: two cores). The outside checkpoint is a real one, so
    only the check stops a command from loading it."""
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    outside = tmp_path / "elsewhere"
    shutil.copytree(d / "best" / TASK, outside)
    _point_outside(d / "best" / TASK / "checkpoint", str(next(outside.glob("ckpt-*.index")).with_suffix("")))
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps({"uniq_id": "1", "product_name": "p", "category_path": ["Jewellery"],
                                   "description": "Acme gold chain", "specifications": []}) + "\n")
    commands = {"predict": [], "evaluate": [f"--data={data_dir / TASK / 'test.conll'}"],
                "extract": [f"--catalog={catalog}", f"--out={tmp_path / 'values.jsonl'}"],
                "export": [f"--out={tmp_path / 'saved'}"]}
    procs = {c: subprocess.Popen([sys.executable, "-m", f"mtl_tagger.{c}", f"--model_dir={d}", *args], cwd=REPO,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c, args in commands.items()}
    for command, proc in procs.items():
        out, err = proc.communicate("Acme gold chain\n", timeout=600)
        assert_one_error_line(subprocess.CompletedProcess(command, proc.returncode, out, err),
                              f"best/{TASK}/checkpoint names", "outside", loaded=command)
    assert not (tmp_path / "values.jsonl").exists() and not (tmp_path / "saved").exists()


def test_tagger_load_refuses_a_relative_name_that_leaves_the_directory(chain_model: Path, tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    name = next((d / "best" / TASK).glob("ckpt-*.index")).stem
    shutil.copytree(d / "best" / TASK, d / "best" / "other")
    (d / "best" / TASK / "checkpoint").write_text(f'model_checkpoint_path: "../other/{name}"\n')
    with pytest.raises(InputError, match="outside"):
        Tagger.load(d)


def test_a_damaged_vocab_on_resume_is_one_line(chain_model: Path, data_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    vocab = json.loads((d / "vocab.json").read_text())
    vocab["tags"] = {"Other": vocab["tags"][TASK]}
    (d / "vocab.json").write_text(json.dumps(vocab))
    r = run_cli("train", "--flagfile=flags/smoke.cfg", f"--task_a={TASK}", f"--data_dir={data_dir}",
                f"--model_dir={d}", "--epochs=4")
    assert_one_error_line(r, "vocab.json", "tags for Other", TASK)


@pytest.mark.parametrize("overrides", [dict(couple="auto"), dict(couple="A:B"),
                                       dict(tasks=f"{TASK},Mangal-sutra", task_a="", mtl_mode="shared",
                                            couple=f"{TASK}:Mangal-sutra")])
def test_couple_outside_coupled_mode_is_refused(overrides: dict, data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--couple=.*only in coupled mode"):
        smoke_params(data_dir, tmp_path, **overrides)


def test_bio_training_without_the_constraints_is_refused(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--bio_training .* needs --bio_constraints"):
        smoke_params(data_dir, tmp_path, bio_training=True, bio_constraints=False)
    assert smoke_params(data_dir, tmp_path, bio_training=True).bio_training


def test_lexical_pairs_step_or_l1_without_spelling_features_are_refused(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--lexical_pairs .* needs --lexical_buckets > 0"):
        smoke_params(data_dir, tmp_path, lexical_pairs=True, lexical_buckets=0)
    assert smoke_params(data_dir, tmp_path, lexical_pairs=True, lexical_buckets=64).lexical_pairs
    with pytest.raises(InputError, match="--lexical_step=2.0 .* needs --lexical_buckets > 0"):
        smoke_params(data_dir, tmp_path, lexical_step=2.0, lexical_buckets=0)
    with pytest.raises(InputError, match="--lexical_l1=0.1 .* needs --lexical_buckets > 0"):
        smoke_params(data_dir, tmp_path, lexical_l1=0.1, lexical_buckets=0)
    with pytest.raises(InputError, match=r"--lexical_l1=1.0: must be in \[0, 1\)"):
        smoke_params(data_dir, tmp_path, lexical_l1=1.0)


def test_vertical_embedding_in_coupled_mode_is_refused(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--vertical_dim=8: the coupling minibatches mix verticals"):
        smoke_params(data_dir, tmp_path, tasks=f"{TASK},Mangal-sutra", task_a="", mtl_mode="coupled", vertical_dim=8)
    with pytest.raises(InputError, match="--vertical_dim=8: the coupling"):  # two verticals alone are coupled mode
        smoke_params(data_dir, tmp_path, task_b="Mangal-sutra", vertical_dim=8)
    assert smoke_params(data_dir, tmp_path, tasks=f"{TASK},Mangal-sutra", task_a="", mtl_mode="shared",
                        vertical_dim=8).vertical_dim == 8


def test_evaluate_compare_takes_only_the_verticals_of_params_json(chain_model: Path, tmp_path: Path) -> None:
    """A metrics.json key is a vertical's directory name under the data dir: one naming an outside path is
    refused, not followed."""
    outside = tmp_path / "outside"
    (outside / "x").mkdir(parents=True)
    (outside / "x" / "train.conll").write_text("a\tB-brand\n")
    dirs = []
    for name in ("single", "multi"):
        d = tmp_path / name
        shutil.copytree(chain_model, d)
        metrics = json.loads((d / "metrics.json").read_text())
        metrics[str(outside / "x")] = metrics[TASK]
        (d / "metrics.json").write_text(json.dumps(metrics))
        dirs.append(d)
    r = run_cli("evaluate", f"--model_dir={dirs[0]}", f"--compare={dirs[1]}")
    assert_one_error_line(r, "metrics.json", str(outside / "x"), "not a vertical of params.json")


def test_the_stop_line_names_the_rule_that_stopped(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    """Dev never improves after the first evaluation: with patience 1 and min_steps 9, a 9-step run still ends by
    its budget; with min_steps 6 and a budget of 12 steps (one epoch), by patience."""
    monkeypatch.setattr(Loop, "dev_scores", lambda self: {TASK: {"macro_f1": 1 / int(self.step), "entity_f1": 0.0}})
    train(smoke_params(data_dir, tmp_path / "a", epochs=1, eval_every=3, min_steps=9, max_steps=9, patience=1))
    out = capsys.readouterr().out
    assert "stopping at step 9: the step budget is done" in out and "no vertical improved" not in out
    train(smoke_params(data_dir, tmp_path / "b", epochs=1, eval_every=3, min_steps=6, max_steps=30, patience=1))
    out = capsys.readouterr().out
    assert "stopping early at step 6 of 12: no vertical improved on dev in the last 1 evaluations" in out


def _snapshot(d: Path) -> dict[str, tuple[int, int] | None]:
    """Every directory under `d`, and every file (links as themselves) with its size and modification time."""
    return {str(f.relative_to(d)): None if f.is_dir() and not f.is_symlink() else (f.lstat().st_size,
                                                                                   f.lstat().st_mtime_ns)
            for f in sorted(d.rglob("*"))}


@pytest.mark.parametrize("damage, words", [(lambda e: e.pop("dev"), "evaluation 1 has no dev scores"),
                                           (lambda e: e.update(step="12"), "evaluation 1 has step '12'")])
def test_a_damaged_history_on_resume_is_one_error(damage: object, words: str, chain_model: Path, data_dir: Path,
                                                  tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    history = json.loads((d / "history.json").read_text())
    damage(history["evaluations"][0])
    (d / "history.json").write_text(json.dumps(history))
    before = _snapshot(d)
    with pytest.raises(InputError, match=f"^{d / 'history.json'}: damaged history: {words}"):
        train(smoke_params(data_dir, d, epochs=4))
    assert _snapshot(d) == before


@pytest.mark.parametrize("kind", ["link", "fifo", "directory"])
def test_evaluate_output_that_is_not_a_regular_file_is_refused(kind: str, chain_model: Path, data_dir: Path,
                                                               tmp_path: Path) -> None:
    """The atomic rename would replace a link, FIFO or device by a regular file, and fails on a directory."""
    (tmp_path / "target").write_text("keep")
    out = tmp_path / "out"
    {"link": lambda: out.symlink_to("target"), "fifo": lambda: os.mkfifo(out), "directory": out.mkdir}[kind]()
    before = _snapshot(tmp_path)
    r = run_cli("evaluate", f"--model_dir={chain_model}", f"--data={data_dir / TASK / 'test.conll'}", f"--output={out}")
    assert_one_error_line(r, f"--output={out} is a")
    assert _snapshot(tmp_path) == before


def test_a_failed_atomic_write_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        write_json_atomic(tmp_path / "d", {})
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


@pytest.mark.parametrize("out", ["best/" + TASK, ".", ".."])
def test_export_refuses_the_model_dir_anything_in_it_or_holding_it(out: str, chain_model: Path, tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match="--out is the model dir .*, lies in it or holds it"):
        export(d, d / out, overwrite=True)
    assert _snapshot(tmp_path) == before


def test_export_holds_a_lock_and_takes_over_what_a_killed_export_left(chain_model: Path, tmp_path: Path) -> None:
    """While another export holds the lock, its temp dir is left alone; once it is gone, its leftovers are cleared."""
    out = tmp_path / "saved"
    for leftover in (".saved.tmp", ".saved.replaced", ".saved.replaced-99999"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "half").write_text("written by a killed export")
    other = FileLock(tmp_path / ".saved.lock", out, "export", "output", "--out")
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match=f"another export command \\(pid {os.getpid()}\\) is using this output"):
        export(chain_model, out)
    assert _snapshot(tmp_path) == before
    other.release()
    export(chain_model, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"] and (out / "saved_model.pb").is_file()


@pytest.mark.parametrize("linked", ["last", f"best/{TASK}"])
def test_a_checkpoint_dir_linked_outside_the_model_dir_is_refused(linked: str, chain_model: Path, data_dir: Path,
                                                                  tmp_path: Path) -> None:
    """A resumed run would save there and delete the older checkpoints; Tagger.load would read them."""
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    outside = tmp_path / "outside"
    shutil.move(d / linked, outside)
    (d / linked).symlink_to(outside, target_is_directory=True)
    before = _snapshot(tmp_path)
    with pytest.raises(InputError, match=f"{linked}/ resolves to {outside}, not to a directory of the model dir"):
        train(smoke_params(data_dir, d, epochs=4))
    if linked != "last":
        with pytest.raises(InputError, match="resolves to"):
            Tagger.load(d)
    assert _snapshot(tmp_path) == before


def test_a_refused_resume_writes_nothing(whole: tuple[Path, dict[int, Path]], data_dir: Path, tmp_path: Path) -> None:
    """params.json edited to coupled mode: the resume builds the shortlists and the coupler, then the last
    checkpoint (of a shared run) refuses to restore; no params.json, events file or shortlist/ is written."""
    d = tmp_path / "m"
    shutil.copytree(whole[0], d)
    params = json.loads((d / "params.json").read_text())
    (d / "params.json").write_text(json.dumps({**params, "mtl_mode": "coupled"}))
    before = _snapshot(d)
    with pytest.raises(InputError, match="cannot restore .*does not match params.json"):
        train(smoke_params(data_dir, d, **{**PAIR, "mtl_mode": "coupled"}))
    assert _snapshot(d) == before


def test_a_complete_run_says_so_and_writes_nothing(chain_model: Path, data_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    """A rerun of a finished run prints one line; one that died before metrics.json (its last write) ends it."""
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    step = read_history(d)["evaluations"][-1]["step"]
    before = _snapshot(d)
    assert train(smoke_params(data_dir, d, epochs=3)) == json.loads((d / "metrics.json").read_text())
    assert capsys.readouterr().out.splitlines() == [
        f"{d} is already complete: it stopped at step {step} (the step budget is done); its test metrics are in "
        f"{d / 'metrics.json'}"]
    assert _snapshot(d) == before
    (d / "metrics.json").unlink()
    train(smoke_params(data_dir, d, epochs=3))
    out = capsys.readouterr().out
    assert out.startswith(f"resuming {d} at step {step} of {step}\n") and "Ent-F1" in out and f"step {step}/" not in out
    assert (d / "metrics.json").read_text() == (chain_model / "metrics.json").read_text()


def test_ctrl_c_in_the_end_stage_says_what_is_left(chain_model: Path, data_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C after the last step (in test, calibration or analysis) says the model is trained and that a rerun
    finishes the rest without training; the rerun does."""
    d = tmp_path / "m"
    shutil.copytree(chain_model, d)
    (d / "metrics.json").unlink()

    def interrupted(*args: object, **kwargs: object) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr("mtl_tagger.train.calibrate", interrupted)
    with pytest.raises(Interrupted, match="after training, while testing, calibrating or analysing: the trained model "
                                          "is saved; run the same command again to finish these without training"):
        train(smoke_params(data_dir, d, epochs=3))
    assert not (d / "metrics.json").exists()
    monkeypatch.undo()
    train(smoke_params(data_dir, d, epochs=3))
    assert (d / "metrics.json").read_text() == (chain_model / "metrics.json").read_text()
    monkeypatch.setattr("mtl_tagger.train.calibrate", interrupted)  # a finished run trained further, stopped late
    with pytest.raises(Interrupted):
        train(smoke_params(data_dir, d, epochs=4))
    assert not (d / "metrics.json").exists(), "the old metrics would pass for the longer run's"
