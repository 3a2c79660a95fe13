"""RecMamba: one Mamba layer over item and position embeddings.

Reference: Yang et al. 2024, "Uncovering Selective State Space Model's Capabilities in Lifelong
Sequential Recommendation" (public code nancheng58/RecMamba): item embedding x sqrt(d) + learnable
position embedding, dropout, a single Mamba mixer; no LayerNorm, residual or FFN; trained with
binary cross-entropy on the positive and one sampled negative (``loss_type: BCE``).
"""

import math

import torch
from torch import nn

from recbole_mamba.layers import Mamba
from recbole_mamba.model.next_item import NextItemRecommender


class RecMamba(NextItemRecommender):
    """(B, L) item ids -> (B, L, H): emb * sqrt(H) + pos -> dropout -> Mamba."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        backend = self.mamba_backend(config)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.dropout = nn.Dropout(config["dropout_prob"])
        self.mixer = Mamba(
            self.hidden_size,
            d_state=config["d_state"],
            d_conv=config["d_conv"],
            expand=config["expand"],
            backend=backend,
        )
        nn.init.normal_(self.item_embedding.weight, std=self.initializer_range)
        nn.init.normal_(self.position_embedding.weight, std=self.initializer_range)

    def encode(self, item_seq):
        """(B, L) -> (B, L, H)."""
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        x = self.item_embedding(item_seq) * math.sqrt(self.hidden_size)
        x = self.dropout(x + self.position_embedding(positions))
        return self.mixer(x)
