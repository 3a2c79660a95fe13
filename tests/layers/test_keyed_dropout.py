"""Dropout keyed by the batch: a row's mask is the same whichever rows beside it a process holds
(so N ranks draw the one process's masks), it does not follow the global generator, it is
dropout (kept share, scaling), and every model's dropouts are keyed by the trainer."""

import pytest
import torch
from torch import nn

from recbole_mamba.layers.keyed_dropout import BatchKey, KeyedDropout, key_dropouts


def test_a_rows_mask_does_not_depend_on_the_rows_beside_it():
    key = BatchKey()
    dropout = KeyedDropout(0.4, key).train()
    x = torch.randn(6, 5, 8)
    key.set(seed=11, rows=6)
    whole = [dropout(x), dropout(x)]  # two calls of one forward pass: two masks
    assert not torch.equal(whole[0], whole[1])
    for places in ([0, 2, 4], [5, 1], [3]):
        key.set(seed=11, rows=6, places=torch.tensor(places))
        torch.rand(100)  # whatever the global generator did meanwhile
        for call in range(2):
            assert torch.equal(dropout(x[places]), whole[call][places])


def test_it_is_dropout():
    key = BatchKey()
    dropout = KeyedDropout(0.25, key).train()
    x = torch.ones(64, 100, 10)
    key.set(seed=3, rows=64)
    y = dropout(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.tensor(1 / 0.75))
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    key.set(seed=4, rows=64)
    assert not torch.equal(dropout(x), y)
    assert torch.equal(dropout.eval()(x), x)
    key.clear()
    torch.manual_seed(0)
    expected = nn.functional.dropout(x, 0.25)
    torch.manual_seed(0)
    assert torch.equal(dropout.train()(x), expected)  # without a key: nn.Dropout


def test_an_input_not_of_the_rows_gets_a_mask_of_its_own_shape_the_same_on_every_rank():
    """A table every rank holds whole (all item embeddings) is dropped out alike by every rank."""
    key = BatchKey()
    dropout = KeyedDropout(0.5, key).train()
    table = torch.randn(9, 4)
    key.set(seed=1, rows=4)
    whole = dropout(table)
    key.set(seed=1, rows=4, places=torch.tensor([1, 3]))
    assert torch.equal(dropout(table), whole)
    assert (whole == 0).any() and (whole != 0).any()


@pytest.mark.parametrize("model_name", ["MambaRec", "RecMamba", "MoEMaTrRec", "SASRec", "GRU4Rec"])
def test_every_models_dropouts_are_keyed_by_the_trainer(model_name, tiny_data_path):
    from recbole.data import data_preparation

    from recbole_mamba.config import RecboleMambaConfig
    from recbole_mamba.data import create_dataset
    from recbole_mamba.trainer.all_positions import build_model
    from recbole_mamba.trainer.trainer import SafeCheckpointTrainer

    config = RecboleMambaConfig(model_name, "ml-tiny", config_dict={
        "data_path": tiny_data_path, "hidden_size": 16, "inner_size": 32, "embedding_size": 16,
        "MAX_ITEM_LIST_LENGTH": 20})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = build_model(config.model_class, config, train_data._dataset)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = SafeCheckpointTrainer(config, model)
    assert dropouts and all(type(m) is KeyedDropout and m.key is trainer.batch_key for m in model.modules()
                            if isinstance(m, nn.Dropout))
    assert len([m for m in model.modules() if isinstance(m, nn.Dropout)]) == len(dropouts)
    assert key_dropouts(model) is trainer.batch_key
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
