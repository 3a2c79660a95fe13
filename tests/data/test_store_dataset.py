"""All-position training read from the interaction store gives what RecBole's loading of the atomic
files gives: the same rows in every split, the same batches, the same metrics under full ranking,
sampled negatives and history masking; the converter's store equals one built from RecBole's
loading; a store that no longer matches is refused in one line, and rebuilt when asked."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data import data_preparation

from recbole_mamba.atomics import convert_kuairand
from recbole_mamba.atomics.convert import KUAIRAND_COLUMNS
from recbole_mamba.atomics.store import StoreError, store_folder
from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import StoreWindowDataset, WindowDataset, create_dataset
from recbole_mamba.data.stats import dataset_statistics
from recbole_mamba.quick_start import run


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A KuaiRand-shaped log of 30 users (clicks with repeats, ties in time, users of 2 to 60
    clicks), converted: atomic files and the converter's store."""
    root = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(0)
    rows = []
    for user in range(30):
        n = int(rng.integers(2, 61))
        times = np.sort(rng.integers(0, 40, n)) * 60_000 + 1_650_000_000_000  # ties, 1-minute steps
        rows += [{c: 0 for c in KUAIRAND_COLUMNS} | {"user_id": 1000 - user, "video_id": int(rng.zipf(1.5) % 80),
                                                    "time_ms": int(t), "is_click": 1, "tab": 1} for t in times]
    log = root / "log_standard.csv"
    pd.DataFrame(rows, columns=KUAIRAND_COLUMNS).to_csv(log, index=False)
    convert_kuairand([str(log)], output_dir=str(root / "atomics"), name="kr")
    return str(root / "atomics")


def settings(data_path, **overrides):
    return {"data_path": data_path, "hidden_size": 8, "MAX_ITEM_LIST_LENGTH": 12, "train_mode": "all_positions",
            "epochs": 2, "show_progress": False, "train_batch_tokens": 60, **overrides}


def config_of(data_path, **overrides):
    return RecboleMambaConfig("MambaRec", "kr", config_dict=settings(data_path, **overrides))


def splits(config):
    """The dataset, its statistics and log lines as loaded (before the split), its three loaders."""
    dataset = create_dataset(config)
    loaded = dataset_statistics(dataset), str(dataset).splitlines()
    return dataset, loaded, data_preparation(config, dataset)


def test_the_store_gives_recboles_rows_and_batches(converted):
    ours, (our_stats, our_log), our_loaders = splits(config_of(converted, interaction_store="on"))
    theirs, (their_stats, their_log), their_loaders = splits(config_of(converted, interaction_store="off"))
    assert type(ours) is StoreWindowDataset and type(theirs) is WindowDataset
    assert our_stats == their_stats and our_stats["interactions"] == 1004
    assert our_log[:7] == their_log[:7]  # users, items, interactions, their averages, sparsity
    assert (ours.user_num, ours.item_num) == (theirs.user_num, theirs.item_num)
    for field in (ours.uid_field, ours.iid_field):
        assert list(ours.field2id_token[field]) == list(theirs.field2id_token[field]), field
    for a, b in zip(our_loaders, their_loaders, strict=True):
        rows, expected = a._dataset.inter_feat, b._dataset.inter_feat
        assert len(rows) == len(expected) > 0
        for field in rows.columns:
            assert torch.equal(rows[field], expected[field]), field
        index = np.arange(len(rows))
        batch, expected_batch = a._dataset[index], b._dataset[index]
        list_field = ours.item_id_list_field
        assert torch.equal(batch[list_field], expected_batch[list_field]) and batch[list_field].dtype == torch.int64


@pytest.mark.parametrize("protocol", [{"eval_args": {"mode": "full"}, "exclude_history": True},
                                      {"eval_args": {"mode": "uni20"}, "loss_type": "SSM", "train_negatives": 16}])
