"""`python -m mtl_tagger.train --task_a=Chain [--task_b=Mangalsutra] --data_dir=D --model_dir=M`.

Trains (or resumes) a single- or multi-task tagger, then prints the test metrics table; every flag
is a field of mtl_tagger.params.Params (see --helpfull or flags/paper.cfg).
"""
from mtl_tagger import cli, params, training


def main(argv: list[str]) -> None:
    """Parse flags into Params and train."""
    if len(argv) > 1:
        raise cli.usage_error(argv)
    training.train(params.from_flags())


if __name__ == "__main__":
    params.define_flags()
    cli.run(main)
