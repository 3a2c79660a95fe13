"""Adam whose item-table updates touch only the rows a batch reads (``item_table_updates: sparse``).

Dense Adam updates every row of the item table at every step: at 1.24 M items x 64 that is about
a second a step on a 2-core CPU, more than the model's own work, and it grows with the catalogue
(``benchmarks/bench_scale.py``). With sparse updates the table's gradient is a sparse tensor of
the rows the batch read (its items, targets and sampled negatives), and :class:`LazyAdam` updates
those rows' moments and values only, with Adam's own formula (torch's ``SparseAdam`` puts epsilon
elsewhere); every other parameter keeps Adam.

The gradients are the same as dense training's, and so is the first step from a fresh optimizer
(Adam moves a row with zero gradient and zero moments by nothing). Later steps differ: dense Adam
keeps moving an untouched row along its old momentum, lazy Adam leaves it where it is.
"""

import math

import torch


class LazyAdam(torch.optim.Optimizer):
    """Adam (``torch.optim.Adam``'s formula, no weight decay) on the rows of sparse gradients only;
    the step count, and so the bias correction, is the parameter's, as dense Adam's."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad.coalesce()
                state = self.state[param]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                step = state["step"].item()
                rows, values = grad.indices()[0], grad.values()
                exp_avg = state["exp_avg"][rows].lerp_(values, 1 - beta1)
                exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
                state["exp_avg"][rows], state["exp_avg_sq"][rows] = exp_avg, exp_avg_sq
                denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** step)).add_(group["eps"])
                param[rows] = param[rows].addcdiv_(exp_avg, denom, value=-group["lr"] / (1 - beta1 ** step))


class SparseTableAdam:
    """:class:`LazyAdam` for ``table`` and ``Adam`` for ``others``, stepped and saved as one
    optimizer (what RecBole's Trainer calls: ``step``, ``zero_grad``, ``state_dict``,
    ``load_state_dict``)."""

    def __init__(self, table, others, lr):
        self.sparse = LazyAdam([table], lr=lr)
        self.dense = torch.optim.Adam(others, lr=lr)

    @property
    def param_groups(self):
        return self.sparse.param_groups + self.dense.param_groups

    def step(self, closure=None):
        self.sparse.step()
        self.dense.step()

    def zero_grad(self, set_to_none=True):
        self.sparse.zero_grad(set_to_none=set_to_none)
        self.dense.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return {"sparse": self.sparse.state_dict(), "dense": self.dense.state_dict()}

    def load_state_dict(self, state):
        self.sparse.load_state_dict(state["sparse"])
        self.dense.load_state_dict(state["dense"])
