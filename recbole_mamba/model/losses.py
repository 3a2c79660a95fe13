"""The next-item losses, in one place: last-position training (``calculate_loss``) and
all-position training (:mod:`recbole_mamba.trainer.all_positions`) both call
:func:`next_item_loss`.

The score of item i for a state h is ``h . E[i]`` (E: the item embedding table, as SASRec).

- ``CE``: exact softmax cross-entropy over all items, computed in chunks of items whose logits are
  recomputed in backward (:mod:`recbole_mamba.model.chunked_ce`), so memory stays O(states x
  chunk) however large the catalogue.
- ``BPR``: ``-log sigmoid(pos - neg)`` with one negative per state.
- ``BCE``: binary cross-entropy of the positive (label 1) and of one negative (label 0), averaged
  (as RecMamba and SASRec.pytorch train).
- ``SSM``: sampled softmax, cross-entropy over the positive and ``train_negatives`` items drawn
  once per batch and shared by its states (for catalogues too large for full CE); uniform, or by
  popularity with the log-Q correction (:mod:`recbole_mamba.model.negatives`).
- ``GBCE``: gSASRec's generalised BCE (Petrov & Macdonald, RecSys 2023) over the same shared
  negatives: the positive's probability is raised to beta = alpha (t (1 - 1/alpha) + 1/alpha),
  alpha = negatives / (items - 1), t = ``gbce_t``, which undoes the overconfidence that BCE with
  few negatives teaches. With both, a negative that is a state's own positive is left out for it.
"""

import torch
import torch.nn.functional as F

from recbole_mamba.errors import ConfigError
from recbole_mamba.model.chunked_ce import cross_entropy_sum

LOSS_TYPES = ("CE", "BPR", "BCE", "SSM", "GBCE")
SAMPLED_LOSSES = ("BPR", "BCE")  # trained on the positive and one sampled negative per state
SHARED_NEGATIVE_LOSSES = ("SSM", "GBCE")  # trained on the positive and a batch's shared negatives

def _rows(items, ids, sparse):
    """``items[ids]``; with ``sparse`` its gradient is a sparse tensor of the rows read."""
    return F.embedding(ids, items, sparse=sparse)


def _shared_negatives_loss(hidden, targets, items, loss_type, negatives, gbce_t, sparse, log_q):
    pos = (hidden * _rows(items, targets, sparse)).sum(-1)  # (N,)
    neg = hidden @ _rows(items, negatives, sparse).T  # (N, k)
    if log_q is not None:
        if loss_type != "SSM":
            raise ValueError(f"the log-Q correction is for loss_type SSM, not {loss_type}")
        pos, neg = pos - log_q[0], neg - log_q[1]
    own = negatives.unsqueeze(0) == targets.unsqueeze(1)  # a state's positive among the negatives
    if loss_type == "SSM":
        logits = torch.cat([pos.unsqueeze(1), neg.masked_fill(own, float("-inf"))], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(targets))
    k = negatives.numel()
    alpha = k / max(1, items.size(0) - 2)  # items.size(0) - 1 real items (0 pads), less the positive
    beta = alpha * (gbce_t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
    positive_terms = -beta * F.logsigmoid(pos)  # BCE of sigmoid(pos) ** beta with label 1
    negative_terms = -F.logsigmoid(-neg).masked_fill(own, 0.0)
    return (positive_terms.sum() + negative_terms.sum()) / (pos.numel() + (~own).sum())


def next_item_loss(hidden, targets, items, loss_type, negatives=None, gbce_t=0.75, sparse=False, log_q=None):
    """Mean loss of N states.

    hidden: (N, H) states; targets: (N,) the next item of each; items: (n_items, H) the item
    embedding table; negatives: (N,) one sampled item per state, for BPR and BCE, or (k,) items
    shared by all states, for SSM and GBCE; gbce_t: GBCE's calibration t in [0, 1]; sparse: the
    table's gradient as a sparse tensor of the rows read (not for CE, which reads every row);
    log_q: for SSM over non-uniform negatives, (log q(targets) (N,), log q(negatives) (k,)), the
    log probabilities of drawing them, subtracted from their logits (the log-Q correction,
    :mod:`recbole_mamba.model.negatives`).
    """
    if loss_type == "CE":
        if sparse:
            raise ValueError("loss_type CE reads every item: its gradient cannot be sparse")
        return cross_entropy_sum(hidden, items, targets) / len(targets)
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")
    if loss_type in SHARED_NEGATIVE_LOSSES:
        if negatives is None or negatives.dim() != 1:
            raise ValueError(f"loss_type {loss_type} needs a 1-d tensor of shared negatives")
        return _shared_negatives_loss(hidden, targets, items, loss_type, negatives, gbce_t, sparse, log_q)
    if negatives is None:
        raise ValueError(f"loss_type {loss_type} needs one sampled negative per state")
    pos = (hidden * _rows(items, targets, sparse)).sum(-1)
    neg = (hidden * _rows(items, negatives, sparse)).sum(-1)
    if loss_type == "BPR":
        return -F.logsigmoid(pos - neg).mean()
    return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
            + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))) / 2


def check_shared_negatives(loss_type, train_negatives):
    """SSM and GBCE need ``train_negatives`` >= 1 (a :class:`ConfigError` otherwise)."""
    if loss_type in SHARED_NEGATIVE_LOSSES and not (train_negatives or 0) >= 1:
        raise ConfigError(f"loss_type {loss_type} needs train_negatives >= 1, got {train_negatives!r}")
