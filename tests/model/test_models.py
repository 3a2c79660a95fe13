"""The recommenders: causality (plugin models and RecBole's SASRec/GRU4Rec), losses, gates."""

import pytest
import torch
from recbole.data import create_dataset
from recbole.data.interaction import Interaction

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.model import MambaRec, MoEMaTrRec
from recbole_mamba.registry import get_model

L = 12

VARIANTS = [
    ("MambaRec", {}),
    ("MambaRec", {"block_type": "mamba_ffn", "n_layers": 2, "use_position_embedding": True}),
    ("MambaRec", {"d_conv": 16}),  # a delay line longer than the sequence
    ("RecMamba", {}),
    ("MoEMaTrRec", {}),
    ("MoEMaTrRec", {"gate_type": "sequence"}),
    ("SASRec", {}),
    ("GRU4Rec", {}),
]


def make_config(tiny_data_path, model, **overrides):
    return RecboleMambaConfig(
        model, "ml-tiny",
        config_dict={"data_path": tiny_data_path, "hidden_size": 16, "inner_size": 32,
                     "embedding_size": 16, "MAX_ITEM_LIST_LENGTH": L, **overrides},
    )


@pytest.fixture(scope="module")
def dataset(tiny_data_path):
    return create_dataset(make_config(tiny_data_path, "MambaRec"))


def build(tiny_data_path, dataset, model, **overrides):
    torch.manual_seed(0)
    config = make_config(tiny_data_path, model, **overrides)
    return get_model(model)(config, dataset).eval()


@pytest.mark.parametrize("model,overrides", VARIANTS, ids=[f"{m}-{o}" for m, o in VARIANTS])
def test_outputs_never_see_later_items(model, overrides, tiny_data_path, dataset):
    rec = build(tiny_data_path, dataset, model, **overrides)
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(1, rec.n_items, (4, L), generator=g)
    for t in (0, 5, L - 2):
        changed = seq.clone()
        changed[:, t + 1:] = torch.randint(1, rec.n_items, (4, L - t - 1), generator=g)
        lengths = torch.full((4,), t + 1)
        with torch.no_grad():
            assert torch.equal(rec.forward(seq, lengths), rec.forward(changed, lengths))
            if hasattr(rec, "encode"):  # the plugin's per-position path
                a, b = rec.encode(seq), rec.encode(changed)
                assert torch.equal(a[:, : t + 1], b[:, : t + 1])
                assert not torch.equal(a[:, t + 1:], b[:, t + 1:])


@pytest.mark.parametrize("model", ["MambaRec", "RecMamba", "MoEMaTrRec"])
@pytest.mark.parametrize("loss_type", ["CE", "BPR", "BCE"])
def test_losses_are_finite_and_differentiable(model, loss_type, tiny_data_path, dataset):
    rec = build(tiny_data_path, dataset, model, loss_type=loss_type).train()
    g = torch.Generator().manual_seed(2)
    batch = Interaction({
        rec.ITEM_SEQ: torch.randint(1, rec.n_items, (8, L), generator=g),
        rec.ITEM_SEQ_LEN: torch.randint(1, L + 1, (8,), generator=g),
        rec.POS_ITEM_ID: torch.randint(1, rec.n_items, (8,), generator=g),
        rec.NEG_ITEM_ID: torch.randint(1, rec.n_items, (8,), generator=g),
    })
    loss = rec.calculate_loss(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in rec.parameters() if p.grad is not None)


def test_bce_reads_pairs_with_one_negative(tiny_data_path):
    from recbole.utils import InputType

    config = make_config(tiny_data_path, "MambaRec", loss_type="BCE")
    assert config["MODEL_INPUT_TYPE"] == InputType.PAIRWISE
    assert config["train_neg_sample_args"]["sample_num"] == 1
    assert make_config(tiny_data_path, "MambaRec")["MODEL_INPUT_TYPE"] == InputType.POINTWISE


def test_mixers_keep_mamba_ssm_initialisation(tiny_data_path, dataset):
    for model in (build(tiny_data_path, dataset, "MambaRec"), build(tiny_data_path, dataset, "MoEMaTrRec")):
        mixers = [m for m in model.modules() if m.__class__.__name__ == "Mamba"]
        assert mixers
        for mixer in mixers:
            assert torch.equal(mixer.D, torch.ones_like(mixer.D))
            dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
            assert dt.min() > 5e-4  # not RecBole's zero-bias init


def test_gate_diagnostics_are_mean_weights_over_real_positions(tiny_data_path, dataset):
    rec = build(tiny_data_path, dataset, "MoEMaTrRec")
    assert isinstance(rec, MoEMaTrRec) and rec.diagnostics() == {}
    seq = torch.randint(1, rec.n_items, (3, L))
    seq[0, 5:] = 0  # right padding is not counted
    with torch.no_grad():
        rec.encode(seq)
    values = rec.diagnostics()
    assert set(values) == {f"gate/layer{i}/{e}" for i in range(2) for e in ("attention", "mamba")}
    for i in range(2):
        total = values[f"gate/layer{i}/attention"] + values[f"gate/layer{i}/mamba"]
        assert abs(total - 1) < 1e-5
    rec.reset_diagnostics()
    assert rec.diagnostics() == {}
    rec.train()
    rec.encode(seq)
    assert rec.diagnostics() == {}  # training batches are not counted


def test_unknown_options_are_rejected(tiny_data_path, dataset):
    with pytest.raises(ValueError, match="gate_type"):
        build(tiny_data_path, dataset, "MoEMaTrRec", gate_type="global")
    with pytest.raises(ValueError, match="loss_type"):
        build(tiny_data_path, dataset, "MambaRec", loss_type="MSE")
    assert isinstance(build(tiny_data_path, dataset, "MambaRec"), MambaRec)
