"""Sparse item-table updates (``item_table_updates: sparse``) change no gradient and no first step;
what they do change (untouched rows keep still under lazy Adam) is stated, not tested away."""

import pytest
import torch
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_mamba.config import ConfigError, RecboleMambaConfig
from recbole_mamba.data import create_dataset
from recbole_mamba.trainer import SafeCheckpointTrainer
from recbole_mamba.trainer.all_positions import build_model, training_loss
from recbole_mamba.trainer.optimizers import SparseTableAdam
from tests.conftest import TINY_CONFIG


def build(tiny_data_path, model_name, updates, **overrides):
    config = RecboleMambaConfig(model_name, "ml-tiny", config_dict={
        **TINY_CONFIG, "data_path": tiny_data_path, "embedding_size": 16, "item_table_updates": updates,
        "dropout_prob": 0.0, "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0, **overrides})
    train, _, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return config, build_model(config.model_class, config, train._dataset), train


@pytest.mark.parametrize("model_name", ["MambaRec", "SASRec", "GRU4Rec"])
@pytest.mark.parametrize("loss_type", ["SSM", "BPR"])
@pytest.mark.parametrize("train_mode", ["prefix", "all_positions"])
def test_same_gradients_and_same_first_step_as_dense_adam(tiny_data_path, model_name, loss_type, train_mode):
    runs = {}
    for updates in ("dense", "sparse"):
        config, model, train = build(tiny_data_path, model_name, updates, loss_type=loss_type,
                                     train_mode=train_mode, train_negatives=32)
        trainer = SafeCheckpointTrainer(config, model)
        assert isinstance(trainer.optimizer, SparseTableAdam) == (updates == "sparse")
        assert model.item_embedding.sparse == (updates == "sparse")
        init_seed(1, True)  # the same batch and negatives for both (RecBole's sampler draws with numpy)
        batch = next(iter(train))
        training_loss(config, model)(batch).backward()
        grads = {name: p.grad.to_dense().clone() for name, p in model.named_parameters() if p.grad is not None}
        trainer.optimizer.step()
        runs[updates] = grads, {name: p.detach().clone() for name, p in model.named_parameters()}
    (dense_grads, dense_after), (sparse_grads, sparse_after) = runs["dense"], runs["sparse"]
    assert dense_grads.keys() == sparse_grads.keys() and "item_embedding.weight" in dense_grads
    assert runs["sparse"][0]["item_embedding.weight"].abs().sum() > 0
    for name in dense_grads:
        torch.testing.assert_close(sparse_grads[name], dense_grads[name], rtol=1e-5, atol=1e-7)
    for name in dense_after:  # a step moves a row by about lr (1e-3): agreement to 1e-3 of that
        torch.testing.assert_close(sparse_after[name], dense_after[name], rtol=1e-5, atol=1e-6)


def test_checkpoints_keep_both_optimizers_state_and_resume(tiny_data_path, in_tmp_dir):
    from recbole_mamba.quick_start import run

    result = run("MambaRec", "ml-tiny", config_dict={
        **TINY_CONFIG, "data_path": tiny_data_path, "loss_type": "SSM", "item_table_updates": "sparse",
        "epochs": 2, "show_progress": False})
    assert result["epochs_run"] == 2 and result["test_result"]["hit@10"] >= 0
    config, model, _ = build(tiny_data_path, "MambaRec", "sparse", loss_type="SSM")
    trainer = SafeCheckpointTrainer(config, model)
    trainer.resume_checkpoint(result["checkpoint"])
    state = trainer.optimizer.state_dict()
    assert set(state) == {"sparse", "dense"} and state["sparse"]["state"] and state["dense"]["state"]
    assert trainer.start_epoch == 2


@pytest.mark.parametrize("model_name,overrides,message", [
    ("MambaRec", {"loss_type": "CE"}, "loss_type CE reads every item at every step"),
    ("NARM", {"loss_type": "CE"}, "NARM is not scored by an item table"),
    ("SASRec", {"loss_type": "SSM", "weight_decay": 0.1}, "its optimizer is Adam without weight decay"),
])
def test_sparse_updates_are_refused_where_they_cannot_work(tiny_data_path, model_name, overrides, message):
    with pytest.raises(ConfigError, match=f"item_table_updates sparse: {message}"):
        RecboleMambaConfig(model_name, "ml-tiny", config_dict={
            "data_path": tiny_data_path, "item_table_updates": "sparse", **overrides})


def test_the_memory_estimate_counts_no_dense_table_update(tiny_data_path):
    from recbole_mamba.trainer.memory import RunMemory

    parts = {}
    for updates in ("dense", "sparse"):
        config, model, _ = build(tiny_data_path, "MambaRec", updates, loss_type="SSM", train_mode="all_positions")
        parts[updates] = RunMemory(config, model, "cpu", 0).parts
    table = model.item_embedding.weight.numel() * 4
    assert parts["dense"]["optimizer update"] - parts["sparse"]["optimizer update"] == 3 * table
    assert parts["sparse"]["training step"] < parts["dense"]["training step"]
