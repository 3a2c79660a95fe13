"""Token tables as UTF-8 bytes and offsets, made, written and searched without a Python ``str``
a token.

A table of n tokens is ``blob`` (uint8, the tokens' UTF-8 bytes one after another) and ``offsets``
((n + 1,) int64, token i is ``blob[offsets[i]:offsets[i + 1]]``): the store's ``*_tokens.bin`` /
``*_tokens.i8`` and the checkpoints' item tokens. A converter's tokens are integer ids, written
here in decimal by numpy a block at a time (as ``str(int)`` writes them), and a token's id is
found through sorted 64-bit hashes of the tokens (12 bytes a token, the match checked byte for
byte), so a catalogue of 10^7 items costs its bytes, not 10^7 Python objects (about 60 bytes
each, and as much again in a dict). :class:`FirstAppearance` numbers tokens that come a chunk at a
time the same way, growing its table and hashes as new tokens come.
"""

import mmap
import os

import numpy as np
import pandas as pd

BLOCK = 1 << 20  # ids formatted at a time
_POWERS = 10 ** np.arange(20, dtype=np.uint64)  # 10^0 .. 10^19: a uint64 has at most 20 digits


def first_appearance(values):
    """(codes (n,) int32 or int64 from 1, in order of first appearance; the distinct values in that
    order): as RecBole's remapping (``pd.factorize``) numbers tokens. A hash table of the distinct
    values, no sort of the n values."""
    codes, distinct = pd.factorize(np.asarray(values), sort=False, use_na_sentinel=False)
    codes = codes.astype(np.int32 if len(distinct) < np.iinfo(np.int32).max else np.int64)
    codes += 1
    return codes, np.asarray(distinct)


def _decimal(values):
    """(blob, lengths) of integer ``values`` written in decimal, as ``str(int(v))``."""
    values = np.asarray(values, dtype=np.int64)
    negative = values < 0
    magnitude = values.astype(np.uint64)
    magnitude[negative] = (~values[negative]).astype(np.uint64) + np.uint64(1)  # ~v is -v - 1: int64's min too
    digits = np.ones(len(values), dtype=np.int64)
    for power in _POWERS[1:]:
        digits += magnitude >= power
    lengths = digits + negative
    ends = np.cumsum(lengths)
    blob = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.uint8)
    for k in range(int(digits.max(initial=0))):
        has = digits > k
        blob[ends[has] - 1 - k] = 48 + (magnitude[has] // _POWERS[k]) % np.uint64(10)
    blob[(ends - lengths)[negative]] = ord("-")
    return blob, lengths


def _positions(starts, lengths):
    """(lengths.sum(),) int64: the places of the bytes of the tokens at ``starts`` of ``lengths``
    in a blob, one token after another."""
    first = np.cumsum(lengths) - lengths  # of each token's bytes in the result
    return np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))


_HASH_BASE = np.uint64(0x100000001B3)  # FNV's 64-bit prime, as the base of a polynomial hash


def _mix(h):
    """splitmix64's finaliser: every bit of ``h`` (uint64) moves every bit of the result."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def _hashes(blob, offsets):
    """(len(offsets) - 1,) uint64: a hash of each token's bytes and length."""
    lengths = np.diff(offsets)
    hashes = lengths.astype(np.uint64)
    if not len(blob):
        return _mix(hashes)
    token = np.repeat(np.arange(len(lengths)), lengths)  # of each byte
    from_end = offsets[1:][token] - 1 - (offsets[0] + np.arange(len(token)))
    with np.errstate(over="ignore"):
        powers = np.cumprod(np.full(int(lengths.max()), _HASH_BASE, dtype=np.uint64)) // _HASH_BASE
        powers[0] = 1
        terms = (blob[offsets[0]:offsets[-1]].astype(np.uint64) + np.uint64(1)) * powers[from_end]
        nonempty = lengths > 0
        hashes[nonempty] += np.add.reduceat(terms, (offsets[:-1] - offsets[0])[nonempty])
    return _mix(hashes)


