"""Training batches of rows of similar length (``train_batch_order: length``).

All-position rows are right-padded to ``MAX_ITEM_LIST_LENGTH`` (L), and most users' histories are
shorter than L: on ml-100k at L=200 the training windows hold 97k items in 221k padded positions,
and a random batch of 64 windows almost always holds one of length 200, so it cannot be cut
shorter. Here each epoch's rows are sorted by length (ties in random order) and cut into as many
batches as random order makes (``ceil(rows / train_batch_size)``), each holding about the same
number of items (so every item weighs the same in the epoch's loss, as in random batches); a batch
whose padded size (rows x its longest row) would exceed a random batch's (``train_batch_size`` x
L) is split. The batches are shuffled, and each is cut to its longest row: right padding never
changes a causal model's output at a real position, so a batch's loss is what it would be at full
width. What differs from random batches is which rows share a batch.
"""

import math

import numpy as np
import torch

from recbole.data.dataloader import TrainDataLoader


def length_grouped_batches(lengths, batch_count, max_tokens, generator):
    """Row indices of each batch, the batches in a random order: rows sorted by length (ties
    shuffled), a row going to batch ``floor(items before its middle / share)`` where ``share`` is
    the epoch's items / ``batch_count``, and a batch with rows x longest > ``max_tokens`` split
    into runs that fit (a row longer than ``max_tokens`` alone). ``lengths``: (N,) int tensor, all
    >= 1; returns a list of (rows,) int64 tensors that together hold every row once."""
    if len(lengths) == 0:
        return []
    shuffled = torch.randperm(len(lengths), generator=generator)
    order = shuffled[torch.argsort(lengths[shuffled], stable=True)].numpy()
    sizes = lengths.numpy()[order].astype(np.int64)
    ends = np.cumsum(sizes)
    share = ends[-1] / batch_count
    batch_of = np.minimum(((ends - sizes / 2) // share).astype(np.int64), batch_count - 1)
    starts = np.flatnonzero(np.r_[True, batch_of[1:] != batch_of[:-1]])
    bounds = []
    for start, stop in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        bounds += _fitting_runs(sizes, start, stop, max_tokens)
    batches = [torch.from_numpy(order[a:b].astype(np.int64)) for a, b in bounds]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def _fitting_runs(sizes, start, stop, max_tokens):
    """(start, stop) of consecutive runs of the ascending ``sizes[start:stop]``, each as long as
    ``rows x its last size <= max_tokens`` allows (at least one row)."""
    if (stop - start) * sizes[stop - 1] <= max_tokens:
        return [(start, stop)]
    runs = []
    while start < stop:
        end = start + 1
        while end < stop and (end + 1 - start) * sizes[end] <= max_tokens:
            end += 1
        runs.append((start, end))
        start = end
    return runs


class LengthGroupedTrainDataLoader(TrainDataLoader):
    """RecBole's ``TrainDataLoader`` over a :class:`~recbole_mamba.data.WindowDataset`, yielding
    :func:`length_grouped_batches` (planned anew each epoch, from the loader's seeded generator)
    cut to their longest row. ``len()`` is the number of batches of the coming epoch."""

    def __init__(self, config, dataset, sampler):
        super().__init__(config, dataset, sampler, shuffle=True)
        self.lengths = dataset.inter_feat[dataset.item_list_length_field]  # (rows,)
        self.batch_count = math.ceil(len(dataset) / config["train_batch_size"])
        self.max_tokens = config["train_batch_size"] * config["MAX_ITEM_LIST_LENGTH"]
        self._plan = None

    def _planned(self):
        if self._plan is None:
            self._plan = length_grouped_batches(self.lengths, self.batch_count, self.max_tokens, self.generator)
        return self._plan

    def take_plan(self):
        """The coming epoch's batches (row indices), after which the next epoch's are planned."""
        plan, self._plan = self._planned(), None
        return plan

    def plan_again(self):
        """Forget the coming epoch's plan: the next is drawn from the generator as it is now (after
        a resumed run restored it)."""
        self._plan = None

    def describe(self):
        """One line: the coming epoch's batches, items and padded positions."""
        lengths, plan = self.lengths, self._planned()
        padded = sum(len(batch) * int(lengths[batch].max()) for batch in plan)
        return (f"{len(plan)} an epoch of rows of similar length, {int(lengths.sum()) // max(1, len(plan))} items "
                f"each on average, {padded} padded positions an epoch ({len(lengths) * self.config['MAX_ITEM_LIST_LENGTH']} "
                f"in random order)")

    def __len__(self):
        return len(self._planned())

    def __iter__(self):
        for index in self.take_plan():
            yield self.collate_fn(index.numpy())

    def collate_fn(self, index, width=None):
        """The rows ``index``, their histories cut to ``width`` (default: their longest)."""
        batch = super().collate_fn(index)
        width = int(batch[self._dataset.item_list_length_field].max()) if width is None else width
        for field in self._dataset.history_sources:
            batch[field] = batch[field][:, :width]
        return batch
