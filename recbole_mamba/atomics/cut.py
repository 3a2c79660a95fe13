"""Per-user cuts of an event stream, in bounded memory.

Events arrive in any order as numpy arrays. :class:`LastEventsPerUser` keeps each user's events
sorted by (time, arrival order) and, with ``max_len``, only the last ``max_len`` of them. Ties in
time keep arrival order without an order column: kept events always arrived before pending ones
and pending ones are kept in arrival order, so a stable sort of [kept, pending] by (user, time)
breaks ties by arrival. With ``max_len``, every
``PENDING_ROWS`` events are merged into the kept ones, so memory stays
O(users * max_len + PENDING_ROWS), however long the input. With ``drop_consecutive_duplicates``,
an event whose item equals the user's previous event's item is dropped before the cut.
"""

import numpy as np

PENDING_ROWS = 2_000_000  # events buffered before they are merged into the kept ones


def narrowed(columns):
    """``columns`` with every integer column whose values fit int32 as int32 (the kept events'
    memory: ids and times of a converter are mostly small; a later block may widen a column
    again, as concatenation promotes)."""
    small = np.iinfo(np.int32)
    return {name: values.astype(np.int32) if values.dtype == np.int64 and len(values)
            and small.min <= values.min() and values.max() <= small.max else values
            for name, values in columns.items()}


def _sort_order(user, time):
    """Stable: rows equal in (user, time) keep their relative order."""
    return np.lexsort((time, user))


def _permute(columns, index):
    """Apply an index or mask to every column, in place of the dict, one column at a time."""
    for name in list(columns):
        columns[name] = columns[name][index]


def _group_starts(user):
    """Start index of each run of equal (sorted) user ids, and the run id of every row."""
    new = np.empty(len(user), dtype=bool)
    if len(user):
        new[0] = True
        np.not_equal(user[1:], user[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    return starts, np.cumsum(new) - 1


class LastEventsPerUser:
    """Accumulates events (``user, item, time`` and extra columns: integer arrays), added in
    arrival order."""

    def __init__(self, max_len=None, drop_consecutive_duplicates=False):
        self.max_len = max_len
        self.dedup = drop_consecutive_duplicates
        self.kept = None
        self.pending = []
        self.n_pending = 0

    def add(self, columns):
        """columns: dict of equal-length integer arrays with at least user, item and time."""
        n = len(columns["user"])
        if self.max_len is not None and self.n_pending and self.n_pending + n > PENDING_ROWS:
            self._merge()  # before the block: a merge never holds more than PENDING_ROWS pending
        if n:
            self.pending.append(columns)
            self.n_pending += n

    def _merge(self):
        parts = ([self.kept] if self.kept is not None else []) + self.pending
        self.pending, self.n_pending = [], 0
        if not parts:
            return
        names = list(parts[0])
        merged = {}
        for name in names:  # one column at a time: at most one extra column alive
            merged[name] = np.concatenate([p.pop(name) for p in parts])
        del parts
        _permute(merged, _sort_order(merged["user"], merged["time"]))
        if self.dedup and len(merged["user"]) > 1:
            keep = np.ones(len(merged["user"]), dtype=bool)
            same_user = merged["user"][1:] == merged["user"][:-1]
            keep[1:] = ~(same_user & (merged["item"][1:] == merged["item"][:-1]))
            _permute(merged, keep)
        if self.max_len is not None:
            starts, run = _group_starts(merged["user"])
            ends = np.append(starts[1:], len(run))
            _permute(merged, (ends[run] - np.arange(len(run))) <= self.max_len)
        self.kept = merged

    def result(self):
        """All kept events, sorted by user, then time, then arrival order."""
        self._merge()
        return self.kept


def filter_counts(columns, min_user_len=0, min_item_count=0):
    """Drop users with fewer than ``min_user_len`` events and items with fewer than
    ``min_item_count``, repeatedly until neither rule removes anything (k-core fixed point)."""
    while True:
        n = len(columns["user"])
        keep = np.ones(n, dtype=bool)
        if min_item_count > 1:
            _, inverse, counts = np.unique(columns["item"], return_inverse=True, return_counts=True)
            keep &= counts[inverse] >= min_item_count
        if min_user_len > 1:
            _, inverse, counts = np.unique(columns["user"], return_inverse=True, return_counts=True)
            keep &= counts[inverse] >= min_user_len
        if keep.all():
            return columns
        columns = {k: v[keep] for k, v in columns.items()}


def user_hash(user, seed):
    """Deterministic 64-bit hash (splitmix64) of int64 user ids under ``seed``."""
    with np.errstate(over="ignore"):
        z = user.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def sampled_by_fraction(user, fraction, seed):
    """Mask of rows whose user falls in the deterministic ``fraction`` of users."""
    return user_hash(user, seed) < np.uint64(min(fraction, 1.0) * float(2**64 - 1))


def first_users_by_hash(columns, k, seed):
    """Keep the events of the ``k`` users with the smallest hash (deterministic sampling)."""
    users = np.unique(columns["user"])
    if len(users) <= k:
        return columns
    chosen = users[np.argsort(user_hash(users, seed), kind="stable")[:k]]
    keep = np.isin(columns["user"], chosen)
    return {name: values[keep] for name, values in columns.items()}
