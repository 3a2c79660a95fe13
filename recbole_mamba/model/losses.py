"""The next-item losses, in one place: last-position training (``calculate_loss``) and
all-position training (:mod:`recbole_mamba.trainer.all_positions`) both call
:func:`next_item_loss`.

The score of item i for a state h is ``h . E[i]`` (E: the item embedding table, as SASRec).

- ``CE``: softmax cross-entropy over all items, computed in chunks of states whose logits are
  recomputed in backward, so memory stays O(chunk x items) however many states there are.
- ``BPR``: ``-log sigmoid(pos - neg)`` with one negative per state.
- ``BCE``: binary cross-entropy of the positive (label 1) and of one negative (label 0), averaged
  (as RecMamba and SASRec.pytorch train).
"""

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

LOSS_TYPES = ("CE", "BPR", "BCE")
SAMPLED_LOSSES = ("BPR", "BCE")  # trained on the positive and one sampled negative per state
LOGITS_PER_CHUNK = 1 << 22  # CE: states x items scored at once (float32: 16 MiB)


def _ce_sum(hidden, targets, items):
    return F.cross_entropy(hidden @ items.T, targets, reduction="sum")


def next_item_loss(hidden, targets, items, loss_type, negatives=None):
    """Mean loss of N states.

    hidden: (N, H) states; targets: (N,) the next item of each; items: (n_items, H) the item
    embedding table; negatives: (N,) one sampled item per state, for BPR and BCE.
    """
    if loss_type == "CE":
        chunk = max(1, LOGITS_PER_CHUNK // items.size(0))
        total = sum(
            checkpoint(_ce_sum, hidden[i:i + chunk], targets[i:i + chunk], items, use_reentrant=False)
            for i in range(0, len(targets), chunk)
        )
        return total / len(targets)
    if loss_type not in SAMPLED_LOSSES:
        raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
    if negatives is None:
        raise ValueError(f"loss_type {loss_type} needs one sampled negative per state")
    pos = (hidden * items[targets]).sum(-1)
    neg = (hidden * items[negatives]).sum(-1)
    if loss_type == "BPR":
        return -F.logsigmoid(pos - neg).mean()
    return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
            + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))) / 2


def sample_negatives(positives, n_items, generator=None):
    """One uniform item in [1, n_items) per positive, never equal to it: (N,) -> (N,)."""
    negatives = torch.randint(1, n_items, positives.shape, device=positives.device, generator=generator)
    clash = negatives == positives
    while clash.any():
        negatives[clash] = torch.randint(1, n_items, (int(clash.sum()),), device=positives.device,
                                         generator=generator)
        clash = negatives == positives
    return negatives
