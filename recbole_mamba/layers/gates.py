"""Gating networks that mix experts per position; pure PyTorch, causal."""

import torch
from torch import nn


class ExpertGate(nn.Module):
    """(B, L, d_model) -> (B, L, n_experts) softmax weights.

    ``gate_type='token'``: from each position's own hidden state. ``gate_type='sequence'``: one
    weight per sequence as in the reference study, but pooled causally — position t uses the mean
    hidden state of positions 0..t — so no position ever sees the future.
    """

    GATE_TYPES = ("token", "sequence")

    def __init__(self, d_model, n_experts, gate_type="token"):
        super().__init__()
        if gate_type not in self.GATE_TYPES:
            raise ValueError(f"gate_type must be one of {self.GATE_TYPES}, got {gate_type!r}")
        self.gate_type = gate_type
        self.proj = nn.Linear(d_model, n_experts)

    def forward(self, x):
        if self.gate_type == "sequence":
            counts = torch.arange(1, x.size(1) + 1, device=x.device, dtype=x.dtype)
            x = x.cumsum(dim=1) / counts[:, None]  # running mean over positions 0..t
        return torch.softmax(self.proj(x), dim=-1)
