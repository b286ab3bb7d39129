"""The snap rule at decoding: decoded values snapped to a vertical's known values (its training split's, vocab.json).

A brand or model name usually recurs across a vertical's products, so the training split often holds the whole of
a value that a model trained on a few dozen descriptions cuts short, splits in two or runs on. Where a multi-word
training value occurs in a sentence, decoded values of its attribute overlap it, and none of the values it overlaps
is itself a training value of its own attribute, the training value replaces every value it overlaps; occurrences
are taken longest first, then leftmost, then by attribute name, and none overlaps an earlier snap; values that no
snap reaches stay as they were. Words compare in ASCII lower case (`vocab.fold`). The rule runs in-graph, so the
Tagger and the SavedModel apply this one implementation.
"""
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from mtl_tagger.conll import attributes_of

SEP = "\x1f"  # joins a value's words into one key (the unit separator, a control character product text lacks)


class Snapper(tf.Module):
    """The rule for one vertical: its tag list and known values as in-graph tables; `__call__` snaps a batch."""

    def __init__(self, tags: Sequence[str], values: Mapping[str, Sequence[Sequence[str]]]) -> None:
        super().__init__(name="snapper")
        attributes = attributes_of(tags)
        index = {attr: i for i, attr in enumerate(attributes)}
        tag_id = {t: i for i, t in enumerate(tags)}
        # Multi-word values of attributes the tags can spell out; each n-gram key -> the set of their attributes.
        spelled = {attr: vs for attr, vs in values.items() if f"B-{attr}" in tag_id and f"I-{attr}" in tag_id}
        owners: dict[str, set[int]] = {}
        firsts = set()
        for attr, vs in spelled.items():
            for v in vs:
                if len(v) > 1:
                    owners.setdefault(SEP.join([*v, str(len(v))]), set()).add(index[attr])
                    firsts.add(v[0])
        self.first = _lookup([(w, 1) for w in sorted(firsts)])  # words that begin a multi-word value
        self.longest = max((len(v) for vs in spelled.values() for v in vs), default=0)
        groups = sorted({tuple(sorted(o)) for o in owners.values()})
        member = np.zeros((len(groups) + 1, max(len(attributes), 1)), bool)  # row 0: no attribute
        for g, group in enumerate(groups, 1):
            member[g, list(group)] = True
        self.member = tf.constant(member)
        group_of = {group: g for g, group in enumerate(groups, 1)}
        self.ngrams = _lookup([(k, group_of[tuple(sorted(o))]) for k, o in owners.items()])
        self.known = _lookup([(SEP.join([str(index[attr]), *v]), 1) for attr, vs in values.items() if attr in index
                              for v in vs])
        self.attribute_of = tf.constant([index[t[2:]] if t != "O" else -1 for t in tags], tf.int32)
        self.inner = tf.constant([t.startswith("I-") for t in tags])
        self.begin_id = tf.constant([tag_id.get(f"B-{attr}", 0) for attr in attributes] or [0], tf.int32)
        self.inside_id = tf.constant([tag_id.get(f"I-{attr}", 0) for attr in attributes] or [0], tf.int32)

    def __call__(self, tokens: tf.Tensor, lengths: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
        """Tag ids [B, T] of the sentences tokens [B, T] (strings, any past each length) with known values snapped
        in (0 past each length, as they came)."""
        if self.longest < 2:
            return ids
        time = tf.shape(ids)[1]
        mask = tf.sequence_mask(lengths, time)
        low = tf.strings.lower(tf.where(mask, tokens[:, :time], ""))
        found = self.candidates(self.occurrences(low, lengths), ids)

        def step(c: tf.Tensor, ids: tf.Tensor, done: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            row, length, start, attr = (found[c, k] for k in range(4))
            new, span, allowed = self.snapped_row(low[row], ids[row], start, start + length, attr)
            ok = allowed & ~tf.reduce_any(done[row] & span)
            ids = tf.tensor_scatter_nd_update(ids, [[row]], [tf.where(ok, new, ids[row])])  # else as it was
            done = tf.tensor_scatter_nd_update(done, [[row]], [done[row] | (span & ok)])
            return c + 1, ids, done

        _, ids, _ = tf.while_loop(lambda c, *_: c < tf.shape(found)[0], step, (0, ids, tf.zeros_like(mask)))
        return ids

    def occurrences(self, low: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """Each occurrence of a known multi-word value in folded tokens [B, T] as (row, length, start, attribute)
        [C, 4], in the rule's order: by row, longest first, then leftmost, then by attribute. Only the few places
        where a word begins a known value are read, so the cost follows them, not the batch's size."""
        time = tf.shape(low)[1]
        at = tf.cast(tf.where((self.first.lookup(low) > 0) & tf.sequence_mask(lengths, time)), tf.int32)  # [K, 2]
        row, start = at[:, 0], at[:, 1]
        room = tf.gather(lengths, row) - start  # words from each place to its sentence's end
        padded = tf.pad(low, [[0, 0], [0, self.longest - 1]])
        words, groups = tf.gather_nd(padded, at), []
        for n in range(2, self.longest + 1):  # each n-gram from the (n - 1)-gram: a graph linear in the longest
            words = tf.strings.join([words, tf.gather_nd(padded, at + [0, n - 1])], separator=SEP)
            key = tf.strings.join([words, str(n)], separator=SEP)
            groups.insert(0, tf.where(n <= room, self.ngrams.lookup(key), 0))
        where = tf.cast(tf.where(tf.gather(self.member, tf.stack(groups, 1))), tf.int32)  # (place, n index, attr)
        place = where[:, 0]
        found = tf.stack([tf.gather(row, place), self.longest - where[:, 1], tf.gather(start, place), where[:, 2]], 1)
        x = tf.cast(found, tf.int64)  # the rule's order as one key per occurrence: row, -length, start, attribute
        key = (((x[:, 0] * self.longest + self.longest - x[:, 1]) * tf.cast(time, tf.int64) + x[:, 2])
               * tf.cast(tf.shape(self.member)[1], tf.int64) + x[:, 3])
        return tf.gather(found, tf.argsort(key))

    def reading(self, ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """What conll.chunks reads in tag ids [..., T]: each token's attribute index (-1 for O) and whether it
        begins a value (an I-x after a value of x continues it)."""
        attribute = tf.gather(self.attribute_of, ids)
        before = tf.pad(attribute[..., :-1], [[0, 0]] * (ids.shape.rank - 1) + [[1, 0]], constant_values=-1)
        return attribute, (attribute >= 0) & ~(tf.gather(self.inner, ids) & (attribute == before))

    def candidates(self, found: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
        """The occurrences [C, 4] the rule may snap, in order: those that some decoded value of their attribute
        overlaps and that are not already decoded as one value. Earlier snaps only turn tags outside their own
        spans into O, so an occurrence this drops could never be snapped."""
        attribute, begins = self.reading(ids)
        row, length, start, attr = (found[:, k] for k in range(4))
        offsets = tf.range(self.longest + 1)  # each occurrence's tokens and the one after it
        at = tf.stack([tf.broadcast_to(row[:, None], [tf.shape(row)[0], self.longest + 1]),
                       start[:, None] + offsets], -1)
        attribute = tf.gather_nd(tf.pad(attribute, [[0, 0], [0, self.longest + 1]], constant_values=-1), at)
        begins = tf.gather_nd(tf.pad(begins, [[0, 0], [0, self.longest + 1]]), at)  # [C, longest + 1] each
        within = offsets[None, :] < length[:, None]
        inside = tf.reduce_sum(tf.cast(within & (attribute == attr[:, None]), tf.int32), 1)
        begun = tf.reduce_sum(tf.cast(within & begins, tf.int32), 1)
        goes_on = ((tf.gather(attribute, length, batch_dims=1) == attr)
                   & ~tf.gather(begins, length, batch_dims=1))
        already = (inside == length) & (begun == 1) & begins[:, 0] & ~goes_on
        return tf.boolean_mask(found, (inside > 0) & ~already)

    def snapped_row(self, low: tf.Tensor, ids: tf.Tensor, start: tf.Tensor, end: tf.Tensor, attr: tf.Tensor
                    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One row's tag ids [T] with the value (attr, start, end) snapped in, the span's mask [T], and whether the
        rule allows the snap (overlaps with earlier snaps aside)."""
        position = tf.range(tf.shape(ids)[0])
        span = (position >= start) & (position < end)
        attribute, begins = self.reading(ids)
        count = tf.reduce_sum(tf.cast(begins, tf.int32))
        value = tf.where(attribute >= 0, tf.cumsum(tf.cast(begins, tf.int32)) - 1, count)  # count: in no value
        hit = tf.math.unsorted_segment_max(tf.cast(span & (attribute >= 0), tf.int32), value, count + 1)[:count] > 0
        covered = tf.gather(tf.concat([hit, [False]], 0), value)  # the tokens of every value the span overlaps
        text = tf.strings.unsorted_segment_join(low, value, count + 1, separator=SEP)[:count]
        owner = tf.math.unsorted_segment_max(attribute, value, count + 1)[:count]
        known = self.known.lookup(tf.strings.join([tf.strings.as_string(owner), text], separator=SEP)) > 0
        already = tf.equal(tf.reduce_sum(tf.cast(hit, tf.int32)), 1) & tf.reduce_all(tf.equal(covered, span))
        allowed = tf.reduce_any(covered & (attribute == attr)) & ~tf.reduce_any(hit & known) & ~already
        snapped = tf.where(span, tf.where(position == start, self.begin_id[attr], self.inside_id[attr]),
                           tf.where(covered, 0, ids))
        # An I-x of the attribute just after the span began a value of its own (tags without the BIO constraints):
        # it stays one, not part of the snapped value.
        snapped = tf.where((position == end) & (snapped == self.inside_id[attr]), self.begin_id[attr], snapped)
        return snapped, span, allowed


def _lookup(pairs: Sequence[tuple[str, int]]) -> tf.lookup.StaticHashTable:
    """An in-graph map string → int32, 0 for any other key."""
    keys = [k for k, _ in pairs] or [""]
    values = [v for _, v in pairs] or [0]
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.string), tf.constant(values, tf.int32))
    return tf.lookup.StaticHashTable(init, default_value=0)
