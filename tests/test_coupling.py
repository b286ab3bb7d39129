"""The coupling loss against a plain NumPy reading of paper §3.4, for every --coupling_score; the batches it is
computed on, down to empty and one-sentence length groups; and why only log_softmax and marginal scores are blind
to what the CRF cannot see."""
import dataclasses
import functools
import itertools
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, smoke_params

from mtl_tagger import crf, pipeline
from mtl_tagger.corpus import load_data
from mtl_tagger.labels import kgram_ids, label_kgrams
from mtl_tagger.loss import Coupler, context_scores, step_loss
from mtl_tagger.model import TaggerNet
from mtl_tagger.params import Params, read_flagfile
from mtl_tagger.pipeline import COUPLING_SIGNATURE, GROUPS, CouplingData, PairShortlist, length_groups
from mtl_tagger.run import build
from mtl_tagger.shortlist import make_contexts
from mtl_tagger.train import make_loop
from mtl_tagger.vocab import Vocab

TAGS = {"A": ["O", "B-color", "I-color", "B-material"], "B": ["O", "B-color", "B-brand"]}
WINDOW = 1


def _setup(seed: int, num_tasks: int = 2, **coupler_kw: object) -> tuple:
    """Short sentences of unique tokens (so a window names its context), a tiny net, and random shortlists."""
    rng = np.random.default_rng(seed)
    names = ["A", "B", "C"][:num_tasks]
    tags = {t: TAGS.get(t, TAGS["B"]) for t in names}
    sizes = {"A": 9, "B": 7, "C": 5}
    tokens = {t: [[f"{t}{j}_{i}" for i in range(rng.integers(1, 5))] for j in range(sizes[t])] for t in names}
    gold = {t: [[tags[t][rng.integers(0, len(tags[t]))] for _ in s] for s in tokens[t]] for t in names}
    vocab = Vocab.build([s for t in names for s in tokens[t]], gold)
    p = Params(tasks=",".join(names), word_dim=4, char_dim=3, char_hidden=2, hidden_size=5, window=WINDOW,
               matmul_dtype="float32", word_vectors="", dropout=0.0, word_dropout=0.0, seed=seed).validate()
    net = TaggerNet(p, vocab)
    examples = {t: pipeline.encode(tokens[t], vocab, 6, t, gold[t]) for t in names}
    offsets = dict(zip(names, np.cumsum([0] + [sizes[t] for t in names])[:-1].tolist()))
    table = pipeline.SentenceTable([e for t in names for e in examples[t]])
    contexts = {t: make_contexts([e["words"] for e in ex], [np.ones(len(e["tags"]), bool) for e in ex], WINDOW)
                for t, ex in examples.items()}
    golds = {t: np.array([examples[t][j]["tags"][i] for j, i in zip(c.sentence, c.position)])
             for t, c in contexts.items()}
    k = 3
    pairs = []
    for a, b in itertools.combinations(names, 2):
        tables = [np.where(rng.random((len(contexts[x]), k)) < 0.6, rng.integers(0, len(contexts[y]),
                           (len(contexts[x]), k)), -1) for x, y in ((a, b), (b, a))]
        pairs.append(PairShortlist(a, b, *(-np.sort(-t, axis=1) for t in tables)))  # real neighbours first
    tag_offsets = dict(zip(names, np.cumsum([0] + [len(tags[t]) for t in names])[:-1].tolist()))
    data = CouplingData(names, contexts, golds, offsets, tag_offsets, pairs)
    coupler = Coupler(vocab.tags, len(pairs), (2 * WINDOW + 1) * p.word_dim, 3, (seed, 5), **coupler_kw)
    coupler.attention.assign(rng.uniform(-1.0, 1.5, coupler.attention.shape).astype(np.float32))  # a ≠ a′
    return names, vocab.tags, examples, offsets, table, data, net, coupler


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _brute_log_marginal(emissions: np.ndarray, transitions: np.ndarray, pos: int, tag: int) -> float:
    n, k = emissions.shape
    scores = {y: sum(emissions[i, y[i]] for i in range(n)) + sum(transitions[y[i], y[i + 1]] for i in range(n - 1))
              for y in itertools.product(range(k), repeat=n)}
    values = np.array(list(scores.values()))
    log_z = values.max() + np.log(np.exp(values - values.max()).sum())
    hits = np.array([v for y, v in scores.items() if y[pos] == tag])
    return float(hits.max() + np.log(np.exp(hits - hits.max()).sum()) - log_z)


