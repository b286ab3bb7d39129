"""`python -m experiments.traced_train <train flags>`: mtl_tagger.train that also scores *test* at every dev
evaluation (history.json's evaluations get a "test" entry), for studying model-selection rules only.

Selection itself still reads dev alone; the test curve shows what each rule would have picked.
"""
from mtl_tagger import cli, params
from mtl_tagger.files import write_json_atomic
from mtl_tagger.loop import Loop
from mtl_tagger.train import main

_evaluate = Loop.evaluate


def evaluate_with_test(self: Loop, step: int) -> str:
    """Loop.evaluate, then the test macro-F1 and entity-F1 of every vertical at this step."""
    line = _evaluate(self, step)
    test = {}
    for t in self.names:
        m, _ = self.tagger.evaluate(self.run.data.tasks[t].test, t)
        test[t] = {k: round(m[k], 6) for k in ("macro_f1", "entity_f1")}
    self.history["evaluations"][-1]["test"] = test
    write_json_atomic(self.model_dir / "history.json", self.history)
    return line


if __name__ == "__main__":
    Loop.evaluate = evaluate_with_test
    params.define_flags()
    cli.run(main)
