"""What every rank decides together, on 2 gloo ranks forked in a new interpreter: the global mean
loss and its gradient weighting, which rank had a NaN, and a refusal raised on one rank only."""

import json
import subprocess
import sys

import pytest
import torch

from recbole_mamba.distributed import DistributedContext
TWO_RANKS = r"""
import json, sys, torch
from recbole_mamba.distributed import ForkedRanks
from recbole_mamba.distributed.global_loss import global_mean
from recbole_mamba.errors import ConfigError

ranks = ForkedRanks(2)
context = ranks.fork("cpu").start("cpu")
rank = context.rank
w = torch.tensor(2.0, requires_grad=True)
share = [0.25, 0.75][rank]  # rank 0 holds a quarter of the batch's positions
local_mean = w * [1.0, 3.0][rank]  # mean loss of the rank's positions
value, nan_ranks = global_mean(local_mean, share, context)
value.backward()
nan_value, nan_of = global_mean(torch.tensor(float("nan") if rank == 1 else 1.0), 0.5, context)

def check():
    if rank == 1:
        raise ConfigError("needs 9 GiB, 4 GiB free")

try:
    context.refused_together(check)
    refusal = None
except ConfigError as e:
    refusal = str(e)
sys.stdout.write(json.dumps({"rank": rank, "value": value.item(), "grad": w.grad.item(), "nan_ranks": nan_ranks,
                  "nan_value": str(nan_value.item()), "nan_of": nan_of, "refusal": refusal}) + "\n")  # one write a rank
context.stop()
raise SystemExit(ranks.finish(0))
"""


def test_two_ranks_agree_on_the_loss_its_nans_and_a_refusal():
    done = subprocess.run([sys.executable, "-c", TWO_RANKS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ranks = sorted((json.loads(line) for line in done.stdout.splitlines()), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    # the batch's mean: 0.25 * (1 * 2) + 0.75 * (3 * 2), on both ranks
    assert [r["value"] for r in ranks] == [5.0, 5.0]
    # each rank's gradient x 2 (DDP halves the sum): their mean is d(0.25 w + 2.25 w)/dw = 2.5
    assert [r["grad"] for r in ranks] == [0.5, 4.5]
    assert [r["nan_ranks"] for r in ranks] == [[], []]
    assert [(r["nan_value"], r["nan_of"]) for r in ranks] == [("nan", [1]), ("nan", [1])]
    assert [r["refusal"] for r in ranks] == ["rank 1 of 2: needs 9 GiB, 4 GiB free"] * 2


class OneOfTwo(DistributedContext):
    """Rank 0 of 2 whose peer's answers are given (no process group)."""

    def __init__(self, peer_answer):
        super().__init__(0, 2, 0, 2)
        self.peer_answer = peer_answer

    def all_gather(self, value):
        return [value, self.peer_answer]


def test_a_refusal_keeps_its_class_and_a_pass_on_every_rank_passes():
    from recbole_mamba.trainer.memory import MemoryBudgetError

    OneOfTwo(None).refused_together(lambda: None)
    with pytest.raises(MemoryBudgetError, match=r"^rank 1 of 2: too big$"):
        OneOfTwo((MemoryBudgetError, "too big")).refused_together(lambda: None)


SPARSE_ROWS = r"""
import json, sys, torch
from recbole_mamba.distributed import ForkedRanks
from recbole_mamba.distributed.sparse_rows import sum_sparse_rows

ranks = ForkedRanks(2)
context = ranks.fork("cpu").start("cpu")
rank = context.rank
# rank 0 touched rows 1, 4, 4 (a repeated row), rank 1 rows 4 and 7: overlapping, uneven counts
rows = [[1, 4, 4], [4, 7]][rank]
values = torch.arange(len(rows) * 3, dtype=torch.float64).reshape(len(rows), 3) + 10 * rank
grad = torch.sparse_coo_tensor(torch.tensor([rows]), values, (9, 3))
summed = sum_sparse_rows(grad, 2, 0.5)
sys.stdout.write(json.dumps({"rank": rank, "rows": summed.indices()[0].tolist(),
                             "dense": summed.to_dense().tolist(), "mine": grad.to_dense().tolist()}) + "\n")
context.stop()
raise SystemExit(ranks.finish(0))
"""


def test_two_ranks_sum_their_sparse_rows():
    """The item table's sparse gradients of 2 ranks, overlapping and of uneven row counts, summed
    (and scaled) as rows: both ranks hold the dense sum's rows, and only the rows touched."""
    done = subprocess.run([sys.executable, "-c", SPARSE_ROWS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ranks = sorted((json.loads(line) for line in done.stdout.splitlines()), key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    expected = ((torch.tensor(ranks[0]["mine"]) + torch.tensor(ranks[1]["mine"])) * 0.5).tolist()
    for r in ranks:
        assert r["rows"] == [1, 4, 7]
        assert r["dense"] == expected


def test_a_dense_item_table_of_millions_is_refused_on_many_ranks():
    from recbole_mamba.distributed.trainer import DENSE_TABLE_LIMIT, check_item_table
    from recbole_mamba.errors import ConfigError

    config = {"item_table_updates": "dense", "hidden_size": 64}
    check_item_table(config, DENSE_TABLE_LIMIT, 2)
    check_item_table(config, DENSE_TABLE_LIMIT + 1, 1)
    check_item_table({**config, "item_table_updates": "sparse"}, 20_000_000, 2)
    with pytest.raises(ConfigError, match=r"^item_table_updates dense with 1,000,001 items on 2 ranks: .* "
                                          r"use item_table_updates sparse"):
        check_item_table(config, DENSE_TABLE_LIMIT + 1, 2)
