"""One home for the losses: last-position training (``calculate_loss``) and all-position training
compute CE, BPR and BCE with the same code; the RecBole adapters agree with RecBole's forward."""

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import create_dataset
from recbole_mamba.model.losses import next_item_loss
from recbole_mamba.registry import get_model
from recbole_mamba.trainer.all_positions import RECBOLE_ADAPTERS, all_positions_loss, per_position_hidden

L = 12


def make(tiny_data_path, model, **overrides):
    config = RecboleMambaConfig(model, "ml-tiny", config_dict={
        "data_path": tiny_data_path, "hidden_size": 16, "embedding_size": 16, "inner_size": 32,
        "MAX_ITEM_LIST_LENGTH": L, **overrides})
    torch.manual_seed(0)
    return get_model(model)(config, create_dataset(config)).eval()


@pytest.mark.parametrize("model_name", ["MambaRec", "RecMamba", "MoEMaTrRec"])
@pytest.mark.parametrize("loss_type", ["CE", "BPR", "BCE"])
def test_all_positions_loss_on_rows_of_length_one_is_the_last_position_loss(
        model_name, loss_type, tiny_data_path, monkeypatch):
    model = make(tiny_data_path, model_name, loss_type=loss_type)
    g = torch.Generator().manual_seed(3)
    seq = torch.zeros(6, L, dtype=torch.long)
    seq[:, 0] = torch.randint(1, model.n_items, (6,), generator=g)
    rows = Interaction({
        model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: torch.ones(6, dtype=torch.long),
        model.POS_ITEM_ID: torch.randint(1, model.n_items, (6,), generator=g),
        model.NEG_ITEM_ID: torch.randint(1, model.n_items, (6,), generator=g),
    })
    # the all-position loss draws its own negatives: give it the rows' ones
    monkeypatch.setattr(model.negative_sampler, "per_state", lambda positives: rows[model.NEG_ITEM_ID])
    last = model.calculate_loss(rows)
    every = all_positions_loss(model, rows, loss_type)
    torch.testing.assert_close(every, last, rtol=1e-6, atol=1e-7)


def test_loss_formulas():
    hidden = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    items = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5]])
    targets, negatives = torch.tensor([1, 2]), torch.tensor([2, 1])
    pos, neg = torch.tensor([1.0, 1.0]), torch.tensor([-1.0, 2.0])
    logits = hidden @ items.T
    torch.testing.assert_close(next_item_loss(hidden, targets, items, "CE"),
                               torch.nn.functional.cross_entropy(logits, targets))
    torch.testing.assert_close(next_item_loss(hidden, targets, items, "BPR", negatives),
                               -torch.log(torch.sigmoid(pos - neg)).mean())
    bce = (-torch.log(torch.sigmoid(pos)) - torch.log(1 - torch.sigmoid(neg))).mean() / 2
    torch.testing.assert_close(next_item_loss(hidden, targets, items, "BCE", negatives), bce)
    with pytest.raises(ValueError, match="needs one sampled negative"):
        next_item_loss(hidden, targets, items, "BPR")


def test_shared_negative_losses():
    g = torch.Generator().manual_seed(0)
    hidden, items = torch.randn(5, 4, generator=g), torch.randn(9, 4, generator=g)  # 8 real items
    targets, negatives = torch.tensor([1, 2, 3, 4, 5]), torch.tensor([2, 6, 7])
    logits = hidden @ items.T
    # SSM: softmax over the positive and the shared negatives, a state's own positive left out
    expected = []
    for n, t in enumerate(targets.tolist()):
        others = [j for j in negatives.tolist() if j != t]
        expected.append(-torch.log_softmax(logits[n, [t, *others]], 0)[0])
    torch.testing.assert_close(next_item_loss(hidden, targets, items, "SSM", negatives), torch.stack(expected).mean())
    # GBCE: alpha = 3 / (8 - 1), beta = alpha (t (1 - 1/alpha) + 1/alpha); BCE of sigmoid(pos) ** beta
    alpha = 3 / 7
    beta = alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha)
    terms = []
    for n, t in enumerate(targets.tolist()):
        terms.append(-torch.log(torch.sigmoid(logits[n, t]) ** beta))
        terms += [-torch.log(1 - torch.sigmoid(logits[n, j])) for j in negatives.tolist() if j != t]
    torch.testing.assert_close(next_item_loss(hidden, targets, items, "GBCE", negatives), torch.stack(terms).mean())
    # t = 0: beta = 1, plain BCE over the same terms
    plain = [-torch.log(torch.sigmoid(logits[n, t])) for n, t in enumerate(targets.tolist())]
    plain += [-torch.log(1 - torch.sigmoid(logits[n, j])) for n, t in enumerate(targets.tolist())
              for j in negatives.tolist() if j != t]
    torch.testing.assert_close(next_item_loss(hidden, targets, items, "GBCE", negatives, gbce_t=0.0),
                               torch.stack(plain).mean())
    with pytest.raises(ValueError, match="needs a 1-d tensor of shared negatives"):
        next_item_loss(hidden, targets, items, "SSM")


