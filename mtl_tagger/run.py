"""Building a run: network and shortlists from Params and the data `corpus.load_data` read and checked.

`build` makes the network, the training sentences as one in-graph table, the per-step plans and, in
coupled mode, every coupled pair's shortlist (cached in the model dir) and the coupling loss.
"""
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from absl import logging

from mtl_tagger import pipeline, shortlist
from mtl_tagger.corpus import RunData
from mtl_tagger.crf import bigram_pmi
from mtl_tagger.errors import InputError
from mtl_tagger.loss import Coupler
from mtl_tagger.model import TaggerNet
from mtl_tagger.params import Params
from mtl_tagger.pipeline import CouplingData, PairShortlist
from mtl_tagger.vectors import embedding_matrix
from mtl_tagger.vocab import Vocab


def size_weights(sizes: dict[str, int], power: float) -> dict[str, float]:
    """Each vertical's CRF loss weight under --size_weight: (its training sentences / their mean) ** power, so 1 for
    every vertical at power 0 and in a single-vertical run."""
    mean = np.mean(list(sizes.values()))
    return {t: float((n / mean) ** power) for t, n in sizes.items()}


@dataclass
class Run:
    """A built run: what the training loop steps through and evaluates."""

    params: Params
    data: RunData
    net: TaggerNet
    table: pipeline.SentenceTable  # every vertical's training sentences, one row each
    offsets: dict[str, int]  # each vertical's first row in `table`
    lengths: dict[str, np.ndarray]  # training sentence lengths per vertical
    coupling: CouplingData | None = None
    coupler: Coupler | None = None
    uncached: list[tuple[dict, shortlist.Shortlist]] = field(default_factory=list)  # shortlists made, not yet cached

    @property
    def vocab(self) -> Vocab:
        """The run's vocabularies."""
        return self.data.vocab

    def cache_shortlists(self, model_dir: Path) -> None:
        """Store the shortlists `build` made (rather than read from the model dir's cache) in that cache."""
        for key, found in self.uncached:
            shortlist.save_shortlist(model_dir / "shortlist", key, found)
        self.uncached.clear()

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one epoch: the largest vertical's number of minibatches."""
        return max(pipeline.batches_per_epoch(n, self.params.batch_size, self.params.max_len)
                   for n in self.lengths.values())

    def budget(self) -> int:
        """Total optimiser steps: --epochs of the largest vertical, clipped to [--min_steps, --max_steps]."""
        p = self.params
        steps = max(p.epochs * self.steps_per_epoch(), p.min_steps)
        return min(steps, p.max_steps) if p.max_steps else steps

    def eval_every(self) -> int:
        """Steps between dev evaluations (--eval_every, or one epoch of the largest vertical)."""
        return self.params.eval_every or self.steps_per_epoch()

    def plans(self, steps: int) -> dict[str, np.ndarray]:
        """Every vertical's minibatch plan for steps [0, steps)."""
        p = self.params
        return {t: pipeline.batch_plan(n, p.batch_size, p.max_len, p.seed, i, steps)
                for i, (t, n) in enumerate(self.lengths.items())}

    def coupling_plan(self, steps: int, plans: dict[str, np.ndarray] | None = None, workers: int = 1
                      ) -> tuple[np.ndarray, np.ndarray] | None:
        """The coupling minibatch plan (anchors, chosen neighbours) for steps [0, steps), or None outside coupled
        mode; `plans`: the verticals' `plans(steps)` when the caller has them (--coupling_within draws from them,
        each anchor with its neighbours in one of `workers` shares)."""
        if self.coupling is None:
            return None
        p = self.params
        slots = self.coupling.minibatches(len(p.names))
        if self.coupling.within:
            return self.coupling.plan_within(plans or self.plans(steps), slots * p.batch_size, p.seed,
                                             p.coupling_sample, workers)
        return self.coupling.plan(p.batch_size, slots, p.seed, steps, p.coupling_sample)


