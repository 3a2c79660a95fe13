"""Residual blocks built around the Mamba mixer; pure PyTorch."""

from torch import nn

from recbole_mamba.layers.mamba import Mamba

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class PointWiseFeedForward(nn.Module):
    """Position-wise FFN: Linear(d, inner) -> act -> dropout -> Linear(inner, d); (B, L, d) -> (B, L, d)."""

    def __init__(self, d_model, inner_size, dropout, hidden_act="gelu"):
        super().__init__()
        if hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(_ACTIVATIONS)}, got {hidden_act!r}")
        self.net = nn.Sequential(
            nn.Linear(d_model, inner_size),
            _ACTIVATIONS[hidden_act](),
            nn.Dropout(dropout),
            nn.Linear(inner_size, d_model),
        )

    def forward(self, x):
        return self.net(x)


class MambaBlock(nn.Module):
    """One layer of MambaRec; (B, L, d_model) -> (B, L, d_model), causal.

    ``block_type='mamba'``: mixer -> dropout -> (+ residual) -> LayerNorm (Mamba replaces the whole
    Transformer block). ``block_type='mamba_ffn'``: the same, then FFN -> dropout -> + residual ->
    LayerNorm (Mamba replaces only self-attention).
    """

    BLOCK_TYPES = ("mamba", "mamba_ffn")

    def __init__(
        self,
        d_model,
        d_state,
        d_conv,
        expand,
        dropout,
        block_type="mamba",
        residual=True,
        inner_size=None,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        backend="auto",
    ):
        super().__init__()
        if block_type not in self.BLOCK_TYPES:
            raise ValueError(f"block_type must be one of {self.BLOCK_TYPES}, got {block_type!r}")
        self.residual = residual
        self.mixer = Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.ffn = None
        if block_type == "mamba_ffn":
            self.ffn = PointWiseFeedForward(d_model, inner_size or 4 * d_model, dropout, hidden_act)
            self.ffn_dropout = nn.Dropout(dropout)
            self.ffn_norm = nn.LayerNorm(d_model, eps=layer_norm_eps)

    def forward(self, x):
        h = self.dropout(self.mixer(x))
        return self._after_mixer(h, x)

    def _after_mixer(self, h, x):
        x = self.norm(h + x if self.residual else h)
        if self.ffn is not None:
            x = self.ffn_norm(self.ffn_dropout(self.ffn(x)) + x)
        return x

    def step(self, x, conv_state, ssm_state):
        """One time step for recurrent inference: x (batch, d_model) and the mixer's states from
        ``mixer.allocate_inference_cache`` (updated in place) -> (batch, d_model)."""
        h, _, _ = self.mixer.step(x.unsqueeze(1), conv_state, ssm_state)
        return self._after_mixer(self.dropout(h.squeeze(1)), x)
