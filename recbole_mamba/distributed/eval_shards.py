"""Evaluation on many ranks: each rank ranks a contiguous block of whole evaluation batches of
1 / world size the rows (no user twice, none padded in), and the ranks' top-k lists are gathered in rank order before the
metrics are computed, so every rank computes the 1-process metrics from the 1-process rows.

Sampled evaluation (:class:`~recbole_mamba.data.candidates.CandidateEvalDataLoader`) draws each
user's negatives from numpy's global generator, one sampler call per user in user order; here
every rank makes every user's call, keeping the candidates of its own, so the negatives are the
1-process run's whatever the number of ranks, and the generator ends each evaluation where it
would in one process (training's negative sampler draws from it next). RecBole's own
``NegSampleEvalDataLoader`` (a model or metric the candidate loader does not serve) is evaluated
whole on every rank.
"""

import math

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader

from recbole_mamba.data.candidates import CandidateEvalDataLoader
from recbole_mamba.trainer.ranking import RankingCollector

GATHERED = ("rec.topk", "rec.items", "rec.meanrank", "rec.score", "data.label")


class ShardedEvaluation:
    """Mixin of an evaluation loader: iterates only batches ``[first, stop)`` of the global ones."""

    rank, world_size = 0, 1

    def _global_batches(self):
        """(start, stop) rows of every global batch, in order."""
        return [(start, min(start + self.step, self.sample_size)) for start in range(0, self.sample_size, self.step)]

    def _own_range(self):
        """Indices of this rank's batches among the global ones: a contiguous block."""
        count = len(self._global_batches())
        per_rank = math.ceil(count / self.world_size)
        return range(min(count, self.rank * per_rank), min(count, (self.rank + 1) * per_rank))

    def __bool__(self):  # RecBole skips an evaluation whose loader is empty: only all ranks at once
        return self.sample_size > 0

    def __len__(self):
        return len(self._own_range())

    def __iter__(self):
        batches, own = self._global_batches(), self._own_range()
        for i in own:
            yield self.collate_fn(np.arange(*batches[i]))


class ShardedFullSortEvalDataLoader(ShardedEvaluation, FullSortEvalDataLoader):
    """Full ranking of this rank's users."""


class ShardedCandidateEvalDataLoader(ShardedEvaluation, CandidateEvalDataLoader):
    """Sampled ranking of this rank's users, every user's negatives drawn (see the module)."""

    def __iter__(self):
        batches, own = self._global_batches(), self._own_range()
        iid_field, uid_field = self._dataset.iid_field, self._dataset.uid_field
        for i, (start, stop) in enumerate(batches):
            if i in own:
                yield self.collate_fn(np.arange(start, stop))
            else:
                rows = self.rows_of(np.arange(start, stop))
                self.negatives(self._dataset.inter_feat[uid_field][rows].numpy(),
                               self._dataset.inter_feat[iid_field][rows].numpy())


SHARDED = {FullSortEvalDataLoader: ShardedFullSortEvalDataLoader,
           CandidateEvalDataLoader: ShardedCandidateEvalDataLoader}


def shard_evaluation(loader, rank, world_size):
    """``loader`` as a loader of this rank's share, on its dataset and sampler (its ``history``
    kept); a loader of another kind is returned as it is (evaluated whole on every rank)."""
    sharded_class = SHARDED.get(type(loader))
    if sharded_class is None:
        return loader
    sharded = sharded_class(loader.config, loader._dataset, loader._sampler, shuffle=False)
    sharded.rank, sharded.world_size = rank, world_size
    # batches of 1 / world_size the rows: the ranks of a machine together hold one batch's scores
    # and activations, as one process does (the candidates are drawn user by user, whatever the batch)
    sharded.step = max(1, math.ceil(loader.step / world_size))
    if hasattr(loader, "history"):
        sharded.history = loader.history
    return sharded


class GatheringRankingCollector(RankingCollector):
    """:class:`RankingCollector` whose collected rows, while :attr:`gathering`, are every rank's
    (in rank order: the global order of the rows) when the metrics read them."""

    def __init__(self, config, context):
        super().__init__(config)
        self.context = context
        self.gathering = False

    def get_data_struct(self):
        if self.gathering:
            data = self.data_struct._data_dict
            for key in GATHERED:
                if not self.register.need(key):  # the same keys on every rank (a rank may hold no rows)
                    continue
                parts = [part for part in self.context.all_gather(data[key].cpu() if key in data else None)
                         if part is not None]
                if parts:
                    data[key] = torch.cat(parts, dim=0)
        return super().get_data_struct()
