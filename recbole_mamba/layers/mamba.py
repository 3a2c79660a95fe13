"""Mamba mixer with exactly the parameters of ``mamba_ssm.modules.mamba_simple.Mamba``.

A state_dict saved from mamba-ssm loads here and the other way round. The computation is the same:
in_proj -> (x, z); x -> causal depthwise conv -> SiLU -> x_proj -> (dt, B, C); dt -> dt_proj ->
softplus(dt + dt_proj.bias); selective scan with A = -exp(A_log) and skip D; gate with SiLU(z);
out_proj. The scan runs on the backend chosen by ``backend`` (see :mod:`recbole_mamba.ops.scan`),
resolved once per device the module runs on.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole_mamba.ops import BACKENDS, resolve_backend, scan_cpu
from recbole_mamba.ops.causal_conv import causal_conv1d_cpu, causal_conv1d_ref

_KERNEL_DTYPES = (torch.float32, torch.float64)


class Mamba(nn.Module):
    """(batch, L, d_model) -> (batch, L, d_model), causal along L."""

    def __init__(
        self,
        d_model,
        d_state=16,
        d_conv=4,
        expand=2,
        dt_rank="auto",
        dt_min=0.001,
        dt_max=0.1,
        dt_init="random",
        dt_scale=1.0,
        dt_init_floor=1e-4,
        conv_bias=True,
        bias=False,
        backend="auto",
    ):
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.dt_min, self.dt_max, self.dt_init = dt_min, dt_max, dt_init
        self.dt_scale, self.dt_init_floor = dt_scale, dt_init_floor
        self.backend = backend
        self._resolved = {}  # (backend, device type) -> the concrete backend's name

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        # mamba-ssm's markers: optimisers and model initialisers leave these alone
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.dt_proj.bias._no_reinit = True
        self.reset_parameters()

    def reset_parameters(self):
        """mamba-ssm's initialisation: default Linear/Conv1d init, dt_proj weight uniform (or
        constant) with std dt_rank^-0.5 * dt_scale, dt_proj.bias = softplus^-1(dt) for dt
        log-uniform in [dt_min, dt_max], A_log = log(1..d_state) (S4D-real), D = 1."""
        for module in (self.in_proj, self.conv1d, self.x_proj, self.dt_proj, self.out_proj):
            module.reset_parameters()
        dt_init_std = self.dt_rank**-0.5 * self.dt_scale
        if self.dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        elif self.dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant', got {self.dt_init!r}")
        log_min, log_max = math.log(self.dt_min), math.log(self.dt_max)
        dt = torch.exp(torch.rand(self.d_inner) * (log_max - log_min) + log_min)
        dt = dt.clamp(min=self.dt_init_floor)
        inv_dt = dt + torch.log(-torch.expm1(-dt))
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_dt)
            self.A_log.copy_(torch.log(A))
            self.D.fill_(1.0)

    def _ssm_inputs(self, x):
        """x: (batch, L, d_inner) after conv and SiLU -> dt (batch, L, d_inner) before bias,
        B and C (batch, L, d_state)."""
        x_dbl = self.x_proj(x)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def _backend_on(self, device):
        """The concrete backend of ``self.backend`` on ``device``, resolved at its first use there."""
        key = (self.backend, device.type)
        if key not in self._resolved:
            self._resolved[key] = resolve_backend(self.backend, device)
        return self._resolved[key]

    def _causal_conv(self, x):
        """conv1d over time, causal: (batch, L, d_inner) -> (batch, L, d_inner); on the ``cpu``
        backend the compiled kernel, which reads time-major rows, else ``F.conv1d``."""
        weight = self.conv1d.weight[:, 0, :]  # (d_inner, d_conv)
        if self._backend_on(x.device) == "cpu" and x.dtype == weight.dtype and x.dtype in _KERNEL_DTYPES:
            return causal_conv1d_cpu(x, weight, self.conv1d.bias)
        return causal_conv1d_ref(x, weight, self.conv1d.bias)

    def _scan(self, device):
        return BACKENDS[self._backend_on(device)].scan

    def forward(self, hidden_states):
        """hidden_states: (batch, L, d_model) -> (batch, L, d_model)."""
        # in_proj's two halves as two products: their gradients need no (batch, L, 2*d_inner) concat
        weight_x, weight_z = self.in_proj.weight.chunk(2, dim=0)
        bias_x, bias_z = self.in_proj.bias.chunk(2) if self.in_proj.bias is not None else (None, None)
        x = F.linear(hidden_states, weight_x, bias_x)  # (batch, L, d_inner)
        z = F.linear(hidden_states, weight_z, bias_z)
        x = F.silu(self._causal_conv(x)).contiguous()  # time-major (batch, L, d_inner)
        dt, B, C = self._ssm_inputs(x)
        # the scan takes mamba-ssm's (batch, channels, L) layout: pass views, no copies
        y, _ = self._scan(x.device)(
            x.transpose(1, 2),
            dt.transpose(1, 2),
            -torch.exp(self.A_log.float()),
            B.transpose(1, 2),
            C.transpose(1, 2),
            self.D.float(),
            z.transpose(1, 2),
            self.dt_proj.bias.float(),
            True,  # delta_softplus
        )
        return self.out_proj(y.transpose(1, 2))

    def allocate_inference_cache(self, batch_size, max_seqlen, dtype=None, **kwargs):
        """Zero states for :meth:`step`, with mamba-ssm's signature (``max_seqlen`` is unused: the
        states do not grow with the sequence): conv_state (batch, d_inner, d_conv) in the conv's
        dtype and ssm_state (batch, d_inner, d_state) in dt_proj's, unless ``dtype`` is given."""
        device = self.out_proj.weight.device
        conv_dtype = self.conv1d.weight.dtype if dtype is None else dtype
        ssm_dtype = self.dt_proj.weight.dtype if dtype is None else dtype
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, device=device, dtype=conv_dtype)
        ssm_state = torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=ssm_dtype)
        return conv_state, ssm_state

    def _fused_step(self, x, conv_state, ssm_state):
        """Whether the ``cpu`` backend's one-call step applies: float32 CPU tensors, no gradient."""
        tensors = (x, conv_state, ssm_state, self.A_log, self.x_proj.weight)
        return (
            not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            and all(t.dtype == torch.float32 for t in tensors)
            and conv_state.is_contiguous() and ssm_state.is_contiguous()
            and self._backend_on(x.device) == "cpu"
        )

    def _check_step_args(self, hidden_states, conv_state, ssm_state):
        batch = hidden_states.shape[0] if hidden_states.dim() == 3 else "batch"
        expected = {
            "hidden_states": (batch, 1, self.d_model),
            "conv_state": (batch, self.d_inner, self.d_conv),
            "ssm_state": (batch, self.d_inner, self.d_state),
        }
        device = self.out_proj.weight.device
        for name, t in zip(expected, (hidden_states, conv_state, ssm_state), strict=True):
            if tuple(t.shape) != expected[name]:
                raise ValueError(f"Mamba.step: {name} has shape {tuple(t.shape)}, expected {expected[name]} "
                                 "(batch, 1, d_model), (batch, d_inner, d_conv), (batch, d_inner, d_state)")
            if not t.is_floating_point():
                raise ValueError(f"Mamba.step: {name} has dtype {t.dtype}, expected a floating point dtype")
            if t.device != device:
                raise ValueError(f"Mamba.step: {name} is on {t.device}, the mixer on {device}")

    def step(self, hidden_states, conv_state, ssm_state):
        """One time step, as mamba-ssm's ``Mamba.step``.

        hidden_states: (batch, 1, d_model); conv_state, ssm_state from
        :meth:`allocate_inference_cache` (updated in place and returned).
        Returns (out (batch, 1, d_model), conv_state, ssm_state). Other shapes, devices or a
        non-floating dtype are refused with a ``ValueError`` before anything runs (the ``cpu``
        backend's one-call step reads the states through these shapes).
        """
        self._check_step_args(hidden_states, conv_state, ssm_state)
        x, z = self.in_proj(hidden_states[:, 0]).chunk(2, dim=-1)  # (batch, d_inner) each
        if self._fused_step(x, conv_state, ssm_state):
            y = scan_cpu.mixer_step(
                x.contiguous(), z.contiguous(), conv_state, self.conv1d.weight[:, 0, :], self.conv1d.bias,
                self.x_proj.weight, self.dt_proj.weight, self.dt_proj.bias, self.A_log, self.D, ssm_state,
            )
            return self.out_proj(y).unsqueeze(1), conv_state, ssm_state
        # few operations: at batch 1 a step costs about as many microseconds as PyTorch calls
        conv_state.copy_(torch.cat([conv_state[:, :, 1:], x.unsqueeze(-1)], dim=-1))
        x = (conv_state * self.conv1d.weight[:, 0, :]).sum(-1)
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(F.linear(dt, self.dt_proj.weight, self.dt_proj.bias))  # (batch, d_inner)
        dA = torch.exp(dt.unsqueeze(-1) * -torch.exp(self.A_log.float()))  # (batch, d_inner, d_state)
        ssm_state.mul_(dA).addcmul_((dt * x).unsqueeze(-1), B.unsqueeze(1))
        y = torch.matmul(ssm_state, C.unsqueeze(-1))[..., 0]
        y = torch.addcmul(y, self.D, x) * F.silu(z)
        return self.out_proj(y).unsqueeze(1), conv_state, ssm_state
