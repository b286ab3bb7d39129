"""Write a sweep: one absl flagfile per run (seed-major order), by default the Table 3 sweep.

    python -m experiments.make_sweep [--out=flags/sweeps/table3] [--seeds=1,2,3] [--base=flags/sweep.cfg]
        [--pairs=Dress+Jean,...] [--modes=single,shared,coupled] [--variant='label:--flag=value --flag=value']

Runs: every vertical of the chosen pairs (and of --singles) alone, and every pair in shared and coupled mode.
A coupled run draws its coupling minibatches as the paper does (--nocoupling_within), whatever the default.
A --variant adds its flags after the run's own and appends `@label` to the run name, so a variant run
is compared with the Table 3 run of the same name before the `@` (experiments/coupling_variants.py).
File names sort seed first, so a partial sweep has whole seeds.
"""
from pathlib import Path

from absl import app, flags

from experiments.common import parse_variant
from mtl_tagger import cli

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The script's flags (defined when run as a program, so that importing the module defines none)."""
    flags.DEFINE_string("out", "flags/sweeps/table3", "Directory of run flagfiles to (re)write.")
    flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds.")
    flags.DEFINE_string("base", "flags/sweep.cfg", "Flagfile every run starts from.")
    flags.DEFINE_list("pairs", [], "Pairs as A+B (default: all of PAIRS).")
    flags.DEFINE_list("singles", [], "Verticals trained alone besides those of the pairs (single mode).")
    flags.DEFINE_list("modes", ["single", "shared", "coupled"], "Modes to write.")
    flags.DEFINE_multi_string("variant", [], "label:--flag=value[ --flag=value ...]; one sweep per variant.")


# The Table 3 pairs (task_a borrows from task_b): the paper's Table 2 analogues, then pairs with more data.
PAIRS = [("Dress", "Jean"), ("Trouser", "Jean"), ("Mangalsutra", "Necklace"), ("Chain", "Necklace"),
         ("Mangalsutra", "Chain"), ("JewellerySet", "Necklace"), ("Earring", "Ring"), ("Bracelet", "Ring")]


def runs(seeds: list[str], base: str, pairs: list[tuple[str, str]] = PAIRS,
         modes: tuple[str, ...] = ("single", "shared", "coupled"),
         variants: tuple[tuple[str, list[str]], ...] = (("", []),), singles: tuple[str, ...] = ()) -> dict[str, str]:
    """Run name → flagfile text."""
    specs = {}
    if "single" in modes:
        specs |= {f"single.{v}": f"--tasks={v}\n--mtl_mode=single\n"
                  for v in sorted({v for p in pairs for v in p} | set(singles))}
    paper = {"shared": "", "coupled": "--nocoupling_within\n"}  # Table 3's coupled runs sample as the paper does
    specs |= {f"{mode}.{a}+{b}": f"--tasks={a},{b}\n--mtl_mode={mode}\n{paper[mode]}"
              for a, b in pairs for mode in ("shared", "coupled") if mode in modes}
    return {f"s{seed}.{name}" + (f"@{label}" if label else ""):
            f"--flagfile={base}\n{text}--seed={seed}\n" + "".join(f"{f}\n" for f in extra)
            for label, extra in variants for seed in seeds for name, text in specs.items()}


def main(argv: list[str]) -> None:
    """Write the flagfiles, removing stale ones."""
    known = {f"{a}+{b}": (a, b) for a, b in PAIRS}
    pairs = []
    for p in FLAGS.pairs or known:
        a, sep, b = p.partition("+")
        if not sep or not a or not b:
            raise app.UsageError(f"--pairs: {p!r} is not of the form A+B")
        pairs.append((a, b))
    bad = set(FLAGS.modes) - {"single", "shared", "coupled"}
    if bad:
        raise app.UsageError(f"--modes: unknown mode(s) {sorted(bad)}; use single, shared, coupled")
    variants = tuple(parse_variant(v) for v in FLAGS.variant) or (("", []),)
    out = Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = runs(FLAGS.seeds, FLAGS.base, pairs, tuple(FLAGS.modes), variants, tuple(FLAGS.singles))
    for stale in set(p.stem for p in out.glob("*.cfg")) - set(wanted):
        (out / f"{stale}.cfg").unlink()
    for name, text in wanted.items():
        (out / f"{name}.cfg").write_text(text)
    print(f"{len(wanted)} runs in {out}")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
