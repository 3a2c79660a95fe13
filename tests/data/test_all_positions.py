"""All-position training: same evaluation split as prefix mode, same loss as RecBole's per-prefix
losses, per-position negatives, config validation."""

from collections import Counter

import pytest
import torch
from recbole.data import data_preparation

from recbole_mamba.config import ConfigError, RecboleMambaConfig
from recbole_mamba.data import WindowDataset, create_dataset
from recbole_mamba.quick_start import check_sampled_evaluation
from recbole_mamba.registry import get_model
from recbole_mamba.trainer import SafeCheckpointTrainer
from recbole_mamba.model.negatives import NegativeSampler
from recbole_mamba.trainer.all_positions import all_positions_loss, position_targets


def make_config(data_path, model="MambaRec", dataset="ml-tiny", **overrides):
    return RecboleMambaConfig(model, dataset, config_dict={
        "data_path": data_path, "hidden_size": 16, "inner_size": 32, "embedding_size": 16,
        "MAX_ITEM_LIST_LENGTH": 20, **overrides})


def rows_by_user(dataloader):
    dataset = dataloader._dataset
    feat = dataset[torch.arange(len(dataset))]  # rows as the dataloaders fetch them
    out = {}
    for i in range(len(feat)):
        user = int(feat["user_id"][i])
        out[user] = (int(feat["item_id"][i]), int(feat["item_length"][i]),
                     feat["item_id_list"][i].tolist())
    return out


def test_evaluation_split_is_identical_in_both_modes(tiny_data_path):
    loaders = {}
    for mode in ("prefix", "all_positions"):
        config = make_config(tiny_data_path, train_mode=mode, train_windows="last")
        loaders[mode] = data_preparation(config, create_dataset(config))
    for split in (1, 2):  # valid, test
        assert rows_by_user(loaders["prefix"][split]) == rows_by_user(loaders["all_positions"][split])
    prefix_train = loaders["prefix"][0]._dataset.inter_feat
    window_train = loaders["all_positions"][0]._dataset.inter_feat
    assert len(window_train) == len(set(window_train["user_id"].tolist()))  # one row per user
    assert len(prefix_train) > 10 * len(window_train)


@pytest.mark.parametrize("max_len", [1, 4, 11, 12])
def test_every_window_predicts_each_training_interaction_once(tmp_path, max_len):
    data_path = single_user_data(tmp_path)  # user 1: 14 interactions (indices 0..13), user 2: 2
    for windows, expected in (("all", range(1, 12)), ("last", range(max(1, 12 - max_len), 12))):
        config = make_config(data_path, dataset="one", train_mode="all_positions", train_windows=windows,
                             MAX_ITEM_LIST_LENGTH=max_len)
        train, valid, test = data_preparation(config, create_dataset(config))
        dataset = train._dataset
        feat = dataset[torch.arange(len(dataset))]
        items = dataset.history_sources["item_id_list"]
        predicted = []  # interaction indices a row's loss predicts: its history but the first, and its target
        for start, length, target in zip(feat["window_start"].tolist(), feat["item_length"].tolist(),
                                         feat["item_id"].tolist(), strict=True):
            assert 1 <= length <= max_len
            assert int(items[start + length]) == target  # the target follows the history in time
            predicted += range(start + 1, start + length + 1)
        # user 1's training interactions s_1..s_11 (user 2's one row, 14 -> 15, is RecBole's too)
        assert sorted(predicted) == [*expected, 15]
        assert rows_by_user(valid)[1][0] == int(items[12]) and rows_by_user(test)[1][0] == int(items[13])


