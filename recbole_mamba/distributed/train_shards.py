"""Each rank's share of the global training epoch.

Every rank plans the same epoch (the same batches, from the loader's generator, seeded alike on
every rank) and trains on its share of each batch: rows ``rank, rank + world_size, ...`` of it.
The batch's loss is normalised by the batch's GLOBAL number of positions: a rank's mean loss is
weighted by its share of the positions (:attr:`RankShareLoader.share`), so that the ranks' summed
gradients are the gradient of the whole batch's mean, as one process computes it, however
unevenly the positions fall. A rank whose share is empty (a batch of fewer rows than ranks)
trains on one row at weight 0: it still takes part in the gradient exchange and adds nothing.
A rank's rows are cut to the width of the whole batch, and the loader says where they sit in it
(:attr:`RankShareLoader.places`), so that their dropout masks are the one process's
(:mod:`recbole_mamba.layers.keyed_dropout`).
"""

import numpy as np
import torch
from torch.utils.data import DataLoader

from recbole_mamba.data.length_batches import LengthGroupedTrainDataLoader


def global_batches(loader):
    """The coming epoch's batches of ``loader`` as index arrays, drawn from its generator exactly
    as iterating it would draw them."""
    if isinstance(loader, LengthGroupedTrainDataLoader):
        return [batch.numpy() for batch in loader.take_plan()]
    order = DataLoader(list(range(loader.sample_size)), batch_size=loader.step, shuffle=loader.shuffle,
                       generator=loader.generator, collate_fn=np.asarray)  # RecBole's loader's own sampler
    return list(order)


def positions_of(dataset, rows, all_positions):
    """Training positions of ``rows``: every real position of each row (all-position training),
    else one a row."""
    if not all_positions:
        return len(rows)
    return int(dataset.inter_feat[dataset.item_list_length_field][torch.as_tensor(rows)].sum())


class RankShareLoader:
    """``loader``'s epoch, this rank's share of each batch; :attr:`share` is the current batch's
    share of its positions (0 for a stand-in row). Behaves as the loader it wraps for the trainer
    (length, dataset, generator, planning)."""

    def __init__(self, loader, rank, world_size, all_positions):
        self.loader, self.rank, self.world_size = loader, rank, world_size
        self.all_positions = all_positions
        self.share = 1.0
        self.batch_rows, self.places = 0, None  # the current batch's rows, and this rank's rows' places in it
        self.shares = []  # (rank's positions, batch's positions) of the last epoch

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):  # dataset, _dataset, generator, shuffle, plan_again, describe, ...
        return getattr(self.loader, name)

    def __iter__(self):
        dataset = self.loader._dataset
        self.shares = []
        for batch in global_batches(self.loader):
            rows = batch[self.rank::self.world_size]
            total = positions_of(dataset, batch, self.all_positions)
            mine = positions_of(dataset, rows, self.all_positions) if len(rows) else 0
            self.shares.append((mine, total))
            self.share = mine / total
            self.batch_rows = len(batch)
            self.places = torch.arange(self.rank, len(batch), self.world_size) if len(rows) else torch.zeros(1, dtype=torch.long)
            yield self._collate(rows if len(rows) else batch[:1], batch)

    def _collate(self, rows, batch):
        """``rows`` as the loader collates them, at the width of the whole ``batch`` (the loader
        cuts a batch to its longest row; the dropout masks of a row are drawn at the batch's width)."""
        if isinstance(self.loader, LengthGroupedTrainDataLoader):
            return self.loader.collate_fn(rows, width=int(self.loader.lengths[torch.as_tensor(batch)].max()))
        return self.loader.collate_fn(rows)