class Utf8Tokens:
    """A token table (see the module docstring): ``len()``, ``table[i]`` (str), ``table[ids]``
    (an array of str), iteration, as RecBole's ``field2id_token`` arrays offer them; :meth:`ids`
    finds the ids of tokens; :meth:`write` writes a store's files."""

    def __init__(self, blob, offsets):
        self.blob, self.offsets = np.asarray(blob, dtype=np.uint8), np.asarray(offsets, dtype=np.int64)
        self._sorted = None  # (sorted hashes, their ids): built on the first search

    def __len__(self):
        return len(self.offsets) - 1

    def _one(self, i):
        return bytes(self.blob[self.offsets[i]:self.offsets[i + 1]]).decode("utf-8")

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"token id {index} out of range for {len(self)} ids")
            return self._one(int(index) % len(self))
        ids = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        return np.array([self._one(int(i)) for i in ids.ravel()], dtype=str).reshape(ids.shape)

    def __iter__(self):
        return (self._one(i) for i in range(len(self)))

    def arrays(self):
        """(UTF-8 bytes (uint8), offsets (ids + 1,) int64): the table as held, not copied."""
        return self.blob, self.offsets

    def index(self):
        """{token: id}: RecBole's ``field2token_id`` (a Python dict: O(ids) objects; :meth:`ids`
        searches without one)."""
        return {token: i for i, token in enumerate(self)}

    def _search_index(self):
        if self._sorted is None:
            hashes = np.concatenate([_hashes(self.blob, self.offsets[start:start + BLOCK + 1])
                                     for start in range(0, len(self), BLOCK)] or [np.zeros(0, np.uint64)])
            order = np.argsort(hashes, kind="stable")
            self._sorted = hashes[order], order.astype(np.int32 if len(self) < np.iinfo(np.int32).max else np.int64)
        return self._sorted

    def ids(self, tokens):
        """(len(tokens),) int64: the id of each token (str, or anything ``str()`` makes one), -1
        for a token not in the table."""
        query = Utf8Tokens.from_strings(tokens)
        return self._find(query, _hashes(query.blob, query.offsets), *self._search_index())

    def _find(self, query, wanted, hashes, ids):
        """(len(query),) int64: the id of each of ``query``'s tokens (a table; ``wanted``: their
        hashes) among this table's tokens ``ids`` of sorted ``hashes``, -1 where none."""
        found = np.full(len(query), -1, dtype=np.int64)
        if not len(hashes):
            return found
        order = np.argsort(wanted)  # searched in order: each search starts where the last ended
        at = np.empty(len(wanted), dtype=np.int64)
        at[order] = np.minimum(np.searchsorted(hashes, wanted[order]), len(hashes) - 1)
        hit = np.flatnonzero(hashes[at] == wanted)
        equal = self._equal(ids[at[hit]], query, hit)
        found[hit[equal]] = ids[at[hit[equal]]]
        for q in hit[~equal]:  # another token of the same hash first (about 10^-5 at 10^7 tokens)
            token = query.blob[query.offsets[q]:query.offsets[q + 1]].tobytes()
            for j in range(at[q] + 1, len(hashes)):
                if hashes[j] != wanted[q]:
                    break
                if self.blob[self.offsets[ids[j]]:self.offsets[ids[j] + 1]].tobytes() == token:
                    found[q] = ids[j]
                    break
        return found

    def _equal(self, candidates, query, rows):
        """(len(rows),) bool: whether token ``candidates[k]`` of this table is ``query``'s token
        ``rows[k]``, byte for byte."""
        start, length = self.offsets[candidates], self.offsets[candidates + 1] - self.offsets[candidates]
        query_start, query_length = query.offsets[rows], query.offsets[rows + 1] - query.offsets[rows]
        equal = length == query_length
        check = np.flatnonzero(equal & (length > 0))
        if len(check):
            n = length[check]
            differ = self.blob[_positions(start[check], n)] != query.blob[_positions(query_start[check], n)]
            equal[check] = np.add.reduceat(differ.astype(np.int64), np.cumsum(n) - n) == 0
        return equal

    @classmethod
    def from_strings(cls, tokens):
        """Of any sequence of tokens (``str(token)`` each): RecBole's ``field2id_token``."""
        encoded = [str(token).encode("utf-8") for token in tokens]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(np.frombuffer(bytearray(b"".join(encoded)), dtype=np.uint8), offsets)  # writable: torch shares it

    @classmethod
    def from_integers(cls, ids, first="[PAD]"):
        """``first`` (RecBole's padding token), then integer ``ids`` in decimal."""
        head = np.frombuffer(first.encode("utf-8"), dtype=np.uint8)
        ids = np.asarray(ids)
        blobs, offsets, end = [head], [np.array([0, len(head)], dtype=np.int64)], len(head)
        for start in range(0, len(ids), BLOCK):
            blob, lengths = _decimal(ids[start:start + BLOCK])
            offsets.append(end + np.cumsum(lengths))
            blobs.append(blob)
            end += len(blob)
        return cls(np.concatenate(blobs), np.concatenate(offsets))

    @classmethod
    def open(cls, folder, kind):
        """The table of a store's ``folder/<kind>_tokens.*`` files, memory-mapped (copy on write:
        never written back)."""
        offsets = np.memmap(os.path.join(folder, f"{kind}_tokens.i8"), dtype=np.int64, mode="c")
        path = os.path.join(folder, f"{kind}_tokens.bin")
        return cls(np.memmap(path, dtype=np.uint8, mode="c") if os.path.getsize(path) else np.zeros(0, np.uint8),
                   offsets)

    def drop_pages(self):
        """Drop the pages of a table :meth:`open` maps from this process's resident memory (read
        again from the files when touched): writing a checkpoint reads every one (16 bytes an item
        of 8-digit tokens). Nothing for a table held in memory."""
        for array in (self.blob, self.offsets):
            while isinstance(array, np.ndarray):  # a view of a np.memmap, whose base is the mapping
                array = array.base
            if isinstance(array, mmap.mmap):
                array.madvise(mmap.MADV_DONTNEED)  # a private mapping never written: the file's bytes

    def write(self, folder, kind):
        """``folder/<kind>_tokens.bin`` (the bytes) and ``.i8`` (the offsets)."""
        self.offsets.tofile(os.path.join(folder, f"{kind}_tokens.i8"))
        self.blob.tofile(os.path.join(folder, f"{kind}_tokens.bin"))


