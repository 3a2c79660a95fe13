"""The item-chunked exact cross-entropy equals torch's dense one, value and both gradients."""

import pytest
import torch
import torch.nn.functional as F

from recbole_mamba.model import chunked_ce
from recbole_mamba.model.chunked_ce import ChunkedCrossEntropy, cross_entropy_sum, item_chunk


def dense_and_chunked(n, n_items, h, chunk, seed=0, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    hidden = (torch.randn(n, h, generator=g, dtype=dtype) * scale).requires_grad_()
    items = (torch.randn(n_items, h, generator=g, dtype=dtype) * scale).requires_grad_()
    targets = torch.randint(0, n_items, (n,), generator=g)
    dense = F.cross_entropy(hidden @ items.T, targets, reduction="sum")
    dense_grads = torch.autograd.grad(dense, (hidden, items))
    chunked = ChunkedCrossEntropy.apply(hidden, items, targets, chunk)
    chunked_grads = torch.autograd.grad(chunked, (hidden, items))
    return (dense, *dense_grads), (chunked, *chunked_grads)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000, 5000])
def test_value_and_gradients_equal_torch_cross_entropy(chunk):
    """float32, 1e-5: chunks that divide the catalogue, that do not, one item, all items."""
    dense, chunked = dense_and_chunked(n=97, n_items=1000, h=16, chunk=chunk)
    for want, got in zip(dense, chunked, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_large_logits_do_not_overflow():
    """Logits near 100 (exp overflows float32 at 89) keep the online log-sum-exp exact."""
    dense, chunked = dense_and_chunked(n=50, n_items=300, h=8, chunk=32, scale=4.0)
    assert dense[0].isfinite()
    for want, got in zip(dense, chunked, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_gradcheck_in_double_precision():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    items = torch.randn(11, 3, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 3, 10, 3, 5, 1])
    assert torch.autograd.gradcheck(lambda h, e: ChunkedCrossEntropy.apply(h, e, targets, 4), (hidden, items))


def test_only_the_inputs_that_need_gradients_get_them():
    hidden = torch.randn(5, 4, requires_grad=True)
    items = torch.randn(9, 4)
    targets = torch.tensor([1, 2, 3, 4, 5])
    loss = ChunkedCrossEntropy.apply(hidden, items, targets, 4)
    loss.backward()
    want = torch.autograd.grad(F.cross_entropy(hidden @ items.T, targets, reduction="sum"), hidden)[0]
    torch.testing.assert_close(hidden.grad, want, rtol=1e-5, atol=1e-6)


def test_working_memory_is_a_chunk_not_the_logits_matrix(monkeypatch):
    """No tensor of more than ``LOGITS_PER_CHUNK`` elements (beside the inputs' own sizes) is
    formed: the (N, n_items) logits matrix would be 16x the budget here."""
    monkeypatch.setattr(chunked_ce, "LOGITS_PER_CHUNK", 4096)
    n, n_items, h = 256, 256, 8
    hidden = torch.randn(n, h, requires_grad=True)
    items = torch.randn(n_items, h, requires_grad=True)
    targets = torch.randint(0, n_items, (n,))
    largest = 0

    class Watch(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            nonlocal largest
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                largest = max(largest, out.numel())
            return out

    with Watch():
        loss = cross_entropy_sum(hidden, items, targets)
        loss.backward()
    assert item_chunk(n, n_items, 4096) == 16
    assert largest <= max(4096, n_items * h)
    assert n * n_items > 8 * 4096


def test_a_slow_default_exact_softmax_is_refused_before_training(tiny_data_path, monkeypatch, caplog):
    """More than an hour an epoch at the timed rate: refused in one line naming the cost, SSM and
    how to insist where CE is the default, one warning where it was asked for; nothing under the
    hour, and nothing timed where an hour is out of reach."""
    import logging

    from recbole.data import data_preparation

    from recbole_mamba import quick_start
    from recbole_mamba.config import RecboleMambaConfig
    from recbole_mamba.data import create_dataset
    from recbole_mamba.trainer.all_positions import build_model

    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={
        "data_path": tiny_data_path, "hidden_size": 16, "MAX_ITEM_LIST_LENGTH": 20, "train_mode": "all_positions"})
    train, _, _ = data_preparation(config, create_dataset(config))
    model = build_model(config.model_class, config, train._dataset)
    logger = logging.getLogger("test_chunked_ce")
    positions = int(train._dataset.inter_feat[train._dataset.item_list_length_field].sum())
    logits = positions * model.n_items
    monkeypatch.setattr(quick_start, "SLOWEST_SECONDS_PER_LOGIT", 1.0)  # time this tiny catalogue too
    monkeypatch.setattr(quick_start, "measured_seconds_per_logit", lambda hidden, device: 7200 / logits)
    with pytest.raises(quick_start.SlowLossError) as refused:  # CE is MambaRec's default: refused
        quick_start.check_exact_softmax_cost(config, model, train._dataset, logger)
    assert str(refused.value) == (
        f"loss_type CE (MambaRec's default, from properties/model/MambaRec.yaml): an exact softmax over "
        f"{model.n_items:,} items at {positions:,} training positions takes about 2.0 h an epoch on cpu (timed here: "
        f"{7200 / logits * 1e9:.1f} ns a position x item); --loss_type=SSM trains a sampled softmax over "
        "train_negatives 256 items, --loss_type=CE runs it as asked")
    asked = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={
        "data_path": tiny_data_path, "hidden_size": 16, "MAX_ITEM_LIST_LENGTH": 20, "train_mode": "all_positions",
        "loss_type": "CE"})
    with caplog.at_level(logging.WARNING, logger="test_chunked_ce"):
        quick_start.check_exact_softmax_cost(asked, model, train._dataset, logger)  # asked for: a warning
    assert len(caplog.records) == 1 and "about 2.0 h an epoch on cpu" in caplog.text and "--loss_type=SSM" in caplog.text
    caplog.clear()
    monkeypatch.setattr(quick_start, "measured_seconds_per_logit", lambda hidden, device: 1800 / logits)
    quick_start.check_exact_softmax_cost(config, model, train._dataset, logger)  # half an hour: nothing said
    assert not caplog.records
    monkeypatch.setattr(quick_start, "SLOWEST_SECONDS_PER_LOGIT", 100e-9)
    monkeypatch.setattr(quick_start, "measured_seconds_per_logit", None)  # not timed: an hour is out of reach
    quick_start.check_exact_softmax_cost(config, model, train._dataset, logger)


def test_the_timed_loss_cost_is_the_loss_runs_time():
    from recbole_mamba.model.chunked_ce import measured_seconds_per_logit

    per_logit = measured_seconds_per_logit(16, states=64, items=1 << 14)
    assert 1e-12 < per_logit < 1e-6