def _reference(names: list, tags: dict, examples: dict, data: CouplingData, net: TaggerNet, coupler: Coupler,
               rows: np.ndarray, chosen: np.ndarray, kind: str) -> tuple[float, np.ndarray]:
    """TCE anchor by anchor from the formulas; every sentence encoded alone, label vectors from k-gram strings."""
    grams = coupler.label_kgrams.numpy()

    def label_vector(name: str) -> np.ndarray:
        return np.mean([grams[zlib.crc32(g.encode()) % len(grams)] for g in label_kgrams(name, 3)], axis=0)

    where = [(t, j) for t in names for j in range(len(examples[t]))]  # table row → (task, sentence)

    def score(ctx: int) -> float:
        task, j = where[data.ctx_sentence[ctx]]
        pos, tag = data.ctx_position[ctx], data.ctx_local_gold[ctx]
        h = net.encoder({k: tf.constant(v) for k, v in pipeline.pad([examples[task][j]]).items()}).numpy()[0]
        head = net.heads[task]
        e = h @ head.kernel.numpy() + head.bias.numpy()
        if kind == "emission":
            return float(e[pos, tag])
        if kind == "log_softmax":
            return float(e[pos, tag] - np.log(np.exp(e[pos]).sum()))
        return _brute_log_marginal(e.astype(np.float64), head.crf.transitions.numpy().astype(np.float64), pos, tag)

    def u(ctx: int) -> np.ndarray:
        ids = data.ctx_window[ctx]
        return np.concatenate([net.word_embeddings.numpy()[i] * (i > 0) for i in ids])

    parts = np.zeros((len(data.pairs), 4))
    for r, places in zip(rows, chosen):
        anchor, pair, d = data.anchor_ctx[r], data.anchor_pair[r], data.anchor_direction[r]
        nbs = [n for n in data.anchor_neighbors[r] if n >= 0]
        diag = coupler.attention.numpy()[pair, d]
        alpha = np.array([u(anchor) * diag @ u(n) for n in nbs]) / coupler.temperature
        names_of = [n for t in names for n in tags[t]]
        v = label_vector(names_of[data.ctx_gold[anchor]])
        label = np.array([v @ label_vector(names_of[data.ctx_gold[n]]) for n in nbs])
        places = [k for k in places if k >= 0]  # the neighbours scored; the attentions cover the whole list
        gap = np.abs(score(anchor) - np.array([score(nbs[k]) for k in places]))
        scale = len(nbs) / len(places)
        parts[pair, d] += scale * _softmax(alpha)[places] @ gap
        parts[pair, 2 + d] += scale * _softmax(label)[places] @ gap
    parts /= len(rows)
    return float(parts.sum()), parts


@pytest.mark.parametrize("kind, sample", [("emission", 0), ("log_softmax", 0), ("marginal", 0), ("emission", 1),
                                          ("marginal", 2)])
def test_tce_equals_numpy_reference(kind: str, sample: int) -> None:
    names, tags, examples, offsets, table, data, net, coupler = _setup(0, score=kind, temperature=0.7)
    plan, chosen = data.plan(batch_size=6, slots=data.minibatches(len(names)), seed=0, steps=3, sample=sample)
    for row, places in zip(plan, chosen):
        out = coupler(net, data.batch(table, tf.constant(row), tf.constant(places)), seed=None)
        total, parts = _reference(names, tags, examples, data, net, coupler, row[row >= 0], places[row >= 0], kind)
        np.testing.assert_allclose(out["parts"].numpy(), parts, rtol=1e-4, atol=1e-5)
        assert float(out["total"]) == pytest.approx(total, rel=1e-4)


def test_a_score_given_to_the_loss_replaces_the_coupling_score() -> None:
    """An analysis compares its own score with the coupler's weights, as experiments/coupling_direction does."""
    names, tags, examples, offsets, table, data, net, coupler = _setup(0)  # --coupling_score=emission
    plan, chosen = data.plan(batch_size=6, slots=data.minibatches(len(names)), seed=0, steps=1, sample=0)
    row, places = plan[0], chosen[0]
    c = data.batch(table, tf.constant(row), tf.constant(places))
    groups = [c[f"sentences_{g}"] for g in range(GROUPS)]
    out = coupler.loss(net, c, [net.encoder(b) for b in groups], [b["length"] for b in groups],
                       score=functools.partial(context_scores, "log_softmax"))
    _, parts = _reference(names, tags, examples, data, net, coupler, row[row >= 0], places[row >= 0], "log_softmax")
    np.testing.assert_allclose(out["parts"].numpy(), parts, rtol=1e-4, atol=1e-5)


