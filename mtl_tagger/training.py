"""The training loop: data → vocab → model → optimiser steps, dev selection, resume, final test metrics.

One optimiser step takes one minibatch of every task (single mode: task_a only); an epoch is as
many steps as the larger task has minibatches, the smaller task cycling through its own reshuffled
epochs. After every epoch the model is scored on dev (macro-F1, mean over tasks), the best weights
are kept in `best/`, and the full state (weights, optimiser, epoch, best score) in `last/`, so a
killed run started again with the same model dir resumes where it stopped.
"""
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging

from mtl_tagger import pipeline, shortlist
from mtl_tagger.analysis import analyse, format_lenders
from mtl_tagger.conll import write_conll
from mtl_tagger.corpus import TaskData, load_task, unseen_tags
from mtl_tagger.coupling import CouplingLoss
from mtl_tagger.errors import InputError
from mtl_tagger.files import write_json_atomic
from mtl_tagger.metrics import format_table
from mtl_tagger.model import TaggerNet
from mtl_tagger.params import Params
from mtl_tagger.tagger import Tagger
from mtl_tagger.vectors import embedding_matrix, read_vectors
from mtl_tagger.vocab import Vocab


@dataclass
class RunData:
    """Everything read from disk before a model dir is touched: all validation happens here."""

    tasks: dict[str, TaskData]
    vocab: Vocab
    pretrained: tuple[list[str], np.ndarray] | None  # (words, vectors) of --word_vectors

    def word_init(self, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Initial embedding rows for the current vocabulary and the mask of rows with a pretrained vector."""
        if self.pretrained is None:
            return None
        init, found = embedding_matrix(self.vocab.words, *self.pretrained, seed)
        init[0], found[0] = 0.0, False  # padding
        return init, found


def load_run_data(p: Params) -> RunData:
    """Read and check the tasks' splits and the word vectors, and build the vocabularies."""
    tasks = {t: load_task(p.data_dir, t, p.strict_bio, p.max_len) for t in p.tasks}
    for t, data in tasks.items():
        for split in ("dev", "test"):
            unseen = unseen_tags(data.train, getattr(data, split))
            if unseen:
                logging.warning("%s %s: %d tag(s) never seen in train will count as wrong: %s", t, split,
                                len(unseen), ", ".join(f"{k} ({v})" for k, v in sorted(unseen.items())))
    pretrained = None
    if p.word_vectors:
        pretrained = read_vectors(p.word_vectors)
        if pretrained[1].shape[1] != p.word_dim:
            raise InputError(f"vectors are {pretrained[1].shape[1]}-d but --word_dim={p.word_dim}", p.word_vectors)
    vocab = Vocab.build(
        (s.tokens for data in tasks.values() for s in data.train),
        {t: [s.tags for s in data.train] for t, data in tasks.items()},
        pretrained[0] if pretrained else (),
    )
    return RunData(tasks, vocab, pretrained)


def open_model_dir(p: Params) -> tuple[bool, Path | None]:
    """Make the model dir ready: (True when it holds a compatible run to resume, the set-aside old run).

    A dir holding another run (other tasks or flags) is refused unless --overwrite, which moves it
    aside; the caller deletes it once the new run has started, or puts it back if the new run fails.
    """
    model_dir = Path(p.model_dir)
    aside = None
    if model_dir.exists() and any(model_dir.iterdir()):
        if p.overwrite:
            aside = model_dir.with_name(f".{model_dir.name}.replaced")
            shutil.rmtree(aside, ignore_errors=True)
            model_dir.rename(aside)
        elif not (model_dir / "params.json").is_file():
            raise InputError("model dir is not empty and holds no params.json; use --overwrite or another dir",
                             model_dir)
        else:
            diff = p.differences(Params.load(model_dir))
            if diff:
                raise InputError("model dir holds a run with other tasks or flags (" + "; ".join(diff)
                                 + "); pass --overwrite to replace it", model_dir)
            return True, None
    model_dir.mkdir(parents=True, exist_ok=True)
    return False, aside


def _cycle(examples: list[pipeline.Example], p: Params, epoch: int) -> Iterator[dict[str, tf.Tensor]]:
    """Batches of one task for one epoch, continuing into fresh shuffles if the other task needs more."""
    for k in range(1_000_000):
        yield from pipeline.train_batches(examples, p.batch_size, p.seed, epoch * 1000 + k, p.max_len)


def _fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of arrays' bytes: the shortlist cache key's view of the data."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


class Trainer:
    """Owns the network, optimiser, checkpoints and TensorBoard writer of one run."""

    def __init__(self, p: Params, data: RunData) -> None:
        self.p, self.data = p, data
        self.model_dir = Path(p.model_dir)
        self.net = TaggerNet(p, len(data.vocab.words), len(data.vocab.chars), data.vocab.tags)
        self.word_init = data.word_init(p.seed)
        if self.word_init is not None:
            self.net.set_word_embeddings(self.word_init[0])
            logging.info("word vectors: %d of %d vocabulary words initialised from %s", self.word_init[1].sum(),
                         len(data.vocab.words), p.word_vectors)
        self.tagger = Tagger(p, data.vocab, self.net)
        self.optimizer = tf.keras.optimizers.Adam(p.learning_rate, global_clipnorm=p.clip_norm or None)
        self.examples = {t: pipeline.encode_sentences(d.train, data.vocab, t, p.max_word_len)
                         for t, d in data.tasks.items()}
        self.signature = {t: pipeline.BATCH_SIGNATURE for t in p.tasks}
        self.shortlist: pipeline.ShortlistData | None = None
        self.coupler: CouplingLoss | None = None
        if p.mode == "coupled":
            self.shortlist = self._build_shortlist()
            self.coupler = CouplingLoss(data.vocab.tags[p.task_a], data.vocab.tags[p.task_b],
                                        (2 * p.window + 1) * p.word_dim, label_kgram=p.label_kgram, name="coupling")
            self.coupler.build(None)
            self.signature["coupling"] = pipeline.COUPLING_SIGNATURE
        self.variables = self._trainable_variables()
        self.optimizer.build(self.variables)
        self.epoch = tf.Variable(0, dtype=tf.int64, name="epoch")
        self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.best = tf.Variable(-1.0, dtype=tf.float64, name="best_dev_macro_f1")
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, name="bad_epochs")
        weights = {"net": self.net, **({"coupling": self.coupler} if self.coupler else {})}
        state = tf.train.Checkpoint(optimizer=self.optimizer, epoch=self.epoch, step=self.step,
                                    best=self.best, bad_epochs=self.bad_epochs, **weights)
        self.last = tf.train.CheckpointManager(state, self.model_dir / "last", max_to_keep=1)
        self.best_ckpt = tf.train.CheckpointManager(tf.train.Checkpoint(**weights), self.model_dir / "best",
                                                    max_to_keep=1)
        self.train_step = tf.function(self._train_step, input_signature=[self.signature])

    def _build_shortlist(self) -> pipeline.ShortlistData:
        """Contexts of both tasks' training data, their cosine shortlist (cached), resolved for batching."""
        p = self.p
        if self.word_init is not None:
            init, found = self.word_init
            vectors = init * found[:, None]  # words without a pretrained vector count as padding
        else:
            logging.warning("no --word_vectors: the shortlist uses the random initial embeddings, so context "
                            "similarity is mostly word overlap")
            vectors = self.net.word_embeddings.numpy()
        examples = (self.examples[p.task_a], self.examples[p.task_b])
        contexts = tuple(shortlist.make_contexts(
            [e["words"] for e in ex],
            [e["tags"] > 0 if p.shortlist_contexts == "tagged" else np.ones(len(e["tags"]), bool) for e in ex],
            p.window) for ex in examples)
        key = {"tasks": p.tasks, "window": p.window, "threshold": p.shortlist_threshold,
               "max_neighbors": p.shortlist_max_neighbors, "contexts": p.shortlist_contexts,
               "data": _fingerprint(vectors, *(c.windows for c in contexts),
                                    *(e["tags"] for ex in examples for e in ex))}

        def build() -> shortlist.Shortlist:
            return shortlist.build_shortlist(contexts[0], contexts[1], vectors, p.shortlist_threshold,
                                             p.shortlist_max_neighbors)

        found = shortlist.cached_shortlist(self.model_dir / "shortlist", key, build)
        if found.num_pairs == 0:
            raise InputError(f"--shortlist_threshold={p.shortlist_threshold}: the shortlist is empty; "
                             + shortlist.threshold_hint(contexts[0], contexts[1], vectors))
        logging.info("shortlist: %s", found.summary())
        return pipeline.ShortlistData.build(contexts, examples, (found.a_neighbors, found.b_neighbors))

    def _trainable_variables(self) -> list[tf.Variable]:
        dummy = {"words": tf.ones([1, 2], tf.int32), "chars": tf.ones([1, 2, 3], tf.int32)}
        self.net.encode(dummy, training=False)  # builds the encoder's variables
        found = self.net.trainable_variables + (tuple(self.coupler.trainable_variables) if self.coupler else ())
        return list({id(v): v for v in found}.values())

    def _coupling_error(self, c: dict) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """TCE of one coupling minibatch, averaged over its anchors, and the layer's outputs."""
        scores = []
        for g in range(pipeline.LENGTH_GROUPS):  # each length group of sentences is encoded once
            h = self.net.encode(c[f"sentences_{g}"], training=True)
            for side, task in (("a", self.p.task_a), ("b", self.p.task_b)):
                lookup = c[f"lookup_{g}{side}"]  # (row, position, gold tag), scored by the context's own task head
                emissions = self.net.emissions(task, tf.gather_nd(h, lookup[:, :2]))  # only the contexts needed
                gold = tf.one_hot(lookup[:, 2], tf.shape(emissions)[-1], dtype=emissions.dtype)
                scores.append(tf.reduce_sum(emissions * gold, axis=-1))  # (safe for an empty lookup)
        scores = tf.concat(scores, axis=0)
        out = self.coupler({
            "direction": c["direction"], "mask": c["mask"],
            "anchor_u": self.net.window_vectors(c["anchor_window"]),
            "neighbor_u": self.net.window_vectors(c["neighbor_window"]),
            "anchor_tag": c["anchor_tag"], "neighbor_tag": c["neighbor_tag"],
            "anchor_score": tf.gather(scores, c["anchor_ref"]), "neighbor_score": tf.gather(scores, c["neighbor_ref"]),
        })
        anchors = tf.cast(tf.shape(c["direction"])[0], out["total"].dtype)
        return out["total"] / anchors, out

    def _train_step(self, batches: dict[str, dict[str, tf.Tensor]]) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            losses = {f"crf/{t}": self.net.crf_loss(t, batches[t], training=True) for t in self.p.tasks}
            if self.coupler is not None:
                tce, parts = self._coupling_error(batches["coupling"])
                losses["coupling/tce"] = tce
                anchors = tf.cast(tf.shape(batches["coupling"]["direction"])[0], tce.dtype)
                losses.update({f"coupling/{k}": parts[k] / anchors for k in ("cce", "cce_prime", "lce", "lce_prime")})
            loss = tf.add_n([v for k, v in losses.items() if k.startswith("crf/")])
            if self.coupler is not None:
                loss += self.p.coupling_weight * losses["coupling/tce"]
        grads = tape.gradient(loss, self.variables)
        self.optimizer.apply_gradients(zip(grads, self.variables))
        return {"loss": loss, **losses}

    def step_inputs(self, epoch: int) -> tf.data.Dataset:
        """One epoch of optimiser-step inputs: a minibatch per task (+ a coupling minibatch), prefetched."""
        streams = {t: _cycle(ex, self.p, epoch) for t, ex in self.examples.items()}
        if self.shortlist is not None:
            examples = (self.examples[self.p.task_a], self.examples[self.p.task_b])
            streams["coupling"] = pipeline.coupling_batches(self.shortlist, examples, self.p.batch_size,
                                                            self.p.seed, epoch)

        def steps() -> Iterator[dict]:
            while True:
                yield {k: next(s) for k, s in streams.items()}

        return tf.data.Dataset.from_generator(steps, output_signature=self.signature).prefetch(2)

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch: the larger task's number of minibatches."""
        bounds = pipeline.bucket_boundaries(self.p.max_len)
        counts = []
        for ex in self.examples.values():
            buckets = np.searchsorted(bounds, [int(e["length"]) for e in ex], side="right")
            counts.append(int(sum(-(-n // self.p.batch_size) for n in np.bincount(buckets))))
        return max(counts)

    def dev_scores(self) -> dict[str, dict]:
        """Dev metrics of every task with the current weights."""
        return {t: self.tagger.evaluate(d.dev, t)[0] for t, d in self.data.tasks.items()}

    def fit(self) -> None:
        """Run epochs from the last checkpoint until --epochs or --patience says stop."""
        if self.last.latest_checkpoint:
            self.last.checkpoint.restore(self.last.latest_checkpoint).assert_existing_objects_matched()
            logging.info("resuming from %s: epoch %d, best dev macro-F1 %.4f", self.last.latest_checkpoint,
                         int(self.epoch), float(self.best))
        writer = tf.summary.create_file_writer(str(self.model_dir / "tensorboard"))
        steps = self.steps_per_epoch()
        while int(self.epoch) < self.p.epochs and int(self.bad_epochs) < self.p.patience:
            epoch = int(self.epoch)
            print(f"Epoch {epoch + 1}/{self.p.epochs}", flush=True)
            bar = tf.keras.utils.Progbar(steps)  # shows the epoch's running mean loss
            with writer.as_default():
                for i, inputs in enumerate(self.step_inputs(epoch).take(steps)):
                    out = {k: float(v) for k, v in self.train_step(inputs).items()}
                    self.step.assign_add(1)
                    for k, v in out.items():
                        tf.summary.scalar(f"train/{k}", v, step=int(self.step))
                    bar.update(i + 1, [("loss", out["loss"])])
                dev = self.dev_scores()
                for t, m in dev.items():
                    for k in ("macro_precision", "macro_recall", "macro_f1", "micro_accuracy", "entity_f1"):
                        tf.summary.scalar(f"dev/{t}/{k}", m[k], step=epoch + 1)
            score = float(np.mean([m["macro_f1"] for m in dev.values()]))
            line = ", ".join(f"{t} {m['macro_f1'] * 100:.2f}" for t, m in dev.items())
            if score > float(self.best):
                self.best.assign(score)
                self.bad_epochs.assign(0)
                self.best_ckpt.save()
                print(f"dev macro-F1: {line} (best so far; saved)", flush=True)
            else:
                self.bad_epochs.assign_add(1)
                print(f"dev macro-F1: {line} (best {float(self.best) * 100:.2f})", flush=True)
            self.epoch.assign_add(1)
            self.last.save()
        writer.flush()

    def test(self) -> dict[str, dict]:
        """Score the best checkpoint on every task's test split; write predictions and metrics.json."""
        self.best_ckpt.checkpoint.restore(self.best_ckpt.latest_checkpoint).expect_partial()
        results = {}
        pred_dir = self.model_dir / "predictions"
        pred_dir.mkdir(exist_ok=True)
        for t, d in self.data.tasks.items():
            metrics, pred = self.tagger.evaluate(d.test, t)
            results[t] = {"split": "test", **metrics}
            write_conll(pred_dir / f"{t}.test.conll", ((s.tokens, s.tags, tags) for s, tags in zip(d.test, pred)))
        write_json_atomic(self.model_dir / "metrics.json", results)
        return results


def train(p: Params) -> dict[str, dict]:
    """Train (or resume) the run `p` describes and return its test metrics, keyed by vertical."""
    tf.keras.utils.set_random_seed(p.seed)
    tf.config.experimental.enable_op_determinism()
    data = load_run_data(p)  # all input checks happen before the model dir is touched
    model_dir = Path(p.model_dir)
    resume, aside = open_model_dir(p)
    try:
        if resume:
            data.vocab = Vocab.load(model_dir / "vocab.json")  # the ids the checkpoints were trained with
        else:
            data.vocab.save(model_dir / "vocab.json")
        write_json_atomic(model_dir / "params.json", p.to_json())  # on resume: the new epochs/patience
        trainer = Trainer(p, data)  # may still refuse the input (e.g. an empty shortlist)
    except BaseException:
        if not resume:
            shutil.rmtree(model_dir, ignore_errors=True)  # leave nothing half-written behind
            if aside is not None:
                aside.rename(model_dir)  # and give the user back the run --overwrite was to replace
        raise
    if aside is not None:
        shutil.rmtree(aside)
    trainer.fit()
    results = trainer.test()
    print(format_table(results), flush=True)
    if trainer.coupler is not None:
        print(format_lenders(analyse(trainer.shortlist, trainer.net, trainer.coupler, p.task_a, p.task_b,
                                     model_dir, tf.summary.create_file_writer(str(model_dir / "tensorboard")))))
    return results
