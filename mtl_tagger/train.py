"""`python -m mtl_tagger.train --tasks=A[,B,…] [--mtl_mode=…] --data_dir=D --model_dir=M` (or --task_a/--task_b).

Trains (or resumes) a single- or multi-task tagger, then prints every vertical's test metrics and, in
coupled mode, the top lender of every label; every flag is a field of mtl_tagger.params.Params (see
--helpfull, flags/paper.cfg and flags/sweep.cfg).
"""
import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from absl import logging

from mtl_tagger import cli, params
from mtl_tagger.calibration import calibrate
from mtl_tagger.conll import write_conll
from mtl_tagger.corpus import RunData, TaskData, load_data
from mtl_tagger.errors import InputError, Interrupted
from mtl_tagger.files import read_json, write_json_atomic
from mtl_tagger.metrics import format_table
from mtl_tagger.modeldir import claim, read_history, read_provenance, write_provenance
from mtl_tagger.params import Params
from mtl_tagger.vocab import Vocab

if TYPE_CHECKING:  # TensorFlow is imported once the input is checked (start), not with this module
    import tensorflow as tf

    from mtl_tagger.hooks import Checkpoints, Hook
    from mtl_tagger.loop import Loop
    from mtl_tagger.run import Run
    from mtl_tagger.tagger import Tagger


def cluster_worker() -> tuple[int, int]:
    """This process's (index, workers) among the workers TF_CONFIG lists, the chief 0 (--distribute=multiworker).

    Read here rather than by TensorFlow's TFConfigClusterResolver, so that a missing cluster is refused before
    TensorFlow loads; MultiWorkerMirroredStrategy reads the same variable.
    """
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
        jobs, task = config.get("cluster") or {}, config.get("task") or {}
        chiefs, workers = len(jobs.get("chief", [])), len(jobs.get("worker", []))
        index = 0 if task.get("type") == "chief" else int(task.get("index", 0)) + chiefs
    except (AttributeError, TypeError, ValueError):  # not JSON, or no lists and objects where TF_CONFIG has them
        jobs = {}
    if not jobs:
        raise InputError("--distribute=multiworker needs TF_CONFIG naming the cluster and this task, e.g. "
                         '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                         '"task": {"type": "worker", "index": 0}}')
    return index, chiefs + workers


def start(p: Params, data: RunData, model_dir: Path, worker: tuple[int, int], history: dict | None = None
          ) -> "tuple[Loop, Checkpoints, Tagger]":
    """Import TensorFlow (seconds: the caller has checked all the input it can without it), make ops deterministic,
    build the run under its strategy (over the workers TF_CONFIG lists with --distribute=multiworker) and return
    make_loop's loop, checkpoints and Tagger; may still refuse the input (an empty shortlist, say) or the model
    dir's checkpoints."""
    import tensorflow as tf

    from mtl_tagger.run import build

    strategy = (tf.distribute.MultiWorkerMirroredStrategy() if p.distribute == "multiworker"
                else tf.distribute.get_strategy())
    tf.config.experimental.enable_op_determinism()
    with strategy.scope():
        run = build(p, data, model_dir, write=False)
    return make_loop(run, model_dir, strategy, worker, history)


def dev_score(tagger: "Tagger", tasks: dict[str, TaskData], task: str) -> dict[str, float]:
    """The selection scores of `task` on its dev split with the network's current weights."""
    metrics, _ = tagger.evaluate(tasks[task].dev, task)
    return {k: metrics[k] for k in params.SELECTIONS}


def test(loop: "Loop", checkpoints: "Checkpoints", tagger: "Tagger", model_dir: Path) -> dict[str, dict]:
    """Score each vertical's best checkpoint on its test split, write predictions/ and return the metrics
    (metrics.json is the caller's to write, last)."""
    results: dict[str, dict] = {}
    pred_dir = model_dir / "predictions"
    pred_dir.mkdir(exist_ok=True)
    for t in loop.names:
        best = loop.history["best"][t]
        checkpoints.restore_best(loop, t)
        sentences = loop.run.data.tasks[t].test
        metrics, pred = tagger.evaluate(sentences, t)
        results[t] = {"split": "test", "selected_step": best["step"], "dev_macro_f1": best["macro_f1"], **metrics}
        write_conll(pred_dir / f"{t}.test.conll", ((s.tokens, s.tags, tags) for s, tags in zip(sentences, pred)))
    return results


def make_loop(run: "Run", model_dir: Path, strategy: "tf.distribute.Strategy | None" = None,
              worker: tuple[int, int] = (0, 1), history: dict | None = None) -> "tuple[Loop, Checkpoints, Tagger]":
    """The loop of a built run, its checkpoints, and the Tagger dev and test are scored with; the loop goes on
    from `history` (default: the model dir's, read here); may refuse the model dir's history or checkpoints
    (InputError)."""
    import tensorflow as tf

    from mtl_tagger.hooks import Checkpoints
    from mtl_tagger.loop import Loop
    from mtl_tagger.tagger import Tagger

    strategy = strategy or tf.distribute.get_strategy()
    history = read_history(model_dir, run.params.names) if history is None else history
    with strategy.scope():
        tagger = Tagger(run.params, run.vocab, {t: run.net for t in run.params.names})
        loop = Loop(run, history, functools.partial(dev_score, tagger, run.data.tasks), strategy, worker)
    return loop, Checkpoints(loop, model_dir, write=worker[0] == 0), tagger


