"""--distribute=multiworker: two worker processes on localhost give the weights one worker gets on the same
global batches, and only the chief writes the model dir."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from conftest import REPO

# The paper's coupling minibatches: with --coupling_within the plan depends on the number of workers
# (test_coupling checks that the workers' share of such a plan adds up to one process's). Weight decay and the
# spelling weights' L1 step on, so that their updates of the mirrored variables are checked too.
FLAGS = ["--flagfile=flags/smoke.cfg", "--tasks=Chain x,Mangal-sutra", "--mtl_mode=coupled", "--nocoupling_within",
         "--dropout=0", "--word_dropout=0", "--min_steps=6", "--max_steps=6", "--eval_every=3", "--patience=0",
         "--weight_decay=0.5", "--lexical_l1=0.1"]


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(model_dir / "last"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith(("net/", "coupler/")) and "OPTIMIZER_SLOT" not in k}


def test_two_workers_equal_one_worker_on_the_same_global_batch(data_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    common = [sys.executable, "-m", "mtl_tagger.train", *FLAGS, f"--data_dir={data_dir}"]
    cluster = {"worker": [f"localhost:{p}" for p in _ports(2)]}
    procs = [subprocess.Popen([*common, f"--model_dir={tmp_path / 'two'}", "--distribute=multiworker"], cwd=REPO,
                              env={**env, "TF_CONFIG": json.dumps({"cluster": cluster,
                                                                   "task": {"type": "worker", "index": i}})},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    # After the workers, not beside them: a third process on two cores stalls the workers at every collective.
    one = subprocess.run([*common, f"--model_dir={tmp_path / 'one'}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a.keys() == b.keys() and len(a) > 10
    assert max(float(np.max(np.abs(a[k] - b[k]))) for k in a) < 1e-5
    assert json.loads((tmp_path / "two" / "history.json").read_text())["evaluations"][-1]["step"] == 6
    assert len(list((tmp_path / "two" / "tensorboard").glob("events*"))) == 1, "only the chief writes"
    assert len(list((tmp_path / "two" / "shortlist").iterdir())) == 1
    assert "Vertical" in outs[0][0] and "Vertical" not in outs[1][0], "only the chief tests and prints"
