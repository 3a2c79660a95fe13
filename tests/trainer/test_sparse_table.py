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
from recbole_mamba.trainer.optimizers import SparseTableOptimizer
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
        assert isinstance(trainer.optimizer, SparseTableOptimizer) == (updates == "sparse")
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
    assert set(state) == {"sparse", "dense", "table_optimizer"} and state["sparse"]["state"] and state["dense"]["state"]
    assert state["table_optimizer"] == "adam"
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


def test_rowwise_adagrad_is_fbgemms_formula_step_by_step():
    """Three steps on rows read with repeats (their gradients summed), against the formula row by
    row in float64: sum[r] += mean(g_r ** 2); w_r -= lr * g_r / (sqrt(sum[r]) + eps)."""
    from recbole_mamba.trainer.optimizers import RowwiseAdagrad

    torch.manual_seed(0)
    table = torch.nn.Embedding(12, 5, sparse=True)
    optimizer = RowwiseAdagrad(table.parameters(), lr=0.05, eps=1e-8)
    weight = table.weight.detach().double().clone()
    total = torch.zeros(12, dtype=torch.float64)
    for ids in ([1, 3, 3, 7], [3, 11, 0], [7, 7, 2, 9, 1]):
        ids = torch.tensor(ids)
        cotangent = torch.randn(len(ids), 5)
        optimizer.zero_grad()
        (table(ids) * cotangent).sum().backward()
        optimizer.step()
        for row in ids.unique().tolist():
            g = cotangent[ids == row].double().sum(0)
            total[row] += g.pow(2).mean()
            weight[row] -= 0.05 * g / (total[row].sqrt() + 1e-8)
        torch.testing.assert_close(table.weight.detach().double(), weight, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(optimizer.state[table.weight]["sum"].double(), total, rtol=1e-6, atol=1e-9)
    untouched = [4, 5, 6, 8, 10]
    assert total[untouched].eq(0).all()  # one float a row, rows never read keep 0


def test_rowwise_adagrad_steps_the_item_table_and_adam_the_rest(tiny_data_path):
    from recbole_mamba.trainer.optimizers import RowwiseAdagrad

    config, model, train = build(tiny_data_path, "MambaRec", "sparse", loss_type="SSM", train_negatives=16,
                                 item_table_optimizer="rowwise_adagrad", item_table_learning_rate=0.05)
    trainer = SafeCheckpointTrainer(config, model)
    optimizer = trainer.optimizer
    assert isinstance(optimizer.sparse, RowwiseAdagrad) and optimizer.sparse.param_groups[0]["lr"] == 0.05
    assert isinstance(optimizer.dense, torch.optim.Adam) and optimizer.dense.param_groups[0]["lr"] == config["learning_rate"]
    assert [p for g in optimizer.sparse.param_groups for p in g["params"]] == [model.item_embedding.weight]
    training_loss(config, model)(next(iter(train))).backward()
    optimizer.step()
    (state,) = optimizer.sparse.state.values()
    assert list(state) == ["sum"] and state["sum"].shape == (model.item_embedding.weight.size(0),)
    assert optimizer.state_dict()["table_optimizer"] == "rowwise_adagrad"


@pytest.mark.parametrize("overrides, message", [
    ({"item_table_updates": "dense", "item_table_optimizer": "rowwise_adagrad"},
     "item_table_optimizer rowwise_adagrad updates the rows a batch reads: it needs item_table_updates sparse"),
    ({"item_table_updates": "sparse", "item_table_optimizer": "adagrad"},
     "item_table_optimizer must be one of adam, rowwise_adagrad; got 'adagrad'"),
    ({"item_table_updates": "sparse", "item_table_optimizer": "rowwise_adagrad", "loss_type": "CE"},
     "item_table_updates sparse: loss_type CE reads every item at every step"),
    ({"item_table_updates": "sparse", "item_table_learning_rate": -1},
     "item_table_learning_rate must be a number > 0 (or ~ for learning_rate), got -1"),
])
def test_a_rowwise_optimizer_where_it_cannot_apply_is_refused(tiny_data_path, overrides, message):
    with pytest.raises(ConfigError) as error:
        RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={"data_path": tiny_data_path, "loss_type": "SSM",
                                                              **overrides})
    assert str(error.value) == message or str(error.value).startswith(message)


@pytest.mark.parametrize("saved, resumed, message", [
    ({"item_table_optimizer": "adam"}, {"item_table_optimizer": "rowwise_adagrad"},
     "was trained with item_table_updates sparse, item_table_optimizer adam, not item_table_updates sparse, "
     "item_table_optimizer rowwise_adagrad: resume it with the optimizer its state is for "
     "(--item_table_updates=sparse --item_table_optimizer=adam)"),
    ({"item_table_optimizer": "rowwise_adagrad"}, {"item_table_updates": "dense", "item_table_optimizer": "adam"},
     "was trained with item_table_updates sparse, item_table_optimizer rowwise_adagrad, not item_table_updates "
     "dense: resume it with"),
])
def test_a_state_resumed_with_another_item_table_optimizer_is_refused(tiny_data_path, in_tmp_dir, saved, resumed,
                                                                       message):
    from recbole_mamba.quick_start import run

    def interrupt(epoch, score, result):
        raise KeyboardInterrupt  # after the first epoch: its resume state is left

    with pytest.raises(KeyboardInterrupt):
        run("MambaRec", "ml-tiny", config_dict={
            **TINY_CONFIG, "data_path": tiny_data_path, "loss_type": "SSM", "item_table_updates": "sparse",
            "epochs": 2, "show_progress": False, **saved}, epoch_callback=interrupt)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(None, None, resume="saved", config_dict=resumed)


@pytest.mark.parametrize("updates, loss_type, warned", [("dense", "SSM", True), ("sparse", "SSM", False),
                                                        ("dense", "CE", False)])
def test_dense_table_updates_of_a_large_catalogue_are_said_in_one_line(tiny_data_path, monkeypatch, updates,
                                                                        loss_type, warned):
    from recbole_mamba import quick_start

    monkeypatch.setattr(quick_start, "DENSE_TABLE_NOTICE_ITEMS", 1000)  # the tiny data's 1,600 items as many
    config, model, _ = build(tiny_data_path, "MambaRec", updates, loss_type=loss_type)
    lines = []
    quick_start.warn_dense_table(type("Log", (), {"warning": staticmethod(lines.append)}), config, model)
    rows = model.item_embedding.weight
    assert lines == ([f"item_table_updates dense: Adam reads and writes all {model.n_items:,} item rows at every "
                      f"step ({16 * rows.numel() / 1e9:.1f} GB of weights, gradients and moments a step) while "
                      "loss_type SSM reads a batch's rows; --item_table_updates=sparse updates those only"]
                     if warned else [])
