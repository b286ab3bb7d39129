"""The peer of experiments/bench_peer.py: the project's BiLSTM-CRF written the usual way in PyTorch.

Word embedding ⊕ char BiLSTM final states (run on real words only, packed) → dropout → `nn.LSTM(bidirectional=True)`
on the padded batch (oneDNN on CPU; as usual for padded batches, the backward direction also reads the padding
of shorter rows) → dropout → Linear → a linear-chain CRF in torch (forward algorithm for the NLL, Viterbi to
decode; transitions[y, y′] score y → y′, no start/stop transitions, as `mtl_tagger.crf`). Adam with global
gradient-norm clipping. Torch's default initialisation: weights do not change the speed.

    python -m experiments.peer_torch CONFIG_JSON   # one measuring process; prints one JSON line

times training and decoding on the batch plans that bench_peer exported (padded here by `Sentences`), and
float32 GEMMs in torch and numpy.
"""
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from experiments.bench_peer import KINDS, Sentences, gemm_rates, gemm_shapes, timed

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

    def emissions(self, batch: Batch) -> torch.Tensor:
        """Emission scores [B, T, N] of a padded batch."""
        x = torch.cat([self.word_embedding(batch["words"]), self.chars(batch["chars"], batch["words"])], dim=-1)
        h, _ = self.lstm(self.dropout(x))
        return self.dense(self.dropout(h))

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


def measure(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The peer's training and decoding tokens/s on bench_peer's exported plans, and torch/numpy GEMM rates."""
    torch.manual_seed(cfg["seed"])
    arrays = dict(np.load(cfg["plan"]))
    sentences = {"train": Sentences(arrays, "train"), "decode": Sentences(arrays, "test")}
    model = PeerTagger(cfg["num_words"], cfg["num_chars"], cfg["num_tags"], cfg["model"])
    adam = torch.optim.Adam(model.parameters(), lr=cfg["model"]["learning_rate"], eps=1e-7)
    clip = cfg["model"]["clip_norm"]

    def train_step(batch: Batch) -> float:
        model.train()
        adam.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        adam.step()
        return loss.item()

    def decode(batch: Batch) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return model.decode(batch).numpy()

    out: dict[str, Any] = {"side": "peer", "threads": {
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(), "mkldnn": torch.backends.mkldnn.is_available()}}
    for what, step in (("train", train_step), ("decode", decode)):
        out[what] = {}
        for kind in KINDS:
            batches = [to_torch(b) for b in sentences[what].batches(arrays[f"plan_{what}_{kind}"])]
            tokens = int(sum(int(b["length"].sum()) for b in batches))
            out[what][kind] = timed(step, batches, tokens)
    out["gemm"] = {"torch": gemm_rates(gemm_shapes(cfg["model"]), torch.from_numpy, torch.matmul)}
    return out


if __name__ == "__main__":
    print(json.dumps(measure(json.loads(Path(sys.argv[1]).read_text()))))