def train(p: Params, hooks: Sequence["Hook"] = ()) -> dict[str, dict]:
    """Train (or resume) the run `p` describes and return its test metrics, keyed by vertical; `hooks` act on the
    loop's events before the checkpoints are written (an experiment's additions to the history, say).

    Everything that may refuse the input or the model dir is checked before anything is written to it, and all
    that needs no TensorFlow (the flags, data, vectors, the model dir's claim, vocabulary and history) before
    TensorFlow loads, so that a command's refusal is its only line; a run already complete only says so. With
    --distribute=multiworker every worker runs this; only the chief (worker 0) claims and writes the model dir,
    which the others must also see (a shared file system) to resume.
    """
    worker = cluster_worker() if p.distribute == "multiworker" else (0, 1)
    data = load_data(p)  # every input check happens before the model dir is touched
    model_dir = Path(p.model_dir)
    if worker[0] != 0:
        for note in data.notes:
            logging.warning(note)
        loop, checkpoints, _ = start(p, data, model_dir, worker)
        from mtl_tagger.hooks import fit

        fit(loop, checkpoints.resume(loop), [checkpoints])
        return {}
    held = claim(p, data.provenance)
    for note in data.notes:
        logging.warning(note)
    metrics = model_dir / "metrics.json"
    try:
        history = read_history(model_dir, p.names)  # none yet in a new run
        if held.resume:
            data.vocab = Vocab.load(model_dir / "vocab.json", p.names)  # the ids the checkpoints were trained with
        loop, checkpoints, tagger = start(p, data, model_dir, worker, history)
        run = loop.run
        # The modules that train and analyse the network import TensorFlow: only now that it is loaded.
        from mtl_tagger.analysis import analyse, format_lenders
        from mtl_tagger.bilstm import resolve_matmul_dtype
        from mtl_tagger.hooks import Interruption, ProgressBar, TensorBoard, fit

        step = checkpoints.resume(loop)  # or its last checkpoint: the last check; only now is anything written
        done = loop.stop_rule(step) if held.resume and metrics.is_file() else None
        if not done:
            metrics.unlink(missing_ok=True)  # a finished run trained further: its old test metrics no longer hold
            dtype = resolve_matmul_dtype(p.matmul_dtype).name  # what `auto` means on this machine
            started = read_provenance(model_dir).get("matmul_dtype", dtype) if held.resume else dtype
            if not held.resume:
                data.vocab.save(model_dir / "vocab.json")
                write_provenance(model_dir, {**data.provenance, "matmul_dtype": dtype})
            elif started != dtype:  # only `auto` can differ (the flag is not resumable): another machine
                logging.warning("%s was started with %s matrix products and goes on in %s on this machine "
                                "(--matmul_dtype=auto follows the CPU)", model_dir, started, dtype)
            run.cache_shortlists(model_dir)
            write_json_atomic(model_dir / "params.json", p.to_json())  # on resume: the new budget flags
    except BaseException:
        held.abandon()
        raise
    if done:
        held.lock.release()
        print(f"{model_dir} is already complete: it stopped at step {step} ({done}); its test metrics are in "
              f"{metrics}", flush=True)
        return read_json(metrics)
    held.commit()
    board = TensorBoard(model_dir)
    try:
        if step:
            print(f"resuming {model_dir} at step {step} of {run.budget()}", flush=True)
        try:
            fit(loop, step, [*hooks, checkpoints, board, ProgressBar(), Interruption()])
        except KeyboardInterrupt:
            saved = checkpoints.last.latest_checkpoint
            where = (f"the last checkpoint is {saved} (step {saved.rsplit('-', 1)[-1]})" if saved
                     else "no checkpoint was saved yet")
            raise Interrupted(f"interrupted at step {int(loop.step)}: {where}; run the same command again to "
                              "resume") from None
        try:
            results = test(loop, checkpoints, tagger, model_dir)
            print(format_table(results), flush=True)
            for line in calibrate(model_dir, p.calibration, {t: run.data.tasks[t].dev for t in p.names}, board.writer,
                                  tagger, functools.partial(checkpoints.restore_best, loop)):
                print(line, flush=True)
            if run.coupler is not None:
                for direction in analyse(run, model_dir, board.writer):
                    print("\n" + format_lenders(direction), flush=True)
        except KeyboardInterrupt:
            raise Interrupted("interrupted after training, while testing, calibrating or analysing: the trained model "
                              "is saved; run the same command again to finish these without training") from None
        write_json_atomic(metrics, results)  # last: a model dir with metrics.json holds a finished run
        return results
    finally:
        board.writer.close()
        held.lock.release()


def main(argv: list[str]) -> None:
    """Parse flags into Params and train."""
    cli.check_args(argv)
    train(params.from_flags())


if __name__ == "__main__":
    params.define_flags()
    cli.run(main)
