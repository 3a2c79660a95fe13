"""Each rank's share: of an evaluation, a contiguous block of whole batches, every user once, none
padded in, with the 1-process run's sampled candidates; of a training epoch, the batches iterating
the loader would draw, split row by row."""

import numpy as np
import pytest
import torch
from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_mamba.config import RecboleMambaConfig
from recbole_mamba.data import create_dataset
from recbole_mamba.data.candidates import CandidateEvalDataLoader
from recbole_mamba.distributed.eval_shards import ShardedEvaluation, shard_evaluation
from recbole_mamba.distributed.train_shards import RankShareLoader, global_batches
from recbole_mamba.quick_start import encode_once
from tests.conftest import TINY_CONFIG


class Batches(ShardedEvaluation):
    def __init__(self, sample_size, step, rank, world_size):
        self.sample_size, self.step, self.rank, self.world_size = sample_size, step, rank, world_size


@pytest.mark.parametrize("sample_size,step,world", [(60, 16, 2), (61, 16, 2), (5, 16, 2), (100, 7, 3), (1, 1, 4),
                                                    (12, 4, 3), (13, 4, 8)])
def test_eval_shards_are_contiguous_blocks_of_every_batch_once(sample_size, step, world):
    ranks = [Batches(sample_size, step, rank, world) for rank in range(world)]
    blocks = [list(rank._own_range()) for rank in ranks]
    assert sum(blocks, []) == list(range(len(ranks[0]._global_batches())))  # in order, each once
    rows = [row for rank in ranks for i in rank._own_range() for row in range(*rank._global_batches()[i])]
    assert rows == list(range(sample_size))  # no row twice, none padded in
    assert [len(rank) for rank in ranks] == [len(block) for block in blocks]
    assert all(bool(rank) for rank in ranks)  # evaluated on every rank, even one with no batch


def loaders(tiny_data_path, mode, **overrides):
    config = RecboleMambaConfig("MambaRec", "ml-tiny", config_dict={
        **TINY_CONFIG, "data_path": tiny_data_path, "eval_args": {"mode": mode}, "eval_batch_size": 16,
        **overrides})
    init_seed(0, True)
    train, valid, _ = data_preparation(config, create_dataset(config))
    return config, train, encode_once(config, valid)


def users_and_candidates(loader):
    users, candidates = [], []
    for batch in loader:
        users += batch[0][loader._dataset.uid_field].tolist()
        if isinstance(loader, CandidateEvalDataLoader):
            candidates += batch[1].tolist()
    return users, candidates


@pytest.mark.parametrize("mode", ["full", "uni100"])
def test_sharded_evaluation_sees_every_user_once_with_the_one_process_candidates(tiny_data_path, mode):
    _, _, whole = loaders(tiny_data_path, mode)
    assert isinstance(whole, CandidateEvalDataLoader) == (mode == "uni100")
    np.random.seed(3)
    want = users_and_candidates(whole)
    after_whole = np.random.random()
    got = ([], [])
    for rank in range(2):
        np.random.seed(3)  # every rank starts an evaluation from the same generator state
        users, candidates = users_and_candidates(shard_evaluation(whole, rank, 2))
        got[0].extend(users)
        got[1].extend(candidates)
        assert np.random.random() == after_whole  # and leaves it where one process would
    assert got == want and len(want[0]) == 60


@pytest.mark.parametrize("order", ["length", "random"])
def test_every_rank_plans_the_batches_iterating_the_loader_would_draw(tiny_data_path, order):
    _, train, _ = loaders(tiny_data_path, "full", train_mode="all_positions", train_batch_order=order,
                          train_batch_size=16)
    start = train.generator.get_state()

    def rewind():  # the epoch about to start, again
        train.generator.set_state(start)
        getattr(train, "plan_again", lambda: None)()

    rewind()
    planned = global_batches(train)
    rewind()
    iterated = [batch[train._dataset.uid_field] for batch in train]
    assert len(planned) == len(iterated) > 2
    users = train._dataset.inter_feat[train._dataset.uid_field]
    for rows, batch_users in zip(planned, iterated, strict=True):
        assert torch.equal(users[torch.as_tensor(rows)], batch_users)

    shares = [RankShareLoader(train, rank, 2, all_positions=True) for rank in range(2)]
    for share in shares:
        rewind()
        assert sum(1 for _ in share) == len(planned)
    lengths = train._dataset.inter_feat[train._dataset.item_list_length_field]
    for rows, mine, theirs in zip(planned, shares[0].shares, shares[1].shares, strict=True):
        assert mine[0] == int(lengths[torch.as_tensor(rows[0::2])].sum())
        assert theirs[0] == int(lengths[torch.as_tensor(rows[1::2])].sum())
        assert mine[1] == theirs[1] == mine[0] + theirs[0]
