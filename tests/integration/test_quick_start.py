"""End to end through the library API: train, save the best checkpoint, reload it weights-only."""

import argparse
import json
import os

import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_mamba.model import MambaRec
from recbole_mamba.quick_start import load_run, run
from recbole_mamba.trainer import CheckpointError, SafeCheckpointTrainer, load_checkpoint
from tests.conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def trained(tiny_data_path, tmp_path_factory):
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("run"))
    try:
        result = run("MambaRec", "ml-tiny", config_dict={**TINY_CONFIG, "data_path": tiny_data_path})
    finally:
        os.chdir(cwd)
    return result


def test_run_returns_results(trained):
    assert set(trained) >= {"best_valid_score", "best_valid_result", "test_result"}
    assert set(trained["test_result"]) == {
        f"{m}@{k}" for m in ("hit", "ndcg", "mrr") for k in (10, 20)
    }
    assert all(0 <= v <= 1 for v in trained["test_result"].values())
    assert trained["protocol"] == "full ranking, leave-one-out by time, no history masking"


def test_run_reports_its_costs_and_data(trained, tiny_data_path):
    epochs = trained["config"]["epochs"]
    assert len(trained["train_seconds"]) == len(trained["evaluations"]) == trained["epochs_run"] == epochs
    assert all(s > 0 for s in trained["train_seconds"]) and trained["test_seconds"] > 0
    (evaluation,) = trained["evaluations"]
    assert trained["best_evaluation"] == evaluation and evaluation["epoch"] == 0
    assert evaluation["valid_score"] == pytest.approx(trained["best_valid_score"])
    assert evaluation["elapsed_s"] >= trained["train_seconds"][0] + evaluation["valid_s"]
    assert trained["parameters"] == sum(p.numel() for p in load_run(trained["checkpoint"])["model"].parameters())
    with open(os.path.join(tiny_data_path, "ml-tiny", "ml-tiny.inter")) as f:
        users = [line.split("\t", 1)[0] for line in f.readlines()[1:]]
    counts = [users.count(u) for u in set(users)]
    assert trained["dataset_stats"] == {
        "users": len(counts), "interactions": len(users), "items": trained["dataset_stats"]["items"],
        "avg_seq_len": round(sum(counts) / len(counts), 2), "median_seq_len": float(sorted(counts)[len(counts) // 2])
        if len(counts) % 2 else (sorted(counts)[len(counts) // 2 - 1] + sorted(counts)[len(counts) // 2]) / 2,
        "max_seq_len": max(counts)}


def test_checkpoint_is_weights_only_and_reproduces_scores(trained, in_tmp_dir):
    path = trained["checkpoint"]
    raw = torch.load(path, weights_only=True)  # must not need to unpickle objects
    assert raw["model"] == "MambaRec" and json.loads(raw["parameters_json"])["hidden_size"] == 16
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp-")]

    config = trained["config"]
    _, _, test_data = data_preparation(config, create_dataset(config))
    fresh = MambaRec(config, test_data._dataset)
    trainer = SafeCheckpointTrainer(config, fresh)
    again = trainer.evaluate(test_data, load_best_model=True, model_file=path)
    assert dict(again) == dict(trained["test_result"])


LOSS_RUNS = [
    ("MambaRec", "BCE", "prefix"), ("RecMamba", "BCE", "prefix"), ("RecMamba", "CE", "prefix"),
    ("SASRec", "CE", "prefix"), ("MambaRec", "CE", "all_positions"), ("RecMamba", "BCE", "all_positions"),
    ("MoEMaTrRec", "BPR", "all_positions"), ("SASRec", "BPR", "all_positions"),
]


@pytest.mark.parametrize("model,loss_type,train_mode", LOSS_RUNS)
def test_every_loss_trains_in_both_modes(model, loss_type, train_mode, tiny_data_path, in_tmp_dir):
    result = run(model, "ml-tiny", saved=False, config_dict={
        **TINY_CONFIG, "data_path": tiny_data_path, "loss_type": loss_type, "train_mode": train_mode,
        "state": "WARNING"})
    assert result["config"]["train_mode"] == train_mode and result["epochs_run"] == 1
    assert all(0 <= v <= 1 for v in result["test_result"].values())


def test_load_run_rebuilds_the_run_from_the_checkpoint_alone(trained, in_tmp_dir):
    again = load_run(trained["checkpoint"])
    assert dict(again["test_result"]) == dict(trained["test_result"])
    assert dict(again["valid_result"]) == dict(trained["best_valid_result"])
    assert again["config"]["MAX_ITEM_LIST_LENGTH"] == TINY_CONFIG["MAX_ITEM_LIST_LENGTH"]
    assert not again["model"].training


def test_load_run_refuses_a_checkpoint_without_parameters(trained, tmp_path):
    state = torch.load(trained["checkpoint"], weights_only=True)
    del state["parameters_json"]
    old = tmp_path / "old.pth"
    torch.save(state, old)
    with pytest.raises(CheckpointError, match="holds no parameters to rebuild its config from"):
        load_run(old)


def test_refuses_pickled_checkpoints(tmp_path):
    path = tmp_path / "recbole-style.pth"
    torch.save({"config": argparse.Namespace(model="SASRec"), "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_checkpoint(path)


def test_recboles_flops_count_profiles_a_copy_sharing_the_parameters(tiny_data_path):
    """get_flops deep-copies the model: within parameters_shared_on_copy the copy's parameters
    are the model's (no second item table), and the count is RecBole's own."""
    import copy

    from recbole.data import data_preparation
    from recbole.utils import get_flops

    from recbole_mamba.config import RecboleMambaConfig
    from recbole_mamba.data import create_dataset
    from recbole.data.transform import construct_transform
    from recbole_mamba.quick_start import parameters_shared_on_copy
    from recbole_mamba.trainer.all_positions import build_model
    from tests.conftest import TINY_CONFIG

    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={**TINY_CONFIG, "data_path": tiny_data_path})
    data = create_dataset(config)
    train, _, _ = data_preparation(config, data)
    model = build_model(config.model_class, config, train._dataset)
    plain = get_flops(model, data, config["device"], None, construct_transform(config))
    with parameters_shared_on_copy(model):
        copied = copy.deepcopy(model)
        shared = get_flops(model, data, config["device"], None, construct_transform(config))
    assert copied is not model and copied.item_embedding is not model.item_embedding
    assert all(a is b for a, b in zip(copied.parameters(), model.parameters(), strict=True))
    assert shared == plain > 0
    assert "__deepcopy__" not in vars(model)
    assert copy.deepcopy(model).item_embedding.weight is not model.item_embedding.weight  # as before, after it
