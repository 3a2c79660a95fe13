"""Training negatives (``train_negatives_distribution``): uniform over the catalogue, or in
proportion to how often the training split asks the model to predict each item.

Popularity negatives are harder than uniform ones, but a sampled softmax over them estimates a
softmax that is biased towards rare items; the log-Q correction (Bengio & Senecal 2008; Yi et al.,
RecSys 2019) subtracts log q(i), the log probability of drawing i, from every logit of the sampled
softmax, positive included, and so removes that bias. Under uniform sampling log q is the same
for every item and the correction changes nothing, so it is applied to popularity only. Per-state
negatives (BPR, BCE) are drawn from the same distribution without a correction, as RecBole's own
``popularity`` sampler does.
"""

import torch
from torch import nn

from recbole_mamba.model.losses import SAMPLED_LOSSES, SHARED_NEGATIVE_LOSSES

UNIFORM, POPULARITY = "uniform", "popularity"
NEGATIVE_DISTRIBUTIONS = (UNIFORM, POPULARITY)


class NegativeSampler(nn.Module):
    """Draws items in [1, n_items): uniformly, or with probability counts[i] / counts.sum().

    counts: (n_items,) how often each item is a training target (:func:`training_target_counts`),
    or None for uniform. Kept as a cumulative sum (a buffer left out of the state dict), so that a
    draw is a binary search: O(log n_items) per negative and exact however many items
    (``torch.multinomial`` stops at 2^24 categories; LFM-1b has 31.6 M items).
    """

    def __init__(self, n_items, counts=None):
        super().__init__()
        self.n_items = n_items
        self.shared_seed = None  # :meth:`seed_shared`'s
        self.popularity = counts is not None
        if self.popularity:
            counts = torch.as_tensor(counts, dtype=torch.int64).clone()
            if counts.shape != (n_items,) or (counts < 0).any():
                raise ValueError(f"counts must be ({n_items},) non-negative, got {tuple(counts.shape)}")
            counts[0] = 0  # the padding id is never drawn
            if counts.sum() == 0:
                raise ValueError("popularity negatives need at least one counted item")
            self.register_buffer("cumulative", torch.cumsum(counts, 0), persistent=False)

    def draw(self, shape, device=None, generator=None):
        """Items of ``shape``, drawn independently (with replacement)."""
        if not self.popularity:
            return torch.randint(1, self.n_items, shape, device=device, generator=generator)
        total = int(self.cumulative[-1])
        r = torch.randint(0, total, shape, device=self.cumulative.device, generator=generator)
        return torch.searchsorted(self.cumulative, r, right=True).to(device)

    def per_state(self, positives, generator=None):
        """One item per positive, never equal to it: (N,) -> (N,)."""
        negatives = self.draw(positives.shape, positives.device, generator)
        clash = negatives == positives
        while clash.any():
            negatives[clash] = self.draw((int(clash.sum()),), positives.device, generator)
            clash = negatives == positives
        return negatives

    def seed_shared(self, seed):
        """Draw shared negatives (SSM, GBCE) from here on from a generator seeded with ``seed``
        at each draw (the trainer gives each batch a seed mixed from (seed, epoch, batch)): the ranks of a
        distributed run and a resumed run draw a batch's negatives as one uninterrupted process
        does, whatever else (dropout) used the global generator. None: the global generator."""
        self.shared_seed = seed

    def _shared_generator(self, device):
        if self.shared_seed is None:
            return None
        on = self.cumulative.device if self.popularity else torch.device(device)
        return torch.Generator(on).manual_seed(self.shared_seed)

    def log_q(self, ids):
        """log of each item's probability of being drawn: (...,) -> (...,) float. An item the
        counts never saw (only possible for a positive outside the training split) counts as once."""
        counts = self.cumulative[ids] - self.cumulative[ids - 1]
        return torch.log(counts.clamp(min=1).double() / float(self.cumulative[-1])).float()

    def for_loss(self, loss_type, targets, n_shared):
        """What :func:`~recbole_mamba.model.losses.next_item_loss` needs beside ``targets`` (N,):
        (negatives, log_q). BPR/BCE: one negative per state; SSM/GBCE: ``n_shared`` shared ones.
        ``log_q`` is (log q(targets), log q(negatives)) for SSM over popularity
        negatives, else None."""
        if loss_type in SAMPLED_LOSSES:
            return self.per_state(targets), None
        if loss_type not in SHARED_NEGATIVE_LOSSES:
            raise ValueError(f"loss_type {loss_type} takes no sampled negatives")
        negatives = self.draw((n_shared,), targets.device, self._shared_generator(targets.device))
        if self.popularity and loss_type == "SSM":
            return negatives, (self.log_q(targets), self.log_q(negatives))
        return negatives, None


def training_target_counts(dataset, n_items):
    """(n_items,) int64: how many times an epoch asks the model to predict each item. All-position
    rows (:class:`~recbole_mamba.data.WindowDataset`) predict every interaction of their window
    after its first, target included; RecBole's prefix rows predict their target."""
    from recbole_mamba.data.window_dataset import WINDOW_START

    rows = dataset.inter_feat
    if WINDOW_START not in rows:
        return torch.bincount(rows[dataset.iid_field], minlength=n_items)
    items = dataset.history_sources[getattr(dataset, f"{dataset.iid_field}_list_field")]  # time-sorted interactions
    first, length = rows[WINDOW_START], rows[dataset.item_list_length_field]
    cover = torch.zeros(len(items) + 1, dtype=torch.int64)  # +1 at a window's start, -1 after its end
    cover.index_add_(0, first + 1, torch.ones_like(first))
    cover.index_add_(0, first + length + 1, -torch.ones_like(first))
    predicted = torch.cumsum(cover, 0)[:-1]
    return torch.bincount(items, weights=predicted.double(), minlength=n_items).round().long()


def negative_sampler(config, dataset, n_items):
    """The sampler ``train_negatives_distribution`` asks for, counting ``dataset``'s training
    targets for popularity."""
    distribution = config["train_negatives_distribution"] or UNIFORM
    if distribution == UNIFORM:
        return NegativeSampler(n_items)
    if distribution != POPULARITY:
        raise ValueError(f"train_negatives_distribution must be one of {', '.join(NEGATIVE_DISTRIBUTIONS)}, "
                         f"got {distribution!r}")
    return NegativeSampler(n_items, training_target_counts(dataset, n_items))
