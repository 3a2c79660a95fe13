"""MambaRec: the reference study's "MambaRec*", Mamba in place of the Transformer block.

Reference: "State-Space Models for Large Sequence Modeling in Sequential Recommendation"
(public code alokamgnaneswarasai/MambaRec); block layout as in Mamba4Rec (Liu et al. 2024).
"""

import torch
from torch import nn

from recbole_mamba.errors import ConfigError
from recbole_mamba.layers import MambaBlock
from recbole_mamba.model.next_item import NextItemRecommender


class MambaRec(NextItemRecommender):
    """item embedding (+ optional position embedding) -> dropout -> LayerNorm -> ``n_layers``
    :class:`~recbole_mamba.layers.MambaBlock` -> dot product with item embeddings."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.n_layers = config["n_layers"]
        self.dropout_prob = config["dropout_prob"]
        backend = self.mamba_backend(config)

        self.position_embedding = (
            nn.Embedding(self.max_seq_length, self.hidden_size)
            if config["use_position_embedding"]
            else None
        )
        self.dropout = nn.Dropout(self.dropout_prob)
        self.LayerNorm = nn.LayerNorm(self.hidden_size, eps=config["layer_norm_eps"])
        residual = config["residual"] if config["residual"] is not None else True
        if not residual and self.n_layers > 1:
            raise ConfigError("residual: False is only supported with n_layers: 1")
        block_type = self.config_choice(config, "block_type", MambaBlock.BLOCK_TYPES)
        self.blocks = nn.ModuleList(
            MambaBlock(
                self.hidden_size,
                d_state=config["d_state"],
                d_conv=config["d_conv"],
                expand=config["expand"],
                dropout=self.dropout_prob,
                block_type=block_type,
                residual=residual,
                inner_size=config["inner_size"],
                hidden_act=config["hidden_act"],
                layer_norm_eps=config["layer_norm_eps"],
                backend=backend,
            )
            for _ in range(self.n_layers)
        )
        self.init_weights()

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
