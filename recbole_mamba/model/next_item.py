"""Shared next-item head for the plugin's sequential recommenders."""

from logging import getLogger

import torch
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender

from recbole_mamba.errors import ConfigError
from recbole_mamba.layers import Mamba
from recbole_mamba.model.losses import LOSS_TYPES, SAMPLED_LOSSES, check_shared_negatives, next_item_loss
from recbole_mamba.model.negatives import negative_sampler
from recbole_mamba.ops import choose_backend


def last_position_loss(model, interaction):
    """The loss at each row's last position, for any model whose ``forward(seq, len)`` gives (B, H)
    states scored against ``model.item_embedding`` and that has ``loss_type``, ``train_negatives``,
    ``gbce_t`` and ``negative_sampler``: the plugin's models, and RecBole's SASRec and GRU4Rec as
    the trainer builds them (:func:`recbole_mamba.trainer.all_positions.build_model`). BPR and BCE
    read the negative RecBole's sampler put in each row."""
    seq_output = model.forward(interaction[model.ITEM_SEQ], interaction[model.ITEM_SEQ_LEN])
    targets = interaction[model.POS_ITEM_ID]
    negatives, log_q = None, None  # CE reads every item
    if model.loss_type in SAMPLED_LOSSES:
        negatives = interaction[model.NEG_ITEM_ID]
    elif model.loss_type != "CE":
        negatives, log_q = model.negative_sampler.for_loss(model.loss_type, targets, model.train_negatives)
    return next_item_loss(seq_output, targets, model.item_embedding.weight, model.loss_type, negatives,
                          model.gbce_t, sparse=model.item_embedding.sparse, log_q=log_q)


class NextItemRecommender(SequentialRecommender):
    """A RecBole ``SequentialRecommender`` whose subclasses only define :meth:`encode`.

    ``encode(item_seq) -> (B, L, H)`` gives the hidden state at every position (causal: position t
    sees items 0..t). ``forward`` takes the state at the last real item, and the score of item i is
    the dot product with i's embedding (``self.item_embedding``, (n_items, hidden_size), created
    here), as in RecBole's SASRec.

    Losses (:mod:`recbole_mamba.model.losses`): ``CE`` (softmax over all items), ``BPR`` and
    ``BCE`` (on the positive and one sampled negative, as RecMamba and SASRec.pytorch train; the
    plugin's config gives them one uniformly sampled negative per row unless
    ``train_neg_sample_args`` says otherwise), ``SSM`` and ``GBCE`` (sampled softmax and gSASRec's
    gBCE over ``train_negatives`` items shared by a batch, drawn by ``negative_sampler``:
    uniformly or by popularity, :mod:`recbole_mamba.model.negatives`).
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.loss_type = self.config_choice(config, "loss_type", LOSS_TYPES)
        self.hidden_size = config["hidden_size"]
        self.initializer_range = config["initializer_range"]
        self.train_negatives = config["train_negatives"]
        self.gbce_t = config["gbce_t"]
        check_shared_negatives(self.loss_type, self.train_negatives)
        self.negative_sampler = negative_sampler(config, dataset, self.n_items)
        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)

    def config_choice(self, config, key, choices):
        """``config[key]``, which must be one of ``choices`` (else a :class:`ConfigError`)."""
        value = config[key]
        if value not in choices:
            raise ConfigError(f"{type(self).__name__} takes {key} {' | '.join(map(str, choices))}; got {value!r}")
        return value

    def mamba_backend(self, config):
        """The configured ``mamba_backend``, after logging what it resolves to on this device
        (and, for ``auto``, why faster backends were passed over)."""
        backend = config["mamba_backend"]
        resolved, skipped = choose_backend(backend, config["device"])
        why = f" ({'; '.join(skipped)})" if skipped else ""
        getLogger().info(f"{type(self).__name__}: mamba_backend={backend} -> {resolved}{why}")
        return backend

    def _init_weights(self, module):
        """RecBole's initialisation, as SASRec's (``initializer_range``)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def init_weights(self):
        """RecBole's initialisation for every module, then mamba-ssm's own for each mixer."""
        self.apply(self._init_weights)
        for module in self.modules():
            if isinstance(module, Mamba):
                module.reset_parameters()

    def encode(self, item_seq):
        """item_seq: (B, L) item ids, right-padded with 0 -> (B, L, H)."""
        raise NotImplementedError

    def forward(self, item_seq, item_seq_len):
        """(B, L), (B,) -> (B, H): the state at each sequence's last item."""
        return self.gather_indexes(self.encode(item_seq), item_seq_len - 1)

    def calculate_loss(self, interaction):
        """The loss at each row's last position (``train_mode: prefix``)."""
        return last_position_loss(self, interaction)

    def predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (seq_output * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)  # (B,)

    def full_sort_predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return torch.matmul(seq_output, self.item_embedding.weight.transpose(0, 1))  # (B, n_items)
