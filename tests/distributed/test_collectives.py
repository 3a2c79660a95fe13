"""What every rank decides together, on 2 gloo ranks forked in a new interpreter: the global mean
loss and its gradient weighting, which rank had a NaN, and a refusal raised on one rank only."""

import json
import subprocess
import sys

import pytest

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
