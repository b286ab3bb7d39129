"""The `Tagger` Python API: a trained model (params.json + vocab.json + best checkpoint) that tags text.

    t = Tagger.load("runs/chain")
    t.predict([["Gold", "plated", "chain"]], task="Chain")   # -> [["B-plating", "I-plating", "O"]]
    t.extract("Gold plated chain", task="Chain")             # -> {"tokens", "tags", "values": [...]}
"""
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from mtl_tagger.conll import Sentence, chunks
from mtl_tagger.errors import InputError
from mtl_tagger.metrics import evaluate_tags
from mtl_tagger.model import TaggerNet
from mtl_tagger.params import Params
from mtl_tagger.pipeline import BATCH_SIGNATURE, encode, eval_batches
from mtl_tagger.text import tokenize
from mtl_tagger.vocab import Vocab

EVAL_BATCH = 64


class Tagger:
    """A model plus its vocabularies; decodes any of its tasks."""

    def __init__(self, params: Params, vocab: Vocab, net: TaggerNet | None = None) -> None:
        self.params = params
        self.vocab = vocab
        self.net = net or TaggerNet(params, len(vocab.words), len(vocab.chars), vocab.tags)
        self._decoders: dict[str, tf.types.experimental.GenericFunction] = {}

    @classmethod
    def load(cls, model_dir: str | Path) -> "Tagger":
        """Load params.json, vocab.json and the best checkpoint of a trained model dir."""
        model_dir = Path(model_dir)
        params = Params.load(model_dir)
        vocab_path = model_dir / "vocab.json"
        if not vocab_path.is_file():
            raise InputError("no vocab.json: training did not get far enough to save a model", model_dir)
        tagger = cls(params, Vocab.load(vocab_path))
        best = tf.train.latest_checkpoint(model_dir / "best")
        if best is None:
            raise InputError("no best checkpoint (best/): training has not finished an epoch", model_dir)
        tf.train.Checkpoint(net=tagger.net).restore(best).expect_partial()
        return tagger

    @property
    def tasks(self) -> list[str]:
        """The verticals this model tags."""
        return list(self.vocab.tags)

    def check_task(self, task: str) -> None:
        """InputError unless the model has a head for `task`."""
        if task not in self.vocab.tags:
            raise InputError(f"--task={task}: this model tags {', '.join(self.tasks)}")

    def _decoder(self, task: str) -> tf.types.experimental.GenericFunction:
        if task not in self._decoders:
            self._decoders[task] = tf.function(lambda b: self.net.decode(task, b),
                                               input_signature=[BATCH_SIGNATURE], reduce_retracing=True)
        return self._decoders[task]

    def predict(self, token_lists: Sequence[Sequence[str]], task: str) -> list[list[str]]:
        """Tag lists for tokenised sentences; sentences longer than max_len are tagged in chunks."""
        self.check_task(task)
        step = self.params.max_len
        pieces, owner = [], []
        for i, tokens in enumerate(token_lists):
            for s in range(0, len(tokens), step):
                pieces.append(list(tokens[s:s + step]))
                owner.append(i)
        examples = encode(pieces, self.vocab, self.params.max_word_len)
        piece_tags: list[list[str]] = [[] for _ in pieces]
        decode = self._decoder(task)
        for batch in eval_batches(examples, EVAL_BATCH):
            ids = decode(batch).numpy()
            for row, index, length in zip(ids, batch["index"].numpy(), batch["length"].numpy()):
                piece_tags[index] = self.vocab.tag_names(task, row[:length])
        out: list[list[str]] = [[] for _ in token_lists]
        for i, tags in zip(owner, piece_tags):
            out[i].extend(tags)
        return out

    def evaluate(self, sentences: Sequence[Sentence], task: str) -> tuple[dict, list[list[str]]]:
        """The paper's metrics of `task` on gold sentences, and the predicted tags."""
        pred = self.predict([s.tokens for s in sentences], task)
        return evaluate_tags([s.tags for s in sentences], pred), pred

    def extract(self, texts: str | Sequence[str], task: str) -> dict | list[dict]:
        """Tokenise raw text(s), tag, and list the extracted values with character offsets into each text.

        One text gives one record {"text", "tokens", "tags", "values": [{"attribute", "value", "start",
        "end"}]}; a list of texts gives a list of records (tagged in one batched pass).
        """
        if isinstance(texts, str):
            return self.extract([texts], task)[0]
        spans = [tokenize(text) for text in texts]
        tag_lists = self.predict([[t for t, _, _ in sp] for sp in spans], task)
        records = []
        for text, sp, tags in zip(texts, spans, tag_lists):
            values = [{"attribute": attr, "value": text[sp[s][1]:sp[e - 1][2]], "start": sp[s][1], "end": sp[e - 1][2]}
                      for attr, s, e in chunks(tags)]
            records.append({"text": text, "tokens": [t for t, _, _ in sp], "tags": tags, "values": values})
        return records
