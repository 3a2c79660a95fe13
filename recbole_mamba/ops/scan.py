"""Selective scan (the S6 recurrence of Mamba) with mamba-ssm's signature and layout.

Shapes (mamba-ssm's convention)::

    u, delta, z : (batch, dim, L)
    A           : (dim, d_state)          real, usually negative
    B, C        : (batch, d_state, L)     input-dependent ("selective")
    D, delta_bias : (dim,)

    dt  = softplus(delta + delta_bias)            (softplus only if delta_softplus)
    h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t     h: (batch, dim, d_state), h_{-1} = 0
    y_t = <h_t, C_t> + D * u_t
    out = y * silu(z)                              (only if z is given)

Backends:

- ``ref``: :func:`selective_scan_ref`, a plain step-by-step loop written from the equations above.
  It is the test oracle; autograd differentiates it.
- ``torch``: :class:`TorchScanFn`, an autograd Function with a hand-written backward. The forward
  keeps only the states at chunk boundaries; the backward recomputes each chunk's states and runs
  the adjoint recurrence in reverse. Activation memory is O(batch*L*dim + batch*(L/T)*dim*d_state);
  no (batch, L, dim, d_state) tensor is ever materialised.
- ``cpu``: :class:`recbole_mamba.ops.scan_cpu.CpuScanFn`, the same recurrence as a C kernel compiled
  at first use with the system's C compiler (one row of (batch, dim) at a time, the state in
  registers, elementwise functions vectorised); saves only its inputs for backward.
- ``triton``: :class:`recbole_mamba.ops.scan_triton.TritonScanFn`, the same fused scan as Triton
  kernels for a GPU, compiled by Triton at first use (nothing to build at install time). On CPU
  tensors only under Triton's interpreter (``TRITON_INTERPRET=1``), which the tests use.
- ``cuda``: mamba-ssm's fused kernel (``pip install recbole-mamba[cuda]`` on a CUDA machine).
- ``auto``: the first of :data:`AUTO_ORDER` that runs on the tensors' device and is available:
  on a CUDA device ``cuda`` where mamba-ssm imports, else ``triton`` where Triton imports; on a CPU
  ``cpu`` where its kernel compiles; else ``torch``.

:data:`BACKENDS` is the one table of them (name -> :class:`Backend`: function, devices,
availability check, error); :func:`choose_backend` resolves a name once, and the Mamba mixer keeps
the result per device.

Any strides are accepted; the ``torch`` backend works time-major internally, so (batch, dim, L)
views of time-major (batch, L, dim) tensors avoid copies.

The recurrence runs left to right, so outputs at position t never depend on inputs after t; with
RecBole's right padding, padded positions never change the outputs at real positions.
"""

import os
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from recbole_mamba.ops import scan_cpu
from recbole_mamba.ops.scan_args import check_kernel_args, check_scan_args, common_groups
from recbole_mamba.ops.scan_cpu import CpuKernelUnavailable

# Elements of one (batch rows, time steps, dim, d_state) work buffer: 4 MiB in float32, so each of
# two threads works on about one L2 cache's worth (measured best on a 2-core EPYC, 2 MiB L2 each;
# see benchmarks/bench_scan.py).
_CHUNK_ELEMENTS = 1 << 20
_MIN_STEPS = 16


class CudaBackendUnavailable(RuntimeError):
    """Raised when ``backend='cuda'`` is asked for on a machine without mamba-ssm's kernels."""


class TritonUnavailable(RuntimeError):
    """Raised when ``backend='triton'`` is asked for where Triton does not import."""


