"""extract's fast path (heads traced up front, batches on several threads, the next chunk queued while this one's
records are made) gives exactly what the plain path gives: every batch decoded in turn on one thread, the values
and lines made as extract always made them."""
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from test_extract import write_catalog

from mtl_tagger.calibration import in_unseen_values
from mtl_tagger.conll import chunks, tag_structure
from mtl_tagger.extract import extract_catalog, plan
from mtl_tagger.files import json_line
from mtl_tagger.pipeline import encode, eval_batches
from mtl_tagger.tagger import EVAL_BATCH, Tagger
from mtl_tagger.text import snippet, tokenize

ESCAPES = {ord("\u2028"): "\\u2028", ord("\u2029"): "\\u2029", ord("\x85"): "\\u0085"}
BATCH = 100  # products per chunk: a chunk holds more pieces of one vertical than one model batch


@pytest.fixture(scope="module")
def model_dir(pair_model: Path) -> Path:
    """conftest's shared model of 'Chain x' and 'Mangal-sutra' (these tests copy it before changing it)."""
    return pair_model


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(catalog, mapping) of 210 products; every ninth description repeated until it is longer than max_len, so it
    is tagged in pieces."""
    catalog, mapping = write_catalog(tmp_path_factory.mktemp("speed_catalog"), 210, seed=3)
    products = [json.loads(line) for line in catalog.read_text(encoding="utf-8").split("\n") if line]
    for i, product in enumerate(products):
        if i % 9 == 4:
            product["description"] = " ".join([product["description"]] * 6)
    catalog.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in products), encoding="utf-8")
    return catalog, mapping


def plain_tag(tagger: Tagger, token_lists: list[list[str]], task: str) -> tuple[list[list[str]], list[list[float]]]:
    """Tags and calibrated confidences the plain way: max_len pieces batched in length order, each batch decoded
    in turn on this thread, then each sentence snapped alone and its tags' marginals read."""
    step = tagger.params.max_len
    pieces = [(i, tokens[s:s + step]) for i, tokens in enumerate(token_lists) for s in range(0, len(tokens), step)]
    calibration = tagger.calibration.get(task)
    at = tf.constant([calibration.temperature if calibration else 1.0], tf.float32)
    decoded = {}
    for positions, batch in eval_batches(encode([p for _, p in pieces], tagger.vocab, tagger.params.max_word_len),
                                         EVAL_BATCH):
        ids, marginals = (x.numpy() for x in tagger.decoder(task, marginals=True)(batch, at))
        for r, k in enumerate(positions):
            n = batch["length"][r]
            decoded[k] = (ids[r, :n], marginals[0, r, :n])
    snap = tagger.snap_rule(task)
    tags, confidences = [], []
    for i, tokens in enumerate(token_lists):
        ids = np.concatenate([np.zeros(0, np.int32)] + [decoded[k][0] for k, (j, _) in enumerate(pieces) if j == i])
        marginals = np.concatenate([np.zeros((0, len(tagger.vocab.tags[task]))[:1 + (snap is not None)], np.float32)]
                                   + [decoded[k][1] for k, (j, _) in enumerate(pieces) if j == i])
        if snap is not None and len(tokens):
            ids = snap(tf.constant([tokens]), tf.constant([len(tokens)]), tf.constant([ids])).numpy()[0]
        conf = marginals[np.arange(len(ids)), ids] if snap is not None else marginals
        tags.append(tagger.vocab.tag_names(task, ids))
        unseen = in_unseen_values(*tag_structure(tags[-1]), tagger.vocab.trained(tokens))
        confidences.append((calibration.apply(conf, unseen) if calibration else conf).tolist())
    return tags, confidences


def with_second_map(tagger: Tagger) -> Tagger:
    """The tagger with a second map for values at unseen words that surely acts: the smoke data's dev and test hold
    no word its training split lacks, so half the training words are declared unseen."""
    tagger.vocab.train_words //= 2
    tagger.calibration = {task: replace(c, unseen_a=0.7, unseen_b=-0.5, unseen_values=5)
                          for task, c in tagger.calibration.items()}
    return tagger