class FirstAppearance:
    """Ids from 1 of tokens in order of first appearance, over chunks: as RecBole's remapping
    numbers a column, without the column whole. The distinct tokens so far are held as a table
    (their bytes and offsets, grown in place) with their sorted 64-bit hashes and ids (12 bytes a
    token), a match checked byte for byte; ``[PAD]`` is id 0 and found by no token."""

    GROWTH = 1.5  # of the buffers when full

    def __init__(self):
        pad = np.frombuffer(b"[PAD]", dtype=np.uint8)
        self._blob, self._offsets = pad.copy(), np.array([0, len(pad)], dtype=np.int64)
        self._tokens, self._bytes = 1, len(pad)  # held in the buffers' first places
        self._hashes, self._ids = np.zeros(0, np.uint64), np.zeros(0, np.int32)

    def __len__(self):
        """Ids given, ``[PAD]`` counted."""
        return self._tokens

    def table(self):
        """The :class:`Utf8Tokens` of ``[PAD]`` and the tokens, by id (a view of the buffers)."""
        return Utf8Tokens(self._blob[:self._bytes], self._offsets[:self._tokens + 1])

    def number(self, distinct, add=True):
        """(len(distinct),) int64: the ids of ``distinct``'s tokens (a :class:`Utf8Tokens` of
        tokens not repeated, in order of appearance), those not seen before numbered next in that
        order (``add=False``: -1 for them)."""
        wanted = _hashes(distinct.blob, distinct.offsets)
        ids = self.table()._find(distinct, wanted, self._hashes, self._ids)
        new = np.flatnonzero(ids < 0)
        if not add or not len(new):
            return ids
        if self._tokens + len(new) > np.iinfo(np.int32).max:
            raise OverflowError(f"{self._tokens + len(new):,} tokens do not fit int32 ids")
        ids[new] = self._tokens + np.arange(len(new))
        self._append(distinct, new)
        order = np.argsort(wanted[new], kind="stable")
        at = np.searchsorted(self._hashes, wanted[new][order])
        self._hashes = np.insert(self._hashes, at, wanted[new][order])
        self._ids = np.insert(self._ids, at, ids[new][order].astype(np.int32))
        return ids

    def _append(self, distinct, rows):
        """Put ``distinct``'s tokens ``rows`` after the tokens held."""
        lengths = distinct.offsets[rows + 1] - distinct.offsets[rows]
        total = int(lengths.sum())
        added = distinct.blob[_positions(distinct.offsets[rows], lengths)]
        self._blob = self._fit(self._blob, self._bytes + total)
        self._offsets = self._fit(self._offsets, self._tokens + len(rows) + 1)
        self._blob[self._bytes:self._bytes + total] = added
        self._offsets[self._tokens + 1:self._tokens + len(rows) + 1] = self._bytes + np.cumsum(lengths)
        self._tokens, self._bytes = self._tokens + len(rows), self._bytes + total

    def _fit(self, buffer, size):
        """``buffer``, or a copy of it with room for ``size`` values."""
        if size <= len(buffer):
            return buffer
        grown = np.empty(max(size, int(len(buffer) * self.GROWTH)), dtype=buffer.dtype)
        grown[:len(buffer)] = buffer
        return grown
