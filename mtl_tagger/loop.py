"""The training loop: optimiser steps over a built run, dev evaluation every K steps, each vertical's best
checkpoint (ties to the later step), early stopping, and resumption from the last evaluation.

One step = one minibatch of every vertical (+ the coupling minibatches in coupled mode), one summed loss,
one Adam update. Every `eval_every` steps all verticals are scored on dev; a vertical that improves its
dev score (--selection, macro-F1 by default) has the weights saved in best/<vertical>/ (so each vertical is
tested at its own best step), history.json records the evaluation, and the full state goes to last/, last: a
crash at any point of an evaluation resumes from the last complete one and repeats the same steps. Training
stops at the step budget, or once no vertical has improved for `patience` evaluations and `min_steps` are done.
"""
import functools
from pathlib import Path

import numpy as np
import tensorflow as tf

from mtl_tagger import interrupt, pipeline
from mtl_tagger.conll import write_conll
from mtl_tagger.coupling import COUPLING_SIGNATURE
from mtl_tagger.files import write_json_atomic
from mtl_tagger.model import fold_in
from mtl_tagger.modeldir import checkpoint_manager, read_history
from mtl_tagger.optimizer import Adam, Average
from mtl_tagger.progress import Progress
from mtl_tagger.run import Run
from mtl_tagger.tagger import Tagger, restore


