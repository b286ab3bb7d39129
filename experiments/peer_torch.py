"""The peer of experiments/bench_peer.py: the project's BiLSTM-CRF written the usual way in PyTorch.

Word embedding ⊕ char BiLSTM final states (run on real words only, packed) → dropout → `nn.LSTM(bidirectional=True)`
on the padded batch (oneDNN on CPU; as usual for padded batches, the backward direction also reads the padding
of shorter rows) → dropout → Linear → a linear-chain CRF in torch (forward algorithm for the NLL, Viterbi to
decode; transitions[y, y′] score y → y′, no start/stop transitions, as `mtl_tagger.crf`). Adam with global
gradient-norm clipping. Torch's default initialisation: weights do not change the speed. No word-shape feature,
no word dropout, no tag prior or BIO constraints at decoding, no CRF marginals.

    python -m experiments.peer_torch CONFIG_JSON [--profile]   # one measuring process; prints one JSON line

times training and decoding on the batch plans that bench_peer exported (padded here by `Sentences`), and
float32 GEMMs in torch and numpy; with --profile, the parts of the training step and of decoding instead
(bench_peer.PARTS).
"""
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from experiments.common import KINDS, Sentences, gemm_rates, gemm_shapes, per_batch, time_parts, timed

Batch = dict[str, torch.Tensor]


def sequence_score(emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor,
                   transitions: torch.Tensor) -> torch.Tensor:
    """C(x, y) per sentence [B] of tags [B, T] under emissions [B, T, N]; mask [B, T] bool marks real positions."""
    real = mask.to(emissions.dtype)
    unary = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)
    binary = transitions[tags[:, :-1], tags[:, 1:]]
    return (unary * real).sum(1) + (binary * real[:, 1:]).sum(1)


def log_partition(emissions: torch.Tensor, mask: torch.Tensor, transitions: torch.Tensor) -> torch.Tensor:
    """log Σ_y exp C(x, y) per sentence [B] by the forward algorithm (every length ≥ 1)."""
    alpha = emissions[:, 0]
    for t in range(1, emissions.shape[1]):
        new = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + emissions[:, t]
        alpha = torch.where(mask[:, t:t + 1], new, alpha)
    return torch.logsumexp(alpha, dim=1)


def viterbi(emissions: torch.Tensor, mask: torch.Tensor, transitions: torch.Tensor) -> torch.Tensor:
    """Best tag sequence per sentence, [B, T] int64, 0 past each length (every length ≥ 1)."""
    score = emissions[:, 0]
    identity = torch.arange(emissions.shape[2]).expand_as(score)
    pointers = []
    for t in range(1, emissions.shape[1]):
        best, arg = (score.unsqueeze(2) + transitions).max(dim=1)
        live = mask[:, t:t + 1]
        score = torch.where(live, best + emissions[:, t], score)
        pointers.append(torch.where(live, arg, identity))  # identity past the length: backtracking passes through
    tag = score.argmax(dim=1)
    path = [tag]
    for back in reversed(pointers):
        tag = back.gather(1, tag.unsqueeze(1)).squeeze(1)
        path.append(tag)
    return torch.stack(path[::-1], dim=1) * mask


class CRF(nn.Module):
    """Transition scores T(y, y′) with the mean negative log-likelihood and Viterbi decoding."""

    def __init__(self, num_tags: int) -> None:
        super().__init__()
        limit = (6.0 / (2 * num_tags)) ** 0.5
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-limit, limit))

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of −log P(tags | x)."""
        return (log_partition(emissions, mask, self.transitions)
                - sequence_score(emissions, tags, mask, self.transitions)).mean()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Viterbi tags [B, T]."""
        return viterbi(emissions, mask, self.transitions)


