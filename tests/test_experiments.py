"""The sweep runner and the collector on synthetic verticals: results per run, resumability, tables."""
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=900)


def test_sweep_then_collect(data_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    base = f"--flagfile=flags/smoke.cfg\n--data_dir={data_dir}\n--epochs=1\n"
    runs = {"s1.single.Chain x": "--task_a=Chain x\n--mtl_mode=single\n",
            "s1.single.Mangal-sutra": "--task_a=Mangal-sutra\n--mtl_mode=single\n",
            "s1.coupled.Chain x+Mangal-sutra": "--task_a=Chain x\n--task_b=Mangal-sutra\n"}
    for name, text in runs.items():
        (sweep / f"{name}.cfg").write_text(base + text)
    args = [f"--sweep_dir={sweep}", f"--runs_dir={tmp_path / 'runs'}", f"--results_dir={tmp_path / 'res'}"]
    r = _run("experiments.sweep", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert {p.name for p in (tmp_path / "res").glob("*.json")} == {f"{n}.json" for n in runs}
    again = _run("experiments.sweep", *args)
    assert "3 finished, 0 to run" in again.stdout, "finished runs are never run again"

    r = _run("experiments.collect", f"--results_dir={tmp_path / 'res'}", f"--out={tmp_path / 'out'}",
             f"--data_dir={data_dir}")
    assert r.returncode == 0, r.stderr
    table3 = (tmp_path / "out" / "table3.md").read_text()
    assert "| Chain x | single |" in table3 and "| Chain x | coupled | Chain x+Mangal-sutra | 1 |" in table3
    assert "## Chain x (coupled with Chain x+Mangal-sutra)" in (tmp_path / "out" / "table4.md").read_text()
    assert "alignment_at_1" in (tmp_path / "out" / "fig4.md").read_text()
    assert (tmp_path / "out" / "fig4" / "Chain x+Mangal-sutra.png").is_file()