def plain_values(tagger: Tagger, texts: list[str], task: str, min_confidence: float) -> list[list[dict]]:
    """Each text's values as OUT holds them, made the plain way."""
    spans = [tokenize(text) for text in texts]
    tag_lists, conf_lists = plain_tag(tagger, [[t for t, _, _ in sp] for sp in spans], task)
    out = []
    for text, sp, tags, conf in zip(texts, spans, tag_lists, conf_lists):
        values = []
        for attribute, s, e in chunks(tags):
            confidence = round(float(np.min(conf[s:e])), 4)
            start, end = sp[s][1], sp[e - 1][2]
            if confidence >= min_confidence:
                values.append({"attribute": attribute, "value": text[start:end], "start": start, "end": end,
                               "confidence": confidence, "context": snippet(text, start, end)})
        out.append(values)
    return out


def plain_out(tagger: Tagger, job: tuple[Path, Path], min_confidence: float) -> bytes:
    """OUT's bytes made the plain way: chunk by chunk, each vertical's texts of a chunk in one pass."""
    items = plan(job[0], job[1], tagger.tasks, keep_spec_block=False).items
    lines = []
    for s in range(0, len(items), BATCH):
        chunk = items[s:s + BATCH]
        values = {}
        for vertical in dict.fromkeys(v for _, v, _ in chunk):
            rows = [item for item in chunk if item[1] == vertical]
            found = plain_values(tagger, [text for _, _, text in rows], vertical, min_confidence)
            values.update(zip((pid for pid, _, _ in rows), found))
        lines += [json.dumps({"id": pid, "vertical": v, "values": values[pid]}, ensure_ascii=False).translate(ESCAPES)
                  + "\n" for pid, v, _ in chunk]
    return "".join(lines).encode()


@pytest.mark.parametrize("min_confidence", [0.0, 0.6])
def test_extract_writes_the_plain_paths_bytes(min_confidence: float, model_dir: Path, job: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    tagger = with_second_map(Tagger.load(model_dir)) if min_confidence else Tagger.load(model_dir)
    out = tmp_path / "out.jsonl"
    extract_catalog(model_dir, job[0], out, batch=BATCH, verticals_path=job[1], min_confidence=min_confidence,
                    tagger=tagger)
    data = out.read_bytes()
    assert data == plain_out(tagger, job, min_confidence)
    assert len(data.splitlines()) == 150 and b'"values": []' in data
    assert b"\\u2028" in data or min_confidence, "a value with a line separator, escaped"
    for task in tagger.tasks:
        assert tagger.decoder(task, marginals=True).experimental_get_tracing_count() == 1, \
            "each head traced once, whatever the batches' shapes"


def test_tag_is_the_plain_decode_to_the_last_bit(model_dir: Path, job: tuple[Path, Path]) -> None:
    """Batches run side by side, longest first, and still each token's confidence is the very float of the plain
    path: a batch is computed as it would be alone."""
    tagger = with_second_map(Tagger.load(model_dir))
    items = plan(job[0], job[1], tagger.tasks, keep_spec_block=False).items
    sentences = [[t for t, _, _ in tokenize(text)] for _, vertical, text in items if vertical == "Chain x"]
    assert len(sentences) > EVAL_BATCH and max(map(len, sentences)) > tagger.params.max_len
    assert tagger.snap_rule("Chain x") is not None, "the model has known values of several words to snap to"
    tags, confidence = tagger.tag(sentences, "Chain x")
    assert (tags, confidence) == plain_tag(tagger, sentences, "Chain x")
    assert confidence != Tagger.load(model_dir).tag(sentences, "Chain x")[1], "the second map changed confidences"


def test_extract_ahead_is_picked_up_or_dropped(model_dir: Path) -> None:
    tagger = Tagger.load(model_dir)
    texts = ["Acme gold plated brass chain", "Sukkhi silver chain in red , perfect for daily wear ."]
    plain = tagger.extract(texts, "Chain x")
    tagger.extract_ahead(texts, "Chain x")
    tagger.extract_ahead(texts[:1], "Mangal-sutra")
    assert tagger.extract(list(texts), "Chain x") == plain, "texts queued ahead give what extract gives"
    tagger.drop_ahead()
    assert tagger.extract(texts[:1], "Mangal-sutra") == [tagger.extract(texts[0], "Mangal-sutra")]


def test_json_line_escapes_the_line_breaks_json_leaves() -> None:
    rng = random.Random(0)
    alphabet = "ab «»\"\\\n\r\t\u2028\u2029\x85é😀"
    for _ in range(300):
        record = {"id": "p", "values": [{"value": "".join(rng.choices(alphabet, k=rng.randrange(12)))}]}
        line = json_line(record)
        assert line == json.dumps(record, ensure_ascii=False).translate(ESCAPES) + "\n"
        assert json.loads(line) == record and len(line.splitlines()) == 1
