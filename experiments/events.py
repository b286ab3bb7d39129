"""Read a run's TensorBoard scalars back (the trainer writes train/* per step and dev/<task>/* per epoch)."""
from pathlib import Path

import tensorflow as tf


def scalars(event_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag → (step, value) sorted by step, from every event file under `event_dir`.

    A step logged twice (an epoch re-run after a kill, before its checkpoint was saved) keeps the
    value written last.
    """
    out: dict[str, dict[int, float]] = {}
    for path in sorted(event_dir.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for v in event.summary.value:
                if v.HasField("tensor") and not v.tensor.string_val:
                    out.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
    return {tag: sorted(steps.items()) for tag, steps in out.items()}
