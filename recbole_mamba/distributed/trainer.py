"""One model trained by many processes: torch's ``DistributedDataParallel`` under the plugin's
trainer, every decision made once.

- **Batches**: every rank plans the same global epoch and trains on its share of each batch
  (:class:`~recbole_mamba.distributed.train_shards.RankShareLoader`).
- **Loss**: a rank's mean loss is weighted by its share of the batch's positions, so that the
  gradients DDP averages are those of the whole batch's mean, as one process computes it; the
  value every rank sees (and RecBole sums into the epoch's loss, the plateau rule reads, the NaN
  check tests) is the global one, from one all-reduce that also says which ranks had a NaN.
- **Evaluation**: users sharded, top-k lists gathered
  (:mod:`~recbole_mamba.distributed.eval_shards`); rank 0's result and early-stopping state are
  broadcast after each validation, so all ranks stop at the same epoch.
- **Files**: rank 0 writes every checkpoint and resume state under a name all ranks got from it,
  then all meet at a barrier; every rank reads them (``checkpoint_dir`` on storage all ranks see).
  A resume state holds every rank's random generators and the world size.
"""

import inspect
import os

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from recbole_mamba.distributed.eval_shards import GatheringRankingCollector, ShardedEvaluation
from recbole_mamba.distributed.global_loss import global_mean
from recbole_mamba.distributed.sparse_rows import sum_sparse_rows
from recbole_mamba.distributed.train_shards import RankShareLoader
from recbole_mamba.errors import ConfigError
from recbole_mamba.train_modes import ALL_POSITIONS
from recbole_mamba.trainer.all_positions import training_loss
from recbole_mamba.trainer.resume import random_state, restore_random_state
from recbole_mamba.trainer.trainer import SafeCheckpointTrainer


_DDP_OPTIONS = inspect.signature(DistributedDataParallel).parameters  # torch 2.13 renamed broadcast_buffers


DENSE_TABLE_LIMIT = 10**6  # items: above it, a dense item-table gradient is not all-reduced every step


def check_distributable(config):
    """Refuse, in one line, what does not train across ranks (before the data is loaded)."""
    if config["item_table_updates"] == "sparse" and config["clip_grad_norm"]:
        raise ConfigError("clip_grad_norm with item_table_updates sparse: not across ranks (the norm would be "
                          "taken before the ranks' item-table rows are summed); drop clip_grad_norm or use "
                          "item_table_updates dense")


def check_item_table(config, n_items, world_size):
    """Refuse a dense item table of more than :data:`DENSE_TABLE_LIMIT` items on more than one rank:
    DDP would all-reduce all of it (4 bytes x hidden size x items) every step."""
    if world_size > 1 and config["item_table_updates"] != "sparse" and n_items > DENSE_TABLE_LIMIT:
        raise ConfigError(f"item_table_updates dense with {n_items:,} items on {world_size} ranks: every step would "
                          f"all-reduce the whole item table ({n_items * config['hidden_size'] * 4 / 2**30:.1f} GiB); "
                          "use item_table_updates sparse (the rows a batch touched are exchanged)")


class _BatchLoss(nn.Module):
    """``model`` with its training loss as ``forward``: what DDP wraps, so that the gradient
    exchange is armed by every loss computed."""

    def __init__(self, model, loss):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, interaction):
        return self.loss(interaction)


class DistributedTrainer(SafeCheckpointTrainer):
    """:class:`SafeCheckpointTrainer` on ``context``'s ranks (see the module)."""

    def __init__(self, config, model, context):
        check_distributable(config)
        check_item_table(config, model.n_items, context.world_size)
        os.makedirs(config["checkpoint_dir"], exist_ok=True)  # RecBole's check-then-create races between ranks
        super().__init__(config, model)
        self.context = context
        self.world_size = context.world_size
        self.eval_collector = GatheringRankingCollector(config, context)
        self.saved_model_file = context.broadcast(self.saved_model_file)
        device = torch.device(config["device"])
        # no model here keeps running statistics: buffers (a popularity sampler's counts, 8 bytes an
        # item) are the same on every rank and not sent again each step
        no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in _DDP_OPTIONS
                          else {"broadcast_buffers": False})
        module = _BatchLoss(model, training_loss(config, model))
        if config["item_table_updates"] == "sparse":
            # the table's sparse gradient is summed as rows (sparse_rows), not by DDP
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ["model.item_embedding.weight"])
            self.optimizer.sparse.register_step_pre_hook(self._sum_table_rows)
        self._ddp = DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None, **no_buffer_sync)
        self._nan_ranks = []

    def _sum_table_rows(self, _optimizer, _args, _kwargs):
        """Before the item table's step: its gradient, the rows every rank touched, summed; each
        rank's was scaled by the world size (:func:`global_mean`), as DDP's average undoes."""
        table = self.model.item_embedding.weight
        if table.grad is not None:
            table.grad = sum_sparse_rows(table.grad, self.world_size, 1.0 / self.world_size)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if not isinstance(train_data, RankShareLoader):
            train_data = RankShareLoader(train_data, self.context.rank, self.world_size,
                                         self.config["train_mode"] == ALL_POSITIONS)
        return super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                           show_progress=show_progress and self.context.is_main, callback_fn=callback_fn)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self._ddp.train()

        def loss(interaction):
            value = self._ddp(interaction)
            if isinstance(value, tuple):
                return tuple(self._global(part, train_data.share) for part in value)
            return self._global(value, train_data.share)

        return super()._train_epoch(train_data, epoch_idx, loss_func=loss, show_progress=show_progress)

    def _global(self, local_mean, share):
        value, self._nan_ranks = global_mean(local_mean, share, self.context)
        return value

    def _check_nan(self, loss):
        if torch.isnan(loss):  # the global loss: on every rank at once
            ranks = ", ".join(map(str, self._nan_ranks)) or "none alone (their sum overflowed)"
            raise ValueError(f"Training loss is nan: on rank {ranks} of {self.world_size}; every rank stops")

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        # RecBole's early stopping reads these next: rank 0's, on every rank
        score, result, self.cur_step, self.patience_from_epoch = self.context.broadcast(
            (score, result, self.cur_step, self.patience_from_epoch))
        return score, result

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        self.eval_collector.gathering = isinstance(eval_data, ShardedEvaluation)
        result = super().evaluate(eval_data, load_best_model=load_best_model, model_file=model_file,
                                  show_progress=show_progress and self.context.is_main)
        return self.context.broadcast(result)

    def _write_checkpoint(self, path, **state):
        if self.context.is_main:
            super()._write_checkpoint(path, **state)
        self.context.barrier()  # written before any rank reads it, or goes on

    def _random_state(self, train_data):
        return self.context.all_gather(random_state(train_data))  # every rank's, in rank order

    def _restore_random_state(self, state, train_data):
        restore_random_state(state[self.context.rank], train_data)

    def discard_resume_state(self):
        if self.context.is_main:
            super().discard_resume_state()
        self.context.barrier()
