"""Token tables made without a Python str a token: integer ids written in decimal exactly as
``str(int)`` writes them, and numbered by first appearance exactly as RecBole's remapping does."""

import numpy as np
import pandas as pd
import pytest

from recbole_mamba.atomics import tokens as tokens_module
from recbole_mamba.atomics.tokens import FirstAppearance, Utf8Tokens, first_appearance

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


def test_ids_are_found_byte_for_byte():
    table = Utf8Tokens.from_strings(["[PAD]", "a", "", "dé", "ü 1", "bb", "a b", "7"])
    found = table.ids(["a", "", "dé", "zz", "ü 1", "[PAD]", "bb", "a b", 7, "d", "é"])
    assert found.tolist() == [1, 2, 3, -1, 4, 0, 5, 6, 7, -1, -1]
    assert table[3] == "dé" and table[-1] == "7" and table[[4, 1]].tolist() == ["ü 1", "a"]
    assert Utf8Tokens.from_strings([]).ids(["a"]).tolist() == [-1]


def test_ids_are_found_where_hashes_collide(monkeypatch):
    """A hash of the length alone: every token of a length collides, and the bytes decide."""
    monkeypatch.setattr(tokens_module, "_hashes", lambda blob, offsets: np.diff(offsets).astype(np.uint64))
    words = ["[PAD]", "ab", "ba", "cd", "x", "y", "abc", ""]
    table = Utf8Tokens.from_strings(words)
    queries = words[::-1] + ["dc", "z", "abd"]
    assert table.ids(queries).tolist() == list(range(len(words)))[::-1] + [-1, -1, -1]


def test_ids_of_many_integer_tokens():
    ids = np.random.default_rng(2).choice(10**12, 50_000, replace=False)
    table = Utf8Tokens.from_integers(ids)
    queries = np.random.default_rng(3).permutation(len(ids))
    found = table.ids([str(v) for v in ids[queries]] + ["-1", "1e3"])
    assert found.tolist() == (queries + 1).tolist() + [-1, -1]


def numbered_in_chunks(numbering, words, size):
    """The ids ``numbering`` gives ``words`` fed ``size`` at a time, each chunk's distinct words
    in order of appearance (as a store's chunks are)."""
    ids = []
    for start in range(0, len(words), size):
        chunk = words[start:start + size]
        codes, distinct = pd.factorize(pd.Series(chunk, dtype=object))
        found = numbering.number(Utf8Tokens.from_strings(distinct))
        ids += found[codes].tolist()
    return ids


@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_first_appearance_over_chunks_numbers_as_recboles_remapping(size):
    rng = np.random.default_rng(4)
    words = [f"w{v}" if v % 5 else f"é {v}" for v in rng.zipf(1.3, 3_000)] + ["[PAD]", "", "w1"]
    numbering = FirstAppearance()
    codes, tokens = pd.factorize(pd.Series(words, dtype=object))  # RecBole's remapping of the whole column
    assert numbered_in_chunks(numbering, words, size) == (codes + 1).tolist()
    assert decoded(numbering.table()) == ["[PAD]", *tokens] and len(numbering) == len(tokens) + 1
    assert numbering.number(Utf8Tokens.from_strings(["w1", "new", "[PAD]"]), add=False).tolist() == [
        1 + words.index("w1"), -1, 1 + tokens.tolist().index("[PAD]")]
    assert len(numbering) == len(tokens) + 1  # add=False gave no id


def test_first_appearance_where_hashes_collide(monkeypatch):
    """A hash of the length alone: the bytes tell the tokens of a length apart, old and new."""
    monkeypatch.setattr(tokens_module, "_hashes", lambda blob, offsets: np.diff(offsets).astype(np.uint64))
    words = ["ab", "ba", "x", "ab", "cd", "y", "ba", "", "x", "dc", "", "cd"]
    codes, tokens = pd.factorize(pd.Series(words, dtype=object))
    numbering = FirstAppearance()
    assert numbered_in_chunks(numbering, words, 3) == (codes + 1).tolist()
    assert decoded(numbering.table()) == ["[PAD]", *tokens]


def resident_file_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


def test_a_mapped_table_drops_its_pages_and_reads_the_same_after(tmp_path):
    """A store's table, read whole (as writing a checkpoint reads it), leaves this process's
    resident memory when dropped, and reads the same tokens from its files after; a table in
    memory keeps its bytes."""
    ids = np.random.default_rng(5).choice(10**12, 2_000_000, replace=False)  # 32 MiB of files
    Utf8Tokens.from_integers(ids).write(str(tmp_path), "item")
    table = Utf8Tokens.open(str(tmp_path), "item")
    before = resident_file_kib()
    total = int(table.blob.sum(dtype=np.int64)) + int(table.offsets.sum())  # every page read
    read = resident_file_kib()
    table.drop_pages()
    dropped = resident_file_kib()
    assert read - before > 28_000 and read - dropped > 28_000, (before, read, dropped)
    assert int(table.blob.sum(dtype=np.int64)) + int(table.offsets.sum()) == total and table[7] == str(ids[6])
    held = Utf8Tokens.from_integers(ids[:5])
    held.drop_pages()
    assert decoded(held) == ["[PAD]", *map(str, ids[:5].tolist())]
