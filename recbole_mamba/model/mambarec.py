"""MambaRec: the reference study's "MambaRec*", Mamba in place of the Transformer block.

Reference: "State-Space Models for Large Sequence Modeling in Sequential Recommendation"
(public code alokamgnaneswarasai/MambaRec); block layout as in Mamba4Rec (Liu et al. 2024).
"""

from logging import getLogger

import torch
from torch import nn

from recbole_mamba.layers import MambaBlock
from recbole_mamba.model.next_item import NextItemRecommender
from recbole_mamba.ops import resolve_backend


class MambaRec(NextItemRecommender):
    """item embedding (+ optional position embedding) -> dropout -> LayerNorm -> ``n_layers``
    :class:`~recbole_mamba.layers.MambaBlock` -> dot product with item embeddings."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.hidden_size = config["hidden_size"]
        self.n_layers = config["n_layers"]
        self.dropout_prob = config["dropout_prob"]
        self.initializer_range = config["initializer_range"]
        backend = config["mamba_backend"]
        getLogger().info(
            f"MambaRec: mamba_backend={backend} -> {resolve_backend(backend, config['device'])}"
        )

        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
        self.position_embedding = (
            nn.Embedding(self.max_seq_length, self.hidden_size)
            if config["use_position_embedding"]
            else None
        )
        self.dropout = nn.Dropout(self.dropout_prob)
        self.LayerNorm = nn.LayerNorm(self.hidden_size, eps=config["layer_norm_eps"])
        residual = config["residual"] if config["residual"] is not None else True
        if not residual and self.n_layers > 1:
            raise ValueError("residual: False is only supported with n_layers: 1")
        self.blocks = nn.ModuleList(
            MambaBlock(
                self.hidden_size,
                d_state=config["d_state"],
                d_conv=config["d_conv"],
                expand=config["expand"],
                dropout=self.dropout_prob,
                block_type=config["block_type"],
                residual=residual,
                inner_size=config["inner_size"],
                hidden_act=config["hidden_act"],
                layer_norm_eps=config["layer_norm_eps"],
                backend=backend,
            )
            for _ in range(self.n_layers)
        )
        self.apply(self._init_weights)
        for block in self.blocks:
            block.mixer.reset_parameters()  # keep mamba-ssm's own initialisation of the mixer

    def _init_weights(self, module):
        """RecBole's initialisation (as SASRec); the mixers are re-initialised afterwards."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def encode(self, item_seq):
        """(B, L) -> (B, L, H)."""
        x = self.item_embedding(item_seq)
        if self.position_embedding is not None:
            positions = torch.arange(item_seq.size(1), device=item_seq.device)
            x = x + self.position_embedding(positions)
        x = self.LayerNorm(self.dropout(x))
        for block in self.blocks:
            x = block(x)
        return x