class PeerTagger(nn.Module):
    """Word + char-BiLSTM embeddings → BiLSTM → Linear → CRF."""

    def __init__(self, num_words: int, num_chars: int, num_tags: int, model: Mapping[str, Any]) -> None:
        super().__init__()
        self.word_embedding = nn.Embedding(num_words, model["word_dim"])
        self.char_embedding = nn.Embedding(num_chars, model["char_dim"])
        self.char_lstm = nn.LSTM(model["char_dim"], model["char_hidden"], batch_first=True, bidirectional=True)
        self.lstm = nn.LSTM(model["word_dim"] + 2 * model["char_hidden"], model["hidden_size"], batch_first=True,
                            bidirectional=True)
        self.dropout = nn.Dropout(model["dropout"])
        self.dense = nn.Linear(2 * model["hidden_size"], num_tags)
        self.crf = CRF(num_tags)

    def chars(self, chars: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """[B, T, C] char ids → [B, T, 2·char_hidden]: final states of both directions; 0 at padded words."""
        real = words > 0
        rows = chars[real]
        packed = pack_padded_sequence(self.char_embedding(rows), (rows > 0).sum(1), batch_first=True,
                                      enforce_sorted=False)
        _, (final, _) = self.char_lstm(packed)
        out = final.new_zeros(*words.shape, 2 * final.shape[2])
        out[real] = torch.cat([final[0], final[1]], dim=1)
        return out

    def encode(self, batch: Batch) -> torch.Tensor:
        """Context vectors [B, T, 2·hidden] of a padded batch (embeddings, chars, BiLSTM, dropout), as the project's
        Encoder."""
        x = torch.cat([self.word_embedding(batch["words"]), self.chars(batch["chars"], batch["words"])], dim=-1)
        h, _ = self.lstm(self.dropout(x))
        return self.dropout(h)

    def emissions(self, batch: Batch) -> torch.Tensor:
        """Emission scores [B, T, N] of a padded batch."""
        return self.dense(self.encode(batch))

    def loss(self, batch: Batch) -> torch.Tensor:
        """Mean CRF negative log-likelihood of the gold tags."""
        return self.crf.nll(self.emissions(batch), batch["tags"], batch["mask"])

    def decode(self, batch: Batch) -> torch.Tensor:
        """Viterbi tags [B, T] of a padded batch."""
        return self.crf.decode(self.emissions(batch), batch["mask"])


def to_torch(batch: Mapping[str, np.ndarray]) -> Batch:
    """A padded numpy batch as torch tensors (ids as int64) with its [B, T] mask of real positions."""
    out = {k: torch.from_numpy(batch[k]).long() for k in ("words", "chars", "tags", "length")}
    out["mask"] = torch.arange(out["words"].shape[1]).unsqueeze(0) < out["length"].unsqueeze(1)
    return out


class Peer:
    """The peer model with its Adam and gradient clipping: the training step and the decode bench_peer times."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        torch.manual_seed(cfg["seed"])
        self.model = PeerTagger(cfg["num_words"], cfg["num_chars"], cfg["num_tags"], cfg["model"])
        self.adam = torch.optim.Adam(self.model.parameters(), lr=cfg["model"]["learning_rate"], eps=1e-7)
        self.clip = cfg["model"]["clip_norm"]

    def update(self) -> None:
        """Clip the gradients to the global norm and apply Adam."""
        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.adam.step()

    def train_step(self, batch: Batch) -> float:
        """One training step on a batch; its loss."""
        self.model.train()
        self.adam.zero_grad(set_to_none=True)
        loss = self.model.loss(batch)
        loss.backward()
        self.update()
        return loss.item()

    def decode(self, batch: Batch) -> np.ndarray:
        """Viterbi tags of a batch, without autograd."""
        self.model.eval()
        with torch.inference_mode():
            return self.model.decode(batch).numpy()


def measure(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The peer's training and decoding tokens/s on bench_peer's exported plans, and torch/numpy GEMM rates."""
    peer = Peer(cfg)
    arrays = dict(np.load(cfg["plan"]))
    sentences = {"train": Sentences(arrays, "train"), "decode": Sentences(arrays, "test")}
    out: dict[str, Any] = {"side": "peer", "threads": {
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(), "mkldnn": torch.backends.mkldnn.is_available()}}
    for what, step in (("train", peer.train_step), ("decode", peer.decode)):
        out[what] = {}
        for kind in KINDS:
            batches = [to_torch(b) for b in sentences[what].batches(arrays[f"plan_{what}_{kind}"])]
            tokens = int(sum(int(b["length"].sum()) for b in batches))
            out[what][kind] = timed(step, batches, tokens)
    out["gemm"] = {"torch": gemm_rates(gemm_shapes(cfg["model"]), torch.from_numpy, torch.matmul)}
    return out


def measure_parts(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Per work, mean milliseconds per batch of each part (keyed as bench_peer.PARTS) of the peer's training step,
    on the bucketed training plan, and of its decoding, on the bucketed test batches. Forward-only training parts
    run in training mode (dropout) without autograd, as the project's run without a gradient tape."""
    peer = Peer(cfg)
    model = peer.model
    arrays = dict(np.load(cfg["plan"]))
    batches = [to_torch(b) for b in Sentences(arrays, "train").batches(arrays["plan_train_bucketed"])]
    decoding = [to_torch(b) for b in Sentences(arrays, "test").batches(arrays["plan_decode_bucketed"])]
    noise = [torch.randn(*b["words"].shape, model.lstm.input_size) for b in batches]  # the BiLSTM's input width

    def forward(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def run(*args: Any) -> torch.Tensor:
            with torch.no_grad():
                return fn(*args)
        return run

    def backward(loss: Callable[..., torch.Tensor]) -> Callable[..., None]:
        def run(*args: Any) -> None:  # into fresh gradients, as the train step
            model.zero_grad(set_to_none=True)
            loss(*args).backward()
        return run

    def leaf(x: torch.Tensor) -> torch.Tensor:  # a fixed input the backward pass differentiates by
        return x.detach().requires_grad_()

    def nll(emissions: torch.Tensor, b: Batch) -> torch.Tensor:
        return model.crf.nll(emissions, b["tags"], b["mask"])

    model.train()
    with torch.no_grad():
        hidden = [model.encode(b) for b in batches]
        emissions = [model.dense(h) for h in hidden]
    backward(model.loss)(batches[0])
    fixed = [p.grad for p in model.parameters()]

    def update(_: int) -> None:  # on the same gradients each time
        for p, g in zip(model.parameters(), fixed):
            p.grad = g
        peer.update()

    train = {
        "chars": per_batch(backward(lambda b: model.chars(b["chars"], b["words"]).sum()), batches),
        "bilstm": per_batch(forward(lambda x: model.lstm(x)[0]), noise),
        "bilstm_grad": per_batch(backward(lambda x: model.lstm(x)[0].sum()), noise),
        "encoder": per_batch(forward(model.encode), batches),
        "encoder_grad": per_batch(backward(lambda b: model.encode(b).sum()), batches),
        "crf_grad": per_batch(backward(lambda e, b: nll(leaf(e), b)), emissions, batches),
        "head_grad": per_batch(backward(lambda h, b: nll(model.dense(leaf(h)), b)), hidden, batches),
        "gradients": per_batch(backward(model.loss), batches),
        "update": update,
        "step": per_batch(peer.train_step, batches),
    }
    out = {"train": time_parts(train, batches)}
    model.eval()
    with torch.inference_mode():
        hidden = [model.encode(b) for b in decoding]
        emissions = [model.dense(h) for h in hidden]
        decode = {"encoder": per_batch(model.encode, decoding), "dense": per_batch(model.dense, hidden),
                  "viterbi": per_batch(lambda e, b: model.crf.decode(e, b["mask"]), emissions, decoding),
                  "step": per_batch(peer.decode, decoding)}
        out["decode"] = time_parts(decode, decoding)
    return out


if __name__ == "__main__":
    config = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(measure_parts(config) if sys.argv[2:] == ["--profile"] else measure(config)))
