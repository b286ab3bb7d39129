"""The project against a PyTorch BiLSTM-CRF (experiments/peer_torch.py): same model, data and batches, side by side.

    python -m experiments.bench_peer [--rounds=3] [--train_steps=20] [--hidden_size=0] [--profile]

Synthetic CoNLL data (fixed seed, 20k Zipf-ish words, 41 tags = O + 20 attributes × B/I, lognormal sentence
lengths with median 30, p90 70, max 150) is written to a work dir and read by the project's own code
(`corpus.load_data` + `run.build` with flags/paper.cfg, random embeddings). The project's batch plans — the
loop's length-bucketed training plan, `pipeline.eval_batches` order for decoding, and random-order batches
for the unbucketed case — go to an .npz that the peer pads from; the project process checks that every
batch it feeds equals the peer's. Each round runs the project and the peer in fresh processes, alternating
which goes first; each process warms up with one untimed pass over its batches and then times the same
batches, counting real (non-padding) tokens. Each process also times float32 GEMMs (numpy and its own
framework; bfloat16 ones too when the project's products take bfloat16 factors, `--matmul_dtype`): the best
float32 rate is the ceiling every peer figure's implied FLOP rate is checked against, the best of all the
project's.
A third process per round times a coupled step (`--tasks=A,B --mtl_mode=coupled`), with the paper's coupling
minibatches and with `--coupling_within`, against the two single-task steps it contains, on the same minibatches,
alternating step by step. `--profile` adds, in two
more processes (one per side), a breakdown of the training step and of decoding into parts (PARTS) on the same
bucketed batches, the project's beside the peer's. The report is written to --report only when the machine was
quiet: the 1-minute load before the run, and the CPU other processes took while each measuring process ran,
below --max_load (other jobs make figures unrepeatable; the load average itself counts the benchmark's own
threads, so it cannot judge the time in between).

This module imports TensorFlow only inside the project-side functions. The helpers both sides use (padding, timing,
GEMMs) are in experiments/common.py, which the peer process imports without TensorFlow.
"""
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.common import (
    KINDS,
    MAX_LEN,
    MEDIAN_LEN,
    P90_LEN,
    Batch,
    Sentences,
    command_line,
    flops_per_token,
    gemm_rates,
    gemm_shapes,
    load_average,
    machine,
    per_batch,
    time_parts,
    timed,
    write_data,
)
from mtl_tagger.params import MATMUL_DTYPES

ROOT = Path(__file__).resolve().parents[1]
TASK, OTHER = "A", "B"  # the benchmarked vertical, and the second vertical of the coupled run
SIDES = ("project", "peer")
# What `--profile` times, per work: each side's profile keys its parts so (leaving out what it does not have), and
# the report lists them in this order under these labels; "step" is the whole step that the shares are of.
PARTS = {
    "train": {
        "pipeline": "input pipeline (step_dataset: gather and pad in-graph; overlaps the step by prefetching)",
        "chars": "char encoder forward+backward",
        "bilstm": "BiLSTM forward (on a random input of the encoder's width)",
        "bilstm_grad": "BiLSTM forward+backward (same input)",
        "encoder": "encoder forward (embeddings, chars, BiLSTM, dropout)",
        "encoder_grad": "encoder forward+backward",
        "crf_grad": "CRF loss forward+backward (on fixed emissions)",
        "head_grad": "Dense + CRF forward+backward (on fixed encoder output)",
        "gradients": "loss + all gradients, no update",
        "update": "Adam update + clipping (dense, all variables, on fixed gradients)",
        "step": "whole train step",
    },
    "decode": {
        "encoder": "encoder forward (embeddings, chars, BiLSTM)",
        "dense": "Dense emissions (on fixed encoder output)",
        "viterbi": "Viterbi decode (on fixed emissions)",
        "marginals": "CRF marginals, what confidence needs (on fixed emissions)",
        "step": "whole decode: tags (TaggerNet.decode, as the decode tok/s)",
        "step_marginals": "whole decode: tags + marginals (Tagger.tag, with confidences)",
    },
}


# ---------------------------------------------------------------- plans (the peer pads them with common.Sentences)


