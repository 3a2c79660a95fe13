"""exclude_history: each user's earlier items (the whole history, not only the model's window)
score -inf in full ranking, in valid and test, in both training modes."""

from collections import defaultdict

import pytest
import torch

from recbole_mamba.config import ConfigError, RecboleMambaConfig
from recbole_mamba.data.history import UserHistory
from recbole_mamba.quick_start import _build, evaluation_protocol
from recbole_mamba.trainer import SafeCheckpointTrainer


def test_seen_before_is_all_but_the_last_items():
    history = UserHistory(indptr=[0, 0, 3, 4, 9], items=[5, 6, 7, 8, 1, 2, 3, 4, 5])
    rows, items = history.seen_before(torch.tensor([3, 2, 1, 1]), left_out=2)
    assert rows.tolist() == [0, 0, 0, 2, 3] and items.tolist() == [1, 2, 3, 5, 5]
    rows, items = history.seen_before(torch.tensor([2]), left_out=1)
    assert rows.tolist() == [] and items.tolist() == []


@pytest.fixture(scope="module")
def untied_data(tiny_data_path, tmp_path_factory):
    """ml-tiny with each user's timestamps made distinct (ml-100k has equal ones, whose order is
    arbitrary), and each user's items in time order."""
    rows = defaultdict(list)
    with open(f"{tiny_data_path}/ml-tiny/ml-tiny.inter") as f:
        header = next(f)
        for line in f:
            user, item, rating, time = line.rstrip("\n").split("\t")
            rows[user].append((float(time), item, rating))
    root = tmp_path_factory.mktemp("untied")
    (root / "ml-tiny").mkdir()
    histories = {}
    with open(root / "ml-tiny" / "ml-tiny.inter", "w") as f:
        f.write(header)
        for user, events in rows.items():
            events.sort(key=lambda e: e[0])
            histories[user] = [item for _, item, _ in events]
            f.writelines(f"{user}\t{item}\t{rating}\t{t}\n" for t, (_, item, rating) in enumerate(events))
    return str(root), histories


@pytest.mark.parametrize("train_mode", ["prefix", "all_positions"])
def test_history_items_are_masked_in_valid_and_test(untied_data, train_mode):
    data_path, histories = untied_data
    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={
        "data_path": data_path, "hidden_size": 16, "MAX_ITEM_LIST_LENGTH": 20,
        "train_mode": train_mode, "exclude_history": True, "eval_batch_size": 16})
    assert evaluation_protocol(config) == "full ranking, leave-one-out by time, history items masked"
    data, (_, valid_data, test_data), model, _ = _build(config)
    trainer = SafeCheckpointTrainer(config, model)
    user_token = data.field2id_token["user_id"]
    item_id = data.field2token_id["item_id"]
    for loader, left_out in ((valid_data, 2), (test_data, 1)):
        trainer.evaluate(loader, load_best_model=False)  # sets the loader's history
        trainer._ranked = False  # RecBole's dense scores, to read the masked items off (the item-chunked
        # ranking masks the same pairs: tests/trainer/test_ranking.py compares the two)
        checked = longest = 0
        for batch in loader:
            interaction, scores, _, positive_i = trainer._full_sort_batch_eval(batch)
            for row, user in enumerate(interaction["user_id"].tolist()):
                items = histories[user_token[user]]
                seen = {item_id[token] for token in items[:-left_out]}
                target = item_id[items[-left_out]]
                assert int(interaction["item_id"][row]) == target
                masked = set(torch.nonzero(torch.isinf(scores[row])).flatten().tolist()) - {0}
                assert masked == seen - {0}, user
                longest = max(longest, len(seen))
                checked += 1
        assert checked == 60 and longest > 20  # the whole history, beyond the model's 20-item window


def test_exclude_history_needs_full_ranking(tiny_data_path):
    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={
        "data_path": tiny_data_path, "exclude_history": True,
        "eval_args": {"mode": "uni100"}})
    with pytest.raises(ConfigError, match="exclude_history needs leave-one-out by time with full ranking"):
        _build(config)
