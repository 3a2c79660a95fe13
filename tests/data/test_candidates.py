"""Sampled evaluation that encodes each row once draws RecBole's candidates and gives its metrics."""

import numpy as np
import pytest
import torch
from recbole.data import data_preparation
from recbole.data.dataloader import NegSampleEvalDataLoader
from recbole.utils import init_seed

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import create_dataset
from recbole_mamba.data.candidates import CandidateEvalDataLoader
from recbole_mamba.quick_start import encode_once
from recbole_mamba.trainer import SafeCheckpointTrainer
from tests.conftest import TINY_CONFIG


def build(tiny_data_path, model="MambaRec", mode="uni50", **overrides):
    config = RecboleMambaConfig(model, "ml-tiny", config_dict={
        **TINY_CONFIG, "data_path": tiny_data_path, "eval_args": {"mode": mode}, "eval_batch_size": 7,
        "metrics": ["Hit", "NDCG", "MRR", "Recall", "Precision"], "topk": [1, 5, 10], "embedding_size": 16,
        **overrides})
    init_seed(0, True)
    dataset = create_dataset(config)
    _, valid_data, _ = data_preparation(config, dataset)
    model = config.model_class(config, valid_data._dataset).eval()
    return config, valid_data, model


def recbole_candidates(loader):
    """{user id: set of candidate item ids} as RecBole's row-repeating loader yields them."""
    found = {}
    for interaction, row_idx, _, _ in loader:
        users, items = interaction[loader._dataset.uid_field], interaction[loader._dataset.iid_field]
        for row in row_idx.unique().tolist():
            found[users[row_idx == row][0].item()] = set(items[row_idx == row].tolist())
    return found


def test_the_same_candidates_as_recboles_loader(tiny_data_path):
    _, valid_data, _ = build(tiny_data_path)
    ours = CandidateEvalDataLoader.of(valid_data)
    init_seed(5, True)
    want = recbole_candidates(valid_data)
    init_seed(5, True)
    got = {}
    for interaction, candidates, positive_u, positive_i in ours:
        assert torch.equal(candidates[:, 0], positive_i)
        assert torch.equal(positive_u, torch.arange(len(candidates)))
        assert candidates.shape[1] == 51
        for user, row in zip(interaction[ours._dataset.uid_field].tolist(), candidates.tolist(), strict=True):
            got[user] = set(row)
    assert got == want
    assert len(got) == len(valid_data.uid_list)


@pytest.mark.parametrize("model_name", ["MambaRec", "SASRec", "GRU4Rec"])
@pytest.mark.parametrize("mode", ["uni50", "pop50"])
def test_metrics_equal_recboles_sampled_evaluation_with_each_row_encoded_once(tiny_data_path, model_name, mode):
    config, valid_data, model = build(tiny_data_path, model_name, mode)
    ours = encode_once(config, valid_data)
    assert isinstance(ours, CandidateEvalDataLoader)
    trainer = SafeCheckpointTrainer(config, model)
    init_seed(5, True)
    want = trainer.evaluate(valid_data, load_best_model=False)
    rows_encoded = []
    forward = model.forward
    model.forward = lambda seq, lengths: rows_encoded.append(len(seq)) or forward(seq, lengths)
    init_seed(5, True)
    got = trainer.evaluate(ours, load_best_model=False)
    assert got == want
    assert sum(rows_encoded) == len(valid_data.uid_list)
    assert 0 < want["hit@10"] < 1


def test_loaders_that_are_not_replaced(tiny_data_path):
    """Full ranking, a model that does not score by dot product, metrics that need scores."""
    config, valid_data, _ = build(tiny_data_path, mode="full")
    assert encode_once(config, valid_data) is valid_data
    config, valid_data, _ = build(tiny_data_path, model="NARM")
    assert isinstance(valid_data, NegSampleEvalDataLoader)
    assert encode_once(config, valid_data) is valid_data
    config, valid_data, _ = build(tiny_data_path, metrics=["Hit", "GAUC"])
    assert encode_once(config, valid_data) is valid_data
    assert np.all(valid_data.uid2items_num <= 1)