def test_three_verticals_couple_every_pair() -> None:
    names, tags, examples, offsets, table, data, net, coupler = _setup(1, num_tasks=3)
    assert data.pairs == [("A", "B"), ("A", "C"), ("B", "C")] and data.minibatches(3) == 2
    plan, chosen = data.plan(batch_size=4, slots=2, seed=0, steps=3, sample=0)
    pair_of = [sorted({int(data.anchor_pair[r]) for r in plan[s, k * 4:(k + 1) * 4] if r >= 0})
               for s in range(3) for k in range(2)]
    assert pair_of == [[0], [1], [2], [0], [1], [2]], "the pairs take the slots in turn"
    row = plan[0]
    out = coupler(net, data.batch(table, tf.constant(row), tf.constant(chosen[0])), seed=None)
    total, parts = _reference(names, tags, examples, data, net, coupler, row[row >= 0], chosen[0][row >= 0],
                              "emission")
    np.testing.assert_allclose(out["parts"].numpy(), parts, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sample", [1, 0])
def test_within_plan_draws_from_the_steps_sentences_and_scores_as_the_paper_batch(sample: int) -> None:
    """--coupling_within: each step's anchors are those (up to its size) whose sentence and some neighbour's are in
    the step's vertical minibatches, and the chosen neighbours are such ones; its loss from the minibatches'
    encodings equals the paper's coupling minibatch of the same anchors encoded on its own."""
    names, tags, examples, offsets, table, data, net, coupler = _setup(3, num_tasks=3)
    lengths = {t: np.array([int(e["length"]) for e in examples[t]]) for t in names}
    plans = {t: pipeline.batch_plan(lengths[t], 3, 6, 0, i, 5) for i, t in enumerate(names)}
    plan, chosen = data.plan_within(plans, 4, seed=0, sample=sample)
    again = data.plan_within(plans, 4, seed=0, sample=sample)
    assert np.array_equal(plan, again[0]) and np.array_equal(chosen, again[1]), "fixed by (seed, step)"
    sentence, neighbors = data.ctx_sentence, data.anchor_neighbors
    for step in range(5):
        here = {int(r) + offsets[t] for t in names for r in plans[t][step] if r >= 0}
        qualify = {a for a in range(len(data.anchor_ctx)) if sentence[data.anchor_ctx[a]] in here
                   and any(n >= 0 and sentence[n] in here for n in neighbors[a])}
        rows = plan[step][plan[step] >= 0]
        assert set(rows) <= qualify and len(rows) == min(4, len(qualify))
        for a, places in zip(rows, chosen[step][plan[step] >= 0]):
            usable = [k for k, n in enumerate(neighbors[a]) if n >= 0 and sentence[n] in here]
            picked = [k for k in places if k >= 0]
            assert set(picked) <= set(usable) and len(picked) == (len(usable) if sample == 0 else 1)
        batches = [tf.constant(plans[t][step][plans[t][step] >= 0] + offsets[t]) for t in names]
        encoded = [table.batch(b) for b in batches]
        within = coupler.loss(net, data.batch_within(tf.constant(plan[step]), tf.constant(chosen[step]), batches),
                              [net.encoder(b) for b in encoded], [b["length"] for b in encoded])
        paper = coupler(net, data.batch(table, tf.constant(plan[step]), tf.constant(chosen[step])), seed=None)
        np.testing.assert_allclose(within["parts"].numpy(), paper["parts"].numpy(), rtol=1e-5, atol=1e-6)
    assert (plan >= 0).sum() > 5, "the steps hold anchors to compare"


def test_within_workers_hold_their_anchors_and_add_up_to_the_whole_step() -> None:
    """--coupling_within with --distribute: an anchor and its chosen neighbours lie in the share of the worker
    whose places it takes, and the workers' losses and gradients add up to one process's on the same plan."""
    names, tags, examples, offsets, table, data, net, coupler = _setup(3, num_tasks=3)
    data.within = True
    lengths = {t: np.array([int(e["length"]) for e in examples[t]]) for t in names}
    plans = {t: pipeline.batch_plan(lengths[t], 4, 6, 0, i, 5) for i, t in enumerate(names)}
    plan, chosen = data.plan_within(plans, 4, seed=0, sample=0, workers=2)
    single = data.plan_within(plans, 4, seed=0, sample=0)
    assert all(np.array_equal(a, b) for a, b in zip(single, data.plan_within(plans, 4, 0, 0, workers=1)))
    sentence = data.ctx_sentence
    for step in range(5):
        for w in range(2):
            share = {int(r) + offsets[t] for t in names for r in plans[t][step][plans[t][step] >= 0][w::2]}
            for a, places in zip(plan[step, w::2], chosen[step, w::2]):
                if a >= 0:
                    assert sentence[data.anchor_ctx[a]] in share
                    assert {sentence[data.anchor_neighbors[a][k]] for k in places if k >= 0} <= share
    variables = [*net.trainable_variables, *coupler.trainable_variables]

    def step(shard: tuple[int, int], inputs: dict) -> tuple[float, list[np.ndarray]]:
        with tf.GradientTape() as tape:
            loss, terms = step_loss(net, names, coupler, data.pairs, 0.7, inputs, tf.constant([1, 2], tf.int64),
                                    within=True)
        return float(loss), [np.asarray(tf.convert_to_tensor(g)) for g in tape.gradient(loss, variables)]

    def steps(shard: tuple[int, int]) -> list:
        return [step(shard, x) for x in pipeline.step_dataset(table, plans, offsets, 0, data, (plan, chosen), shard)]

    for whole, *parts in zip(steps((0, 1)), steps((0, 2)), steps((1, 2))):
        assert whole[0] == pytest.approx(sum(p[0] for p in parts), rel=1e-5)
        for g, *gs in zip(whole[1], *(p[1] for p in parts)):
            np.testing.assert_allclose(g, sum(gs), rtol=1e-4, atol=1e-6)
    assert (plan >= 0).sum() > 5, "the steps hold anchors to compare"


def test_within_is_the_default_and_the_paper_config_samples_as_the_paper() -> None:
    """A plain coupled run takes its coupling minibatches from its own (measured level in F1 and cheaper); the
    paper's configuration and older params.json keep the paper's sampling from the whole shortlist."""
    assert Params(tasks="A,B").validate().coupling_within is True
    assert read_flagfile(REPO / "flags" / "paper.cfg")["coupling_within"] is False
    assert Params.from_json({"tasks": "A,B"}).coupling_within is False


def test_stop_lender_keeps_the_value_and_cuts_the_neighbours_gradient() -> None:
    _, _, _, _, table, data, net, plain = _setup(2)
    *_, stopped = _setup(2, stop_lender=True)
    stopped.attention.assign(plain.attention)
    stopped.label_kgrams.assign(plain.label_kgrams)
    plan, chosen = data.plan(8, 1, 0, 1, sample=0)
    batch = data.batch(table, tf.constant(plan[0]), tf.constant(chosen[0]))
    grads = []
    for coupler in (plain, stopped):
        with tf.GradientTape() as tape:
            total = coupler(net, batch, seed=None)["total"]
        grads.append(tape.gradient(total, net.heads["B"].kernel))
    assert float(plain(net, batch, None)["total"]) == pytest.approx(float(stopped(net, batch, None)["total"]))
    assert not np.allclose(grads[0].numpy(), grads[1].numpy())


def test_every_anchor_once_per_pass() -> None:
    _, _, _, _, _, data, _, _ = _setup(3)
    rows = data.anchors(0)
    per_pass = -(-len(rows) // 5)
    plan, chosen = data.plan(batch_size=5, slots=1, seed=0, steps=2 * per_pass)
    real = (data.anchor_neighbors[np.maximum(plan, 0)] >= 0).sum(axis=-1)
    assert np.all((chosen[..., 0] >= 0) == (plan >= 0)) and np.all(chosen[..., 0] < np.maximum(real, 1))
    for k in range(2):
        seen = plan[k * per_pass:(k + 1) * per_pass].ravel()
        assert sorted(seen[seen >= 0]) == sorted(rows)


def test_adding_a_constant_at_one_position_only_moves_the_emission_score() -> None:
    """The CRF cannot see a constant added to every tag's emission at one position: its loss, its Viterbi path,
    the log_softmax and the marginal scores stay; the paper's emission score moves by exactly that constant."""
    rng = np.random.default_rng(4)
    emissions = tf.constant(rng.normal(scale=2.0, size=(3, 6, 5)), tf.float32)
    lengths, tags = tf.constant([6, 3, 1]), tf.constant(rng.integers(0, 5, (3, 6)), tf.int32)
    transitions = tf.constant(rng.normal(size=(5, 5)), tf.float32)
    shift = np.zeros((3, 6, 5), np.float32)
    shift[0, 2, :] = 7.5
    shifted = emissions + shift
    np.testing.assert_allclose(crf.log_likelihood(shifted, tags, lengths, transitions),
                               crf.log_likelihood(emissions, tags, lengths, transitions), atol=1e-4)
    np.testing.assert_array_equal(crf.viterbi_decode(shifted, lengths, transitions)[0],
                                  crf.viterbi_decode(emissions, lengths, transitions)[0])
    for kind in ("log_softmax", "marginal"):
        np.testing.assert_allclose(context_scores(kind, shifted, lengths, transitions),
                                   context_scores(kind, emissions, lengths, transitions), atol=1e-4)
    moved = (context_scores("emission", shifted, lengths, transitions)
             - context_scores("emission", emissions, lengths, transitions)).numpy()
    np.testing.assert_allclose(moved, shift)


def test_kgrams_mark_boundaries_and_hash_stably() -> None:
    assert label_kgrams("B-color", 3) == ["<B-", "B-c", "-co", "col", "olo", "lor", "or>"]
    assert label_kgrams("O", 3) == ["<O>"]
    ids, mask = kgram_ids(["O", "B-color"], 3, 64)
    assert ids.shape == (2, 7) and mask.sum(axis=1).tolist() == [1, 7]
    assert ids[1, 0] == zlib.crc32(b"<B-") % 64


def test_length_groups_cut_where_padding_falls_most() -> None:
    lengths = tf.constant([3, 4, 5, 48, 50])
    assert length_groups(lengths, 2).numpy().tolist() == [0, 3, 5]
    ls = sorted(np.random.default_rng(0).integers(1, 150, 30))

    def padded(cuts: np.ndarray) -> int:
        return sum((b - a) * ls[b - 1] for a, b in zip(cuts, cuts[1:]) if b > a)

    two, four = (length_groups(tf.constant(ls), g).numpy() for g in (2, 4))
    assert four[0] == 0 and four[-1] == 30 and list(four) == sorted(four)
    assert padded(four) < padded(two) < 30 * ls[-1], "more groups, less padding"
    assert length_groups(tf.constant([7]), 4).numpy().tolist() == [0, 1, 1, 1, 1]
    assert length_groups(tf.constant([], tf.int32), 4).numpy().tolist() == [0, 0, 0, 0, 0]


def _group_sizes(data: CouplingData, table: pipeline.SentenceTable, anchors: np.ndarray,
                 chosen: np.ndarray) -> np.ndarray:
    """[steps, GROUPS]: the sentences in each length group of every planned step's coupling minibatch."""
    def sizes(rows: tf.Tensor, places: tf.Tensor) -> tf.Tensor:
        c = data.batch(table, rows, places)
        return tf.stack([tf.size(c[f"sentences_{g}"]["length"]) for g in range(GROUPS)])

    steps = tf.data.Dataset.from_tensor_slices((anchors, chosen)).map(sizes).batch(len(anchors))
    return next(iter(steps)).numpy()


def _widen(plan: np.ndarray, width: int) -> np.ndarray:
    """A plan's rows padded with −1 (none) to `width` entries, so plans of several batch sizes stack."""
    return np.pad(plan, [(0, 0), (0, width - plan.shape[1])] + [(0, 0)] * (plan.ndim - 2), constant_values=-1)


@pytest.mark.parametrize("traced", [False, True])
def test_empty_and_one_sentence_length_groups(traced: bool) -> None:
    """One anchor of a one-word sentence and its neighbour (two one-sentence groups, two empty ones), and a worker's
    share with no anchor (every group empty) give the reference TCE and finite gradients, eagerly and traced as the
    loop traces them."""
    names, tags, examples, _, table, data, net, coupler = _setup(5)
    variables = [*net.trainable_variables, *coupler.trainable_variables]

    def loss(c: dict) -> tuple:
        with tf.GradientTape() as tape:
            out = coupler(net, c, seed=None, anchors=tf.constant(1.0))  # the whole step's one anchor
        grads = tape.gradient(out["total"], variables)
        return out["total"], out["parts"], [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                                            for g, v in zip(grads, variables)]

    if traced:
        loss = tf.function(loss, input_signature=[COUPLING_SIGNATURE], autograph=False)
    anchor = min(data.anchors(0), key=lambda r: table.lengths[data.ctx_sentence[data.anchor_ctx[r]]])
    assert table.lengths[data.ctx_sentence[data.anchor_ctx[anchor]]] == 1
    for rows, chosen, groups in ((np.array([anchor]), np.array([[0]]), [1, 1, 0, 0]),
                                 (np.zeros(0, np.int32), np.zeros((0, 1), np.int32), [0, 0, 0, 0])):
        c = data.batch(table, tf.constant(rows), tf.constant(chosen, tf.int32))
        assert [int(tf.size(c[f"sentences_{g}"]["length"])) for g in range(GROUPS)] == groups
        total, parts, grads = loss(c)
        want = np.zeros((len(data.pairs), 4))
        if len(rows):
            want = _reference(names, tags, examples, data, net, coupler, rows, chosen, "emission")[1]
        np.testing.assert_allclose(parts.numpy(), want, rtol=1e-4, atol=1e-5)
        assert float(total) == pytest.approx(want.sum(), rel=1e-4, abs=1e-6)
        assert all(np.isfinite(g.numpy()).all() for g in grads)
        assert any(np.any(g.numpy() != 0) for g in grads) == bool(len(rows))


def test_every_step_with_an_empty_or_one_sentence_group_trains(three: Path, tmp_path: Path) -> None:
    """Every pair's step plans at many batch sizes and seeds, each over a whole pass (whose last minibatch may hold
    one to three anchors in at most three sentences): each distinct pattern of empty / one-sentence / larger length
    groups they give runs through the loop's traced train step (of the first pair that gives it) to finite losses."""
    batch_sizes, seeds = range(8, 41), (0, 1)
    patterns: set[tuple[int, ...]] = set()
    for a, b in itertools.combinations(["Chain x", "Mangal-sutra", "Ring"], 2):
        p = smoke_params(three, tmp_path / f"{a}+{b}", task_a=a, task_b=b)
        run = build(p, load_data(p), Path(p.model_dir), write=False)
        plans: dict[str, list[np.ndarray]] = {k: [] for k in (*p.names, "anchors", "chosen")}
        for batch_size, seed in itertools.product(batch_sizes, seeds):
            variant = dataclasses.replace(run, params=dataclasses.replace(p, batch_size=batch_size, seed=seed))
            steps = -(-len(run.coupling.anchors(0)) // batch_size) + 1
            anchors, chosen = variant.coupling_plan(steps)
            for k, plan in {**variant.plans(steps), "anchors": anchors, "chosen": chosen}.items():
                plans[k].append(_widen(plan, max(batch_sizes)))
        rows = {k: np.concatenate(v) for k, v in plans.items()}
        sizes = _group_sizes(run.coupling, run.table, rows["anchors"], rows["chosen"])
        first: dict[tuple[int, ...], int] = {}
        for step in np.flatnonzero(sizes.min(axis=1) <= 1):
            pattern = tuple(np.minimum(sizes[step], 2).tolist())
            if pattern not in patterns:
                first.setdefault(pattern, step)
        if not first:
            continue
        patterns |= set(first)
        picked = sorted(first.values())
        loop, _, _ = make_loop(run, Path(p.model_dir))
        data = pipeline.step_dataset(run.table, {t: rows[t][picked] for t in p.names}, run.offsets, 0, run.coupling,
                                     (rows["anchors"][picked], rows["chosen"][picked]))
        for step, inputs in zip(picked, data):
            out = loop.train_step(inputs)
            assert all(np.isfinite(v.numpy()) for v in out.values()), (a, b, sizes[step].tolist())
    assert any(0 in pattern for pattern in patterns), "no plan had a step with an empty length group"
    assert any(1 in pattern for pattern in patterns), "no plan had a step with a one-sentence length group"
