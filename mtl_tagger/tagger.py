"""The `Tagger` Python API: a trained model (params.json + vocab.json + each vertical's best checkpoint).

    t = Tagger.load("runs/chain")
    t.predict([["Gold", "plated", "chain"]], task="Chain")   # -> [["B-plating", "I-plating", "O"]]
    t.extract("Gold plated chain", task="Chain")             # -> {"text", "tokens", "tags", "values": [...]}

Each vertical is tagged by the weights of its own selected step (a multi-task run keeps one per vertical).
A value's `confidence` is the smallest CRF marginal P(y_i = predicted tag | x) over its tokens (decoded, as the
tags are, with the tag prior added to the transitions and the BIO constraints, if on). With `snap_values`, decoded
values are then snapped to the vertical's known values (snap.py) on whole sentences, and a snapped token's
confidence is the marginal of its new tag.

Batches are decoded on a few threads at once (`decoding_threads`), each exactly as it would be alone, so the
results do not depend on the threads; `extract_ahead` queues texts on them, so that a caller makes one part's
records while the model works on the next part.
"""
import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import logging

from mtl_tagger.calibration import Calibration, in_unseen_values
from mtl_tagger.conll import Sentence, chunks, tag_structure
from mtl_tagger.errors import InputError
from mtl_tagger.metrics import evaluate_tags
from mtl_tagger.model import TaggerNet
from mtl_tagger.modeldir import best_checkpoint, read_model, restore
from mtl_tagger.params import Params
from mtl_tagger.pipeline import BATCH_SIGNATURE, encode, eval_batches, pad
from mtl_tagger.snap import Snapper
from mtl_tagger.text import tokenize
from mtl_tagger.vocab import Vocab

EVAL_BATCH = 64
EAGER_SNAPS = 16  # batches a snap rule runs eagerly before it is traced: tracing costs as much as dozens of them
THREADS = os.cpu_count() or 1
_POOL: ThreadPoolExecutor | None = None


