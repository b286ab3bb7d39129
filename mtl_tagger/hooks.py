"""What happens around the training loop, as hooks on its events (mtl_tagger.loop): checkpoints and history in
the model dir, TensorBoard, the progress bar and Ctrl-C. `fit` runs a loop with a list of hooks; an experiment adds
its own (a subclass of `Hook`) instead of changing the loop.

Checkpoints: at every evaluation each improved vertical's weights go to best/<vertical>/ (so each vertical is
tested at its own best step), history.json records the evaluation, and the full state goes to last/, last: a
crash at any point of an evaluation resumes from the last complete one and repeats the same steps.
"""
import contextlib
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import tensorflow as tf

from mtl_tagger import interrupt
from mtl_tagger.files import write_json_atomic
from mtl_tagger.loop import Evaluated, Loop, Stepped
from mtl_tagger.modeldir import checkpoint_manager, restore
from mtl_tagger.progress import Progress


class Hook:
    """Acts on a loop's events; `running` wraps the whole of training (set up, and clean up however it ends)."""

    @contextlib.contextmanager
    def running(self, loop: Loop, start: int) -> Iterator[None]:
        """The block training runs in, from step `start`."""
        yield

    def stepped(self, loop: Loop, event: Stepped) -> None:
        """After every optimiser step."""

    def evaluated(self, loop: Loop, event: Evaluated) -> None:
        """After every dev evaluation (the history already holds it)."""


def fit(loop: Loop, start: int, hooks: Sequence[Hook]) -> None:
    """Train `loop` from `start` (to its step budget or early stop), passing every event to every hook in order."""
    with contextlib.ExitStack() as stack:
        for hook in hooks:
            stack.enter_context(hook.running(loop, start))
        events = stack.enter_context(contextlib.closing(loop.train(start)))
        for event in events:
            for hook in hooks:
                if isinstance(event, Stepped):
                    hook.stepped(loop, event)
                else:
                    hook.evaluated(loop, event)


class Checkpoints(Hook):
    """best/<vertical>/ and last/ of the model dir, and its history.json; only the writer (worker 0) writes."""

    def __init__(self, loop: Loop, model_dir: Path, write: bool = True) -> None:
        self.model_dir, self.write = model_dir, write
        self.trackables = {**loop.state, **loop.weights}
        self.last = checkpoint_manager(tf.train.Checkpoint(**self.trackables), model_dir / "last", model_dir)
        self.best = {t: checkpoint_manager(tf.train.Checkpoint(**loop.weights), model_dir / "best" / t, model_dir)
                     for t in loop.names}

    def resume(self, loop: Loop) -> int:
        """Restore the last saved state (if any) and return the step to continue from."""
        start = 0
        if self.last.latest_checkpoint is not None:
            extra = {k: v for k, v in self.trackables.items() if k != "net"}
            restore(loop.run.net, self.last.latest_checkpoint, self.model_dir, extra)
            start = int(loop.step)
        loop.rewind(start)
        return start

    def evaluated(self, loop: Loop, event: Evaluated) -> None:
        """Save the improved verticals' weights (the evaluated ones), then the history, then last/ (the
        evaluation's commit: a resumed run drops what the history holds past it and redoes those steps, which
        also rewrites any best/ saved after it)."""
        if not self.write:
            return
        with loop.evaluated_weights():
            for t in event.improved:
                self.best[t].save(checkpoint_number=event.step)
        write_json_atomic(self.model_dir / "history.json", loop.history)
        self.last.save(checkpoint_number=event.step)

    def restore_best(self, loop: Loop, task: str) -> None:
        """Put `task`'s selected weights into the network."""
        restore(loop.run.net, self.best[task].latest_checkpoint, self.model_dir)


class TensorBoard(Hook):
    """Every loss term at every step and every dev score at every evaluation, in the model dir's tensorboard/."""

    def __init__(self, model_dir: Path, write: bool = True) -> None:
        self.model_dir, self.write = model_dir, write

    @functools.cached_property
    def writer(self) -> tf.summary.SummaryWriter:
        """The writer, made on first use: a run refused or already complete writes none."""
        return tf.summary.create_file_writer(str(self.model_dir / "tensorboard")) if self.write \
            else tf.summary.create_noop_writer()

    @contextlib.contextmanager
    def running(self, loop: Loop, start: int) -> Iterator[None]:
        try:
            yield
        finally:
            self.writer.flush()

    def stepped(self, loop: Loop, event: Stepped) -> None:
        with self.writer.as_default():
            for k, v in event.losses.items():
                tf.summary.scalar(f"train/{k}", v, step=event.step)

    def evaluated(self, loop: Loop, event: Evaluated) -> None:
        with self.writer.as_default():
            for t, m in event.dev.items():
                for k, v in m.items():
                    tf.summary.scalar(f"dev/{t}/{k}", v, step=event.step)


class ProgressBar(Hook):
    """The steps bar with the loss and time left, a line per evaluation, and the line that says why training
    stopped."""

    def __init__(self) -> None:
        self.bar: Progress | None = None

    @contextlib.contextmanager
    def running(self, loop: Loop, start: int) -> Iterator[None]:
        self.bar = Progress(loop.run.budget(), "steps", start=start)
        try:
            yield
        finally:
            self.bar.close()

    def stepped(self, loop: Loop, event: Stepped) -> None:
        self.bar.update(1, loss=event.loss)

    def evaluated(self, loop: Loop, event: Evaluated) -> None:
        self.bar.line(f"step {event.step}/{event.total}: {event.line}")
        if event.stop:
            self.bar.line(f"stopping at step {event.step}: {event.stop}" if event.step == event.total
                          else f"stopping early at step {event.step} of {event.total}: {event.stop}")


class Interruption(Hook):
    """Ctrl-C ends training between steps (mtl_tagger.interrupt), as KeyboardInterrupt; after the evaluation where
    one is due, so that its checkpoint is saved."""

    def __init__(self) -> None:
        self.pressed = lambda: False

    @contextlib.contextmanager
    def running(self, loop: Loop, start: int) -> Iterator[None]:
        with interrupt.between_steps() as self.pressed:
            yield

    def stepped(self, loop: Loop, event: Stepped) -> None:
        if not event.evaluates and self.pressed():
            raise KeyboardInterrupt

    def evaluated(self, loop: Loop, event: Evaluated) -> None:
        if self.pressed():
            raise KeyboardInterrupt
