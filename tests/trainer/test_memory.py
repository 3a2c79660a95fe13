"""The peak-memory estimate made before training, and the one-line refusal of a run that cannot fit."""

import pytest
import torch
from recbole.data import data_preparation

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import create_dataset
from recbole_mamba.trainer import memory
from recbole_mamba.trainer.all_positions import build_model
from recbole_mamba.trainer.memory import LiveBytes, MemoryBudgetError, RunMemory, check_memory, whole_step
from tests.conftest import TINY_CONFIG


def build(tiny_data_path, model_name, **overrides):
    config = RecboleMambaConfig(model_name, "ml-tiny", config_dict={
        **TINY_CONFIG, "data_path": tiny_data_path, "embedding_size": 16, **overrides})
    train, _, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return config, build_model(config.model_class, config, train._dataset)


def test_live_bytes_counts_tensors_alive_at_once():
    with LiveBytes() as meter:
        a = torch.ones(1000)  # 4,000 bytes
        b = torch.ones(2000)  # 8,000 more: 12,000 alive
        del a, b
        c = torch.ones(500)
        view = c[:10]
    assert meter.peak == 12_000
    assert meter.live == 2_000 and view.numel() == 10


@pytest.mark.parametrize("model_name", ["MambaRec", "SASRec", "GRU4Rec"])
@pytest.mark.parametrize("loss_type", ["CE", "SSM"])
def test_training_estimate_bounds_a_measured_step_from_above_within_half(tiny_data_path, model_name, loss_type):
    """Probes of 4 and 8 rows of 10 and 20 items, extrapolated to 48 rows of 20 (all positions):
    no less than the tensor bytes measured on that step itself, and at most half as much again
    (the loss's working set, from its formula, is added to all the forward pass holds)."""
    config, model = build(tiny_data_path, model_name, train_mode="all_positions", loss_type=loss_type,
                          train_negatives=64)
    estimate = RunMemory(config, model.train(), "cpu", 0)
    measured = memory._peak(whole_step(config, model, True), model, 48, 20, "cpu")
    assert measured <= estimate.train_bytes(48) <= 1.5 * measured


def test_estimate_leaves_random_state_and_gradients_as_they_were(tiny_data_path):
    config, model = build(tiny_data_path, "MambaRec")
    state = torch.get_rng_state()
    estimate = check_memory(config, model)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    assert set(estimate.parts) == {"optimizer state", "process now (dataset, parameters)", "trainer and loaders",
                                   "training step", "optimizer update", "evaluation batch",
                                   "best weights, loaded for the test"}
    assert estimate.peak > 0


def test_a_run_that_cannot_fit_is_refused_naming_what_would_fit(tiny_data_path, monkeypatch):
    config, model = build(tiny_data_path, "SASRec", train_mode="all_positions", train_batch_size=4096,
                          eval_batch_size=4096)
    estimate = RunMemory(config, model, "cpu", 0)
    budget = estimate._held + memory.RESIDENT_PER_TENSOR_BYTE * 1.5 * estimate.train_bytes(64)
    monkeypatch.setattr(memory, "available_bytes", lambda device: budget)
    monkeypatch.setattr(memory, "resident_bytes", lambda: 0)
    with pytest.raises(MemoryBudgetError) as refused:
        check_memory(config, model)
    message = str(refused.value)
    assert message.startswith("SASRec on ml-tiny would need about ")
    assert "training step" in message and "evaluation batch" in message
    assert "--train_batch_tokens=" in message and "--loss_type=SSM" in message and "--eval_batch_size=" in message
    assert "--check_memory=False" in message and "\n" not in message


def test_the_command_line_refuses_in_one_line_with_exit_2(tiny_data_path, in_tmp_dir, cli_main, monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 << 20)
    code, out, err = cli_main(in_tmp_dir, "--model=MambaRec", "--dataset=ml-tiny", f"--data_path={tiny_data_path}",
                              "--epochs=1")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "MambaRec on ml-tiny would need about" in lines[0], err
    assert "Traceback" not in err
    code, out, err = cli_main(in_tmp_dir, "--model=MambaRec", "--dataset=ml-tiny", f"--data_path={tiny_data_path}",
                              "--epochs=1", "--check_memory=False")
    assert code == 0, err


