"""The next-item loss at every position of a training row (``train_mode: all_positions``).

A row holds a user's history ``item_seq`` (B, L), right-padded, with length ``l`` and the target
that follows it. Position t < l-1 predicts ``item_seq[t+1]``, position l-1 predicts the target;
padding positions are ignored. The hidden state of every position comes from the model's
``encode`` (the plugin's models) or from a thin adapter over a RecBole model
(:data:`RECBOLE_ADAPTERS`); the loss itself is :func:`recbole_mamba.model.losses.next_item_loss`,
the same as last-position training.
"""

import torch

from recbole_mamba.model import losses
from recbole_mamba.model.losses import next_item_loss
from recbole_mamba.registry import recbole_sequential_package


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


# RecBole models trained on all positions: class -> (model, item_seq (B, L)) -> (B, L, H).
# Each copies the model's forward up to its last-position gather; tests check that its last
# position equals the model's own forward.
_seq = recbole_sequential_package()
RECBOLE_ADAPTERS = {_seq.SASRec: _sasrec_hidden, _seq.GRU4Rec: _gru4rec_hidden}


def supports_all_positions(model_class):
    """Whether ``model_class`` gives per-position states: the plugin's models (``encode``) and the
    RecBole models of :data:`RECBOLE_ADAPTERS`."""
    return hasattr(model_class, "encode") or model_class in RECBOLE_ADAPTERS


def scores_by_dot_product(model_class):
    """Whether ``model_class`` scores item i as ``forward(seq, len) . item_embedding.weight[i]`` in
    both ``predict`` and ``full_sort_predict``: the plugin's models and the RecBole models of
    :data:`RECBOLE_ADAPTERS`."""
    from recbole_mamba.model.next_item import NextItemRecommender

    return issubclass(model_class, NextItemRecommender) or model_class in RECBOLE_ADAPTERS


def per_position_hidden(model, item_seq):
    """(B, L) -> (B, L, H), the state at every position, causal."""
    if hasattr(model, "encode"):
        return model.encode(item_seq)
    adapter = RECBOLE_ADAPTERS.get(type(model))
    if adapter is None:
        raise NotImplementedError(f"no per-position states for {type(model).__name__}")
    return adapter(model, item_seq)


def position_targets(item_seq, lengths, target):
    """(targets (B, L), mask (B, L)) for a row: the next item at each real position."""
    targets = torch.cat([item_seq[:, 1:], item_seq.new_zeros(item_seq.size(0), 1)], dim=1)
    targets.scatter_(1, (lengths - 1).unsqueeze(1), target.unsqueeze(1))
    mask = torch.arange(item_seq.size(1), device=item_seq.device) < lengths.unsqueeze(1)
    return targets, mask


def all_positions_loss(model, interaction, loss_type):
    """Mean next-item loss over every real position of the batch's rows; BPR and BCE get one
    uniformly sampled negative per position, never the positive; SSM and GBCE the model's
    ``train_negatives`` shared by the batch."""
    item_seq = interaction[model.ITEM_SEQ]
    lengths = interaction[model.ITEM_SEQ_LEN]
    hidden = per_position_hidden(model, item_seq)
    targets, mask = position_targets(item_seq, lengths, interaction[model.POS_ITEM_ID])
    hidden, targets = hidden[mask], targets[mask]  # (N, H), (N,)
    items = model.item_embedding.weight
    negatives = losses.training_negatives(loss_type, targets, items.size(0), getattr(model, "train_negatives", 0))
    return next_item_loss(hidden, targets, items, loss_type, negatives, getattr(model, "gbce_t", None))