def _fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of arrays' bytes: the shortlist cache key's view of the data."""
    h = hashlib.sha1()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _shortlists(p: Params, data: RunData, net: TaggerNet, examples: dict[str, list[pipeline.Example]],
                cache: Path, pretrained: tuple[np.ndarray, np.ndarray] | None
                ) -> tuple[dict, dict, list[PairShortlist], list[tuple[dict, shortlist.Shortlist]]]:
    """Each vertical's contexts and gold tags, every coupled pair's shortlist L (read from `cache` where it is
    there), and the ones made here with their cache keys. `pretrained`: the embedding matrix build initialised
    the network with, and which of its words had a vector (None without --word_vectors)."""
    if pretrained is not None:
        init, found = pretrained
        vectors = init * found[:, None]  # words without a pretrained vector count as padding
        vectors[0] = 0.0
    else:
        logging.warning("no --word_vectors: the shortlist uses the random initial embeddings, so context "
                        "similarity is mostly word overlap")
        vectors = net.word_embeddings.numpy()
    contexts = {t: shortlist.make_contexts(
        [e["words"] for e in ex],
        [e["tags"] > 0 if p.shortlist_contexts == "tagged" else np.ones(len(e["tags"]), bool) for e in ex],
        p.window) for t, ex in examples.items()}
    gold = {t: np.array([examples[t][int(j)]["tags"][int(i)] for j, i in zip(c.sentence, c.position)], np.int32)
            for t, c in contexts.items()}
    ranking = None
    if p.couple == "auto":
        from mtl_tagger.lenders import rank_lenders

        ranking = {t: [r.lender for r in rank_lenders(p, data.tasks, t, [o for o in p.names if o != t], data.pretrained)
                       if r.score > 0]
                   for t in p.names}  # a lender with affinity 0 shares no tagged word: nothing to couple
    pairs, made = [], []
    if not p.couple_pairs(ranking):
        raise InputError(f"--couple={p.couple}: no two of {', '.join(p.names)} share a tagged word; train them "
                         "--mtl_mode=shared instead")
    for a, b in p.couple_pairs(ranking):
        key = {"tasks": [a, b], "window": p.window, "threshold": p.shortlist_threshold,
               "max_neighbors": p.shortlist_max_neighbors, "contexts": p.shortlist_contexts,
               "data": _fingerprint(vectors, contexts[a].windows, contexts[b].windows, gold[a], gold[b])}
        found = shortlist.load_shortlist(cache, key)
        if found is None:
            found = shortlist.build_shortlist(contexts[a], contexts[b], vectors, p.shortlist_threshold,
                                              p.shortlist_max_neighbors)
            made.append((key, found))
        if found.num_pairs == 0:
            raise InputError(f"--shortlist_threshold={p.shortlist_threshold}: the shortlist of {a} and {b} is empty; "
                             + shortlist.threshold_hint(contexts[a], contexts[b], vectors))
        logging.info("shortlist %s:%s: %s", a, b, found.summary())
        pairs.append(PairShortlist(a, b, found.a_neighbors, found.b_neighbors))
    return contexts, gold, pairs, made


def build(p: Params, data: RunData, model_dir: Path, write: bool = True) -> Run:
    """The network (initialised from the pretrained vectors), the training table, and the coupling parts;
    shortlists are read from the model dir's cache, and those made here are cached there unless `write` is False
    (a worker that is not the chief, or a run that checks its model dir first: `Run.cache_shortlists` then)."""
    vocab = data.vocab
    net = TaggerNet(p, vocab)
    pretrained = embedding_matrix(vocab.words, *data.pretrained, p.seed) if data.pretrained is not None else None
    if pretrained is not None:
        init, found = pretrained
        net.word_embeddings.assign(init)
        logging.info("word vectors: %d of %d vocabulary words initialised from %s", found.sum(), len(vocab.words),
                     p.word_vectors)
    examples = {t: pipeline.encode_sentences(d.train, vocab, t, p.max_word_len) for t, d in data.tasks.items()}
    for t, ex in examples.items():
        prior = net.heads[t].crf.prior
        if prior is not None:  # --tag_prior > 0
            prior.assign(p.tag_prior * bigram_pmi([e["tags"] for e in ex], len(vocab.tags[t])))
    offsets, start = {}, 0
    for t, ex in examples.items():
        offsets[t] = start
        start += len(ex)
    table = pipeline.SentenceTable([e for ex in examples.values() for e in ex])
    lengths = {t: np.array([int(e["length"]) for e in ex], np.int32) for t, ex in examples.items()}
    run = Run(p, data, net, table, offsets, lengths)
    if p.mode == "coupled":
        contexts, gold, pairs, run.uncached = _shortlists(p, data, net, examples, model_dir / "shortlist", pretrained)
        tag_offsets = dict(zip(vocab.tags, np.cumsum([0] + [len(v) for v in vocab.tags.values()])[:-1].tolist()))
        run.coupling = CouplingData(p.names, contexts, gold, offsets, tag_offsets, pairs, p.coupling_within)
        run.coupler = Coupler(vocab.tags, len(pairs), (2 * p.window + 1) * p.word_dim, p.label_kgram,
                              (p.seed, 10_000), p.coupling_score, p.coupling_stop_lender, p.attention_temperature)
    if write:
        run.cache_shortlists(model_dir)
    return run