class Loop:
    """Steps, evaluates, selects and resumes one built run in its model dir."""

    def __init__(self, run: Run, model_dir: Path, strategy: tf.distribute.Strategy | None = None,
                 worker: tuple[int, int] = (0, 1)) -> None:
        """`run` built in `strategy`'s scope when one is given; `worker` = (index, workers); worker 0 writes."""
        self.run, self.model_dir, self.p = run, model_dir, run.params
        self.strategy = strategy or tf.distribute.get_strategy()
        self.worker, self.chief = worker, worker[0] == 0
        self.names = self.p.names
        self.weights = {"net": run.net, **({"coupler": run.coupler} if run.coupler is not None else {})}
        self.variables = [v for w in self.weights.values() for v in w.trainable_variables]
        with self.strategy.scope():
            self.optimizer = Adam(self.variables, self.p.learning_rate, self.p.clip_norm)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.average = Average(self.variables, self.p.average) if self.p.average else None
        self.state = {"optimizer": self.optimizer, "step": self.step,
                      **({"average": self.average} if self.average else {})}
        self.last = checkpoint_manager(tf.train.Checkpoint(**self.state, **self.weights), model_dir / "last",
                                       model_dir)
        self.best = {t: checkpoint_manager(tf.train.Checkpoint(**self.weights), model_dir / "best" / t, model_dir)
                     for t in self.names}
        self.history = read_history(model_dir, self.names)
        self.tagger = Tagger(self.p, run.vocab, {t: run.net for t in self.names})
        counted = [*self.names, *(["coupling"] if run.coupling is not None else [])]
        signature = {"step": tf.TensorSpec([], tf.int64), "count": {k: tf.TensorSpec([], tf.float32) for k in counted},
                     **{t: pipeline.BATCH_SIGNATURE for t in self.names}}
        if run.coupling is not None:
            signature["coupling"] = COUPLING_SIGNATURE
        self.train_step = tf.function(self._step, input_signature=[signature], autograph=False)

    @functools.cached_property
    def writer(self) -> tf.summary.SummaryWriter:
        """TensorBoard's writer of the model dir, made on first use: a run refused or already complete writes none."""
        return tf.summary.create_file_writer(str(self.model_dir / "tensorboard")) if self.chief \
            else tf.summary.create_noop_writer()

    def _gradients(self, inputs: dict) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        """This worker's share of the step's loss terms and gradients (dropout drawn from (seed, step))."""
        seed = tf.stack([tf.constant(self.p.seed, tf.int64), inputs["step"]])
        count = inputs["count"]
        with tf.GradientTape() as tape:
            losses = {f"crf/{t}": self.run.net.crf_loss(t, inputs[t], fold_in(seed, i), count[t])
                      for i, t in enumerate(self.names)}
            loss = tf.add_n(list(losses.values()))
            if self.run.coupler is not None:
                out = self.run.coupler(self.run.net, inputs["coupling"], fold_in(seed, len(self.names)),
                                       count["coupling"])
                loss += self.p.coupling_weight * out["total"]
                losses["coupling/tce"] = out["total"]
                for i, (a, b) in enumerate(self.run.coupling.pairs):
                    for j, part in enumerate(("cce", "cce_prime", "lce", "lce_prime")):
                        losses[f"coupling/{a}:{b}/{part}"] = out["parts"][i, j]
        grads = tape.gradient(loss, self.variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, self.variables)]
        return grads, {"loss": loss, **losses}

    def _step(self, inputs: dict) -> dict[str, tf.Tensor]:
        """One optimiser step: every worker's share summed (the whole step's gradient), one Adam update."""
        grads, losses = self.strategy.run(self._gradients, args=(inputs,))
        total = functools.partial(self.strategy.reduce, tf.distribute.ReduceOp.SUM, axis=None)
        grads, losses = [total(g) for g in grads], {k: total(v) for k, v in losses.items()}
        norm = self.optimizer.apply(grads, self.variables)
        if self.average is not None:
            self.average.update(self.variables)
        return {**losses, "grad_norm": norm}

    def resume(self) -> int:
        """Restore the last saved state (if any) and return the step to continue from."""
        start = 0
        if self.last.latest_checkpoint is not None:
            restore(self.run.net, self.last.latest_checkpoint, self.model_dir,
                    {**self.state, **({"coupler": self.run.coupler} if self.run.coupler is not None else {})})
            start = int(self.step)
        # Evaluations written after the last checkpoint are redone: the run repeats those steps exactly.
        self.history["evaluations"] = [e for e in self.history["evaluations"] if e["step"] <= start]
        self.history["best"] = self._best()
        return start

    def _best(self) -> dict[str, dict]:
        """Each vertical's best evaluation so far (the latest of equal ones)."""
        best: dict[str, dict] = {}
        for e in self.history["evaluations"]:
            for t, m in e["dev"].items():
                if t not in best or m[self.p.selection] >= best[t][self.p.selection]:
                    best[t] = {"step": e["step"], **m}
        return best

    def _stale(self, task: str) -> int:
        """Evaluations since `task` last improved."""
        best = self.history["best"].get(task)
        return sum(1 for e in self.history["evaluations"] if best is None or e["step"] > best["step"])

    def dev_scores(self) -> dict[str, dict[str, float]]:
        """Every vertical's dev macro-F1 and entity-F1 with the current weights."""
        dev = {}
        for t in self.names:
            m, _ = self.tagger.evaluate(self.run.data.tasks[t].dev, t)
            dev[t] = {k: round(m[k], 6) for k in ("macro_f1", "entity_f1")}
        return dev

    def evaluate(self, step: int) -> str:
        """Score dev, keep improved verticals' weights, save the state and history; return the report line.

        With --average, dev is scored and the best checkpoints are written with the averaged weights.
        """
        if self.average is not None:
            self.average.swap(self.variables)
        try:
            dev = self.dev_scores()
            self.history["evaluations"].append({"step": step, "dev": dev})
            cells, key = [], self.p.selection
            for t in self.names:
                best = self.history["best"].get(t)
                if best is None or dev[t][key] >= best[key]:  # a tie goes to the later step
                    self.history["best"][t] = {"step": step, **dev[t]}
                    if self.chief:
                        self.best[t].save(checkpoint_number=step)
                    cells.append(f"{t} {dev[t][key] * 100:.2f}*")
                else:
                    cells.append(f"{t} {dev[t][key] * 100:.2f} (best {best[key] * 100:.2f} @{best['step']})")
        finally:
            if self.average is not None:
                self.average.swap(self.variables)
        if self.chief:
            # last/ is the evaluation's commit, written last: a resumed run drops what the history holds past it
            # and redoes those steps, which also rewrites any best/ saved after it.
            write_json_atomic(self.model_dir / "history.json", self.history)
            self.last.save(checkpoint_number=step)
        return f"dev {key.replace('_f1', '-F1')}: " + ", ".join(cells)

    def fit(self, start: int) -> None:
        """Train from `start` (what `resume` returned) to the step budget or until patience runs out."""
        total, every = self.run.budget(), self.run.eval_every()
        if start:
            print(f"resuming {self.model_dir} at step {start} of {total}", flush=True)
        if self.stop_rule(start):
            return
        data = pipeline.step_dataset(self.run.table, self.run.plans(total), self.run.offsets, start,
                                     self.run.coupling, self.run.coupling_plan(total), self.worker)
        bar = Progress(total, "steps", start=start)
        try:
            with self.writer.as_default(), interrupt.between_steps() as pressed:
                for inputs in data:
                    out = self.train_step(inputs)
                    step = int(self.step.assign_add(1))
                    loss = float(out["loss"])
                    if not np.isfinite(loss):
                        raise FloatingPointError(f"the loss became {loss} at step {step}; lower --learning_rate")
                    for k, v in out.items():
                        tf.summary.scalar(f"train/{k}", v, step=step)
                    bar.update(1, loss=loss)
                    if step % every == 0 or step == total:
                        line = self.evaluate(step)
                        for t, m in self.history["evaluations"][-1]["dev"].items():
                            for k, v in m.items():
                                tf.summary.scalar(f"dev/{t}/{k}", v, step=step)
                        bar.line(f"step {step}/{total}: {line}")
                        rule = self.stop_rule(step)
                        if rule:
                            bar.line(f"stopping at step {step}: {rule}" if step == total
                                     else f"stopping early at step {step} of {total}: {rule}")
                            break
                    if pressed():
                        raise KeyboardInterrupt
        finally:
            bar.close()
            del data
            self.writer.flush()

    def stop_rule(self, step: int) -> str | None:
        """The rule that ends training at `step` (the step budget, or patience run out for every vertical once the
        minimum steps are done), None while training goes on."""
        if step >= self.run.budget():
            return "the step budget is done"
        if not self.p.patience or step < self.p.min_steps or not self.history["evaluations"]:
            return None
        if all(self._stale(t) >= self.p.patience for t in self.names):
            return f"no vertical improved on dev in the last {self.p.patience} evaluations"
        return None

    def test(self) -> dict[str, dict]:
        """Score each vertical's best checkpoint on its test split, write predictions/ and return the metrics
        (metrics.json is the caller's to write, last)."""
        results: dict[str, dict] = {}
        if not self.chief:
            return results
        pred_dir = self.model_dir / "predictions"
        pred_dir.mkdir(exist_ok=True)
        for t in self.names:
            best = self.history["best"][t]
            restore(self.run.net, self.best[t].latest_checkpoint, self.model_dir)
            test = self.run.data.tasks[t].test
            metrics, pred = self.tagger.evaluate(test, t)
            results[t] = {"split": "test", "selected_step": best["step"], "dev_macro_f1": best["macro_f1"], **metrics}
            write_conll(pred_dir / f"{t}.test.conll", ((s.tokens, s.tags, tags) for s, tags in zip(test, pred)))
        return results