def test_an_evaluation_batch_that_does_not_fit_is_made_smaller(tiny_data_path, monkeypatch):
    """Not given by the user, eval_batch_size shrinks to what fits, in the config and the loaders;
    given by the user, it is kept and the run refused."""
    from recbole_mamba.quick_start import _build

    def built(**overrides):
        config = RecboleMambaConfig("SASRec", "ml-tiny", config_dict={
            **TINY_CONFIG, "data_path": tiny_data_path, "embedding_size": 16, **overrides})
        _, (_, valid_data, test_data), model, _ = _build(config)
        return config, model, (valid_data, test_data)

    config, model, loaders = built()
    estimate = RunMemory(config, model, "cpu", 0)
    assert estimate.parts["evaluation batch"] > estimate.parts["training step"]
    factor = memory.RESIDENT_PER_TENSOR_BYTE
    # on a CPU evaluation comes on top of the training step
    budget = estimate._held + factor * (estimate.parts["training step"] + estimate.eval_bytes(8)) * 1.01
    monkeypatch.setattr(memory, "available_bytes", lambda device: budget)
    monkeypatch.setattr(memory, "resident_bytes", lambda: 0)
    before = config["eval_batch_size"]
    rows = check_memory(config, model, eval_loaders=loaders).config["eval_batch_size"]
    assert 8 <= rows < before and config["eval_batch_size"] == rows
    room = (budget - estimate._held) / factor - estimate.parts["training step"]
    assert estimate.eval_bytes(rows) <= room < estimate.eval_bytes(rows + 1)
    assert all(loader.step == rows for loader in loaders)
    config, model, loaders = built(eval_batch_size=before)
    with pytest.raises(MemoryBudgetError, match="--eval_batch_size="):
        check_memory(config, model, eval_loaders=loaders)


def test_a_model_whose_steps_cannot_be_probed_is_estimated_without_them(tiny_data_path):
    """BERT4Rec's loss reads its mask fields: the estimate says so and counts what it can."""
    config, model = build(tiny_data_path, "BERT4Rec")
    estimate = check_memory(config, model)
    assert estimate.unmeasured and "Mask_item_id_list" in estimate.unmeasured
    assert estimate.parts["training step"] == estimate.parts["evaluation batch"] == 0
    assert estimate.peak >= estimate.parts["optimizer state"] > 0


def test_fixes_name_the_settings_that_apply(tiny_data_path, monkeypatch):
    """Prefix rows are no tokens: the batch is named in rows."""
    config, model = build(tiny_data_path, "SASRec", train_mode="prefix", train_batch_size=4096)
    estimate = RunMemory(config, model, "cpu", 0)
    fixes = estimate.fixes(estimate._held + estimate.train_bytes(64))
    assert any(fix.startswith("--train_batch_size=") for fix in fixes), fixes
    assert not any("train_batch_tokens" in fix for fix in fixes), fixes


def test_on_a_cpu_evaluation_comes_on_top_of_training_and_on_a_gpu_takes_turns(tiny_data_path):
    config, model = build(tiny_data_path, "MambaRec", train_mode="all_positions")
    estimate = RunMemory(config, model, "cpu", 0)
    parts, factor = estimate.parts, memory.RESIDENT_PER_TENSOR_BYTE
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    assert parts["best weights, loaded for the test"] == params
    train = max(factor * parts["training step"], parts["optimizer update"])
    assert estimate.peak == pytest.approx(estimate._held + train + factor * parts["evaluation batch"])
    estimate.on_cpu, estimate.per_tensor_byte = False, 1.0  # as on a GPU
    assert estimate.peak == pytest.approx(estimate._held + max(parts["training step"], parts["optimizer update"],
                                                               parts["evaluation batch"]))


def with_catalogue(config, model, items):
    """``model`` with an item table of ``items`` rows (the tiny data has 1,600)."""
    model.item_embedding = torch.nn.Embedding(items, model.item_embedding.weight.size(1),
                                              sparse=model.item_embedding.sparse)
    model.n_items = items
    return config, model


@pytest.mark.parametrize("updates", ["sparse", "dense"])
def test_a_refusal_names_the_rowwise_optimizer_where_the_tables_adam_state_is_large(tiny_data_path, monkeypatch,
                                                                                      updates):
    monkeypatch.setattr(memory, "TRAINING_RUNTIME_BYTES", 0)
    config, model = with_catalogue(*build(tiny_data_path, "MambaRec", train_mode="all_positions", loss_type="SSM",
                                          item_table_updates=updates, train_batch_size=1, eval_batch_size=1),
                                   200_000)
    estimate = RunMemory(config, model, "cpu", 0)
    table = model.item_embedding.weight.numel() * 4
    assert estimate.table_adam_bytes == 2 * table
    assert estimate.rowwise_saving == (2 if updates == "sparse" else 5) * table > 0.25 * estimate.peak
    (fix,) = [fix for fix in estimate.fixes(estimate.peak // 2) if "rowwise" in fix]
    assert fix.startswith("--item_table_optimizer=rowwise_adagrad" if updates == "sparse"
                          else "--item_table_updates=sparse --item_table_optimizer=rowwise_adagrad")
    config, model = with_catalogue(*build(tiny_data_path, "MambaRec", train_mode="all_positions", loss_type="SSM",
                                          item_table_updates="sparse", item_table_optimizer="rowwise_adagrad",
                                          train_batch_size=1, eval_batch_size=1), 200_000)
    rowwise = RunMemory(config, model, "cpu", 0)
    assert rowwise.rowwise_saving == 0 and not any("rowwise" in fix for fix in rowwise.fixes(rowwise.peak // 2))
    assert estimate.parts["optimizer state"] - rowwise.parts["optimizer state"] == 2 * table - 4 * 200_000