def decoding_threads() -> ThreadPoolExecutor:
    """The THREADS threads every Tagger of the process runs its batches on, started at first use: a traced call is
    mostly loops of small ops, so batches side by side keep the cores busier than one batch at a time."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(THREADS, thread_name_prefix="decode")
    return _POOL


def one_thread_per_op() -> None:
    """Give each TensorFlow op one thread, for a process that decodes many batches on the decoding threads: they keep
    the cores busy, and cutting each small matrix product across the cores as well costs more than it gives. The
    setting is process-wide and taken only where TensorFlow has not started yet (elsewhere this does nothing); the
    decoded numbers are the same (extract's tests compare the command's output with an in-process run's)."""
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(1)


def scored_chunks(tags: Sequence[str], marginals: Sequence[float]) -> list[tuple[str, int, int, float]]:
    """Each predicted value (attribute, start, end) with its confidence: the smallest marginal of its tokens."""
    return [(attr, s, e, float(min(marginals[s:e]))) for attr, s, e in chunks(tags)]


@dataclasses.dataclass
class Decoding:
    """Sentences on their way through one head: their tokens, the sentence each max_len piece is of, the padded
    batches with their pieces' positions, each batch's future (tag ids, and every tag's marginals or None) and the
    calibration to apply."""

    task: str
    sentences: Sequence[Sequence[str]]
    owner: list[int]
    batches: list[tuple[np.ndarray, dict[str, np.ndarray]]]
    results: list[Future]
    calibration: Calibration | None
    confidence_shape: tuple[int, ...] | None = None  # of a token's confidence: (), (K,) at K temperatures, or none


def shown(confidence: float) -> float:
    """A confidence as extract reports it, and as `min_confidence` is compared with: to 4 places, so filtering on
    a reported value keeps exactly the values reported at or above it."""
    return round(confidence, 4)


class Tagger:
    """A model's vocabularies and networks; tags token lists or raw text for any of its verticals."""

    def __init__(self, params: Params, vocab: Vocab, nets: dict[str, TaggerNet],
                 calibration: dict[str, Calibration] | None = None) -> None:
        """`calibration`: the verticals whose confidence is calibrated, with their maps (calibration.py)."""
        self.params = params
        self.vocab = vocab
        self.nets = nets
        self.calibration = calibration or {}
        self._decoders: dict[tuple, tf.types.experimental.GenericFunction] = {}  # traced, per head
        self._snappers: dict[str, Snapper | None] = {}
        self._snapped: dict[str, int] = {}  # batches each vertical's rule has snapped
        self._ahead: dict[tuple, tuple[list[list[tuple[str, int, int]]], Decoding]] = {}  # extract_ahead's texts

    @classmethod
    def load(cls, model_dir: str | Path, calibrated: bool = True, decoding: dict | None = None) -> "Tagger":
        """Load params.json, vocab.json, every vertical's selected checkpoint of a trained model dir and, with
        `calibrated`, its calibration.json (a model without one gives raw confidences, and says so once).
        `decoding`: Params fields to decode with instead of params.json's, e.g. {"bio_constraints": True}."""
        model_dir = Path(model_dir)
        params, vocab, calibration = read_model(model_dir, calibrated)
        params = dataclasses.replace(params, **(decoding or {}))
        nets: dict[str, TaggerNet] = {}
        for task in params.names:
            checkpoint = best_checkpoint(model_dir, task)
            if checkpoint is None:
                raise InputError(f"no checkpoint for {task} (best/{task}/): training has not evaluated it yet",
                                 model_dir)
            net = TaggerNet(params, vocab)
            restore(net, checkpoint, model_dir)
            nets[task] = net
        if calibrated and calibration is None:
            logging.warning("%s has no calibration.json: confidences are the raw CRF marginals, over-confident on "
                            "small data; python -m mtl_tagger.calibration --model_dir=%s calibrates them", model_dir,
                            model_dir)
        return cls(params, vocab, nets, calibration)

    @property
    def tasks(self) -> list[str]:
        """The verticals this model tags."""
        return list(self.vocab.tags)

    def check_task(self, task: str) -> None:
        """InputError unless the model has a head for `task`."""
        self.vocab.check_task(task)

    def decoder(self, task: str, marginals: bool = False) -> tf.types.experimental.GenericFunction:
        """The traced decoding function of `task` for a padded batch (BATCH_SIGNATURE): tags [B, T], and with
        `marginals` (then it also takes a vector of K temperatures) each token's marginal of its tag at each,
        [K, B, T], or of every tag, [K, B, T, N], where a snap rule may change the tags. One temperature is a vector
        of one, so a model traces one marginal decoder for extraction and calibration's search alike."""
        key = (task, marginals)
        if key not in self._decoders:
            net = self.nets[task]
            if marginals:
                every = self.snap_rule(task) is not None
                self._decoders[key] = tf.function(lambda b, t: net.decode_with_marginals(task, b, t, every_tag=every),
                                                  autograph=False,
                                                  input_signature=[BATCH_SIGNATURE, tf.TensorSpec([None], tf.float32)])
            else:
                self._decoders[key] = tf.function(lambda b: net.decode(task, b), input_signature=[BATCH_SIGNATURE],
                                                  autograph=False)
        return self._decoders[key]

    def snap_rule(self, task: str) -> Snapper | None:
        """The snap rule of `task` (snap.py), None where it does not apply: off in params, a model written before
        known values were kept, or no known value of several words."""
        if task not in self._snappers:
            values = (self.vocab.values or {}).get(task) if self.params.snap_values else None
            rule = Snapper(self.vocab.tags[task], values) if values else None
            self._snappers[task] = rule if rule is not None and rule.longest > 1 else None
        return self._snappers[task]

    def warm(self, tasks: Iterable[str]) -> None:
        """Trace the decoders (with marginals) and snap rules of these verticals and run each once on a one-word
        sentence, so that a long run pays for their tracing before its first batch, not inside it."""
        batch = pad(encode([["."]], self.vocab, self.params.max_word_len))
        for task in tasks:
            self.decoder(task, marginals=True)(batch, tf.constant([1.0], tf.float32))
            if self.snap_rule(task) is not None:
                self._snap(task, [["."]], [np.zeros(1, np.int32)], traced=True)

    def tag(self, token_lists: Sequence[Sequence[str]], task: str, marginals: bool = True,
            temperature: float | Sequence[float] | None = None) -> tuple[list[list[str]], list[list]]:
        """Tags and each token's confidence in its tag (empty lists without `marginals`) for tokenised sentences:
        calibrated where the model has a calibration for `task`, else the CRF marginal; with `temperature`, the
        raw marginal at that temperature instead, and with a sequence of K temperatures, each sentence's K lists of
        marginals, one per temperature (calibration's search, from one pass of the network).

        Sentences longer than max_len are tagged in max_len pieces, as the model was trained.
        """
        self.check_task(task)
        if isinstance(token_lists, (str, bytes)) or any(
                isinstance(s, (str, bytes)) or not all(isinstance(t, str) for t in s) for s in token_lists):
            raise InputError("predict takes tokenised sentences (lists of token strings); for raw text use extract")
        return self._finish(self._start(token_lists, task, marginals, temperature))

    def _start(self, token_lists: Sequence[Sequence[str]], task: str, marginals: bool = True,
               temperature: float | Sequence[float] | None = None) -> Decoding:
        """Cut the sentences into max_len pieces, batch them in length order and queue the batches on the decoding
        threads, longest first (a long batch started last would keep one core busy alone at the end). Each batch
        is computed as it would be alone, so the results do not depend on the threads."""
        step = self.params.max_len
        pieces, owner = [], []
        for i, tokens in enumerate(token_lists):
            for s in range(0, len(tokens), step):
                pieces.append(list(tokens[s:s + step]))
                owner.append(i)
        if temperature is not None and not (np.size(temperature) and np.ndim(temperature) <= 1
                                            and np.all(np.asarray(temperature, np.float64) > 0)):
            raise InputError(f"temperature={temperature}: must be positive, one or a list of them (it divides the "
                             "CRF's scores)")
        calibration = self.calibration.get(task) if temperature is None else None
        at = np.asarray(calibration.temperature if calibration else 1.0 if temperature is None else temperature,
                        np.float32)
        temperatures = tf.constant(at.reshape(-1))
        decode = self.decoder(task, marginals)

        def run(batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
            if not marginals:
                return decode(batch).numpy(), None
            ids, conf = (x.numpy() for x in decode(batch, temperatures))
            return ids, conf.reshape(at.shape + conf.shape[1:])

        batches = eval_batches(encode(pieces, self.vocab, self.params.max_word_len), EVAL_BATCH)
        queued = {k: decoding_threads().submit(run, batches[k][1])
                  for k in sorted(range(len(batches)), key=lambda k: -batches[k][1]["words"].size)}
        return Decoding(task, token_lists, owner, batches, [queued[k] for k in range(len(batches))],
                        calibration, tuple(at.shape) if marginals else None)

    def _finish(self, decoding: Decoding) -> tuple[list[list[str]], list[list[float]]]:
        """Wait for a Decoding's batches: each sentence's tags and confidences, its pieces joined (as `tag`)."""
        every = self.snap_rule(decoding.task) is not None  # the marginals are of every tag (`decoder`)
        piece_ids: list[np.ndarray] = [np.zeros(0, np.int32)] * len(decoding.owner)
        piece_marginals: list[np.ndarray] = [np.zeros(0, np.float32)] * len(decoding.owner)
        for (positions, batch), result in zip(decoding.batches, decoding.results):
            ids, marginals = result.result()
            for r, (k, n) in enumerate(zip(positions, batch["length"])):
                piece_ids[k] = ids[r, :n]
                if marginals is not None:
                    piece_marginals[k] = marginals[..., r, :n, :] if every else marginals[..., r, :n]
        ids_of: list[list[np.ndarray]] = [[np.zeros(0, np.int32)] for _ in decoding.sentences]
        marginals_of: list[list[np.ndarray]] = [[] for _ in decoding.sentences]
        for i, x, m in zip(decoding.owner, piece_ids, piece_marginals):  # each sentence's pieces in order
            ids_of[i].append(x)
            marginals_of[i].append(m)
        ids = self._snap(decoding.task, decoding.sentences, [np.concatenate(x) for x in ids_of])
        tags = [self.vocab.tag_names(decoding.task, x) for x in ids]
        if decoding.confidence_shape is None:
            return tags, [[] for _ in tags]
        shape, tags_n = decoding.confidence_shape, len(self.vocab.tags[decoding.task])
        calibration, confs = decoding.calibration, []
        attribute, inner = tag_structure(self.vocab.tags[decoding.task])  # per tag id
        for tokens, x, pieces in zip(decoding.sentences, ids, marginals_of):
            if every:
                marginals = np.concatenate([np.zeros((*shape, 0, tags_n), np.float32), *pieces], axis=-2)
                conf = np.take_along_axis(marginals, np.broadcast_to(x[:, None], (*shape, len(x), 1)), -1)[..., 0]
            else:
                conf = np.concatenate([np.zeros((*shape, 0), np.float32), *pieces], axis=-1)
            if calibration is not None:
                conf = calibration.apply(conf, in_unseen_values(attribute[x], inner[x], self.vocab.trained(tokens))
                                         if calibration.unseen_values else None)
            confs.append(conf.tolist())
        return tags, confs

    def _snap(self, task: str, sentences: Sequence[Sequence[str]], ids: list[np.ndarray], traced: bool = False
              ) -> list[np.ndarray]:
        """Each sentence's tag ids with known values snapped in (snap.py), EVAL_BATCH sentences at a time; as they
        are where the rule does not apply. The first EAGER_SNAPS batches run eagerly, the rest (or, with `traced`,
        all from now on) traced: the same ops either way, so a short command does not pay for tracing and a long
        one runs fast."""
        rule = self.snap_rule(task)
        if rule is None:
            return ids
        out = []
        for k in range(0, len(ids), EVAL_BATCH):
            snap = self._snap_function(task, rule, traced)
            part, words = ids[k:k + EVAL_BATCH], sentences[k:k + EVAL_BATCH]
            width = max(1, max(len(x) for x in part))
            tokens = np.array([[t.encode("utf-8", "surrogatepass") for t in w] + [b""] * (width - len(w))
                               for w in words], object)  # bytes: a lone surrogate in Python text passes as it is
            batch = np.array([np.pad(x, (0, width - len(x))) for x in part], np.int32)
            lengths = np.array([len(x) for x in part], np.int32)
            snapped = snap(tf.constant(tokens, tf.string), tf.constant(lengths), tf.constant(batch)).numpy()
            out += [row[:n] for row, n in zip(snapped, lengths)]
        return out

    def _snap_function(self, task: str, rule: Snapper, traced: bool = False) -> Callable:
        """The rule of `task` for its next batch: eager for the first EAGER_SNAPS batches, then (or once `traced` is
        asked for) traced, once."""
        self._snapped[task] = self._snapped.get(task, 0) + 1
        key = (task, "snap")
        if (traced or self._snapped[task] > EAGER_SNAPS) and key not in self._decoders:
            self._decoders[key] = tf.function(rule.__call__, autograph=False, input_signature=[
                tf.TensorSpec([None, None], tf.string), tf.TensorSpec([None], tf.int32),
                tf.TensorSpec([None, None], tf.int32)])
        return self._decoders.get(key, rule)

    def predict(self, token_lists: Sequence[Sequence[str]], task: str) -> list[list[str]]:
        """Tag lists for tokenised sentences."""
        return self.tag(token_lists, task, marginals=False)[0]

    def evaluate(self, sentences: Sequence[Sentence], task: str) -> tuple[dict, list[list[str]]]:
        """The paper's metrics of `task` on gold sentences, and the predicted tags."""
        pred = self.predict([s.tokens for s in sentences], task)
        return evaluate_tags([s.tags for s in sentences], pred), pred

    def extract(self, texts: str | Sequence[str], task: str, min_confidence: float = 0.0) -> dict | list[dict]:
        """Tokenise raw text(s), tag, and list the values with character offsets into each text and a confidence.

        One text gives one record {"text", "tokens", "tags", "values": [{"attribute", "value", "start", "end",
        "confidence"}]}; a list of texts gives a list of records (tagged in one batched pass). Values below
        `min_confidence` are left out.
        """
        if isinstance(texts, bytes) or (not isinstance(texts, str) and any(isinstance(t, bytes) for t in texts)):
            raise InputError("extract takes text (str), not bytes: decode it first, e.g. data.decode('utf-8')")
        if isinstance(texts, str):
            return self.extract([texts], task, min_confidence)[0]
        if not all(isinstance(t, str) for t in texts):
            raise InputError("extract takes a text (str) or a list of texts")
        spans, decoding = self._ahead.pop((task, tuple(texts)), None) or self._start_texts(texts, task)
        tag_lists, conf_lists = self._finish(decoding)
        records = []
        for text, sp, tags, conf in zip(texts, spans, tag_lists, conf_lists):
            values = []
            for attr, s, e, confidence in scored_chunks(tags, conf):
                if shown(confidence) >= min_confidence:
                    values.append({"attribute": attr, "value": text[sp[s][1]:sp[e - 1][2]], "start": sp[s][1],
                                   "end": sp[e - 1][2], "confidence": shown(confidence)})
            records.append({"text": text, "tokens": [t for t, _, _ in sp], "tags": tags, "values": values})
        return records

    def extract_ahead(self, texts: Sequence[str], task: str) -> None:
        """Tokenise `texts` and queue them on the decoding threads now; the next `extract` of the same texts for
        `task` collects them instead of starting over. A caller makes one part's records while the model works on
        the next part."""
        self._ahead[(task, tuple(texts))] = self._start_texts(texts, task)

    def drop_ahead(self) -> None:
        """Forget the texts queued by `extract_ahead` and never extracted (their batches not started are dropped)."""
        for _, decoding in self._ahead.values():
            for result in decoding.results:
                result.cancel()
        self._ahead.clear()

    def _start_texts(self, texts: Sequence[str], task: str) -> tuple[list[list[tuple[str, int, int]]], Decoding]:
        """Each text's tokens with their offsets, and their Decoding (with marginals) started."""
        self.check_task(task)
        spans = [tokenize(text) for text in texts]
        return spans, self._start([[t for t, _, _ in sp] for sp in spans], task)
