"""The interaction store's files: written whole and read back as written; a store that is not whole,
or not made from its atomic file and settings, refused in one line naming the file."""

import os
import shutil

import numpy as np
import pytest

from recbole_mamba.atomics import store as store_module
from recbole_mamba.atomics.store import StoreError, loading_settings, open_store, store_folder, write_store

LOADING = loading_settings("user_id", "item_id", "timestamp", "\t")
ADVICE = ": --interaction_store=rebuild writes it again from the atomic file, --interaction_store=off reads the atomic file without it"


def small_store(folder, name="d"):
    """A store of 3 users (ids 1-3, user 2 with none) and 4 items, and its atomic file."""
    os.makedirs(folder, exist_ok=True)
    source = os.path.join(folder, f"{name}.inter")
    with open(source, "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n" + "".join(f"u\ti\t{t}\n" for t in range(7)))
    users = np.array([1, 1, 1, 3, 3, 3, 3])
    items = np.array([2, 1, 4, 3, 3, 1, 2])
    times = np.arange(7, dtype=np.float64) * 1.5
    write_store(folder, name, users, items, times, ["[PAD]", "ü 1", "u2", "u3"], ["[PAD]", "a", "b", "c", "dé"],
                source, LOADING)
    return source, users, items, times


def test_a_store_reads_back_as_written(tmp_path):
    source, users, items, times = small_store(str(tmp_path))
    store = open_store(str(tmp_path), "d", source, LOADING)
    assert store.offsets.tolist() == [0, 0, 3, 3, 7] and store.lengths().tolist() == [0, 3, 0, 4]
    assert store.items.tolist() == items.tolist() and store.items.dtype == np.int32
    assert store.times_at([0, 6, 3]).tolist() == [0.0, 9.0, 4.5]
    assert store.interactions == 7 and store.meta["items_seen"] == 4 and store.meta["max_user_interactions"] == 4
    tokens = store.item_tokens
    assert len(tokens) == 5 and list(tokens) == ["[PAD]", "a", "b", "c", "dé"]
    assert tokens[4] == "dé" and tokens[-1] == "dé" and tokens[np.array([3, 1])].tolist() == ["c", "a"]
    assert tokens[1:3].tolist() == ["a", "b"] and tokens.index()["c"] == 3
    assert store.user_tokens[1] == "ü 1"
    with pytest.raises(IndexError):
        tokens[5]
    assert sorted(os.listdir(tmp_path)) == ["d.inter", "d.store"]  # nothing temporary left


def test_a_store_is_as_readable_as_its_atomic_file(tmp_path):
    """Its folder and files get the modes of new files, not tempfile's private ones: whoever can
    read the dataset can read its store."""
    umask = os.umask(0)
    os.umask(umask)
    small_store(str(tmp_path))
    folder = store_folder(str(tmp_path), "d")
    assert os.stat(tmp_path / "d.inter").st_mode & 0o777 == 0o666 & ~umask
    assert os.stat(folder).st_mode & 0o777 == 0o777 & ~umask
    assert {os.stat(os.path.join(folder, f)).st_mode & 0o777 for f in os.listdir(folder)} == {0o666 & ~umask}


def test_users_must_come_sorted(tmp_path):
    with pytest.raises(ValueError, match="sorted ids"):
        write_store(str(tmp_path), "d", np.array([2, 1]), np.array([1, 1]), np.zeros(2), ["[PAD]", "a", "b"],
                    ["[PAD]", "x"], __file__, LOADING)


def test_a_failed_write_leaves_no_store_and_keeps_the_old_one(tmp_path, monkeypatch):
    source, *_ = small_store(str(tmp_path))
    before = sorted(os.listdir(store_folder(str(tmp_path), "d")))

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(store_module.Utf8Tokens, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        write_store(str(tmp_path), "d", np.array([1]), np.array([1]), np.zeros(1), ["[PAD]", "u"], ["[PAD]", "i"],
                    source, LOADING)
    assert sorted(os.listdir(tmp_path)) == ["d.inter", "d.store"] and sorted(os.listdir(tmp_path / "d.store")) == before
    assert open_store(str(tmp_path), "d", source, LOADING).interactions == 7


def test_no_store_is_none(tmp_path):
    assert open_store(str(tmp_path), "d", __file__, LOADING) is None


def test_a_truncated_or_missing_file_is_refused_naming_it(tmp_path):
    source, *_ = small_store(str(tmp_path))
    items = tmp_path / "d.store" / "items.i4"
    items.write_bytes(items.read_bytes()[:-4])
    with pytest.raises(StoreError) as error:
        open_store(str(tmp_path), "d", source, LOADING)
    assert str(error.value) == f"{items}: truncated or changed (24 bytes, written 28)" + ADVICE
    items.unlink()
    with pytest.raises(StoreError, match=rf"^{items}: missing: "):
        open_store(str(tmp_path), "d", source, LOADING)
    (tmp_path / "d.store" / "meta.json").write_text("{")
    with pytest.raises(StoreError, match=r"meta.json: not a readable store description \(JSONDecodeError\): "):
        open_store(str(tmp_path), "d", source, LOADING)


def test_an_edited_atomic_file_is_refused(tmp_path):
    source, *_ = small_store(str(tmp_path))
    with open(source, "a") as f:
        f.write("u\ti\t8\n")
    with pytest.raises(StoreError) as error:
        open_store(str(tmp_path), "d", source, LOADING)
    assert str(error.value) == (f"{tmp_path / 'd.store'}: made from another d.inter (its size, mtime_ns, ends "
                                "changed since)" + ADVICE)
    write_store(str(tmp_path), "d", np.array([1]), np.array([1]), np.zeros(1), ["[PAD]", "u"], ["[PAD]", "i"],
                source, LOADING)  # rebuilt
    assert open_store(str(tmp_path), "d", source, LOADING).interactions == 1


def test_another_datasets_store_or_other_settings_are_refused(tmp_path):
    source, *_ = small_store(str(tmp_path / "a"))
    os.makedirs(tmp_path / "b")
    shutil.copy(source, tmp_path / "b" / "b.inter")
    shutil.copytree(tmp_path / "a" / "d.store", tmp_path / "b" / "b.store")
    with pytest.raises(StoreError, match=r"meta.json: the store of another dataset \('d'\): "):
        open_store(str(tmp_path / "b"), "b", str(tmp_path / "b" / "b.inter"), LOADING)
    other = loading_settings("user_id", "item_id", "timestamp", "\t", {"rm_dup_inter": "first"})
    with pytest.raises(StoreError, match=r"d.store: made with other loading settings \(filters: "):
        open_store(str(tmp_path / "a"), "d", source, other)
