"""Length-grouped training batches (``train_batch_order: length``): every row once per epoch within
the token budget, cut to the longest row, the same loss as at full width."""

from itertools import pairwise

import pytest
import torch
from recbole.data.dataloader import TrainDataLoader

from recbole_mamba.data.length_batches import LengthGroupedTrainDataLoader, length_grouped_batches
from recbole_mamba.quick_start import _build
from recbole_mamba.trainer.all_positions import all_positions_loss

from tests.data.test_all_positions import make_config


def runs_in_length_order(batches, lengths):
    """The batches sorted by their rows' lengths, checked not to interleave."""
    ordered = sorted(batches, key=lambda b: (int(lengths[b].min()), int(lengths[b].max())))
    for batch, following in pairwise(ordered):
        assert int(lengths[batch].max()) <= int(lengths[following].min())
    return ordered


@pytest.mark.parametrize("batch_count", [1, 7, 40, 299, 300, 1000])
def test_batches_hold_every_row_once_and_about_the_same_number_of_items(batch_count):
    lengths = torch.randint(1, 30, (300,), generator=torch.Generator().manual_seed(1))
    batches = length_grouped_batches(lengths, batch_count, 10**9, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(300))
    runs_in_length_order(batches, lengths)
    share = int(lengths.sum()) / batch_count
    assert len(batches) <= batch_count
    if share >= int(lengths.max()):  # no row is longer than a batch's share: none is left empty
        assert len(batches) == batch_count
        assert all(abs(int(lengths[b].sum()) - share) <= int(lengths.max()) for b in batches)


@pytest.mark.parametrize("max_tokens", [1, 29, 60, 400])
def test_a_batch_whose_padded_size_is_over_the_limit_is_split_into_runs_that_fit(max_tokens):
    lengths = torch.randint(1, 30, (300,), generator=torch.Generator().manual_seed(1))
    batches = length_grouped_batches(lengths, 5, max_tokens, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(300))
    for batch in runs_in_length_order(batches, lengths):
        assert len(batch) * int(lengths[batch].max()) <= max_tokens or len(batch) == 1
    unsplit = length_grouped_batches(lengths, 5, 10**9, torch.Generator().manual_seed(0))
    assert len(batches) > len(unsplit) == 5


def test_each_epoch_plans_its_own_batches_from_the_generator():
    lengths = torch.randint(1, 30, (300,), generator=torch.Generator().manual_seed(1))
    plan = [b.tolist() for b in length_grouped_batches(lengths, 20, 600, torch.Generator().manual_seed(0))]
    again = [b.tolist() for b in length_grouped_batches(lengths, 20, 600, torch.Generator().manual_seed(0))]
    generator = torch.Generator().manual_seed(1)
    other = [[b.tolist() for b in length_grouped_batches(lengths, 20, 600, generator)] for _ in range(2)]
    assert plan == again
    assert plan != other[0] and other[0] != other[1]
    assert sorted(map(sorted, other[0])) != sorted(map(sorted, other[1]))  # ties shuffled: other rows meet


@pytest.fixture(scope="module")
def length_loader(tiny_data_path):
    config = make_config(tiny_data_path, train_mode="all_positions", train_batch_order="length",
                         train_batch_tokens=100)
    data, (train, _, _), model, _ = _build(config)
    return config, train, model


def rows_of(dataset, batch):
    """Indices in ``dataset`` of a batch's rows (a training window starts where no other does)."""
    starts = dataset.inter_feat["window_start"]
    return torch.stack([torch.nonzero(starts == start)[0, 0] for start in batch["window_start"]])


def test_the_pipeline_trains_on_length_grouped_batches_cut_to_their_longest_row(length_loader):
    config, train, _ = length_loader
    assert isinstance(train, LengthGroupedTrainDataLoader)
    assert config["train_batch_size"] == 5 and train.max_tokens == 100  # 100 tokens // L of 20, x 20
    assert train.batch_count == -(-len(train._dataset) // 5)  # as many as random batches of 5 rows
    dataset = train._dataset
    assert len(set(dataset.inter_feat["window_start"].tolist())) == len(dataset)
    planned, batches, seen, padded = len(train), 0, [], 0
    description = train.describe()  # of the coming epoch, as the run logs it
    for batch in train:
        lengths = batch["item_length"]
        width = int(lengths.max())
        assert batch["item_id_list"].shape == (len(lengths), width)
        assert len(lengths) * width <= 100 or len(lengths) == 1
        full = dataset[rows_of(dataset, batch)]
        assert torch.equal(full["item_id_list"][:, :width], batch["item_id_list"])
        assert not full["item_id_list"][:, width:].any()  # only padding was cut
        batches += 1
        seen += batch["window_start"].tolist()
        padded += batch["item_id_list"].numel()
    assert batches == planned >= train.batch_count > 1
    items = int(dataset.inter_feat["item_length"].sum())
    assert description == (f"{batches} an epoch of rows of similar length, {items // batches} items each on "
                           f"average, {padded} padded positions an epoch ({len(dataset) * 20} in random order)")
    assert sorted(seen) == sorted(dataset.inter_feat["window_start"].tolist())
    epochs = [[b["window_start"].tolist() for b in train] for _ in range(2)]
    assert epochs[0] != epochs[1]


@pytest.mark.parametrize("model", ["MambaRec", "SASRec", "GRU4Rec", "RecMamba", "MoEMaTrRec"])
def test_a_cut_batch_has_the_loss_of_the_same_rows_at_full_width(tiny_data_path, model):
    config = make_config(tiny_data_path, model=model, train_mode="all_positions", train_batch_order="length",
                         train_batch_tokens=100)
    _, (train, _, _), recommender, _ = _build(config)
    recommender.eval()  # no dropout: the two losses must be equal, not equal in distribution
    batch = next(b for b in train if int(b["item_length"].max()) < 20)
    full = train._dataset[rows_of(train._dataset, batch)]
    assert full["item_id_list"].shape[1] == 20
    with torch.no_grad():
        assert torch.allclose(all_positions_loss(recommender, batch, "CE"),
                              all_positions_loss(recommender, full, "CE"), rtol=1e-5, atol=1e-6)


def test_length_order_is_the_default_and_random_order_keeps_recboles_loader(tiny_data_path):
    assert make_config(tiny_data_path, train_mode="all_positions")["train_batch_order"] == "length"
    config = make_config(tiny_data_path, train_mode="all_positions", train_batch_order="random")
    train = _build(config)[1][0]
    assert type(train) is TrainDataLoader
    assert {tuple(batch["item_id_list"].shape[1:]) for batch in train} == {(20,)}
