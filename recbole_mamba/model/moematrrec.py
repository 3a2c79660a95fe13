"""MoEMaTrRec: self-attention and Mamba experts mixed by a learned gate.

Reference: the hybrid of "State-Space Models for Large Sequence Modeling in Sequential
Recommendation" (public code alokamgnaneswarasai/MambaRec). That code applies self-attention
without a causal mask and pools the gate over the whole sequence, so its outputs see future items;
here attention uses SASRec's causal mask and the sequence gate pools causally.
"""

import torch
from torch import nn

from recbole.model.layers import FeedForward, MultiHeadAttention

from recbole_mamba.layers import ExpertGate, Mamba
from recbole_mamba.model.next_item import NextItemRecommender

EXPERTS = ("attention", "mamba")


class MoEMaTrLayer(nn.Module):
    """One layer: attention expert and Mamba expert on the same input, gated, then FFN.

    attention: RecBole's MultiHeadAttention (LayerNorm(x + dropout(attn(x)))); mamba: LayerNorm(x +
    dropout(mixer(x))); h = w_att * attention + w_mamba * mamba; out = FeedForward(h) (RecBole's,
    with its residual and LayerNorm). (B, L, H) -> (B, L, H), and the gate weights (B, L, 2).
    """

    def __init__(self, config, backend):
        super().__init__()
        hidden = config["hidden_size"]
        eps = config["layer_norm_eps"]
        self.attention = MultiHeadAttention(
            config["n_heads"], hidden, config["hidden_dropout_prob"], config["attn_dropout_prob"], eps
        )
        self.mixer = Mamba(
            hidden, d_state=config["d_state"], d_conv=config["d_conv"], expand=config["expand"],
            backend=backend,
        )
        self.mixer_dropout = nn.Dropout(config["hidden_dropout_prob"])
        self.mixer_norm = nn.LayerNorm(hidden, eps=eps)
        self.gate = ExpertGate(hidden, len(EXPERTS), config["gate_type"])
        self.ffn = FeedForward(
            hidden, config["inner_size"], config["hidden_dropout_prob"], config["hidden_act"], eps
        )

    def forward(self, x, attention_mask):
        attended = self.attention(x, attention_mask)
        mixed = self.mixer_norm(x + self.mixer_dropout(self.mixer(x)))
        weights = self.gate(x)
        h = weights[..., :1] * attended + weights[..., 1:] * mixed
        return self.ffn(h), weights


class MoEMaTrRec(NextItemRecommender):
    """item + position embedding -> LayerNorm -> dropout -> ``n_layers`` :class:`MoEMaTrLayer`.

    In eval mode the model accumulates each layer's mean gate weights over real (non-padding)
    positions; :meth:`diagnostics` returns them and :meth:`reset_diagnostics` clears them (the
    plugin's trainer logs them at each evaluation).
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        backend = self.mamba_backend(config)
        self.config_choice(config, "gate_type", ExpertGate.GATE_TYPES)
        self.position_embedding = nn.Embedding(self.max_seq_length, self.hidden_size)
        self.LayerNorm = nn.LayerNorm(self.hidden_size, eps=config["layer_norm_eps"])
        self.dropout = nn.Dropout(config["hidden_dropout_prob"])
        self.layers = nn.ModuleList(MoEMaTrLayer(config, backend) for _ in range(config["n_layers"]))
        self.init_weights()
        self.reset_diagnostics()

    def encode(self, item_seq):
        """(B, L) -> (B, L, H)."""
        positions = torch.arange(item_seq.size(1), device=item_seq.device)
        x = self.item_embedding(item_seq) + self.position_embedding(positions)
        x = self.dropout(self.LayerNorm(x))
        attention_mask = self.get_attention_mask(item_seq)  # causal, as SASRec
        real = (item_seq != 0).unsqueeze(-1).to(x.dtype)
        for i, layer in enumerate(self.layers):
            x, weights = layer(x, attention_mask)
            if not self.training:
                with torch.no_grad():
                    self._gate_sums[i] += (weights * real).sum((0, 1))
                    self._gate_counts[i] += real.sum()
        return x

    def reset_diagnostics(self):
        n = len(self.layers)
        self._gate_sums = [torch.zeros(len(EXPERTS)) for _ in range(n)]
        self._gate_counts = [torch.zeros(()) for _ in range(n)]

    def diagnostics(self):
        """{'gate/layer{i}/{expert}': mean weight} over the positions seen since the last reset."""
        out = {}
        for i, (sums, count) in enumerate(zip(self._gate_sums, self._gate_counts)):
            if count > 0:
                for name, value in zip(EXPERTS, (sums / count).tolist()):
                    out[f"gate/layer{i}/{name}"] = value
        return out
