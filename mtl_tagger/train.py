"""`python -m mtl_tagger.train --tasks=A[,B,…] [--mtl_mode=…] --data_dir=D --model_dir=M` (or --task_a/--task_b).

Trains (or resumes) a single- or multi-task tagger, then prints every vertical's test metrics and, in
coupled mode, the top lender of every label; every flag is a field of mtl_tagger.params.Params (see
--helpfull, flags/paper.cfg and flags/sweep.cfg).
"""
from pathlib import Path

import tensorflow as tf

from mtl_tagger import cli, params
from mtl_tagger.analysis import analyse, format_lenders
from mtl_tagger.errors import Interrupted
from mtl_tagger.files import write_json_atomic
from mtl_tagger.loop import Loop
from mtl_tagger.metrics import format_table
from mtl_tagger.modeldir import claim, write_provenance
from mtl_tagger.params import Params
from mtl_tagger.run import build, load_data
from mtl_tagger.vocab import Vocab


def train(p: Params) -> dict[str, dict]:
    """Train (or resume) the run `p` describes and return its test metrics, keyed by vertical."""
    tf.config.experimental.enable_op_determinism()
    data = load_data(p)  # every input check happens before the model dir is touched
    model_dir = Path(p.model_dir)
    held = claim(p, data.provenance)
    try:
        if held.resume:
            data.vocab = Vocab.load(model_dir / "vocab.json")  # the ids the checkpoints were trained with
        else:
            data.vocab.save(model_dir / "vocab.json")
            write_provenance(model_dir, data.provenance)
        write_json_atomic(model_dir / "params.json", p.to_json())  # on resume: the new budget flags
        run = build(p, data, model_dir)  # may still refuse the input (e.g. an empty shortlist)
        loop = Loop(run, model_dir)
    except BaseException:
        held.abandon()
        raise
    held.commit()
    try:
        loop.fit()
    except KeyboardInterrupt:
        saved = loop.last.latest_checkpoint
        where = f"the last checkpoint is {saved} (step {int(loop.step)})" if saved else "no checkpoint was saved yet"
        raise Interrupted(f"interrupted: {where}; run the same command again to resume") from None
    results = loop.test()
    print(format_table(results), flush=True)
    if run.coupler is not None:
        writer = tf.summary.create_file_writer(str(model_dir / "tensorboard"))
        for direction in analyse(run, model_dir, writer):
            print("\n" + format_lenders(direction), flush=True)
        writer.close()
    held.lock.release()
    return results


def main(argv: list[str]) -> None:
    """Parse flags into Params and train."""
    if len(argv) > 1:
        raise cli.usage_error(argv)
    train(params.from_flags())


if __name__ == "__main__":
    params.define_flags()
    cli.run(main)
