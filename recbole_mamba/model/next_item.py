"""Shared next-item head for the plugin's sequential recommenders."""

from logging import getLogger

import torch
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.loss import BPRLoss

from recbole_mamba.layers import Mamba
from recbole_mamba.ops import resolve_backend, scan_cpu


class NextItemRecommender(SequentialRecommender):
    """A RecBole ``SequentialRecommender`` whose subclasses only define :meth:`encode`.

    ``encode(item_seq) -> (B, L, H)`` gives the hidden state at every position (causal: position t
    sees items 0..t). ``forward`` takes the state at the last real item, and the score of item i is
    the dot product with i's embedding (``self.item_embedding``, (n_items, hidden_size), created
    here), as in RecBole's SASRec.

    Losses: ``CE`` (softmax over all items), ``BPR`` and ``BCE`` (binary cross-entropy on the
    positive and one sampled negative, as RecMamba and SASRec.pytorch train); the plugin's config
    gives BPR and BCE one uniformly sampled negative per row unless ``train_neg_sample_args`` says
    otherwise.
    """

    LOSS_TYPES = ("CE", "BPR", "BCE")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.loss_type = config["loss_type"]
        if self.loss_type not in self.LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {self.LOSS_TYPES}, got {self.loss_type!r}")
        self.loss_fct = {
            "CE": nn.CrossEntropyLoss,
            "BPR": BPRLoss,
            "BCE": nn.BCEWithLogitsLoss,
        }[self.loss_type]()
        self.hidden_size = config["hidden_size"]
        self.initializer_range = config["initializer_range"]
        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)

    def mamba_backend(self, config):
        """The configured ``mamba_backend``, after logging what it resolves to on this device."""
        backend = config["mamba_backend"]
        resolved = resolve_backend(backend, config["device"])
        why = ""
        if resolved == "torch" and backend == "auto" and torch.device(config["device"]).type == "cpu":
            why = f" ({scan_cpu.unavailable_reason()})"
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
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        pos_items = interaction[self.POS_ITEM_ID]
        if self.loss_type in ("BPR", "BCE"):
            pos_score = (seq_output * self.item_embedding(pos_items)).sum(-1)
            neg_score = (seq_output * self.item_embedding(interaction[self.NEG_ITEM_ID])).sum(-1)
            if self.loss_type == "BPR":
                return self.loss_fct(pos_score, neg_score)
            scores = torch.cat([pos_score, neg_score])
            labels = torch.cat([torch.ones_like(pos_score), torch.zeros_like(neg_score)])
            return self.loss_fct(scores, labels)
        logits = torch.matmul(seq_output, self.item_embedding.weight.transpose(0, 1))
        return self.loss_fct(logits, pos_items)

    def predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (seq_output * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)  # (B,)

    def full_sort_predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return torch.matmul(seq_output, self.item_embedding.weight.transpose(0, 1))  # (B, n_items)