def random_plan(n: int, batch_size: int, batches: int, rng: np.random.Generator) -> np.ndarray:
    """[batches, batch_size] sentence indices in random order, epoch after epoch (the unbucketed plans)."""
    total = batches * batch_size
    order = np.concatenate([rng.permutation(n) for _ in range(-(-total // n))])[:total]
    return order.reshape(batches, batch_size).astype(np.int32)


def rows_to_plan(rows: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    """Batches of sentence indices as one [batches, batch_size] array, −1 past each batch's end."""
    plan = np.full((len(rows), batch_size), -1, np.int32)
    for i, r in enumerate(rows):
        plan[i, :len(r)] = r
    return plan


def export(path: Path, sets: Mapping[str, Sequence[Mapping[str, np.ndarray]]], plans: Mapping[str, np.ndarray],
           max_word_len: int, **sizes: int) -> None:
    """Write encoded sentence sets (pipeline.Example lists) and batch plans to one .npz for the peer."""
    arrays: dict[str, np.ndarray] = {f"plan_{k}": v for k, v in plans.items()}
    for name, examples in sets.items():
        arrays[f"{name}_length"] = np.array([int(e["length"]) for e in examples], np.int32)
        for k in ("words", "tags"):
            arrays[f"{name}_{k}"] = np.concatenate([e[k] for e in examples]).astype(np.int32)
        chars = np.zeros((int(arrays[f"{name}_length"].sum()), max_word_len), np.int32)
        row = 0
        for e in examples:
            chars[row:row + len(e["chars"]), :e["chars"].shape[1]] = e["chars"]
            row += len(e["chars"])
        arrays[f"{name}_chars"] = chars
    np.savez(path, **arrays, **{k: np.int64(v) for k, v in sizes.items()})


# ---------------------------------------------------------------- the project's side


def _params(cfg: Mapping[str, Any], tasks: str, mode: str = "", **extra: Any) -> Any:
    """Params of the base flagfile with the benchmark's overrides (and `extra`), on the synthetic data, random
    embeddings."""
    from mtl_tagger.params import Params, read_flagfile

    values = {**read_flagfile(cfg["flagfile"]), **cfg["overrides"], **extra}
    model_dir = Path(cfg["workdir"]) / "models" / ".".join([tasks, mode or "single", *extra])
    p = Params(**{**values, "tasks": tasks, "mtl_mode": mode, "data_dir": cfg["data_dir"], "word_vectors": "",
                  "model_dir": str(model_dir), "seed": cfg["seed"]}).validate()
    if p.max_len < MAX_LEN:
        raise ValueError(f"max_len {p.max_len} < {MAX_LEN}: sentences would be cut")
    return p


def _loop(cfg: Mapping[str, Any], tasks: str, mode: str = "", **extra: Any) -> Any:
    """A built run of the given verticals and its training loop (in a fresh model dir under the work dir)."""
    from mtl_tagger import run
    from mtl_tagger.corpus import load_data
    from mtl_tagger.train import make_loop

    p = _params(cfg, tasks, mode, **extra)
    model_dir = Path(p.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    return make_loop(run.build(p, load_data(p), model_dir), model_dir)[0]


def prepare(cfg: dict[str, Any]) -> dict[str, Any]:
    """Write the synthetic data and the .npz of encoded sentences and batch plans; return the model's sizes."""
    from mtl_tagger import pipeline, run
    from mtl_tagger.bilstm import resolve_matmul_dtype
    from mtl_tagger.corpus import load_data
    from mtl_tagger.tagger import EVAL_BATCH

    splits = {TASK: {"train": cfg["train_sentences"], "dev": 30, "test": cfg["test_sentences"]},
             OTHER: {"train": cfg["other_sentences"], "dev": 30, "test": 30}}
    write_data(Path(cfg["data_dir"]), splits, cfg["seed"], cfg["vocab"])
    p = _params(cfg, TASK)
    data = load_data(p)
    built = run.build(p, data, Path(p.model_dir))
    test = pipeline.encode_sentences(data.tasks[TASK].test, data.vocab, TASK, p.max_word_len)
    train = pipeline.encode_sentences(data.tasks[TASK].train, data.vocab, TASK, p.max_word_len)
    rng = np.random.default_rng([cfg["seed"], 99])
    steps = cfg["train_steps"]
    plans = {"train_bucketed": built.plans(steps)[TASK],
             "train_unbucketed": random_plan(len(train), p.batch_size, steps, rng),
             "decode_bucketed": rows_to_plan([pos for pos, _ in pipeline.eval_batches(test, EVAL_BATCH)], EVAL_BATCH),
             "decode_unbucketed": rows_to_plan(np.array_split(rng.permutation(len(test)),
                                                              range(EVAL_BATCH, len(test), EVAL_BATCH)), EVAL_BATCH)}
    sizes = {"num_words": len(data.vocab.words), "num_chars": len(data.vocab.chars),
             "num_tags": len(data.vocab.tags[TASK])}
    export(Path(cfg["plan"]), {"train": train, "test": test}, plans, p.max_word_len, **sizes)
    model = {k: getattr(p, k) for k in ("word_dim", "char_dim", "char_hidden", "case_dim", "hidden_size",
                                        "batch_size", "dropout", "word_dropout", "learning_rate", "clip_norm",
                                        "max_word_len", "max_len", "tag_prior", "bio_constraints",
                                        "lexical_buckets")}
    model["matmul_dtype"] = resolve_matmul_dtype(p.matmul_dtype).name  # `auto` as this machine resolves it
    return {**sizes, "model": model}


def _same(got: Mapping[str, Any], want: Batch, what: str) -> None:
    """Fail unless a project batch equals the peer's padding of the same plan row."""
    for k, v in want.items():
        if not np.array_equal(np.asarray(got[k]), v):
            raise AssertionError(f"{what}: the project's {k} differ from the peer's batch")


def _threads() -> dict[str, Any]:
    """TensorFlow's thread settings (0 = TensorFlow's default: one thread per core)."""
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: on)"),
            "cpu_count": os.cpu_count()}


def project_train_inputs(cfg: Mapping[str, Any], loop: Any, plans: Mapping[str, np.ndarray],
                         sentences: Sentences) -> dict[str, list[dict]]:
    """Each kind's step inputs from `pipeline.step_dataset`, checked equal to the peer's batches."""
    from mtl_tagger import pipeline

    run = loop.run
    loop_plan = run.plans(cfg["train_steps"])[TASK]
    if not np.array_equal(loop_plan, plans["plan_train_bucketed"]):
        raise AssertionError("the exported bucketed plan is not the one the loop uses")
    inputs = {}
    for kind in KINDS:
        plan = plans[f"plan_train_{kind}"]
        inputs[kind] = list(pipeline.step_dataset(run.table, {TASK: plan}, run.offsets, 0))
        for i, x in enumerate(inputs[kind]):
            _same({k: v.numpy() for k, v in x[TASK].items()}, sentences.batch(plan[i]), f"train {kind} batch {i}")
    return inputs


def project_decode_inputs(loop: Any, plans: Mapping[str, np.ndarray]) -> dict[str, list[dict]]:
    """Each kind's decoding batches of the test split as tensors, padded as the project pads them (bucketed:
    `pipeline.eval_batches`, the order `Tagger` decodes in), checked equal to the peer's batches."""
    import tensorflow as tf

    from mtl_tagger import pipeline
    from mtl_tagger.tagger import EVAL_BATCH

    examples = pipeline.encode_sentences(loop.run.data.tasks[TASK].test, loop.run.vocab, TASK, loop.p.max_word_len)
    bucketed = pipeline.eval_batches(examples, EVAL_BATCH)
    if not np.array_equal(rows_to_plan([pos for pos, _ in bucketed], EVAL_BATCH), plans["plan_decode_bucketed"]):
        raise AssertionError("the exported decoding plan is not pipeline.eval_batches' order")
    padded = {"bucketed": [b for _, b in bucketed],
              "unbucketed": [pipeline.pad([examples[i] for i in row[row >= 0]])
                             for row in plans["plan_decode_unbucketed"]]}
    test = Sentences(plans, "test")
    inputs = {}
    for kind in KINDS:
        plan = plans[f"plan_decode_{kind}"]
        for i, b in enumerate(padded[kind]):
            _same(b, test.batch(plan[i]), f"decode {kind} batch {i}")
        inputs[kind] = [{k: tf.constant(v) for k, v in b.items()} for b in padded[kind]]
    return inputs


def project_child(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The project's training and decoding tokens/s on the exported plans, and numpy/TensorFlow GEMM rates."""
    import tensorflow as tf

    from mtl_tagger.bilstm import resolve_matmul_dtype
    from mtl_tagger.tagger import Tagger

    loop = _loop(cfg, TASK)
    plans = dict(np.load(cfg["plan"]))
    inputs = project_train_inputs(cfg, loop, plans, Sentences(plans, "train"))
    out: dict[str, Any] = {"side": "project", "threads": _threads(), "train": {}, "decode": {}}
    for kind in KINDS:
        tokens = int(sum(int(tf.reduce_sum(x[TASK]["length"])) for x in inputs[kind]))
        out["train"][kind] = timed(lambda x: float(loop.train_step(x)["loss"]), inputs[kind], tokens)
    decode = Tagger(loop.p, loop.run.vocab, {TASK: loop.run.net}).decoder(TASK, False)  # compiled Viterbi, no marginals
    for kind, batches in project_decode_inputs(loop, plans).items():
        tokens = int(sum(int(tf.reduce_sum(b["length"])) for b in batches))
        out["decode"][kind] = timed(lambda b: decode(b).numpy(), batches, tokens)
    shapes = gemm_shapes(cfg["model"])
    out["gemm"] = {"numpy": gemm_rates(shapes, lambda a: a, np.matmul),
                   "tensorflow": gemm_rates(shapes, tf.constant, tf.linalg.matmul)}
    dtype = resolve_matmul_dtype(loop.p.matmul_dtype)
    if dtype != tf.float32:
        out["gemm"][f"tensorflow {dtype.name}"] = gemm_rates(shapes, lambda a: tf.cast(a, dtype), tf.linalg.matmul)
    return out


def coupled_child(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Step seconds of a coupled (paper's coupling minibatches and --coupling_within), a shared and the two
    single-task runs on the same minibatches, alternating."""
    from mtl_tagger import pipeline

    steps = cfg["coupled_steps"]
    names = f"{TASK},{OTHER}"
    coupled = _loop(cfg, names, "coupled", coupling_within=False)  # the paper's coupling minibatch
    plans = coupled.run.plans(steps)
    loops = {"coupled": coupled, "within": _loop(cfg, names, "coupled", coupling_within=True),
             "shared": _loop(cfg, names, "shared"), TASK: _loop(cfg, TASK), OTHER: _loop(cfg, OTHER)}
    inputs = {}
    for name, loop in loops.items():
        run = loop.run
        mine = {t: plans[t] for t in loop.names}
        coupling_plan = run.coupling_plan(steps, mine) if run.coupling is not None else None
        inputs[name] = list(pipeline.step_dataset(run.table, mine, run.offsets, 0, run.coupling, coupling_plan))
    for name, loop in loops.items():  # warm-up pass
        for x in inputs[name]:
            float(loop.train_step(x)["loss"])
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    for i in range(steps):
        for name, loop in loops.items():
            start = time.perf_counter()
            float(loop.train_step(inputs[name][i])["loss"])
            seconds[name].append(time.perf_counter() - start)
    from mtl_tagger.pipeline import GROUPS

    encoded = [int(sum(x["coupling"][f"sentences_{g}"]["length"].shape[0] for g in range(GROUPS)))
               for x in inputs["coupled"]]
    anchors = {k: [int(x["count"]["coupling"]) for x in inputs[k]] for k in ("coupled", "within")}
    return {"seconds": seconds, "coupling_sentences": encoded, "anchors": anchors}


def profile_child(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Per work, mean milliseconds per batch of each part (PARTS) of the project's training step, on the loop's
    bucketed plan, and of its decoding, on the bucketed test batches."""
    import functools

    import tensorflow as tf

    from mtl_tagger import pipeline
    from mtl_tagger.bilstm import bilstm
    from mtl_tagger.tagger import Tagger

    loop = _loop(cfg, TASK)
    run, net = loop.run, loop.run.net
    head, encoder = net.heads[TASK], net.encoder
    plans = dict(np.load(cfg["plan"]))
    data = iter(pipeline.step_dataset(run.table, {TASK: plans["plan_train_bucketed"]}, run.offsets, 0))
    inputs = [next(data)]  # the first element also traces the pipeline's map function
    start = time.perf_counter()
    inputs += list(data)
    pipeline_ms = (time.perf_counter() - start) * 1e3 / (len(inputs) - 1)
    batches = [x[TASK] for x in inputs]
    decoding = project_decode_inputs(loop, plans)["bucketed"]
    seed = tf.constant([loop.p.seed, 1], tf.int64)
    traced = functools.partial(tf.function, autograph=False, reduce_retracing=True)

    def compiled(fn: Callable) -> Callable:
        return tf.function(fn, input_signature=[pipeline.BATCH_SIGNATURE], autograph=False)

    def gradients(loss: Callable[[dict], tf.Tensor], variables: Sequence[tf.Variable]) -> Callable:
        def fn(b: dict) -> list[tf.Tensor]:
            with tf.GradientTape() as tape:
                value = loss(b)
            return [tf.convert_to_tensor(g) for g in tape.gradient(value, variables)]
        return compiled(fn)

    def bilstm_output(b: dict) -> tf.Tensor:  # on a random input of the encoder's width
        x = tf.random.stateless_normal(tf.concat([tf.shape(b["words"]), [encoder.forward.kernel.shape[0]]], 0),
                                       [1, 2])
        return bilstm(x, b["length"], encoder.forward, encoder.backward)

    @traced
    def head_gradients(h: tf.Tensor, b: dict, dense: bool) -> list[tf.Tensor]:  # dense=False: h are emissions
        with tf.GradientTape() as tape:
            tape.watch(h)
            loss = -tf.reduce_mean(head.crf.log_likelihood(head.emissions(h) if dense else h, b["tags"], b["length"]))
        return tape.gradient(loss, [h, head.crf.transitions] + ([head.kernel, head.bias] if dense else []))

    encode = compiled(lambda b: encoder(b, seed))
    hidden = [encode(b) for b in batches]
    emissions = [head.emissions(h) for h in hidden]
    all_gradients = gradients(lambda b: net.crf_loss(TASK, b, seed), loop.variables)
    fixed = all_gradients(batches[0])
    adam = tf.function(lambda: loop.optimizer.apply(fixed, loop.variables), autograph=False)
    train = {
        "chars": per_batch(gradients(lambda b: tf.reduce_sum(encoder.chars(b["chars"], b["words"])),
                                     encoder.chars.trainable_variables), batches),
        "bilstm": per_batch(compiled(bilstm_output), batches),
        "bilstm_grad": per_batch(gradients(lambda b: tf.reduce_sum(bilstm_output(b)),
                                           encoder.forward.trainable_variables + encoder.backward.trainable_variables),
                                 batches),
        "encoder": per_batch(encode, batches),
        "encoder_grad": per_batch(gradients(lambda b: tf.reduce_sum(encoder(b, seed)), encoder.trainable_variables),
                                  batches),
        "crf_grad": per_batch(lambda e, b: head_gradients(e, b, False), emissions, batches),
        "head_grad": per_batch(lambda h, b: head_gradients(h, b, True), hidden, batches),
        "gradients": per_batch(all_gradients, batches),
        "update": lambda _: adam(),
        "step": per_batch(lambda x: float(loop.train_step(x)["loss"]), inputs),
    }
    tagger = Tagger(loop.p, run.vocab, {TASK: net})
    tags, confident = tagger.decoder(TASK), tagger.decoder(TASK, marginals=True)
    evaluate = compiled(lambda b: encoder(b))  # no seed: no dropout
    decode_hidden = [evaluate(b) for b in decoding]
    decode_emissions = [head.emissions(h) for h in decode_hidden]
    lengths = [b["length"] for b in decoding]
    one = tf.constant([1.0])
    decode = {
        "encoder": per_batch(evaluate, decoding),
        "dense": per_batch(traced(head.emissions), decode_hidden),
        "viterbi": per_batch(traced(head.crf.decode), decode_emissions, lengths),
        "marginals": per_batch(traced(head.crf.marginals), decode_emissions, lengths),
        "step": per_batch(lambda b: tags(b).numpy(), decoding),
        "step_marginals": per_batch(lambda b: [x.numpy() for x in confident(b, one)], decoding),
    }
    out = {"train": time_parts(train, batches), "decode": time_parts(decode, decoding)}
    out["train"]["ms_per_batch"]["pipeline"] = pipeline_ms
    return out


# ---------------------------------------------------------------- the run and its report


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (user, nice, system, irq, softirq, steal)."""
    user, nice, system, _, _, irq, softirq, steal = (int(x) for x in Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds of this process and its finished children."""
    return sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for field in ("ru_utime", "ru_stime"))


class Children:
    """Runs the measuring processes one at a time; records the load average and the CPU other processes took.

    The load average counts the benchmark's own busy threads too, so whether the machine was quiet is judged
    by the load before the run and by the CPU that other processes used while each measurement ran.
    """

    def __init__(self) -> None:
        self.loads = [os.getloadavg()]
        self.foreign: list[float] = []  # cores used by other processes during each measuring process

    def run(self, module: str, *args: str) -> dict[str, Any]:
        """Run `python -m module args` from the repository root; return the JSON it prints last."""
        busy, own, start = _busy_seconds(), _own_seconds(), time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        while True:
            try:
                out, err = proc.communicate(timeout=5)
                break
            except subprocess.TimeoutExpired:
                self.loads.append(os.getloadavg())
        self.loads.append(os.getloadavg())
        wall = time.perf_counter() - start
        self.foreign.append(max(0.0, (_busy_seconds() - busy) - (_own_seconds() - own)) / wall)
        if proc.returncode != 0:
            raise RuntimeError(f"{module} {' '.join(args)} failed:\n{err[-3000:]}")
        return json.loads(out.strip().splitlines()[-1])


def _spread(values: Sequence[float], digits: int = 2) -> str:
    """median [min–max] (n)."""
    low, mid, high = (f"{x:.{digits}f}" for x in (min(values), statistics.median(values), max(values)))
    return f"{mid} [{low}–{high}] (n={len(values)})"


def _padding(plan: np.ndarray, lengths: np.ndarray) -> float:
    """The share of a plan's padded token slots that are padding."""
    rows = [row[row >= 0] for row in plan]
    return 1.0 - sum(int(lengths[r].sum()) for r in rows) / sum(len(r) * int(lengths[r].max()) for r in rows)


def _peer_section(cfg: Mapping[str, Any], rounds: list[dict]) -> tuple[list[str], bool]:
    """Per-round tokens/s and ratios, the GEMM ceiling, FLOPs per token and each figure's share of the ceiling;
    and whether every implied FLOP rate stays below the ceiling."""
    plans = dict(np.load(cfg["plan"]))
    chars = {s: float(np.mean((plans[f"{s}_chars"] > 0).sum(1))) for s in ("train", "test")}
    flops = {s: flops_per_token(cfg["model"], cfg["num_tags"], chars[s]) for s in chars}
    forward = {s: sum(f.values()) for s, f in flops.items()}
    per_token = {"train": 3 * forward["train"], "decode": forward["test"]}
    gemm: dict[str, dict[str, float]] = {}
    for r in rounds:
        for side in ("project", "peer"):
            for framework, rates in r[side]["gemm"].items():
                for shape, rate in rates.items():
                    gemm.setdefault(framework, {})[shape] = max(rate, gemm.get(framework, {}).get(shape, 0.0))
    # The peer runs float32 (the columns that name no dtype); the project may take bfloat16 factors too.
    float32 = max(max(rates.values()) for framework, rates in gemm.items() if " " not in framework)
    ceiling = {"peer": float32, "project": max(max(rates.values()) for rates in gemm.values())}
    threads = {**rounds[0]["project"]["threads"], **rounds[0]["peer"]["threads"]}
    lines = ["Threads: " + ", ".join(f"{k} {v}" for k, v in threads.items()) + ".", "",
             f"Training: {cfg['train_steps']} batches of the train split (bucketed = the loop's plan, unbucketed = "
             f"random order); decoding: the {cfg['test_sentences']}-sentence test split in batches of 64 (bucketed = "
             "`pipeline.eval_batches` order). Both sides get the same batches; each process warms up with one "
             "untimed pass, then times the same batches; tokens are real (non-padding) tokens. Ratio = project / "
             "peer tokens/s in the same round. Padding, as a share of the padded token slots: "
             + ", ".join(f"{k.replace('_', ' ')} {_padding(plans[f'plan_{k}'], plans[s + '_length']):.0%}"
                         for k, s in (("train_bucketed", "train"), ("train_unbucketed", "train"),
                                      ("decode_bucketed", "test"), ("decode_unbucketed", "test"))) + ".", "",
             "| round | batches | train project tok/s | train peer tok/s | train ratio | decode project tok/s | "
             "decode peer tok/s | decode ratio |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    ratios: dict[tuple[str, str], list[float]] = {}
    for i, r in enumerate(rounds, 1):
        for kind in KINDS:
            cells = []
            for what in ("train", "decode"):
                a, b = r["project"][what][kind]["tokens_per_s"], r["peer"][what][kind]["tokens_per_s"]
                ratios.setdefault((what, kind), []).append(a / b)
                cells += [f"{a:,.0f}", f"{b:,.0f}", f"{a / b:.2f}"]
            lines.append(f"| {i} ({r['order']}) | {kind} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio (project / peer) | median [range] (n) | target |", "|---|---|---|"]
    lines += [f"| {what}, {kind} | {_spread(values)} | ≥ 1.2 |" for (what, kind), values in ratios.items()]
    shown = f"{ceiling['peer']:.0f} GFLOP/s" + (f", {ceiling['project']:.0f} for the project with its bfloat16 "
                                                 "products" if ceiling["project"] > ceiling["peer"] else "")
    lines += ["", f"GEMM, best GFLOP/s over all processes (ceiling = {shown}; float32 unless a column names its "
              "dtype):", "",
              "| shape m×k×n | " + " | ".join(gemm) + " |", "|---|" + "---:|" * len(gemm)]
    for shape in next(iter(gemm.values())):
        lines.append(f"| {shape} | " + " | ".join(f"{rates[shape]:.0f}" for rates in gemm.values()) + " |")
    lines += ["", f"FLOPs per real token, forward (mean real chars per token: train {chars['train']:.2f}, "
              f"test {chars['test']:.2f}); training counts 3× forward:", "", "| part | FLOPs/token |", "|---|---:|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in flops["train"].items()]
    lines += [f"| forward total | {forward['train']:,.0f} |", f"| training (3×) | {per_token['train']:,.0f} |", "",
              "| side | work | batches | median tok/s | implied GFLOP/s | share of ceiling |",
              "|---|---|---|---:|---:|---:|"]
    sane = True
    for side in ("project", "peer"):
        for what in ("train", "decode"):
            for kind in KINDS:
                rate = statistics.median(r[side][what][kind]["tokens_per_s"] for r in rounds)
                implied = rate * per_token[what] / 1e9
                sane &= implied <= ceiling[side]
                lines.append(f"| {side} | {what} | {kind} | {rate:,.0f} | {implied:.1f} | "
                             f"{implied / ceiling[side]:.1%}"
                             + ("" if implied <= ceiling[side] else " **exceeds the ceiling: wrong**") + " |")
    return lines, sane


def _coupled_section(cfg: Mapping[str, Any], coupled: list[dict]) -> list[str]:
    """Per-step ratios of a coupled (and a shared) step to the two single-task steps on the same minibatches."""
    seconds = {k: [s for c in coupled for s in c["seconds"][k]] for k in coupled[0]["seconds"]}
    singles = [a + b for a, b in zip(seconds[TASK], seconds[OTHER])]
    return ["", f"Coupled step vs the two single-task steps it contains (`--tasks={TASK},{OTHER}`, same minibatches, "
            "alternating step by step, each run warmed up by one pass):", "",
            "| per-step figure | median [range] (n) | target |", "|---|---|---|",
            f"| coupled with the paper's coupling minibatch (--nocoupling_within) / (single {TASK} + single {OTHER}) | "
            f"{_spread([c / s for c, s in zip(seconds['coupled'], singles)])} | ≤ 1.5 |",
            f"| coupled with --coupling_within (the default) / (single {TASK} + single {OTHER}) | "
            f"{_spread([c / s for c, s in zip(seconds['within'], singles)])} | ≤ 1.5 |",
            f"| shared / (single {TASK} + single {OTHER}) | "
            f"{_spread([c / s for c, s in zip(seconds['shared'], singles)])} | |",
            *(f"| {k} step seconds | {_spread(seconds[k], 3)} | |" for k in ("coupled", "within", "shared", TASK,
                                                                               OTHER)),
            f"| sentences the coupling minibatch encodes (besides the 2 × {cfg['model']['batch_size']} of the task "
            f"minibatches; none with --coupling_within) | "
            f"{_spread([n for c in coupled for n in c['coupling_sentences']], 0)} | |",
            *(f"| anchors per step{label} | {_spread([n for c in coupled for n in c['anchors'][k]], 0)} | |"
              for k, label in (("coupled", ""), ("within", " with --coupling_within")))]


def _peer_lacks(model: Mapping[str, Any]) -> list[str]:
    """The features of the project's configuration that the peer does not have (it has none of them)."""
    lacks = []
    if model.get("case_dim"):
        lacks.append(f"no word-shape feature (the project's embedding of {model['case_dim']} dimensions widens its "
                     f"BiLSTM input by {model['case_dim']})")
    if model.get("word_dropout"):
        lacks.append(f"no word dropout (the project's {model['word_dropout']})")
    if model.get("lexical_buckets"):
        lacks.append(f"no spelling features (the project's {model['lexical_buckets']} buckets add a gathered score per "
                     "feature and tag to its emission scores; its Dense part leaves them out)")
    added = [k for k, on in (("tag prior", model.get("tag_prior")), ("BIO constraints", model.get("bio_constraints")))
             if on]
    if added:
        lacks.append(f"no {' or '.join(added)} in decoding (the project adds its {' and '.join(added)} to the learned "
                     "transitions: about the same work)")
    return lacks


def _profile_section(cfg: Mapping[str, Any], profile: Mapping[str, dict]) -> list[str]:
    """Per work, milliseconds per batch of each part on both sides, project / peer, and each part's share of its
    side's whole step."""
    about = {  # what is timed, on which split, an overlap of parts, and why the peer lacks a part
        "train": ("training step", "train", "the encoder's forward is inside its forward+backward",
                  "it pads its batches before timing"),
        "decode": ("decoding", "test", "the encoder's forward is inside the whole decode",
                   "it decodes tags only, without confidences")}
    lines = []
    for work, labels in PARTS.items():
        what, split, overlap, why = about[work]
        ms = {side: profile[side][work]["ms_per_batch"] for side in SIDES}
        counts = {side: (profile[side][work]["batches"], profile[side][work]["tokens"]) for side in SIDES}
        lines += ["", f"Profile of the {what}: {counts['project'][0]} bucketed batches of the {split} split, "
                  f"{counts['project'][1]} real tokens"
                  + ("" if counts["peer"] == counts["project"] else
                     f" (**the peer timed other batches: {counts['peer'][0]}, {counts['peer'][1]} tokens**)")
                  + f"; each part in ms per batch after one untimed pass; parts overlap ({overlap}); shares are of "
                  f"the side's \"{labels['step']}\":", "",
                  "| part | project ms/batch | peer ms/batch | project / peer | project share | peer share |",
                  "|---|---:|---:|---:|---:|---:|"]
        for key, label in labels.items():
            mine, theirs = (ms[side].get(key) for side in SIDES)
            if mine is None and theirs is None:
                continue
            cells = [f"{v:.2f}" if v is not None else "—" for v in (mine, theirs)]
            cells.append(f"{mine / theirs:.2f}" if mine is not None and theirs is not None else "—")
            cells += [f"{v / ms[side]['step']:.0%}" if v is not None else "—" for v, side in zip((mine, theirs), SIDES)]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if any(k not in ms["peer"] for k in ms["project"]):
            lines += ["", f"—: the peer has no such part ({why})."]
    if _peer_lacks(cfg["model"]):
        lines += ["", "The peer's parts are timed without the features it lacks (listed under the model above)."]
    return lines


def report(cfg: Mapping[str, Any], rounds: list[dict], coupled: list[dict], profile: Mapping[str, dict] | None,
           children: Children, command: str, started: str) -> tuple[str, bool]:
    """The markdown report, and whether every implied FLOP rate stays below the measured GEMM ceiling."""
    m = cfg["model"]
    lines = [
        f"# Project vs PyTorch peer ({started})", "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}; {platform.python_implementation()} {platform.python_version()}  ",
        f"Load average 1/5/15 min: before {load_average(children.loads[0], 2)}, after "
        f"{load_average(children.loads[-1], 2)} (this includes the benchmark's own threads); CPU "
        f"taken by other processes while measuring: at most {max(children.foreign, default=0.0):.2f} cores "
        f"(mean over each measuring process)",
        "",
        f"Model: word {m['word_dim']} + char BiLSTM {m['char_hidden']}×2 (char embedding {m['char_dim']})"
        + (f" + word shape {m['case_dim']} (the project only)" if m.get("case_dim") else "") + " → BiLSTM "
        f"{m['hidden_size']}×2"
        + (f" (its products in {m['matmul_dtype']}, the project only)" if m.get("matmul_dtype", "float32") != "float32"
           else "")
        + f" → Dense({cfg['num_tags']}) → CRF, batch {m['batch_size']}, Adam, clip "
        f"{m['clip_norm']}, dropout {m['dropout']}; vocabulary {cfg['num_words']} words, {cfg['num_chars']} chars. "
        f"Data: synthetic, seed {cfg['seed']}, lognormal lengths (median {MEDIAN_LEN}, p90 {P90_LEN}, max "
        f"{MAX_LEN}).", ""]
    lacks = _peer_lacks(m)
    if lacks:
        lines += ["The peer has " + "; ".join(lacks) + ".", ""]
    sane = True
    if rounds:
        section, sane = _peer_section(cfg, rounds)
        lines += section
    if coupled:
        lines += _coupled_section(cfg, coupled)
    if profile:
        lines += _profile_section(cfg, profile)
    if not sane:
        lines += ["", "**A figure implies more FLOP/s than the measured GEMM ceiling: the measurement is wrong.**"]
    return "\n".join(lines) + "\n", sane


def main(_: list[str]) -> None:
    """Prepare the data and plans, run the rounds, print the report; write it when the machine was quiet."""
    from absl import flags

    f = flags.FLAGS
    if f.child:
        cfg = json.loads(Path(f.config).read_text())
        child = {"project": project_child, "coupled": coupled_child, "profile": profile_child}[f.child]
        print(json.dumps(child(cfg)))
        return
    command = command_line("experiments.bench_peer")
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    workdir = Path(f.workdir or tempfile.mkdtemp(prefix="bench_peer."))
    cfg: dict[str, Any] = {
        "workdir": str(workdir), "data_dir": str(workdir / "data"), "plan": str(workdir / "plans.npz"),
        "flagfile": str(ROOT / f.base),
        "overrides": {k: v for k, v in (("hidden_size", f.hidden_size), ("matmul_dtype", f.matmul_dtype)) if v},
        "seed": f.seed, "vocab": f.vocab, "train_sentences": f.train_sentences, "test_sentences": f.test_sentences,
        "other_sentences": f.other_sentences, "train_steps": f.train_steps, "coupled_steps": f.coupled_steps}
    cfg.update(prepare(cfg))
    config = workdir / "config.json"
    config.write_text(json.dumps(cfg))
    children = Children()
    print(f"load before: {children.loads[0]}; work dir {workdir}", flush=True)
    measure = {"project": lambda: children.run("experiments.bench_peer", "--child=project", f"--config={config}"),
               "peer": lambda: children.run("experiments.peer_torch", str(config))}
    rounds, coupled = [], []
    for i in range(f.rounds):
        order = ("project", "peer") if i % 2 == 0 else ("peer", "project")
        r: dict[str, Any] = {"order": " then ".join(order)}
        for side in order:
            r[side] = measure[side]()
            print(f"round {i + 1} {side}: train " + ", ".join(
                f"{k} {r[side]['train'][k]['tokens_per_s']:,.0f}" for k in KINDS) + " tok/s; decode " + ", ".join(
                f"{k} {r[side]['decode'][k]['tokens_per_s']:,.0f}" for k in KINDS)
                + f" tok/s; others' CPU {children.foreign[-1]:.2f} cores", flush=True)
        rounds.append(r)
        if f.coupled_steps:
            coupled.append(children.run("experiments.bench_peer", "--child=coupled", f"--config={config}"))
    profile = {"project": children.run("experiments.bench_peer", "--child=profile", f"--config={config}"),
               "peer": children.run("experiments.peer_torch", str(config), "--profile")} if f.profile else None
    text, sane = report(cfg, rounds, coupled, profile, children, command, started)
    print(text)
    foreign = max(children.foreign, default=0.0)
    if children.loads[0][0] >= f.max_load or foreign >= f.max_load:
        print(f"not writing {f.report}: load {children.loads[0][0]:.2f} before the run, other processes took up "
              f"to {foreign:.2f} cores while measuring (limit --max_load={f.max_load}): these figures would not "
              "reproduce")
    elif f.rounds < 2 or not sane:
        print(f"not writing {f.report}: " + ("fewer than 2 rounds" if f.rounds < 2 else "a figure exceeds the ceiling"))
    elif f.report:
        Path(ROOT / f.report).write_text(text, encoding="utf-8")
        print(f"wrote {f.report}")
    if not sane:
        sys.exit(1)


def define_flags() -> None:
    """The command's flags (defined only when run as a script: the peer process imports this module)."""
    from absl import flags

    flags.DEFINE_integer("rounds", 3, "Rounds; each runs the project and the peer in fresh processes, alternating.")
    flags.DEFINE_integer("train_steps", 20, "Timed training batches per kind (bucketed, unbucketed) per process.")
    flags.DEFINE_integer("coupled_steps", 10, "Timed steps of the coupled-step comparison per round (0: skip).")
    flags.DEFINE_integer("hidden_size", 0, "BiLSTM units per direction (0: the flagfile's, 700 in the paper's).")
    flags.DEFINE_string("base", "flags/paper.cfg", "The project's flagfile the runs start from (repository-relative).")
    flags.DEFINE_enum("matmul_dtype", "", ["", *MATMUL_DTYPES], "The project's --matmul_dtype (empty: the "
                      "flagfile's, else the default, auto); the peer stays float32.")
    flags.DEFINE_integer("seed", 1, "Seed of the data, the plans and the models.")
    flags.DEFINE_integer("vocab", 20000, "Synthetic vocabulary size (every word occurs in A's train split).")
    flags.DEFINE_integer("train_sentences", 3000, "Training sentences of vertical A.")
    flags.DEFINE_integer("test_sentences", 640, "Test sentences of vertical A (the decoding set).")
    flags.DEFINE_integer("other_sentences", 600, "Training sentences of vertical B (coupled comparison only).")
    flags.DEFINE_boolean("profile", False, "Also time the parts of the training step and of decoding, both sides.")
    flags.DEFINE_string("workdir", "", "Where data, plans and model dirs go (default: a new temporary dir).")
    flags.DEFINE_string("report", "experiments/results/bench.md", "Report path (written only on a quiet machine).")
    flags.DEFINE_float("max_load", 0.3, "Write the report only if the 1-minute load stayed below this.")
    flags.DEFINE_string("child", "", "Internal: run one measuring process (project, coupled or profile).")
    flags.DEFINE_string("config", "", "Internal: the run's config.json for --child.")


if __name__ == "__main__":
    from mtl_tagger import cli

    define_flags()
    cli.run(main)
