"""Training negatives: uniform draws unchanged, popularity draws in proportion to the training
targets, the log-Q correction of the sampled softmax, the counts of what an epoch predicts, and
the settings that go with them."""

import pytest
import torch
from recbole.data import data_preparation

from recbole_mamba.config import ConfigError, RecboleMambaConfig
from recbole_mamba.data import create_dataset
from recbole_mamba.model.losses import next_item_loss
from recbole_mamba.model.negatives import NegativeSampler, training_target_counts
from recbole_mamba.seeds import mixed_seed
from recbole_mamba.quick_start import training_protocol
from recbole_mamba.trainer.all_positions import all_positions_loss, build_model, position_targets


def make_config(data_path, model="MambaRec", **overrides):
    return RecboleMambaConfig(model, "ml-tiny", config_dict={
        "data_path": data_path, "hidden_size": 16, "inner_size": 32, "embedding_size": 16,
        "MAX_ITEM_LIST_LENGTH": 20, **overrides})


def test_uniform_draws_are_torch_randint_as_before():
    sampler = NegativeSampler(50)
    got = sampler.draw((7,), generator=torch.Generator().manual_seed(4))
    assert torch.equal(got, torch.randint(1, 50, (7,), generator=torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("counts", [None, torch.tensor([0, 3, 1, 2, 0, 5, 12])], ids=["uniform", "popularity"])
def test_shared_negatives_follow_the_batch_seed_not_the_global_generator(counts):
    """A batch's shared negatives depend on (seed, epoch, batch) alone: what else drew from the
    global generator (dropout, another rank's share) changes nothing; another batch draws others."""
    sampler = NegativeSampler(7, counts)
    targets = torch.tensor([1, 2, 3])
    sampler.seed_shared(mixed_seed(2020, 3, 5))
    torch.manual_seed(0)
    first, _ = sampler.for_loss("SSM", targets, 64)
    torch.rand(1000)  # the global generator moves on
    again, _ = sampler.for_loss("GBCE", targets, 64)
    assert torch.equal(first, again)
    sampler.seed_shared(mixed_seed(2020, 3, 6))
    assert not torch.equal(sampler.for_loss("SSM", targets, 64)[0], first)
    assert len({mixed_seed(2020, e, b) for e in range(3) for b in range(3)}) == 9


def test_the_trainer_seeds_each_batch(tiny_data_path):
    """SafeCheckpointTrainer gives batch b of epoch e the seed mixed_seed(seed, e, b)."""
    from recbole_mamba.trainer.trainer import SafeCheckpointTrainer

    config = make_config(tiny_data_path, loss_type="SSM", train_negatives=8, train_mode="all_positions")
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = build_model(config.model_class, config, train_data._dataset)
    seen = []
    seed_shared = model.negative_sampler.seed_shared
    model.negative_sampler.seed_shared = lambda seed: (seen.append(seed), seed_shared(seed))
    trainer = SafeCheckpointTrainer(config, model)
    trainer.train_seconds = []  # as fit starts it
    trainer._train_epoch(train_data, 4)
    assert seen == [mixed_seed(config["seed"], 4, b) for b in range(len(train_data))]


def test_popularity_draws_follow_the_counts():
    counts = torch.tensor([9, 0, 1, 2, 0, 5, 12])  # the padding's count (9) is ignored
    sampler = NegativeSampler(7, counts)
    draws = sampler.draw((200_000,), generator=torch.Generator().manual_seed(0))
    frequency = torch.bincount(draws, minlength=7).double() / len(draws)
    expected = torch.tensor([0, 0, 1, 2, 0, 5, 12], dtype=torch.float64) / 20
    torch.testing.assert_close(frequency, expected, atol=0.005, rtol=0)
    assert frequency[0] == 0 and frequency[1] == 0 and frequency[4] == 0  # padding and unseen items never
    torch.testing.assert_close(sampler.log_q(torch.tensor([2, 6, 4])),
                               torch.log(torch.tensor([1 / 20, 12 / 20, 1 / 20])))  # unseen: as once


def test_per_state_negatives_are_never_the_positive():
    sampler = NegativeSampler(4, torch.tensor([0, 1, 1, 50]))
    positives = torch.full((3000,), 3)
    negatives = sampler.per_state(positives, torch.Generator().manual_seed(1))
    assert not (negatives == positives).any() and set(negatives.tolist()) == {1, 2}


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        NegativeSampler(3, torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        NegativeSampler(3, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least one"):
        NegativeSampler(3, torch.tensor([4, 0, 0]))


def test_log_q_corrected_sampled_softmax():
    g = torch.Generator().manual_seed(0)
    hidden, items = torch.randn(4, 3, generator=g), torch.randn(8, 3, generator=g)
    targets, negatives = torch.tensor([1, 2, 5, 7]), torch.tensor([2, 3, 3, 6])
    q = torch.rand(8, generator=g) + 0.1
    log_q = (q[targets].log(), q[negatives].log())
    logits = hidden @ items.T - q.log()
    expected = []
    for n, t in enumerate(targets.tolist()):
        others = [j for j in negatives.tolist() if j != t]  # a state's own positive left out
        expected.append(-torch.log_softmax(logits[n, [t, *others]], 0)[0])
    got = next_item_loss(hidden, targets, items, "SSM", negatives, log_q=log_q)
    torch.testing.assert_close(got, torch.stack(expected).mean())
    # a log q that is the same for every item (uniform sampling) changes nothing
    flat = (torch.full((4,), -2.0), torch.full((4,), -2.0))
    torch.testing.assert_close(next_item_loss(hidden, targets, items, "SSM", negatives, log_q=flat),
                               next_item_loss(hidden, targets, items, "SSM", negatives))
    with pytest.raises(ValueError, match="log-Q correction is for loss_type SSM"):
        next_item_loss(hidden, targets, items, "GBCE", negatives, log_q=log_q)


@pytest.mark.parametrize("train_mode", ["prefix", "all_positions"])
def test_training_target_counts_are_what_an_epoch_predicts(tiny_data_path, train_mode):
    config = make_config(tiny_data_path, train_mode=train_mode, MAX_ITEM_LIST_LENGTH=7)
    train, _, _ = data_preparation(config, create_dataset(config))
    dataset = train._dataset
    rows = dataset[torch.arange(len(dataset))]
    if train_mode == "prefix":
        predicted = rows["item_id"]
    else:  # every real position of every window, as all_positions_loss trains them
        targets, mask = position_targets(rows["item_id_list"], rows["item_length"], rows["item_id"])
        predicted = targets[mask]
        assert len(predicted) > len(rows)
    expected = torch.bincount(predicted, minlength=dataset.item_num)
    assert torch.equal(training_target_counts(dataset, dataset.item_num), expected)


def test_popularity_settings(tiny_data_path):
    with pytest.raises(ConfigError, match="GBCE calibrates for uniform negatives"):
        make_config(tiny_data_path, loss_type="GBCE", train_negatives_distribution="popularity")
    with pytest.raises(ConfigError, match="train_negatives_distribution must be one of uniform, popularity"):
        make_config(tiny_data_path, loss_type="SSM", train_negatives_distribution="pop")
    bpr = make_config(tiny_data_path, loss_type="BPR", train_mode="prefix", train_negatives_distribution="popularity")
    assert bpr["train_neg_sample_args"]["distribution"] == "popularity"  # RecBole's sampler draws them
    assert training_protocol(bpr) == "BPR: one popularity negative per position, at each row's last position"
    ssm = make_config(tiny_data_path, loss_type="SSM", train_mode="all_positions", train_negatives=64,
                      train_negatives_distribution="popularity")
    assert training_protocol(ssm) == ("SSM: sampled softmax over the positive and 64 popularity negatives shared by "
                                      "each batch, log-Q corrected, at every position")
    assert training_protocol(make_config(tiny_data_path, loss_type="CE", train_mode="all_positions")) == (
        "CE: exact softmax over all items, at every position")


@pytest.mark.parametrize("model_name", ["MambaRec", "SASRec"])
def test_popularity_ssm_trains(tiny_data_path, model_name):
    config = make_config(tiny_data_path, model_name, loss_type="SSM", train_mode="all_positions", train_negatives=16,
                         train_negatives_distribution="popularity", hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    train, _, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    model = build_model(config.model_class, config, train._dataset)
    sampler = model.negative_sampler
    assert sampler.popularity and "negative_sampler.cumulative" not in model.state_dict()
    counts = training_target_counts(train._dataset, model.n_items)
    assert torch.equal(sampler.cumulative, torch.cumsum(counts * (torch.arange(len(counts)) > 0), 0))
    batch = next(iter(train))
    loss = all_positions_loss(model, batch, "SSM")
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(model.item_embedding.weight.grad).all()
