"""A store written from one's own atomic ``.inter`` file a chunk at a time is byte for byte the
store RecBole's loading of the file gives (tokens of any text, rows in any order, ties in time,
float32 ties, extra loaded columns, users longer than a chunk); a file RecBole would filter,
normalise or refuse is loaded by RecBole instead, said in one line."""

import logging
import os

import numpy as np
import pytest

from recbole_mamba.atomics import inter_store
from recbole_mamba.atomics.store import store_folder
from recbole_mamba.atomics.tokens import FirstAppearance
from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import store_dataset
from recbole_mamba.data.atomic_loading import AtomicFileError

STORE_FILES = ("offsets.i8", "items.i4", "times.f8", "user_tokens.bin", "user_tokens.i8", "item_tokens.bin",
               "item_tokens.i8", "meta.json")


def write_inter(folder, name="own", rows=3_000, seed=0, extra="rating:float"):
    """An unsorted ``.inter`` of text tokens (accents, spaces, digits), ties in time and times
    equal in float32 but not in float64, one user with a third of the rows."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    users = np.where(rng.random(rows) < 0.33, 0, rng.integers(1, 40, rows))
    items = rng.zipf(1.4, rows) % 500
    times = 1_650_000_000.0 + rng.integers(0, 50, rows) * 60 + np.where(rng.random(rows) < 0.3, 1e-5, 0.0)
    path = os.path.join(folder, f"{name}.inter")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"user_id:token\titem_id:token\ttimestamp:float\t{extra}\n")
        for u, i, t, r in zip(users, items, times, rng.integers(1, 6, rows), strict=True):
            f.write(f"usér {u}\t{'ä' if i % 3 else ''}{i} x\t{float(t)!r}\t{r}\n")
    return path


def config_of(data_path, name="own", **overrides):
    return RecboleMambaConfig("MambaRec", name, config_dict={
        "data_path": data_path, "hidden_size": 8, "MAX_ITEM_LIST_LENGTH": 12, "train_mode": "all_positions",
        "epochs": 1, "show_progress": False, "interaction_store": "rebuild",
        "load_col": {"inter": ["user_id", "item_id", "timestamp", "rating"]}, **overrides})


def store_bytes(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in STORE_FILES}


@pytest.mark.parametrize("chunk_rows", [97, 1 << 21])
def test_a_streamed_store_equals_the_one_recboles_loading_gives(tmp_path, monkeypatch, caplog, chunk_rows):
    write_inter(str(tmp_path / "own"))
    config = config_of(str(tmp_path))
    monkeypatch.setattr(store_dataset, "not_streamed", lambda *args: "the reference")
    with caplog.at_level(logging.INFO):
        store_dataset.interaction_store(config)
    assert "not streamed: the reference" in caplog.text
    loaded = store_bytes(store_folder(config["data_path"], "own"))
    monkeypatch.undo()
    monkeypatch.setattr(inter_store, "CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(inter_store.stream_inter_store, "__defaults__", (chunk_rows,))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        store = store_dataset.interaction_store(config)
    assert "not streamed" not in caplog.text
    streamed = store_bytes(store.folder)
    assert store.interactions == 3_000 and len(store.user_tokens) == 41 and store.lengths().max() > 900
    assert len(store.item_tokens) > 100 and store.item_tokens[1].endswith(" x")
    for name in STORE_FILES:
        assert streamed[name] == loaded[name], name


@pytest.mark.parametrize("overrides, why", [
    ({"user_inter_num_interval": "[5,inf)"}, "RecBole's filters drop interactions (user_inter_num_interval)"),
    ({"rm_dup_inter": "first"}, "RecBole's filters drop interactions (rm_dup_inter)"),
    ({"normalize_all": True}, "RecBole normalises timestamp (normalize_all / normalize_field)"),
    ({"field_separator": "\t", "load_col": None}, None),
])
def test_what_recbole_would_change_is_loaded_by_recbole(tmp_path, caplog, overrides, why):
    write_inter(str(tmp_path / "own"), rows=200)
    config = config_of(str(tmp_path), **overrides)
    with caplog.at_level(logging.INFO):
        store = store_dataset.interaction_store(config)
    lines = [r.getMessage() for r in caplog.records if "not streamed" in r.getMessage()]
    if why is None:
        assert lines == [] and store.interactions == 200
    else:
        assert len(lines) == 1 and lines[0].endswith(f"not streamed: {why}"), lines
        assert f": the store is written from RecBole's loading of {tmp_path}" in lines[0]


def test_a_missing_value_is_named_by_recboles_loading(tmp_path, caplog):
    path = write_inter(str(tmp_path / "own"), rows=300)
    lines = open(path, encoding="utf-8").read().splitlines()
    lines[250] = "\t".join(["usér 3", "", *lines[250].split("\t")[2:]])
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with caplog.at_level(logging.INFO), pytest.raises(AtomicFileError, match=r"line 251.*item_id"):
        store_dataset.interaction_store(config_of(str(tmp_path)))
    assert "not streamed: values are missing (RecBole's loading names them)" in caplog.text
    assert not os.path.exists(store_folder(str(tmp_path / "own"), "own"))


def test_tokens_are_numbered_by_first_appearance_across_chunks_of_any_layout():
    import pandas as pd
    import pyarrow as pa

    numbering = FirstAppearance()
    chunked = pd.Series(pd.array(pa.chunked_array([["b", "a"], ["b", "c"]]), dtype=pd.ArrowDtype(pa.large_string())))
    assert inter_store._codes(numbering, chunked).tolist() == [1, 2, 1, 3]
    assert inter_store._codes(numbering, pd.Series(["d", "c", "é"], dtype=object)).tolist() == [4, 3, 5]
    assert inter_store._codes(numbering, pd.Series(["", "a", "x"], dtype="str"), add=False).tolist() == [-1, 2, -1]
    table = numbering.table()
    assert list(table) == ["[PAD]", "b", "a", "c", "d", "é"] and table.ids(["é"]).tolist() == [5]


@pytest.mark.parametrize("row", [["usér 1", "5 x", "1.0"], ["a new user", "5 x", "1.0"]])
def test_a_file_changed_between_the_passes_is_not_streamed(tmp_path, monkeypatch, row):
    """Rows read the second time that the first pass did not count: a user's more rows, or a
    new user's; refused before anything is written."""
    import pandas as pd

    path = write_inter(str(tmp_path / "own"), rows=300, extra="rating:float")
    passes = []
    chunks = inter_store._chunks

    def changed(*args):
        passes.append(1)
        for chunk in chunks(*args):
            if len(passes) == 2:
                extra = pd.DataFrame([row + ["3"]], columns=chunk.columns).astype(chunk.dtypes.to_dict())
                chunk = pd.concat([chunk, extra], ignore_index=True)
            yield chunk

    monkeypatch.setattr(inter_store, "_chunks", changed)
    loaded = inter_store.loaded_columns(path, "\t", "utf-8", None)
    with pytest.raises(inter_store.NotStreamable, match="changed while it was read"):
        inter_store.stream_inter_store(str(tmp_path / "own"), "own", path, loaded,
                                       ("user_id", "item_id", "timestamp"), "\t", "utf-8", {})
    assert len(passes) == 2 and sorted(os.listdir(tmp_path / "own")) == ["own.inter"]
