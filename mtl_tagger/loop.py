"""The training loop: optimiser steps over a built run, dev evaluation every K steps, each vertical's best step
(ties to the later step) and early stopping. Saving, TensorBoard, the progress bar and Ctrl-C are hooks
(mtl_tagger.hooks) that act on the events the loop yields, as spaCy's training loop yields and its caller saves.

One step = one minibatch of every vertical (+ the coupling minibatch in coupled mode), one summed loss
(mtl_tagger.loss), one Adam update; `Stepped` follows it. Every `eval_every` steps all verticals are scored on
dev (--selection, macro-F1 by default) and `Evaluated` says which improved: their weights are the ones to keep
(`evaluated_weights`) for testing each vertical at its own best step. Training stops at the step budget, or once
no vertical has improved for `patience` evaluations and `min_steps` are done. `rewind` drops the evaluations past a
resumed step, so that a resumed run repeats the same steps.
"""
import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from mtl_tagger import pipeline
from mtl_tagger.loss import step_loss
from mtl_tagger.optimizer import Adam, Average
from mtl_tagger.pipeline import COUPLING_SIGNATURE, WITHIN_SIGNATURE
from mtl_tagger.run import Run, size_weights


@dataclass(frozen=True)
class Stepped:
    """An optimiser step done: its number, the step budget, the loss terms (mtl_tagger.loss), and whether an
    evaluation follows."""

    step: int
    total: int
    losses: dict[str, tf.Tensor]
    loss: float
    evaluates: bool


@dataclass(frozen=True)
class Evaluated:
    """A dev evaluation done: every vertical's scores, those that improved, the report line, and the rule that
    stops training here (None: it goes on)."""

    step: int
    total: int
    dev: dict[str, dict[str, float]]
    improved: tuple[str, ...]
    line: str
    stop: str | None


