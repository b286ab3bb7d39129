"""`python -m experiments.traced_train <train flags>`: mtl_tagger.train that also scores *test* at every dev
evaluation (history.json's evaluations get a "test" entry), for studying model-selection rules only.

Selection itself still reads dev alone; the test curve shows what each rule would have picked.
"""
from mtl_tagger import cli, params
from mtl_tagger.hooks import Hook
from mtl_tagger.loop import Evaluated, Loop
from mtl_tagger.tagger import Tagger
from mtl_tagger.train import train


class TestCurve(Hook):
    """At every evaluation, the test macro-F1 and entity-F1 of every vertical, into the history's evaluation."""

    def __init__(self) -> None:
        self.tagger: Tagger | None = None

    def evaluated(self, loop: Loop, event: Evaluated) -> None:
        self.tagger = self.tagger or Tagger(loop.p, loop.run.vocab, {t: loop.run.net for t in loop.names})
        test = {}
        with loop.evaluated_weights():
            for t in loop.names:
                m, _ = self.tagger.evaluate(loop.run.data.tasks[t].test, t)
                test[t] = {k: round(m[k], 6) for k in params.SELECTIONS}
        loop.history["evaluations"][-1]["test"] = test


def main(argv: list[str]) -> None:
    """Parse the train flags and train with the test curve."""
    cli.check_args(argv)
    train(params.from_flags(), [TestCurve()])


if __name__ == "__main__":
    params.define_flags()
    cli.run(main)
