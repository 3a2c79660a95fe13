"""Token tables made without a Python str a token: integer ids written in decimal exactly as
``str(int)`` writes them, and numbered by first appearance exactly as RecBole's remapping does."""

import numpy as np
import pandas as pd
import pytest

from recbole_mamba.atomics import tokens as tokens_module
from recbole_mamba.atomics.tokens import Utf8Tokens, first_appearance

EDGES = [0, 1, -1, 9, 10, -10, 99, 100, 10**18, -(10**18), 2**63 - 1, -(2**63), 123456789012, -42]


def decoded(table):
    return [bytes(table.blob[a:b]).decode("utf-8") for a, b in zip(table.offsets[:-1], table.offsets[1:], strict=True)]


@pytest.mark.parametrize("block", [3, 1 << 20])
def test_integers_are_written_as_str_writes_them(monkeypatch, block):
    monkeypatch.setattr(tokens_module, "BLOCK", block)  # blocks that split the ids
    ids = np.array(EDGES + np.random.default_rng(0).integers(-(10**12), 10**12, 500).tolist(), dtype=np.int64)
    table = Utf8Tokens.from_integers(ids)
    reference = Utf8Tokens.from_strings(["[PAD]", *map(str, ids.tolist())])
    assert decoded(table) == ["[PAD]", *map(str, ids.tolist())] and len(table) == len(ids) + 1
    assert table.blob.tobytes() == reference.blob.tobytes() and table.offsets.tolist() == reference.offsets.tolist()
    assert decoded(Utf8Tokens.from_integers(np.array([7, 8], dtype=np.int32))) == ["[PAD]", "7", "8"]
    assert decoded(Utf8Tokens.from_integers(np.zeros(0, np.int64))) == ["[PAD]"]


def test_strings_keep_their_utf8():
    assert decoded(Utf8Tokens.from_strings(["[PAD]", "dé", "", "ü 1", 5])) == ["[PAD]", "dé", "", "ü 1", "5"]


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_first_appearance_numbers_as_recboles_remapping(dtype):
    values = np.random.default_rng(1).zipf(1.3, 5_000).astype(dtype) * np.where(np.arange(5_000) % 7, 1, -1)
    codes, distinct = first_appearance(values)
    recbole_codes, recbole_tokens = pd.factorize(pd.Series(values.astype(str)))  # RecBole remaps str tokens
    assert codes.tolist() == (recbole_codes + 1).tolist() and codes.dtype == np.int32
    assert list(map(str, distinct.tolist())) == recbole_tokens.tolist()
    assert (distinct[codes - 1] == values).all()
