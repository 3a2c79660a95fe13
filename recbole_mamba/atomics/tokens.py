"""Token tables as UTF-8 bytes and offsets, made and written without a Python ``str`` a token.

A table of n tokens is ``blob`` (uint8, the tokens' UTF-8 bytes one after another) and ``offsets``
((n + 1,) int64, token i is ``blob[offsets[i]:offsets[i + 1]]``): the store's ``*_tokens.bin`` /
``*_tokens.i8`` and the checkpoints' item tokens. A converter's tokens are integer ids, written
here in decimal by numpy a block at a time (as ``str(int)`` writes them), so a catalogue of 10^7
items costs its bytes, not 10^7 Python objects (about 60 bytes each, and as much again encoded).
"""

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


class Utf8Tokens:
    """A token table (see the module docstring): ``len()``, and :meth:`write` to a store's files."""

    def __init__(self, blob, offsets):
        self.blob, self.offsets = np.asarray(blob, dtype=np.uint8), np.asarray(offsets, dtype=np.int64)

    def __len__(self):
        return len(self.offsets) - 1

    @classmethod
    def from_strings(cls, tokens):
        """Of any sequence of tokens (``str(token)`` each): RecBole's ``field2id_token``."""
        encoded = [str(token).encode("utf-8") for token in tokens]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=offsets[1:])
        return cls(np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets)

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

    def write(self, folder, kind):
        """``folder/<kind>_tokens.bin`` (the bytes) and ``.i8`` (the offsets)."""
        self.offsets.tofile(os.path.join(folder, f"{kind}_tokens.i8"))
        self.blob.tofile(os.path.join(folder, f"{kind}_tokens.bin"))
