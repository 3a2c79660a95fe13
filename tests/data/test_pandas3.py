"""Item features load as RecBole loads them on pandas 2, on pandas 3 too: a ``token_seq`` field's
ids split per row, its empty values empty, a ``float`` field's NaN filled with its mean (on pandas 2
equal to RecBole's own loading, field by field); RecBole's normalisation of a ``float_seq`` field,
which pandas 3 breaks, is refused in one line there."""

import numpy as np
import pandas as pd
import pytest
from recbole.data.dataset import SequentialDataset

from recbole_mamba.config import ConfigError, RecboleMambaConfig
from recbole_mamba.data import PrefixDataset, create_dataset
from recbole_mamba.data.pandas3 import PANDAS_3

ITEMS = {"i0": ("a b", "1.0", "0.5 1"), "i1": ("", "3.0", ""), "i2": ("b c", "", "2"), "i3": ("c", "8.0", "1 4"),
         "i4": ("", "", "")}


def featured(tmp_path):
    folder = tmp_path / "feat"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    inter = ["user_id:token\titem_id:token\ttimestamp:float"]
    inter += [f"u{user}\ti{rng.integers(5)}\t{t}" for user in range(6) for t in range(8)]
    (folder / "feat.inter").write_text("\n".join(inter) + "\n")
    item = ["item_id:token\tgenre:token_seq\tprice:float\tscores:float_seq"]
    item += ["\t".join((token, *values)) for token, values in ITEMS.items()]
    (folder / "feat.item").write_text("\n".join(item) + "\n")
    return str(tmp_path)


def config(data_path, **overrides):
    return RecboleMambaConfig("SASRecF", "feat", config_dict={
        "data_path": data_path, "selected_features": ["genre"], "train_mode": "prefix", "MAX_ITEM_LIST_LENGTH": 5,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "genre", "price", "scores"]},
        **overrides})


def test_sequence_and_float_features_load_with_pandas_2_meaning(tmp_path):
    dataset = create_dataset(config(featured(tmp_path)))
    assert type(dataset) is PrefixDataset
    tokens, item = dataset.field2id_token, dataset.item_feat
    loaded = {str(tokens["item_id"][item["item_id"][row]]): row for row in range(1, len(item))}
    assert sorted(loaded) == sorted(ITEMS)
    mean = np.mean([float(price) for _, price, _ in ITEMS.values() if price])
    for token, (genre, price, _) in ITEMS.items():  # the float_seq field: it loads, empty values and all
        row = loaded[token]
        assert [str(tokens["genre"][i]) for i in item["genre"][row].tolist() if i] == genre.split(), token
        assert float(item["price"][row]) == (float(price) if price else mean), token


@pytest.mark.skipif(PANDAS_3, reason="RecBole's own item loading is right on pandas 2 only")
def test_item_features_equal_recboles_own_loading_on_pandas_2(tmp_path):
    ours = create_dataset(config(featured(tmp_path)))
    theirs = SequentialDataset(config(featured(tmp_path / "theirs")))
    assert ours.field2type == theirs.field2type and ours.field2seqlen == theirs.field2seqlen
    for field in ("item_id", "genre"):
        assert list(ours.field2id_token[field]) == list(theirs.field2id_token[field]), field
    assert list(ours.item_feat.columns) == list(theirs.item_feat.columns) and len(ours.item_feat) == len(theirs.item_feat)
    for field in ours.item_feat.columns:  # a frame still, its sequence fields arrays in object columns
        pairs = zip(ours.item_feat[field], theirs.item_feat[field], strict=True)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in pairs), field


@pytest.mark.skipif(not PANDAS_3, reason="RecBole's own normalisation runs on pandas 2")
def test_normalising_a_float_seq_field_is_refused_on_pandas_3(tmp_path):
    with pytest.raises(ConfigError, match=rf"^normalize_field / normalize_all: RecBole 1\.2\.1 cannot normalise or "
                                          rf"discretise the float_seq fields scores on pandas {pd.__version__}; "
                                          "leave them out of normalize_field / normalize_all$"):
        create_dataset(config(featured(tmp_path / "all"), normalize_all=True))
    price = create_dataset(config(featured(tmp_path / "price"), normalize_field=["price"])).item_feat["price"][1:]
    assert float(price.min()) == 0.0 and float(price.max()) == 1.0  # a float field alone normalises as before
