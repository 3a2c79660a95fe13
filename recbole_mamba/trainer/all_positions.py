"""The next-item loss at every position of a training row (``train_mode: all_positions``).

A row holds a user's history ``item_seq`` (B, L), right-padded, with length ``l`` and the target
that follows it. Position t < l-1 predicts ``item_seq[t+1]``, position l-1 predicts the target;
padding positions are ignored. The hidden state of every position comes from the model's
``encode`` (the plugin's models) or from a thin adapter over a RecBole model
(:data:`RECBOLE_ADAPTERS`); the loss itself is :func:`recbole_mamba.model.losses.next_item_loss`,
the same as last-position training.
"""

import ast
import re
from functools import partial
from pathlib import Path

import torch
import yaml

from recbole_mamba.errors import ConfigError
from recbole_mamba.model.losses import LOSS_TYPES, check_shared_negatives, next_item_loss
from recbole_mamba.model.negatives import negative_sampler
from recbole_mamba.registry import recbole_sequential_package
from recbole_mamba.train_modes import ALL_POSITIONS


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


RECBOLE_LOSS_TYPES = ("CE", "BPR")  # what SASRec's and GRU4Rec's constructors accept


def _refused_option(model_name, config, message):
    """(option, values) a RecBole constructor's "Make sure 'key' in [...]!" refused, or None. The
    option is the named key, unless the model's yaml default for it is not among the values
    (RecBole names ``loss_type`` for HGN's ``pooling_type``): then the key whose default is."""
    match = re.search(r"Make sure '(\w+)' in (\[.*\])", message)
    if match is None:
        return None
    key, values = match.group(1), ast.literal_eval(match.group(2))
    path = Path(recbole_sequential_package().__file__).parents[2] / "properties" / "model" / f"{model_name}.yaml"
    defaults = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    if key in defaults and defaults[key] not in values:
        key = next((k for k, v in defaults.items() if v in values and config[k] not in values), None)
    return (key, values) if key is not None else None


def _construct(model_class, config, dataset):
    """``model_class(config, dataset)``; where RecBole's constructor refuses the configuration, a
    one-line :class:`ConfigError` naming the model, the option and the values it takes."""
    if not model_class.__module__.startswith("recbole."):
        return model_class(config, dataset)
    try:
        return model_class(config, dataset)
    except (NotImplementedError, AssertionError, ValueError) as e:
        name, message = model_class.__name__, (str(e).splitlines() or [type(e).__name__])[0]
        refused = _refused_option(name, config, message)
        if refused is None:
            raise ConfigError(f"{name} refuses its configuration: {message}") from None
        key, values = refused
        raise ConfigError(f"{name} takes {key} {' | '.join(map(str, values))}; got {config[key]!r}") from None


def build_model(model_class, config, dataset):
    """``model_class(config, dataset)``, its item table giving sparse gradients where
    ``item_table_updates`` is ``sparse`` (:mod:`recbole_mamba.trainer.optimizers`). A RecBole
    model of :data:`RECBOLE_ADAPTERS` takes every
    loss of :data:`~recbole_mamba.model.losses.LOSS_TYPES`: its constructor is shown CE where it
    would refuse the plugin's others (BCE, SSM, GBCE), and the model gets ``loss_type``,
    ``train_negatives``, ``gbce_t`` and a ``negative_sampler`` for the plugin's losses, which the
    trainer trains it with
    (:func:`recbole_mamba.model.next_item.last_position_loss`, :func:`all_positions_loss`)."""
    if model_class not in RECBOLE_ADAPTERS:
        return _table_updates(_construct(model_class, config, dataset), config)
    loss_type = config["loss_type"]
    if loss_type not in LOSS_TYPES:
        raise ConfigError(f"{model_class.__name__} takes loss_type {' | '.join(LOSS_TYPES)}; got {loss_type!r}")
    check_shared_negatives(loss_type, config["train_negatives"])
    if loss_type in RECBOLE_LOSS_TYPES:
        model = _construct(model_class, config, dataset)
    else:
        config["loss_type"] = "CE"
        try:
            model = _construct(model_class, config, dataset)
        finally:
            config["loss_type"] = loss_type
    model.loss_type, model.train_negatives, model.gbce_t = loss_type, config["train_negatives"], config["gbce_t"]
    model.negative_sampler = negative_sampler(config, dataset, model.n_items)
    return _table_updates(model, config)


def _table_updates(model, config):
    """``model``, with sparse item-table gradients where ``item_table_updates: sparse``."""
    if config["item_table_updates"] == "sparse":
        model.item_embedding.sparse = True
    return model


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
    sampled negative per position, never the positive; SSM and GBCE the model's
    ``train_negatives`` shared by the batch; both drawn by the model's ``negative_sampler``."""
    item_seq = interaction[model.ITEM_SEQ]
    lengths = interaction[model.ITEM_SEQ_LEN]
    hidden = per_position_hidden(model, item_seq)
    targets, mask = position_targets(item_seq, lengths, interaction[model.POS_ITEM_ID])
    hidden, targets = hidden[mask], targets[mask]  # (N, H), (N,)
    negatives, log_q = None, None  # CE reads every item
    if loss_type != "CE":
        negatives, log_q = model.negative_sampler.for_loss(loss_type, targets, getattr(model, "train_negatives", 0))
    return next_item_loss(hidden, targets, model.item_embedding.weight, loss_type, negatives,
                          getattr(model, "gbce_t", None), sparse=model.item_embedding.sparse, log_q=log_q)


def training_loss(config, model):
    """``interaction -> loss`` as the trainer trains ``model``: every position
    (``train_mode: all_positions``); the last position with the plugin's losses for the RecBole
    models of :data:`RECBOLE_ADAPTERS`; else the model's own ``calculate_loss``."""
    from recbole_mamba.model.next_item import last_position_loss

    if config["train_mode"] == ALL_POSITIONS:
        return partial(all_positions_loss, model, loss_type=config["loss_type"])
    if type(model) in RECBOLE_ADAPTERS:
        return partial(last_position_loss, model)
    return model.calculate_loss