@pytest.mark.parametrize("loss_type", ["SSM", "GBCE"])
@pytest.mark.parametrize("train_mode", ["prefix", "all_positions"])
def test_shared_negative_losses_train_in_both_modes(tiny_data_path, loss_type, train_mode):
    from recbole.data import data_preparation

    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={
        "data_path": tiny_data_path, "hidden_size": 16, "MAX_ITEM_LIST_LENGTH": L, "train_mode": train_mode,
        "loss_type": loss_type, "train_negatives": 32})
    train, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("MambaRec")(config, train._dataset)
    batch = next(iter(train))
    loss = (all_positions_loss(model, batch, loss_type) if train_mode == "all_positions"
            else model.calculate_loss(batch))
    assert torch.isfinite(loss)
    loss.backward()
    assert model.item_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("model_class", list(RECBOLE_ADAPTERS), ids=lambda c: c.__name__)
def test_adapter_last_position_is_recbole_s_forward(model_class, tiny_data_path):
    """The adapters copy RecBole's forward up to its gather: this fails the day they disagree."""
    model = make(tiny_data_path, model_class.__name__, n_layers=2)
    g = torch.Generator().manual_seed(4)
    seq = torch.randint(1, model.n_items, (5, L), generator=g)
    lengths = torch.tensor([1, 4, 7, L - 1, L])
    for i, n in enumerate(lengths):
        seq[i, n:] = 0  # right padding, as RecBole's rows
    with torch.no_grad():
        expected = model.forward(seq, lengths)
        hidden = per_position_hidden(model, seq)
    torch.testing.assert_close(model.gather_indexes(hidden, lengths - 1), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("model_name", ["SASRec", "GRU4Rec"])
@pytest.mark.parametrize("loss_type", ["CE", "BPR", "BCE", "SSM", "GBCE"])
@pytest.mark.parametrize("train_mode", ["prefix", "all_positions"])
def test_recbole_baselines_train_with_every_plugin_loss(tiny_data_path, model_name, loss_type, train_mode):
    """SASRec's and GRU4Rec's constructors accept only CE and BPR; built by ``build_model`` they
    train with every loss, by the loss the trainer picks, and a gradient reaches the item table."""
    from recbole.data import data_preparation

    from recbole_mamba.trainer import SafeCheckpointTrainer
    from recbole_mamba.trainer.all_positions import build_model

    config = RecboleMambaConfig(model_name, "ml-tiny", config_dict={
        "data_path": tiny_data_path, "hidden_size": 16, "embedding_size": 16, "inner_size": 32,
        "MAX_ITEM_LIST_LENGTH": L, "train_mode": train_mode, "loss_type": loss_type, "train_negatives": 32})
    train, _, _ = data_preparation(config, create_dataset(config))
    model = build_model(get_model(model_name), config, train._dataset)
    assert (model.loss_type, model.train_negatives) == (loss_type, 32) and config["loss_type"] == loss_type
    trainer = SafeCheckpointTrainer(config, model)
    trainer.train_seconds = []
    loss = trainer._train_epoch(train, 0)
    assert np.isfinite(loss)
    assert model.item_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("model_name", ["SASRec", "GRU4Rec"])
@pytest.mark.parametrize("loss_type", ["CE", "BPR"])
def test_plugin_loss_of_a_recbole_baseline_equals_its_own(tiny_data_path, model_name, loss_type):
    """Where RecBole's model has the loss itself (CE, BPR), the plugin's computes the same value."""
    from recbole.data import data_preparation

    from recbole_mamba.model.next_item import last_position_loss

    config = RecboleMambaConfig(model_name, "ml-tiny", config_dict={
        "data_path": tiny_data_path, "hidden_size": 16, "embedding_size": 16, "inner_size": 32,
        "MAX_ITEM_LIST_LENGTH": L, "train_mode": "prefix", "loss_type": loss_type})
    train, _, _ = data_preparation(config, create_dataset(config))
    from recbole_mamba.trainer.all_positions import build_model

    model = build_model(get_model(model_name), config, train._dataset).eval()
    batch = next(iter(train))
    torch.testing.assert_close(last_position_loss(model, batch), model.calculate_loss(batch), rtol=1e-5, atol=1e-6)


def test_a_loss_recbole_and_the_plugin_both_lack_is_one_clear_error(tiny_data_path):
    from recbole_mamba.errors import ConfigError
    from recbole_mamba.trainer.all_positions import build_model

    config = RecboleMambaConfig("SASRec", "ml-tiny", config_dict={"data_path": tiny_data_path, "loss_type": "XE"})
    with pytest.raises(ConfigError, match=r"SASRec takes loss_type CE \| BPR \| BCE \| SSM \| GBCE; got 'XE'"):
        build_model(get_model("SASRec"), config, create_dataset(config))
