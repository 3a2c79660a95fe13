"""Item-table optimizers that touch only the rows a batch reads (``item_table_updates: sparse``):
lazy Adam, or FBGEMM's row-wise Adagrad (``item_table_optimizer: rowwise_adagrad``).

Dense Adam updates every row of the item table at every step: at 1.24 M items x 64 that is about
a second a step on a 2-core CPU, more than the model's own work, and it grows with the catalogue
(``benchmarks/bench_scale.py``). With sparse updates the table's gradient is a sparse tensor of
the rows the batch read (its items, targets and sampled negatives), and :class:`LazyAdam` updates
those rows' moments and values only, with Adam's own formula (torch's ``SparseAdam`` puts epsilon
elsewhere); every other parameter keeps Adam.

The gradients are the same as dense training's, and so is the first step from a fresh optimizer
(Adam moves a row with zero gradient and zero moments by nothing). Later steps differ: dense Adam
keeps moving an untouched row along its old momentum, lazy Adam leaves it where it is.

Adam keeps two floats of state an item-table entry (512 bytes an item at hidden 64), more than the
table itself. :class:`RowwiseAdagrad` keeps one float a row (4 bytes an item): FBGEMM's
``EXACT_ROWWISE_ADAGRAD``, the optimizer TorchRec and DLRM use for embedding tables of 10^8 rows.
"""

import math

import torch


class SparseRowOptimizer(torch.optim.Optimizer):
    """An optimizer of sparse row gradients: each step, every parameter's gradient coalesced (a
    row read twice is one row of summed gradient) and handed to :meth:`update` with the rows it
    touched (rows,) and their gradients (rows, d)."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    grad = param.grad.coalesce()
                    self.update(param, self.state[param], group, grad.indices()[0], grad.values())

    def update(self, param, state, group, rows, values):
        raise NotImplementedError


class LazyAdam(SparseRowOptimizer):
    """Adam (``torch.optim.Adam``'s formula, no weight decay) on the rows of sparse gradients only;
    the step count, and so the bias correction, is the parameter's, as dense Adam's."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    def update(self, param, state, group, rows, values):
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        step = state["step"].item()
        exp_avg = state["exp_avg"][rows].lerp_(values, 1 - beta1)
        exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
        state["exp_avg"][rows], state["exp_avg_sq"][rows] = exp_avg, exp_avg_sq
        denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2 ** step)).add_(group["eps"])
        param[rows] = param[rows].addcdiv_(exp_avg, denom, value=-group["lr"] / (1 - beta1 ** step))


class RowwiseAdagrad(SparseRowOptimizer):
    """FBGEMM's exact row-wise Adagrad on the rows of sparse gradients, one float of state a row
    (``sum``, shape (rows,)): for each row r the batch touched, with g its summed gradient (d,),
    ``sum[r] += mean(g ** 2)``, then ``row -= lr * g / (sqrt(sum[r]) + eps)``."""

    def __init__(self, params, lr=1e-2, eps=1e-8):
        super().__init__(params, {"lr": lr, "eps": eps})

    def update(self, param, state, group, rows, values):
        if not state:
            state["sum"] = torch.zeros(param.size(0), dtype=param.dtype, device=param.device)
        total = state["sum"][rows] + values.pow(2).mean(1)
        state["sum"][rows] = total
        param[rows] = param[rows] - values * (group["lr"] / (total.sqrt() + group["eps"])).unsqueeze(1)


TABLE_OPTIMIZERS = {"adam": LazyAdam, "rowwise_adagrad": RowwiseAdagrad}


class SparseTableOptimizer:
    """The item-table optimizer ``table_optimizer`` (:data:`TABLE_OPTIMIZERS`, at ``table_lr``)
    for ``table`` and ``Adam`` for ``others``, stepped and saved as one optimizer (what RecBole's
    Trainer calls: ``step``, ``zero_grad``, ``state_dict``, ``load_state_dict``)."""

    def __init__(self, table, others, lr, table_optimizer="adam", table_lr=None):
        self.table_optimizer = table_optimizer
        self.sparse = TABLE_OPTIMIZERS[table_optimizer]([table], lr=lr if table_lr is None else table_lr)
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
        return {"sparse": self.sparse.state_dict(), "dense": self.dense.state_dict(),
                "table_optimizer": self.table_optimizer}

    def load_state_dict(self, state):
        self.sparse.load_state_dict(state["sparse"])
        self.dense.load_state_dict(state["dense"])