def test_auto_mode_and_dense_rows_are_per_user(tiny_data_path):
    assert make_config(tiny_data_path, MAX_ITEM_LIST_LENGTH=200)["train_mode"] == "prefix"
    config = make_config(tiny_data_path, MAX_ITEM_LIST_LENGTH=250)
    assert config["train_mode"] == "all_positions" and config.train_mode_chosen_automatically
    dataset = create_dataset(config)
    assert isinstance(dataset, WindowDataset)
    parts = dataset.build()  # augmentation, then RecBole's leave-one-out split
    users = len(set(parts[2].inter_feat["user_id"].tolist()))
    with open(f"{tiny_data_path}/ml-tiny/ml-tiny.inter") as f:
        lengths = Counter(line.split("\t", 1)[0] for line in list(f)[1:]).values()
    windows = sum(-(-(n - 3) // 250) for n in lengths)  # every window of 250 targets (all users have n > 3)
    assert windows > users and [len(p.inter_feat) for p in parts] == [windows, users, users]
    # rows store no history lists: they are built per fetch, O(interactions) in memory
    assert all("item_id_list" not in p.inter_feat for p in parts)
    n_interactions = sum(1 for _ in open(f"{tiny_data_path}/ml-tiny/ml-tiny.inter")) - 1
    assert set(dataset.history_sources) == {"item_id_list", "rating_list", "timestamp_list"}
    assert all(len(source) == n_interactions for source in dataset.history_sources.values())
    assert parts[0][torch.arange(5)]["item_id_list"].shape == (5, 250)


def single_user_data(tmp_path, n=14):
    folder = tmp_path / "one"
    folder.mkdir()
    items = [5, 3, 9, 3, 1, 7, 2, 8, 6, 4, 10, 11, 12, 13][:n]
    (folder / "one.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
        f"1\t{item}\t{t}\n" for t, item in enumerate(items)) + "2\t1\t0\n2\t2\t1\n")
    (folder / "one.yaml").write_text("load_col:\n  inter: [user_id, item_id, timestamp]\n")
    return str(tmp_path)


@pytest.mark.parametrize("model_name,overrides", [
    ("MambaRec", {"dropout_prob": 0.0}),
    ("MoEMaTrRec", {"hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0}),
    ("SASRec", {"hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0}),
    ("GRU4Rec", {"dropout_prob": 0.0}),
])
def test_all_positions_loss_is_the_mean_of_prefix_losses(tmp_path, model_name, overrides):
    data_path = single_user_data(tmp_path)
    config = make_config(data_path, model_name, "one", train_mode="prefix", loss_type="CE", **overrides)
    train, _, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    model = get_model(model_name)(config, train._dataset)
    prefix_rows = train._dataset.inter_feat
    prefix_rows = prefix_rows[prefix_rows["user_id"] == prefix_rows["user_id"].max()]  # user with 14
    expected = model.calculate_loss(prefix_rows)  # RecBole's CE, mean over the prefix rows

    window_config = make_config(data_path, model_name, "one", train_mode="all_positions", loss_type="CE", **overrides)
    window_train, _, _ = data_preparation(window_config, create_dataset(window_config))
    dataset = window_train._dataset
    rows = dataset[torch.arange(len(dataset))]
    rows = rows[rows["user_id"] == rows["user_id"].max()]
    assert len(rows) == 1 and int(rows["item_length"][0]) == len(prefix_rows)
    got = all_positions_loss(model, rows, "CE")
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_targets_and_negatives():
    seq = torch.tensor([[4, 5, 6, 0], [7, 0, 0, 0]])
    targets, mask = position_targets(seq, torch.tensor([3, 1]), torch.tensor([9, 8]))
    assert targets.tolist() == [[5, 6, 9, 0], [8, 0, 0, 0]]
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    positives = torch.randint(1, 4, (5000,))
    negatives = NegativeSampler(4).per_state(positives, torch.Generator().manual_seed(0))
    assert not (negatives == positives).any() and negatives.min() >= 1 and negatives.max() <= 3


@pytest.mark.parametrize("loss_type", ["CE", "BPR", "BCE"])
def test_all_positions_losses_train(tiny_data_path, loss_type):
    config = make_config(tiny_data_path, train_mode="all_positions", loss_type=loss_type)
    assert config["train_neg_sample_args"]["distribution"] == "none"  # drawn per position instead
    train, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("MambaRec")(config, train._dataset)
    batch = next(iter(train))
    loss = all_positions_loss(model, batch, loss_type)
    assert torch.isfinite(loss)
    loss.backward()


def test_sampled_evaluation_never_samples_the_positive(tiny_data_path):
    config = make_config(tiny_data_path, train_mode="all_positions",
                         eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni100"})
    _, _, test = data_preparation(config, create_dataset(config))
    seen = 0
    for interaction, row_idx, positive_u, positive_i in test:
        users = interaction["user_id"]
        for user in users.unique():
            items = interaction["item_id"][users == user]
            positive = items[0]  # RecBole puts the positive first, then its negatives
            assert (items[1:] != positive).all() and len(items) == 101
            seen += 1
    assert seen == 60


@pytest.mark.parametrize("overrides,message", [
    ({"train_mode": "everything"}, "train_mode must be one of auto, prefix, all_positions"),
    ({"MAX_ITEM_LIST_LENGTH": 0}, "MAX_ITEM_LIST_LENGTH must be a positive integer"),
])
def test_config_errors(tiny_data_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(tiny_data_path, **overrides)


def test_sampled_mode_larger_than_items(tmp_path):
    data_path = single_user_data(tmp_path)
    config = make_config(data_path, dataset="one",
                         eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni100"})
    with pytest.raises(ConfigError, match="samples 100 negatives, but one has only 13 items"):
        check_sampled_evaluation(config, create_dataset(config))
    config = make_config(data_path, dataset="one", topk=[5, 10],
                         eval_args={"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "uni8"})
    with pytest.raises(ConfigError, match="eval_args mode uni8 ranks 9 items, fewer than topk 10"):
        check_sampled_evaluation(config, create_dataset(config))  # RecBole would fail in torch.topk


@pytest.mark.parametrize("overrides,batch_size", [
    ({"train_mode": "all_positions", "MAX_ITEM_LIST_LENGTH": 50, "train_batch_tokens": 1000}, 20),
    ({"train_mode": "all_positions", "MAX_ITEM_LIST_LENGTH": 300, "train_batch_tokens": 100}, 1),
    ({"train_mode": "all_positions", "train_batch_tokens": 1000, "train_batch_size": 7}, 7),  # given: wins
    ({"train_mode": "prefix", "train_batch_tokens": 1000}, 256),  # rows are prefixes: tokens say nothing
])
def test_batches_of_windows_are_sized_in_tokens(tiny_data_path, overrides, batch_size):
    assert make_config(tiny_data_path, **overrides)["train_batch_size"] == batch_size


@pytest.mark.parametrize("overrides,eval_batch_size", [
    ({"MAX_ITEM_LIST_LENGTH": 2000, "train_mode": "all_positions"}, 32),  # 65,536 tokens
    ({"MAX_ITEM_LIST_LENGTH": 50}, 1024),  # eval_batch_size itself is the smaller
    ({"MAX_ITEM_LIST_LENGTH": 500, "eval_batch_tokens": 1000}, 2),
    ({"MAX_ITEM_LIST_LENGTH": 2000, "eval_batch_size": 300}, 300),  # given: wins
])
def test_evaluation_batches_are_capped_in_tokens(tiny_data_path, overrides, eval_batch_size):
    assert make_config(tiny_data_path, **overrides)["eval_batch_size"] == eval_batch_size


def test_eval_batch_tokens_must_be_a_positive_integer(tiny_data_path):
    with pytest.raises(ConfigError, match="eval_batch_tokens must be a positive integer, got 0"):
        make_config(tiny_data_path, eval_batch_tokens=0)


@pytest.mark.parametrize("steps_per_epoch,eval_step,min_steps,patience", [
    (18, 1, 150, 9),   # ml-100k windows: 18 steps an epoch; 9 evaluations = 162 steps
    (400, 1, 150, 3),  # prefix rows: stopping_step already covers 1,200 steps
    (18, 2, 150, 5),
    (18, 1, 0, 3),     # off
])
def test_early_stopping_waits_at_least_min_patience_steps(tiny_data_path, steps_per_epoch, eval_step,
                                                          min_steps, patience):
    config = make_config(tiny_data_path, stopping_step=3, min_patience_steps=min_steps, eval_step=eval_step)
    trainer = SafeCheckpointTrainer(config, get_model("MambaRec")(config, create_dataset(config)))
    assert trainer.patience_in_evaluations(steps_per_epoch) == patience


def test_early_stopping_counts_no_patience_on_the_initial_loss_plateau(tmp_path):
    config = make_config(single_user_data(tmp_path), dataset="one", train_mode="all_positions",
                         plateau_loss_drop=0.05, epochs=1, topk=[5], valid_metric="NDCG@5")  # 13 items
    train, valid, _ = data_preparation(config, create_dataset(config))
    trainer = SafeCheckpointTrainer(config, get_model("MambaRec")(config, train._dataset))
    trainer.fit(train, valid, saved=False)  # one epoch (make_config's), to set what fit keeps
    assert trainer.initial_loss == pytest.approx(float(trainer.train_loss_dict[0]) / len(train), rel=0.5)
    trainer.patience_from_epoch, trainer.initial_loss, trainer.batches_per_epoch = None, 3.75, 2
    means = [3.70, 3.69, 3.58, 3.55, 3.80]  # the untrained 3.75: 1.3%, 1.6%, 4.5%, 5.3% below, then above
    counted = []
    for epoch, mean in enumerate(means):
        trainer.train_loss_dict[epoch], trainer._epoch, trainer.cur_step = 2 * mean, epoch, 2
        trainer._valid_epoch(valid)
        counted.append(trainer.cur_step == 2)  # 0: reset, so that RecBole's early_stopping counts from 0
    assert counted == [False, False, False, True, True]
    assert trainer.patience_from_epoch == 3
    trainer.start_epoch = 5  # as resume_checkpoint sets it: a resumed run counts from its first epoch
    trainer.fit(train, valid, saved=False)
    assert trainer.patience_from_epoch == 5 and trainer.left_initial_plateau()


@pytest.mark.parametrize("drop", [-0.1, 1.0])
def test_plateau_loss_drop_must_be_a_fraction(tiny_data_path, drop):
    with pytest.raises(ConfigError, match="plateau_loss_drop must be"):
        make_config(tiny_data_path, plateau_loss_drop=drop)
