"""The next-item loss at every position of a training row (``train_mode: all_positions``).

A row holds a user's history ``item_seq`` (B, L), right-padded, with length ``l`` and the target
that follows it. Position t < l-1 predicts ``item_seq[t+1]``, position l-1 predicts the target;
padding positions are ignored. The hidden state of every position comes from the model's
``encode`` (the plugin's models) or from a thin adapter over RecBole's SASRec and GRU4Rec.
"""

import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender import GRU4Rec, SASRec
from torch.utils.checkpoint import checkpoint

LOGITS_PER_CHUNK = 1 << 22  # CE: positions x items scored at once (float32: 16 MiB)


def _sasrec_hidden(model, item_seq):
    """SASRec.forward before its gather_indexes: (B, L, H)."""
    positions = torch.arange(item_seq.size(1), device=item_seq.device).unsqueeze(0)
    x = model.item_embedding(item_seq) + model.position_embedding(positions)
    x = model.dropout(model.LayerNorm(x))
    mask = model.get_attention_mask(item_seq)
    return model.trm_encoder(x, mask, output_all_encoded_layers=True)[-1]


def _gru4rec_hidden(model, item_seq):
    """GRU4Rec.forward before its gather_indexes: (B, L, embedding_size)."""
    output, _ = model.gru_layers(model.emb_dropout(model.item_embedding(item_seq)))
    return model.dense(output)


def per_position_hidden(model, item_seq):
    """(B, L) -> (B, L, H), the state at every position, causal."""
    if hasattr(model, "encode"):
        return model.encode(item_seq)
    if isinstance(model, SASRec):
        return _sasrec_hidden(model, item_seq)
    if isinstance(model, GRU4Rec):
        return _gru4rec_hidden(model, item_seq)
    raise NotImplementedError(
        f"train_mode all_positions needs per-position outputs: supported are the plugin's models, "
        f"SASRec and GRU4Rec, not {type(model).__name__}"
    )


def position_targets(item_seq, lengths, target):
    """(targets (B, L), mask (B, L)) for a row: the next item at each real position."""
    targets = torch.cat([item_seq[:, 1:], item_seq.new_zeros(item_seq.size(0), 1)], dim=1)
    targets.scatter_(1, (lengths - 1).unsqueeze(1), target.unsqueeze(1))
    mask = torch.arange(item_seq.size(1), device=item_seq.device) < lengths.unsqueeze(1)
    return targets, mask


def sample_negatives(positives, n_items, generator=None):
    """One uniform item in [1, n_items) per positive, never equal to it."""
    negatives = torch.randint(1, n_items, positives.shape, device=positives.device, generator=generator)
    clash = negatives == positives
    while clash.any():
        negatives[clash] = torch.randint(1, n_items, (int(clash.sum()),), device=positives.device,
                                         generator=generator)
        clash = negatives == positives
    return negatives


def _ce_sum(hidden, targets, items):
    return F.cross_entropy(hidden @ items.T, targets, reduction="sum")


def all_positions_loss(model, interaction, loss_type):
    """Mean next-item loss over every real position of the batch's rows.

    CE: softmax over all items, computed in chunks whose logits are recomputed in backward, so
    memory stays O(chunk x items). BPR/BCE: one uniformly sampled negative per position,
    never the positive.
    """
    item_seq = interaction[model.ITEM_SEQ]
    lengths = interaction[model.ITEM_SEQ_LEN]
    hidden = per_position_hidden(model, item_seq)
    targets, mask = position_targets(item_seq, lengths, interaction[model.POS_ITEM_ID])
    hidden, targets = hidden[mask], targets[mask]  # (N, H), (N,)
    items = model.item_embedding.weight
    if loss_type == "CE":
        chunk = max(1, LOGITS_PER_CHUNK // items.size(0))
        total = sum(
            checkpoint(_ce_sum, hidden[i:i + chunk], targets[i:i + chunk], items, use_reentrant=False)
            for i in range(0, len(targets), chunk)
        )
        return total / len(targets)
    negatives = sample_negatives(targets, items.size(0))
    pos = (hidden * items[targets]).sum(-1)
    neg = (hidden * items[negatives]).sum(-1)
    if loss_type == "BPR":
        return -F.logsigmoid(pos - neg).mean()
    if loss_type == "BCE":
        return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
                + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))) / 2
    raise ValueError(f"loss_type must be CE, BPR or BCE, got {loss_type!r}")