class Loop:
    """Steps, evaluates and selects one built run; its history is the model dir's history.json."""

    def __init__(self, run: Run, history: dict, score: Callable[[str], dict[str, float]],
                 strategy: tf.distribute.Strategy | None = None, worker: tuple[int, int] = (0, 1)) -> None:
        """`run` built in `strategy`'s scope when one is given; `history` as modeldir.read_history gives it;
        `score(vertical)`: dev macro-F1 and entity-F1 with the current weights; `worker` = (index, workers)."""
        self.run, self.p, self.history, self.score = run, run.params, history, score
        self.strategy = strategy or tf.distribute.get_strategy()
        self.worker = worker
        self.names = self.p.names
        self.task_weights = size_weights({t: len(n) for t, n in run.lengths.items()}, self.p.size_weight)
        self.weights = {"net": run.net, **({"coupler": run.coupler} if run.coupler is not None else {})}
        self.variables = [v for w in self.weights.values() for v in w.trainable_variables]
        spelling = {h.lexical.ref() for h in run.net.heads.values() if h.lexical is not None}
        l1 = [self.p.lexical_l1 if v.ref() in spelling else 0.0 for v in self.variables]
        with self.strategy.scope():
            self.optimizer = Adam(self.variables, self.p.learning_rate, self.p.clip_norm, decay=self.p.lr_decay,
                                  decay_steps=run.budget(), weight_decay=self.p.weight_decay, l1=l1)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.average = Average(self.variables, self.p.average) if self.p.average else None
        self.state = {"optimizer": self.optimizer, "step": self.step,
                      **({"average": self.average} if self.average else {})}
        counted = [*self.names, *(["coupling"] if run.coupling is not None else [])]
        signature = {"step": tf.TensorSpec([], tf.int64), "count": {k: tf.TensorSpec([], tf.float32) for k in counted},
                     **{t: pipeline.BATCH_SIGNATURE for t in self.names}}
        if run.coupling is not None:
            signature["coupling"] = WITHIN_SIGNATURE if self.p.coupling_within else COUPLING_SIGNATURE
        self.train_step = tf.function(self._step, input_signature=[signature], autograph=False)

    def _gradients(self, inputs: dict) -> tuple[list[tf.Tensor], dict[str, tf.Tensor]]:
        """This worker's share of the step's loss terms and gradients (dropout drawn from (seed, step))."""
        seed = tf.stack([tf.constant(self.p.seed, tf.int64), inputs["step"]])
        pairs = self.run.coupling.pairs if self.run.coupling is not None else []
        with tf.GradientTape() as tape:
            loss, terms = step_loss(self.run.net, self.names, self.run.coupler, pairs, self.p.coupling_weight,
                                    inputs, seed, self.p.lexical_l2, self.p.coupling_within,
                                    self.strategy.num_replicas_in_sync, self.task_weights)
        grads = tape.gradient(loss, self.variables)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, self.variables)]
        return grads, {"loss": loss, **terms}

    def _step(self, inputs: dict) -> dict[str, tf.Tensor]:
        """One optimiser step: every worker's share summed (the whole step's gradient), one Adam update."""
        grads, losses = self.strategy.run(self._gradients, args=(inputs,))
        total = functools.partial(self.strategy.reduce, tf.distribute.ReduceOp.SUM, axis=None)
        grads, losses = [total(g) for g in grads], {k: total(v) for k, v in losses.items()}
        norm = self.optimizer.apply(grads, self.variables)
        if self.average is not None:
            self.average.update(self.variables)
        return {**losses, "grad_norm": norm}

    def rewind(self, step: int) -> None:
        """Forget the evaluations after `step` (a resumed run redoes those steps exactly) and reselect."""
        self.history["evaluations"] = [e for e in self.history["evaluations"] if e["step"] <= step]
        best: dict[str, dict] = {}
        for e in self.history["evaluations"]:
            for t, m in e["dev"].items():
                if t not in best or m[self.p.selection] >= best[t][self.p.selection]:
                    best[t] = {"step": e["step"], **m}
        self.history["best"] = best

    def _stale(self, task: str) -> int:
        """Evaluations since `task` last improved."""
        best = self.history["best"].get(task)
        return sum(1 for e in self.history["evaluations"] if best is None or e["step"] > best["step"])

    def dev_scores(self) -> dict[str, dict[str, float]]:
        """Every vertical's dev macro-F1 and entity-F1 with the current weights."""
        return {t: {k: round(v, 6) for k, v in self.score(t).items()} for t in self.names}

    @contextlib.contextmanager
    def evaluated_weights(self) -> Iterator[None]:
        """The weights dev is scored with, in place for the block: the averaged ones under --average."""
        if self.average is not None:
            self.average.swap(self.variables)
        try:
            yield
        finally:
            if self.average is not None:
                self.average.swap(self.variables)

    def evaluate(self, step: int) -> Evaluated:
        """Score dev, record the evaluation in the history and select each vertical's best step."""
        with self.evaluated_weights():
            dev = self.dev_scores()
        self.history["evaluations"].append({"step": step, "dev": dev})
        cells, improved, key = [], [], self.p.selection
        for t in self.names:
            best = self.history["best"].get(t)
            if best is None or dev[t][key] >= best[key]:  # a tie goes to the later step
                self.history["best"][t] = {"step": step, **dev[t]}
                improved.append(t)
                cells.append(f"{t} {dev[t][key] * 100:.2f}*")
            else:
                cells.append(f"{t} {dev[t][key] * 100:.2f} (best {best[key] * 100:.2f} @{best['step']})")
        total = self.run.budget()
        return Evaluated(step, total, dev, tuple(improved), f"dev {key.replace('_f1', '-F1')}: " + ", ".join(cells),
                         self.stop_rule(step))

    def train(self, start: int) -> Iterator[Stepped | Evaluated]:
        """Train from `start` to the step budget or until patience runs out, yielding each step and evaluation."""
        total, every = self.run.budget(), self.run.eval_every()
        if self.stop_rule(start):
            return
        plans = self.run.plans(total)
        data = pipeline.step_dataset(self.run.table, plans, self.run.offsets, start,
                                     self.run.coupling, self.run.coupling_plan(total, plans, self.worker[1]),
                                     self.worker)
        for inputs in data:
            out = self.train_step(inputs)
            step = int(self.step.assign_add(1))
            loss = float(out["loss"])
            if not np.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss} at step {step}; lower --learning_rate")
            evaluates = step % every == 0 or step == total
            yield Stepped(step, total, out, loss, evaluates)
            if evaluates:
                evaluation = self.evaluate(step)
                yield evaluation
                if evaluation.stop:
                    return

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
