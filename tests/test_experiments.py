"""The sweep runner and the collector on synthetic verticals: results per run, resumability, tables."""
import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from experiments.make_sweep import runs as sweep_runs


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900)


def test_sweep_then_collect(data_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    base = f"--flagfile=flags/smoke.cfg\n--data_dir={data_dir}\n--epochs=1\n"
    runs = {"s1.single.Chain x": "--task_a=Chain x\n--mtl_mode=single\n",
            "s1.single.Mangal-sutra": "--task_a=Mangal-sutra\n--mtl_mode=single\n",
            "s1.coupled.Chain x+Mangal-sutra": "--task_a=Chain x\n--task_b=Mangal-sutra\n",
            "s1.coupled.Chain x+Mangal-sutra@w1": "--task_a=Chain x\n--task_b=Mangal-sutra\n--window=1\n"}
    for name, text in runs.items():
        (sweep / f"{name}.cfg").write_text(base + text)
    args = [f"--sweep_dir={sweep}", f"--runs_dir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'res'}"]
    r = _run("experiments.sweep", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {p.name for p in (tmp_path / "res").glob("*.json")} == {f"{n}.json" for n in runs}
    single = json.loads((tmp_path / "res" / "s1.single.Chain x.json").read_text())
    assert single["best_epoch"] == 1 and list(single["dev_history"][0]) == ["Chain x"]
    again = _run("experiments.sweep", *args)
    assert "4 finished, 0 to run" in again.stdout, "finished runs are never run again"

    r = _run("experiments.collect", f"--results_dir={tmp_path / 'res'}", f"--out={tmp_path / 'out'}",
             f"--data_dir={data_dir}")
    assert r.returncode == 0, r.stderr
    table3 = (tmp_path / "out" / "table3.md").read_text()
    assert "Of 1 two-task runs with a recorded dev history" in table3
    assert "| Chain x | single |" in table3 and "| Chain x | coupled | Chain x+Mangal-sutra | 1 |" in table3
    table4 = (tmp_path / "out" / "table4.md").read_text()
    assert "## Chain x (coupled with Chain x+Mangal-sutra)" in table4
    frequency = table4.split("## Gain by training frequency")[1]
    assert sum(int(line.split("|")[2]) for line in frequency.splitlines() if line.startswith("| ") and
               line.split("|")[2].strip().isdigit()) > 0, "every tag of the test splits lands in a bucket"
    assert "alignment_at_1" in (tmp_path / "out" / "fig4.md").read_text()
    assert (tmp_path / "out" / "fig4" / "Chain x+Mangal-sutra.png").is_file()

    compare = tmp_path / "out" / "why.md"
    r = _run("experiments.compare", f"--results_dir={tmp_path / 'res'}", f"--baseline_dir={tmp_path / 'res'}",
             f"--out={compare}")
    assert r.returncode == 0, r.stderr
    rows = [line for line in compare.read_text().splitlines() if line.startswith("| s1.")]
    assert len(rows) == 2 and all("| window 2→1 |" in line for line in rows), rows
    assert "Chain x+Mangal-sutra@w1" not in table3, "variant runs stay out of Table 3"

    null = tmp_path / "out" / "null.md"
    r = _run("experiments.attention_null", f"--results_dir={tmp_path / 'res'}", f"--out={null}")
    assert r.returncode == 0, r.stderr
    row = next(line for line in null.read_text().splitlines() if line.startswith("| Chain x+Mangal-sutra |"))
    coupled = json.loads((tmp_path / "res" / "s1.coupled.Chain x+Mangal-sutra.json").read_text())
    assert row.split("|")[2].strip() == str(coupled["analysis"]["alignment_tags"]), "same tags as the run's analysis"
    assert float(row.split("|")[-2]) > 0, "the trained run's lift is read from its model dir"

    r = _run("experiments.loss_scales", f"--model_dirs={tmp_path / 'runs' / 's1.coupled.Chain x+Mangal-sutra'}")
    assert r.returncode == 0, r.stderr
    rows = [line.split("|") for line in r.stdout.splitlines() if line.startswith("| 1–")]
    assert rows and float(rows[0][4]) > 0, "the coupling term was logged and read back"


def test_make_sweep_variants() -> None:
    runs = sweep_runs(["1", "2"], "flags/sweep.cfg", pairs=[("Dress", "Jean")], modes=("coupled",),
                      variants=(("w1", ["--window=1"]), ("cw01", ["--coupling_weight=0.1", "--window=1"])))
    assert sorted(runs) == ["s1.coupled.Dress+Jean@cw01", "s1.coupled.Dress+Jean@w1",
                            "s2.coupled.Dress+Jean@cw01", "s2.coupled.Dress+Jean@w1"]
    assert runs["s2.coupled.Dress+Jean@cw01"].endswith("--seed=2\n--coupling_weight=0.1\n--window=1\n")
    assert len(sweep_runs(["1"], "flags/sweep.cfg")) == 26, "Table 3: 10 singles + 8 pairs × 2 modes per seed"