def test_the_store_gives_the_same_metrics(converted, protocol, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    results = [run("MambaRec", "kr", config_dict=settings(converted, interaction_store=mode, **protocol))
               for mode in ("on", "off")]
    assert results[0]["config"]["interaction_store"] == "on"
    for key in ("test_result", "best_valid_result", "dataset_stats", "epochs_run"):
        assert results[0][key] == results[1][key], key


def test_the_converters_store_equals_one_built_from_recboles_loading(converted, tmp_path):
    copy = tmp_path / "kr"
    shutil.copytree(os.path.join(converted, "kr"), copy, ignore=shutil.ignore_patterns("*.store"))
    built = create_dataset(config_of(str(tmp_path), interaction_store="on"))
    written = create_dataset(config_of(converted, interaction_store="on"))
    assert built.store.folder == store_folder(str(copy), "kr") and written.store.folder != built.store.folder
    for name in ("offsets.i8", "items.i4", "times.f8", "user_tokens.bin", "user_tokens.i8", "item_tokens.bin",
                 "item_tokens.i8"):
        assert (copy / "kr.store" / name).read_bytes() == open(os.path.join(written.store.folder, name), "rb").read(), name
    meta = dict(built.store.meta, source=None), dict(written.store.meta, source=None)
    assert meta[0] == meta[1]


def test_auto_writes_no_store_for_a_small_file_and_reads_one_that_is_there(converted, tmp_path):
    copy = tmp_path / "kr"
    shutil.copytree(os.path.join(converted, "kr"), copy, ignore=shutil.ignore_patterns("*.store"))
    assert type(create_dataset(config_of(str(tmp_path)))) is WindowDataset  # auto, a small file: none written
    assert not (copy / "kr.store").exists()
    assert type(create_dataset(config_of(converted))) is StoreWindowDataset  # auto reads the converter's
    assert type(create_dataset(config_of(converted, train_mode="prefix"))) is not StoreWindowDataset


def test_features_that_load_col_none_loads_are_read_by_recboles_loading(converted, tmp_path):
    """``load_col: ~`` loads every atomic file: with a ``.item`` beside the ``.inter``, the store
    (which holds no features) is not read, and ``interaction_store: on`` says why."""
    copy = tmp_path / "kr"
    shutil.copytree(os.path.join(converted, "kr"), copy)
    items = create_dataset(config_of(converted)).field2id_token["item_id"][1:]
    (copy / "kr.item").write_text("item_id:token\tgenre:token\n" + "".join(f"{i}\tg{len(i)}\n" for i in items))
    assert type(create_dataset(config_of(str(tmp_path), load_col={"inter": ["user_id", "item_id", "timestamp"]}))) \
        is StoreWindowDataset  # the .item file not loaded: the store serves
    dataset = create_dataset(config_of(str(tmp_path), load_col=None))
    assert type(dataset) is WindowDataset and "genre" in dataset.item_feat.columns
    with pytest.raises(Exception, match=rf"interaction_store on: the run cannot read a store: load_col: ~ loads "
                                        rf"the features of {copy / 'kr.item'}$"):
        create_dataset(config_of(str(tmp_path), load_col=None, interaction_store="on"))


def test_a_stale_store_is_refused_and_rebuilt_when_asked(converted, tmp_path, cli_main):
    copy = tmp_path / "kr"
    shutil.copytree(os.path.join(converted, "kr"), copy)
    with open(copy / "kr.inter", "a") as f:
        f.write("5\t1\t1650009999.0\n")
    with pytest.raises(StoreError, match=rf"^{copy / 'kr.store'}: made from another kr.inter "):
        create_dataset(config_of(str(tmp_path)))
    args = [f"--data_path={tmp_path}", "--dataset=kr", "--epochs=1", "--hidden_size=8", "--MAX_ITEM_LIST_LENGTH=12",
            "--train_mode=all_positions", "--show_progress=False"]
    code, _, err = cli_main(tmp_path, *args)
    assert code == 2 and err.strip().splitlines() == [
        f"run_recbole_mamba.py: error: {copy / 'kr.store'}: made from another kr.inter (its size, mtime_ns, ends "
        "changed since): --interaction_store=rebuild writes it again from the atomic file, --interaction_store=off "
        "reads the atomic file without it"]
    code, out, err = cli_main(tmp_path, *args, "--interaction_store=rebuild")
    assert code == 0, err
    assert create_dataset(config_of(str(tmp_path))).store.interactions == \
        create_dataset(config_of(converted)).store.interactions + 1
    with pytest.raises(Exception, match="interaction_store on: the run cannot read a store: train_mode prefix"):
        create_dataset(config_of(str(tmp_path), train_mode="prefix", interaction_store="on"))
