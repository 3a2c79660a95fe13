"""The plugin's loading of atomic files (C parser, no no-op filter counting) gives the dataset
RecBole's own loading gives: every field of every row, the id maps, the field types."""

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data import data_preparation
from recbole.data.dataset import SequentialDataset

from recbole_mamba.atomics.writer import write_dataset
from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import PrefixDataset, WindowDataset, create_dataset
from recbole_mamba.data.atomic_loading import admits_every_count


class RecBoleLoadedWindows(WindowDataset):
    """WindowDataset with RecBole's own loading."""

    _load_feat = SequentialDataset._load_feat
    _filter_by_inter_num = SequentialDataset._filter_by_inter_num


def tricky_dataset(tmp_path):
    """Tokens with spaces, quotes and accents, floats at full precision, a column not loaded."""
    rng = np.random.default_rng(0)
    lines = ["user_id:token\titem_id:token\ttimestamp:float\trating:float\tnote:token"]
    items = ["a b", 'x"y', "ü", "7", "07", "z", "  sp "]
    for user in ["u1", "ü2", "u 3", "4"]:
        for t in range(9):
            lines.append(f"{user}\t{items[rng.integers(len(items))]}\t{t * 1e3 + rng.random():.17g}\t"
                         f"{rng.random() * 1e9!r}\t\"n\tq\"")
    folder = tmp_path / "tricky"
    folder.mkdir()
    (folder / "tricky.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "tricky.yaml").write_text("load_col:\n  inter: [user_id, item_id, timestamp, rating]\n")
    return str(tmp_path)


def converter_dataset(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    user = np.sort(rng.integers(0, 40, n))
    write_dataset(str(tmp_path), "conv", [("user_id:token", user), ("item_id:token", rng.integers(0, 500, n)),
                                          ("timestamp:float", np.arange(n) * 60)], {})
    return str(tmp_path)


def config_of(data_path, dataset, **overrides):
    return RecboleMambaConfig("MambaRec", dataset, config_dict={
        "data_path": data_path, "hidden_size": 8, "MAX_ITEM_LIST_LENGTH": 6, **overrides})


def assert_same_dataset(ours, theirs):
    assert ours.field2type == theirs.field2type and ours.field2seqlen == theirs.field2seqlen
    for field in (ours.uid_field, ours.iid_field):
        assert list(ours.field2id_token[field]) == list(theirs.field2id_token[field])
        assert ours.field2token_id[field] == theirs.field2token_id[field]
    if isinstance(ours.inter_feat, pd.DataFrame):  # as loaded, before RecBole's build
        pd.testing.assert_frame_equal(ours.inter_feat, theirs.inter_feat, check_exact=True)
    else:
        assert list(ours.inter_feat.columns) == list(theirs.inter_feat.columns)
        for field in ours.inter_feat.columns:
            assert torch.equal(ours.inter_feat[field], theirs.inter_feat[field]), field
    for field, values in getattr(ours, "history_sources", {}).items():
        assert torch.equal(values, theirs.history_sources[field]), field


@pytest.mark.parametrize("filters", [{}, {"user_inter_num_interval": "[8,inf)", "item_inter_num_interval": "(2,inf)"}])
def test_prefix_dataset_is_recboles(tmp_path, filters):
    config = config_of(tricky_dataset(tmp_path), "tricky", train_mode="prefix", **filters)
    ours = create_dataset(config)
    assert type(ours) is PrefixDataset
    theirs = SequentialDataset(config)
    assert_same_dataset(ours, theirs)
    if filters:  # the filter ran: users of 9 interactions kept, rare items dropped
        assert len(ours.inter_feat) < 36
    else:
        assert {"a b", 'x"y', "ü", "7", "07", "  sp "} <= set(ours.field2id_token["item_id"])
    for a, b in zip(data_preparation(config, ours), data_preparation(config, theirs), strict=True):
        assert_same_dataset(a._dataset, b._dataset)


def test_window_dataset_is_recboles_on_a_converter_file(tmp_path):
    config = config_of(converter_dataset(tmp_path), "conv", train_mode="all_positions")
    ours, theirs = WindowDataset(config), RecBoleLoadedWindows(config)
    assert_same_dataset(ours, theirs)
    for a, b in zip(data_preparation(config, ours), data_preparation(config, theirs), strict=True):
        assert_same_dataset(a._dataset, b._dataset)


def test_intervals_that_keep_every_id():
    parse = SequentialDataset._parse_intervals_str.__get__(object.__new__(SequentialDataset))
    assert admits_every_count(None) and admits_every_count(parse("[0,inf)")) and admits_every_count(parse("(-1,inf)"))
    assert not admits_every_count(parse("(0,inf)")) and not admits_every_count(parse("[1,inf)"))
    assert not admits_every_count(parse("[0,100]"))
