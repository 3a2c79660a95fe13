"""Evaluation rows that read positions no training row reaches are found and reported, for models
with a learned position embedding only."""

import pytest
from recbole.data import data_preparation

from recbole_mamba.data import create_dataset
from recbole_mamba.data.positions import has_position_embedding, untrained_positions, warn_untrained_positions
from recbole_mamba.registry import get_model
from tests.data.test_all_positions import make_config, single_user_data


class Recorder:
    def __init__(self):
        self.warnings = []

    def warning(self, message):
        self.warnings.append(message)


def splits(data_path, model="SASRec", **overrides):
    config = make_config(data_path, model, "one", **overrides)
    train, valid, test = data_preparation(config, create_dataset(config))
    return config, train._dataset, valid._dataset, test._dataset


@pytest.mark.parametrize("train_mode", ["prefix", "all_positions"])
def test_longest_evaluation_rows_beyond_the_longest_training_row_are_found(tmp_path, train_mode):
    # user 1: 14 interactions, so training histories of at most 11 items, valid 12, test 13;
    # user 2: 2 interactions, its one row a training row
    data_path = single_user_data(tmp_path)
    _, train, valid, test = splits(data_path, train_mode=train_mode, MAX_ITEM_LIST_LENGTH=20)
    assert untrained_positions(train, {"valid": valid, "test": test}) == {
        "longest_train": 11, "longest_eval": 13,
        "valid": {"rows": 1, "total": 1, "longest": 12},
        "test": {"rows": 1, "total": 1, "longest": 13},
    }
    _, train, valid, test = splits(data_path, train_mode=train_mode, MAX_ITEM_LIST_LENGTH=12)
    assert untrained_positions(train, {"valid": valid, "test": test}) == {
        "longest_train": 11, "longest_eval": 12,
        "valid": {"rows": 1, "total": 1, "longest": 12},
        "test": {"rows": 1, "total": 1, "longest": 12},
    }
    _, train, valid, test = splits(data_path, train_mode=train_mode, MAX_ITEM_LIST_LENGTH=11)
    assert untrained_positions(train, {"valid": valid, "test": test}) is None


@pytest.mark.parametrize("model,overrides,warned", [
    ("SASRec", {}, True),
    ("MoEMaTrRec", {}, True),
    ("RecMamba", {}, True),
    ("MambaRec", {"use_position_embedding": True}, True),
    ("MambaRec", {}, False),
    ("GRU4Rec", {}, False),
])
def test_only_models_with_a_position_embedding_are_warned(tmp_path, model, overrides, warned):
    config, train, valid, test = splits(single_user_data(tmp_path), model, train_mode="all_positions",
                                        MAX_ITEM_LIST_LENGTH=20, **overrides)
    recommender = get_model(model)(config, train)
    assert has_position_embedding(recommender) is warned
    logger = Recorder()
    found = warn_untrained_positions(logger, config, recommender, train, valid, test)
    assert (found is not None) is warned
    if warned:
        assert logger.warnings == [
            f"{model} adds a learned position embedding, but no training history is longer than 11 items: "
            "1 of 1 valid rows, 1 of 1 test rows are scored at positions 11 to 12, which training never "
            "updates. Use MAX_ITEM_LIST_LENGTH <= 11 (now 20), or keep at least MAX_ITEM_LIST_LENGTH + 3 "
            "interactions per user (a converter's --max-len)."
        ]
    else:
        assert logger.warnings == []