def _mamba_ssm_scan():
    """mamba-ssm's ``selective_scan_fn``, or None when mamba-ssm is not importable."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a broken CUDA build raising at import
        return None
    return selective_scan_fn


def _cuda_unavailable():
    if _mamba_ssm_scan() is None:
        return ("mamba_backend=cuda needs mamba-ssm's CUDA kernels, which are not importable here. "
                "On a machine with CUDA, install them with: pip install 'recbole-mamba[cuda]' "
                "(or use mamba_backend=auto / torch).")
    return None


def _cuda_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    return _mamba_ssm_scan()(u, delta, A, B, C, D, z, delta_bias, delta_softplus, True)


def _triton_module():
    """:mod:`recbole_mamba.ops.scan_triton`, or the reason it does not import."""
    try:
        from recbole_mamba.ops import scan_triton
    except Exception as err:  # ImportError, or a broken Triton install raising at import
        return None, f"{type(err).__name__}: {err}"
    return scan_triton, None


def _triton_unavailable():
    _, reason = _triton_module()
    if reason is not None:
        return (f"mamba_backend=triton needs Triton, which does not import here ({reason}); it ships "
                "with PyTorch's CUDA wheels on Linux, or: pip install triton (or use mamba_backend=auto / "
                "torch).")
    return None


def _triton_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    check_kernel_args(u, delta, A, B, C, D, z, delta_bias)
    return _triton_module()[0].TritonScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


# Triton's interpreter (TRITON_INTERPRET=1, read when the kernels are defined) runs them on CPU tensors
_TRITON_INTERPRETED_ON = ("cpu",) if os.environ.get("TRITON_INTERPRET") == "1" else ()


def _cpu_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    check_kernel_args(u, delta, A, B, C, D, z, delta_bias)
    return scan_cpu.CpuScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _torch_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    return TorchScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _ref_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, True)


@dataclass(frozen=True)
class Backend:
    """One way of computing the scan.

    ``scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> (out, last_state)``;
    ``device_types``: the tensors it runs on (None: any); ``unavailable() -> None | str``: why it
    cannot run on this machine; ``error``: raised with that reason when it is asked for by name;
    ``only_by_name_on``: further device types it runs on when named, which ``auto`` never picks
    it for (Triton's interpreter on CPU tensors).
    """

    scan: Callable
    device_types: Optional[tuple] = None
    unavailable: Callable[[], Optional[str]] = lambda: None
    error: type = RuntimeError
    only_by_name_on: tuple = ()


BACKENDS = {
    "cuda": Backend(_cuda_scan, ("cuda",), _cuda_unavailable, CudaBackendUnavailable),
    "triton": Backend(_triton_scan, ("cuda",), _triton_unavailable, TritonUnavailable, _TRITON_INTERPRETED_ON),
    "cpu": Backend(_cpu_scan, ("cpu",), scan_cpu.unavailable_reason, CpuKernelUnavailable),
    "torch": Backend(_torch_scan),
    "ref": Backend(_ref_scan),
}
AUTO_ORDER = ("cuda", "triton", "cpu", "torch")  # ``auto``: the first that runs on the device and is available
BACKEND_NAMES = ("auto", *BACKENDS)


def choose_backend(backend, device):
    """``(name, skipped)``: the concrete backend for ``backend`` on ``device``, and for ``auto``
    the reasons of the backends for that device that were passed over (for the log)."""
    if backend not in BACKEND_NAMES:
        raise ValueError(f"mamba_backend must be one of {', '.join(BACKEND_NAMES)}; got {backend!r}")
    device = torch.device(device)
    if backend == "auto":
        skipped = []
        for name in AUTO_ORDER:
            candidate = BACKENDS[name]
            if candidate.device_types and device.type not in candidate.device_types:
                continue
            reason = candidate.unavailable()
            if reason is None:
                return name, skipped
            skipped.append(reason)
        raise AssertionError("the torch backend runs everywhere")
    chosen = BACKENDS[backend]
    reason = chosen.unavailable()
    if reason is not None:
        raise chosen.error(reason)
    if chosen.device_types and device.type not in chosen.device_types + chosen.only_by_name_on:
        raise chosen.error(
            f"mamba_backend={backend} runs on {'/'.join(t.upper() for t in chosen.device_types)} "
            f"tensors, got {device}; use mamba_backend=auto or torch."
        )
    return backend, []


def resolve_backend(backend, device):
    """The concrete backend name ('cuda', 'triton', 'cpu', 'torch' or 'ref') for ``backend`` on ``device``;
    raises the backend's error, saying why, where a named backend cannot run."""
    return choose_backend(backend, device)[0]


def selective_scan(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
    backend="auto",
):
    """Selective scan; returns ``out`` (batch, dim, L), and the last state (batch, dim, d_state)
    too when ``return_last_state``. ``backend`` is a name of :data:`BACKEND_NAMES`.

    The arguments are checked first (:mod:`recbole_mamba.ops.scan_args`: the accepted shapes, a
    ``ValueError`` for any other); a broadcast or grouped B or C runs as one backend call per
    channel group, on stride-0 views where the batch is broadcast."""
    B, C = check_scan_args(u, delta, A, B, C, D, z, delta_bias)  # (batch, G, n, L) views
    scan = BACKENDS[resolve_backend(backend, u.device)].scan
    groups = common_groups(B, C)
    width = u.shape[1] // groups
    outs, lasts = [], []
    for g in range(groups):
        ch = slice(g * width, (g + 1) * width)
        out, last_state = scan(
            u[:, ch], delta[:, ch], A[ch], B[:, g * B.shape[1] // groups], C[:, g * C.shape[1] // groups],
            None if D is None else D[ch], None if z is None else z[:, ch],
            None if delta_bias is None else delta_bias[ch], delta_softplus,
        )
        outs.append(out)
        lasts.append(last_state)
    out, last_state = (outs[0], lasts[0]) if groups == 1 else (torch.cat(outs, 1), torch.cat(lasts, 1))
    return (out, last_state) if return_last_state else out


def _compute_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def selective_scan_ref(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    return_last_state=False,
):
    """Step-by-step reference: one time step at a time, straight from the equations. Takes the
    forms :func:`selective_scan` takes (checked the same way); a grouped B or C is repeated to one
    per channel."""
    B, C = check_scan_args(u, delta, A, B, C, D, z, delta_bias)  # (batch, G, n, L)
    dtype_in = u.dtype
    ct = _compute_dtype(u)
    # (batch, 1 or dim, n, L): one group broadcasts over the channels, more repeat to one a channel
    B, C = (t if t.shape[1] == 1 else t.repeat_interleave(u.shape[1] // t.shape[1], dim=1) for t in (B, C))
    u, delta, A, B, C = (t.to(ct) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(ct)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    h = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]  # (batch, dim, 1)
        h = torch.exp(dt * A) * h + dt * B[..., t] * u[:, :, t, None]
        ys.append((h * C[..., t]).sum(-1))  # (batch, dim)
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + u * D.to(ct)[:, None]
    if z is not None:
        y = y * F.silu(z.to(ct))
    y = y.to(dtype_in)
    return (y, h) if return_last_state else y


def _blocking(batch, dim, d_state, length):
    """(batch rows, time steps) per work block of the ``torch`` backend.

    A block's buffers hold batch_rows * T * dim * d_state elements, about ``_CHUNK_ELEMENTS``;
    time steps are preferred up to ``_MIN_STEPS`` so the per-step loop has enough work, then
    batch rows, then more time steps.
    """
    per_step = max(1, dim * d_state)
    steps = max(1, min(length, _MIN_STEPS))
    rows = max(1, min(batch, _CHUNK_ELEMENTS // (steps * per_step)))
    steps = max(steps, min(length, _CHUNK_ELEMENTS // (rows * per_step)))
    return rows, steps


def _chunk_states(dt, dtu, A, Bt, h):
    """States of one chunk.

    dt, dtu: (b, T, dim); A: (dim, n); Bt: (b, T, n); h: (b, dim, n), the state before the chunk.
    Returns (dA, hs): both (b, T, dim, n), dA = exp(dt*A), hs[:, t] the state after step t.
    """
    dA = torch.exp(dt.unsqueeze(-1) * A)
    hs = dtu.unsqueeze(-1) * Bt.unsqueeze(2)
    for t in range(hs.shape[1]):
        h = torch.addcmul(hs[:, t], dA[:, t], h, out=hs[:, t])
    return dA, hs


def _forward_block(dt, dtu, A, Bt, Ct, steps):
    """Scan one block of batch rows, time-major: dt, dtu (b, L, dim); Bt, Ct (b, L, n).

    Returns y (b, L, dim) without the D skip, the states before each chunk
    (b, n_chunks, dim, n), and the last state (b, dim, n).
    """
    b, length, dim = dt.shape
    n = A.shape[1]
    starts = range(0, length, steps)
    h = dt.new_zeros(b, dim, n)
    boundary = dt.new_empty(b, len(starts), dim, n)
    y = dt.new_empty(b, length, dim)
    for i, s in enumerate(starts):
        e = min(s + steps, length)
        boundary[:, i] = h
        _, hs = _chunk_states(dt[:, s:e], dtu[:, s:e], A, Bt[:, s:e], h)
        h = hs[:, -1].clone()
        # y_t = <h_t, C_t>; an in-place multiply and a sum beat matmul's batched mat-vec on CPU
        torch.sum(hs.mul_(Ct[:, s:e].unsqueeze(2)), dim=-1, out=y[:, s:e])
    return y, boundary, h


def _backward_block(dy, dt, dtu, u, A, Bt, Ct, boundary, steps, dA_acc):
    """Adjoint of :func:`_forward_block` for one block of batch rows.

    dy: (b, L, dim), the gradient of y (before the D skip). Adds dL/dA into ``dA_acc`` and returns
    (ddt, du_scan, dB, dC): ddt and du_scan (b, L, dim) through the recurrence only, dB, dC (b, L, n).
    """
    b, length, dim = dt.shape
    ddt = torch.empty_like(dt)
    du = torch.empty_like(dt)
    dB = torch.empty_like(Bt)
    dC = torch.empty_like(Ct)
    g_carry = dt.new_zeros(b, dim, A.shape[1])  # dA_{t+1} * g_{t+1}, flowing back into h_t
    starts = list(range(0, length, steps))
    for i in reversed(range(len(starts))):
        s = starts[i]
        e = min(s + steps, length)
        h0 = boundary[:, i]
        dA_c, hs = _chunk_states(dt[:, s:e], dtu[:, s:e], A, Bt[:, s:e], h0)
        dy_c = dy[:, s:e]
        # dC[b,t,:] = sum_d dy[b,t,d] h_t[b,d,:]
        torch.matmul(dy_c.unsqueeze(-2), hs, out=dC[:, s:e].unsqueeze(-2))
        # adjoint recurrence: g_t = dy_t C_t + dA_{t+1} g_{t+1}
        gs = torch.empty_like(hs)
        dy_col, C_row = dy_c.unsqueeze(-1), Ct[:, s:e].unsqueeze(2)
        for t in reversed(range(e - s)):
            g = torch.addcmul(g_carry, dy_col[:, t], C_row[:, t], out=gs[:, t])
            torch.mul(dA_c[:, t], g, out=g_carry)
        # d(dt*A) = g_t * h_{t-1} * dA_t, in place of dA_t (no longer needed)
        x = dA_c.mul_(gs)
        x[:, 1:].mul_(hs[:, :-1])
        x[:, 0].mul_(h0)
        # a broadcast multiply and sum: several times faster on CPU than the equivalent einsum
        dA_acc += (x * dt[:, s:e].unsqueeze(-1)).sum((0, 1))
        # through dt*u*B: sum_d g*dt*u, and sum_n g*B (last use of gs, in place)
        torch.matmul(dtu[:, s:e].unsqueeze(-2), gs, out=dB[:, s:e].unsqueeze(-2))
        gB = gs.mul_(Bt[:, s:e].unsqueeze(2)).sum(-1)
        ddt[:, s:e] = x.mul_(A).sum(-1) + gB * u[:, s:e]
        du[:, s:e] = gB * dt[:, s:e]
    return ddt, du, dB, dC


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    """Compute-dtype, time-major inputs of the ``torch`` backend."""
    ct = _compute_dtype(u)
    dt_pre = delta.to(ct)
    if delta_bias is not None:
        dt_pre = dt_pre + delta_bias.to(ct)[:, None]
    dt = F.softplus(dt_pre) if delta_softplus else dt_pre
    dt_t = dt.transpose(1, 2).contiguous()  # (batch, L, dim)
    u_t = u.to(ct).transpose(1, 2).contiguous()
    B_t = B.to(ct).transpose(1, 2).contiguous()  # (batch, L, n)
    C_t = C.to(ct).transpose(1, 2).contiguous()
    return dt_pre, dt_t, u_t, dt_t * u_t, A.to(ct), B_t, C_t


class TorchScanFn(torch.autograd.Function):
    """The ``torch`` backend: blocked forward, recomputing backward. See the module docstring.

    ``apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> (out, last_state)``.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        batch, dim, length = u.shape
        n = A.shape[1]
        _, dt_t, u_t, dtu_t, A_, B_t, C_t = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
        rows, steps = _blocking(batch, dim, n, length)
        y_t = torch.empty_like(dt_t)
        last = dt_t.new_empty(batch, dim, n)
        boundaries = []
        for r in range(0, batch, rows):
            q = slice(r, r + rows)
            y_t[q], boundary, last[q] = _forward_block(dt_t[q], dtu_t[q], A_, B_t[q], C_t[q], steps)
            boundaries.append(boundary)
        y = y_t.transpose(1, 2)
        if D is not None:
            y = y + u_t.transpose(1, 2) * D.to(y.dtype)[:, None]
        out = y * F.silu(z.to(y.dtype)) if z is not None else y
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, y_t if z is not None else None, *boundaries)
        ctx.delta_softplus = delta_softplus
        ctx.blocking = (rows, steps)
        ctx.mark_non_differentiable(last)
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, dout, _dlast_state):
        u, delta, A, B, C, D, z, delta_bias, y_t, *boundaries = ctx.saved_tensors
        rows, steps = ctx.blocking
        dt_pre, dt_t, u_t, dtu_t, A_, B_t, C_t = _prepare(
            u, delta, A, B, C, delta_bias, ctx.delta_softplus
        )
        ct = dt_t.dtype
        dout_t = dout.to(ct).transpose(1, 2)
        if z is not None:
            z_t = z.to(ct).transpose(1, 2)
            sig_z = torch.sigmoid(z_t)
            dy_t = (dout_t * z_t * sig_z).contiguous()  # d out / d y = silu(z)
        else:
            dy_t = dout_t.contiguous()

        ddt_t = torch.empty_like(dt_t)
        du_t = torch.empty_like(dt_t)
        dB_t = torch.empty_like(B_t)
        dC_t = torch.empty_like(C_t)
        dA = torch.zeros_like(A_)
        for i, r in enumerate(range(0, u.shape[0], rows)):
            q = slice(r, r + rows)
            ddt_t[q], du_t[q], dB_t[q], dC_t[q] = _backward_block(
                dy_t[q], dt_t[q], dtu_t[q], u_t[q], A_, B_t[q], C_t[q], boundaries[i], steps, dA
            )

        dD = dz = None
        if D is not None:
            du_t += dy_t * D.to(ct)
            dD = (dy_t * u_t).sum((0, 1)).to(D.dtype)
        if z is not None:
            y_t = y_t + u_t * D.to(ct) if D is not None else y_t  # the y that was gated
            dz = (dout_t * y_t * sig_z * (1 + z_t * (1 - sig_z))).transpose(1, 2).to(z.dtype)
        ddelta = ddt_t.transpose(1, 2)
        if ctx.delta_softplus:
            ddelta = ddelta * torch.sigmoid(dt_pre)
        ddelta_bias = ddelta.sum((0, 2)).to(delta_bias.dtype) if delta_bias is not None else None
        return (
            du_t.transpose(1, 2).to(u.dtype),
            ddelta.to(delta.dtype),
            dA.to(A.dtype),
            dB_t.transpose(1, 2).to(B.dtype),
            dC_t.transpose(1, 2).to(C.dtype),
            dD,
            dz,
            ddelta_bias,
            None,
        )
