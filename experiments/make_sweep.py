"""Write the Table 3 sweep: one absl flagfile per run under flags/sweeps/table3/ (seed-major order).

    python -m experiments.make_sweep [--out=flags/sweeps/table3] [--seeds=1,2,3] [--base=flags/sweep.cfg]

Runs: every vertical of the paper's pairs alone (single), and every pair in shared and coupled mode.
File names sort seed first, so a partial sweep has whole seeds.
"""
from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "flags/sweeps/table3", "Directory of run flagfiles to (re)write.")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds.")
flags.DEFINE_string("base", "flags/sweep.cfg", "Flagfile every run starts from.")

# Issue 5's pairs (task_a borrows from task_b): the paper's Table 2 analogues, then pairs with more data.
PAIRS = [("Dress", "Jean"), ("Trouser", "Jean"), ("Mangalsutra", "Necklace"), ("Chain", "Necklace"),
         ("Mangalsutra", "Chain"), ("JewellerySet", "Necklace"), ("Earring", "Ring"), ("Bracelet", "Ring")]


def runs(seeds: list[str], base: str) -> dict[str, str]:
    """Run name → flagfile text."""
    verticals = sorted({v for pair in PAIRS for v in pair})
    specs = {f"single.{v}": f"--task_a={v}\n--mtl_mode=single\n" for v in verticals}
    specs |= {f"{mode}.{a}+{b}": f"--task_a={a}\n--task_b={b}\n--mtl_mode={mode}\n"
              for a, b in PAIRS for mode in ("shared", "coupled")}
    return {f"s{seed}.{name}": f"--flagfile={base}\n{text}--seed={seed}\n"
            for seed in seeds for name, text in specs.items()}


def main(argv: list[str]) -> None:
    """Write the flagfiles, removing stale ones."""
    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = runs(FLAGS.seeds, FLAGS.base)
    for stale in set(p.stem for p in out.glob("*.cfg")) - set(wanted):
        (out / f"{stale}.cfg").unlink()
    for name, text in wanted.items():
        (out / f"{name}.cfg").write_text(text)
    print(f"{len(wanted)} runs in {out}")


if __name__ == "__main__":
    app.run(main)
