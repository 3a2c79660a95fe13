"""The ``triton`` backend of the selective scan: Triton kernels, compiled by Triton at first use on
a GPU (nothing to build at install time; Triton ships with PyTorch's CUDA wheels on Linux).

One program scans one batch row and a block of channels over time, the state
(channels x d_state) in registers, fused with softplus, the D skip and the SiLU gate; only the
inputs are saved for backward. The backward runs a first pass that keeps the state at the start of
each segment of ``SEGMENT`` steps, then, segment by segment from the last, recomputes the
segment's states into a scratch buffer and runs the adjoint recurrence backwards. Inputs of
float32, float16 or bfloat16 are computed in float32, float64 in float64.

With ``TRITON_INTERPRET=1`` set before this module is imported, the same kernels run in Triton's
interpreter on CPU tensors: that is how the tests hold them to the ``ref`` backend without a GPU.
"""

import torch
import triton
import triton.language as tl

SEGMENT = 64  # backward: steps whose states are recomputed and kept at once
MAX_BLOCK_D = 64  # channels per program (fewer where d_state is large: the state stays in registers)


@triton.jit
def _softplus(x):
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def _params(A, D, bias, d, k, md, mk, n, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
            BLOCK_D: tl.constexpr, CT: tl.constexpr):
    """A (channels, d_state), D and delta_bias (channels) of a block of channels."""
    a = tl.load(A + d[:, None] * n + k[None, :], mask=md[:, None] & mk[None, :], other=0.0).to(CT)
    dd = tl.zeros((BLOCK_D,), CT)
    if HAS_D:
        dd = tl.load(D + d, mask=md, other=0.0).to(CT)
    db = tl.zeros((BLOCK_D,), CT)
    if HAS_BIAS:
        db = tl.load(bias + d, mask=md, other=0.0).to(CT)
    return a, dd, db


@triton.jit
def _inputs(t, b, d, k, md, mk, db, u, delta, B, su0, su1, su2, sd0, sd1, sd2, sB0, sB1, sB2,
            SOFTPLUS: tl.constexpr, CT: tl.constexpr):
    """Step t's u (channels), delta + bias before softplus, dt, and B (d_state)."""
    x = tl.load(u + b * su0 + d * su1 + t * su2, mask=md, other=0.0).to(CT)
    pre = tl.load(delta + b * sd0 + d * sd1 + t * sd2, mask=md, other=0.0).to(CT) + db
    dt = pre
    if SOFTPLUS:
        dt = _softplus(pre)
    bt = tl.load(B + b * sB0 + k * sB1 + t * sB2, mask=mk, other=0.0).to(CT)
    return x, pre, dt, bt


@triton.jit
def _scan_fwd(u, delta, A, B, C, D, z, bias, out, last,
              su0, su1, su2, sd0, sd1, sd2, sz0, sz1, sz2, sB0, sB1, sB2, sC0, sC1, sC2,
              dim, n, length,
              HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
              BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CT: tl.constexpr):
    """out (batch, dim, L) contiguous; last (batch, dim, n) contiguous."""
    b = tl.program_id(0)
    d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    k = tl.arange(0, BLOCK_N)
    md, mk = d < dim, k < n
    a, dd, db = _params(A, D, bias, d, k, md, mk, n, HAS_D, HAS_BIAS, BLOCK_D, CT)
    h = tl.zeros((BLOCK_D, BLOCK_N), CT)
    for t in range(0, length):
        x, _, dt, bt = _inputs(t, b, d, k, md, mk, db, u, delta, B, su0, su1, su2, sd0, sd1, sd2,
                               sB0, sB1, sB2, SOFTPLUS, CT)
        ct = tl.load(C + b * sC0 + k * sC1 + t * sC2, mask=mk, other=0.0).to(CT)
        h = tl.exp(dt[:, None] * a) * h + (dt * x)[:, None] * bt[None, :]
        y = tl.sum(h * ct[None, :], axis=1) + dd * x
        if HAS_Z:
            zt = tl.load(z + b * sz0 + d * sz1 + t * sz2, mask=md, other=0.0).to(CT)
            y = y * zt * tl.sigmoid(zt)
        tl.store(out + (b * dim + d) * length + t, y, mask=md)
    tl.store(last + (b * dim + d[:, None]) * n + k[None, :], h, mask=md[:, None] & mk[None, :])


@triton.jit
def _scan_bwd(u, delta, A, B, C, D, z, bias, dout,
              du, ddelta, dz, dA_part, dB_part, dC_part, dD_part, dbias_part, start_states, states,
              su0, su1, su2, sd0, sd1, sd2, sz0, sz1, sz2, sB0, sB1, sB2, sC0, sC1, sC2, so0, so1, so2,
              dim, n, length, n_segments,
              HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
              SEG: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CT: tl.constexpr):
    """Gradients of one (batch row, channel block). du, ddelta, dz: (batch, dim, L); dA_part:
    (batch, dim, n); dB_part, dC_part: (channel blocks, batch, n, L); dD_part, dbias_part:
    (batch, dim); start_states: (batch, segments, dim, n) and states: (batch, SEG, dim, n) are
    scratch."""
    b = tl.program_id(0)
    blk = tl.program_id(1)
    batch = tl.num_programs(0)
    d = blk * BLOCK_D + tl.arange(0, BLOCK_D)
    k = tl.arange(0, BLOCK_N)
    md, mk = d < dim, k < n
    mdk = md[:, None] & mk[None, :]
    dk = d[:, None] * n + k[None, :]
    a, dd, db = _params(A, D, bias, d, k, md, mk, n, HAS_D, HAS_BIAS, BLOCK_D, CT)

    # pass 1: the state before each segment
    h = tl.zeros((BLOCK_D, BLOCK_N), CT)
    for s in range(0, n_segments):
        tl.store(start_states + (b * n_segments + s) * dim * n + dk, h, mask=mdk)
        for t in range(s * SEG, tl.minimum(s * SEG + SEG, length)):
            x, _, dt, bt = _inputs(t, b, d, k, md, mk, db, u, delta, B, su0, su1, su2, sd0, sd1, sd2,
                                   sB0, sB1, sB2, SOFTPLUS, CT)
            h = tl.exp(dt[:, None] * a) * h + (dt * x)[:, None] * bt[None, :]

    # pass 2: segments from the last; recompute their states, then the adjoint backwards
    g_carry = tl.zeros((BLOCK_D, BLOCK_N), CT)  # dA_{t+1} * g_{t+1}
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), CT)
    dD_acc = tl.zeros((BLOCK_D,), CT)
    dbias_acc = tl.zeros((BLOCK_D,), CT)
    for i in range(0, n_segments):
        s = n_segments - 1 - i
        first = s * SEG
        end = tl.minimum(first + SEG, length)
        h0 = tl.load(start_states + (b * n_segments + s) * dim * n + dk, mask=mdk, other=0.0)
        h = h0
        for t in range(first, end):
            x, _, dt, bt = _inputs(t, b, d, k, md, mk, db, u, delta, B, su0, su1, su2, sd0, sd1, sd2,
                                   sB0, sB1, sB2, SOFTPLUS, CT)
            h = tl.exp(dt[:, None] * a) * h + (dt * x)[:, None] * bt[None, :]
            tl.store(states + (b * SEG + t - first) * dim * n + dk, h, mask=mdk)
        for j in range(0, end - first):
            t = end - 1 - j
            x, pre, dt, bt = _inputs(t, b, d, k, md, mk, db, u, delta, B, su0, su1, su2, sd0, sd1, sd2,
                                     sB0, sB1, sB2, SOFTPLUS, CT)
            ct = tl.load(C + b * sC0 + k * sC1 + t * sC2, mask=mk, other=0.0).to(CT)
            go = tl.load(dout + b * so0 + d * so1 + t * so2, mask=md, other=0.0).to(CT)
            h_t = tl.load(states + (b * SEG + t - first) * dim * n + dk, mask=mdk, other=0.0)
            prev = tl.maximum(t - first - 1, 0)
            h_prev = tl.load(states + (b * SEG + prev) * dim * n + dk, mask=mdk, other=0.0)
            h_prev = tl.where(t == first, h0, h_prev)
            dy = go
            if HAS_Z:
                zt = tl.load(z + b * sz0 + d * sz1 + t * sz2, mask=md, other=0.0).to(CT)
                sig = tl.sigmoid(zt)
                y = tl.sum(h_t * ct[None, :], axis=1) + dd * x
                tl.store(dz + (b * dim + d) * length + t, go * y * sig * (1 + zt * (1 - sig)), mask=md)
                dy = go * zt * sig
            g = g_carry + dy[:, None] * ct[None, :]  # dL/dh_t
            dA_t = tl.exp(dt[:, None] * a)
            tl.store(dC_part + ((blk * batch + b) * n + k) * length + t, tl.sum(dy[:, None] * h_t, axis=0),
                     mask=mk)
            tl.store(dB_part + ((blk * batch + b) * n + k) * length + t,
                     tl.sum(g * (dt * x)[:, None], axis=0), mask=mk)
            gB = tl.sum(g * bt[None, :], axis=1)
            tl.store(du + (b * dim + d) * length + t, gB * dt + dy * dd, mask=md)
            g_dA_h = g * dA_t * h_prev
            ddt = tl.sum(g_dA_h * a, axis=1) + gB * x
            dA_acc += g_dA_h * dt[:, None]
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(pre)
            tl.store(ddelta + (b * dim + d) * length + t, ddt, mask=md)
            dbias_acc += ddt
            dD_acc += dy * x
            g_carry = dA_t * g
    tl.store(dA_part + (b * dim + d[:, None]) * n + k[None, :], dA_acc, mask=mdk)
    tl.store(dD_part + b * dim + d, dD_acc, mask=md)
    tl.store(dbias_part + b * dim + d, dbias_acc, mask=md)


def _compute_dtype(x):
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _triton_dtype(dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _blocks(dim, n):
    """(channels, padded d_state) of one program's state block: at most 2048 elements."""
    block_n = triton.next_power_of_2(n)
    block_d = max(1, min(triton.next_power_of_2(dim), 2048 // block_n, MAX_BLOCK_D))
    return block_d, block_n


def _strides3(x):
    return x.stride(0), x.stride(1), x.stride(2)


class TritonScanFn(torch.autograd.Function):
    """``apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> (out, last_state)``."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        batch, dim, length = u.shape
        n = A.shape[1]
        ct = _compute_dtype(u)
        A_, D_, bias_ = A.contiguous(), D.contiguous() if D is not None else None, (
            delta_bias.contiguous() if delta_bias is not None else None)
        out = torch.empty(batch, dim, length, device=u.device, dtype=ct)
        last = torch.empty(batch, dim, n, device=u.device, dtype=ct)
        block_d, block_n = _blocks(dim, n)
        dummy = out
        _scan_fwd[(batch, triton.cdiv(dim, block_d))](
            u, delta, A_, B, C, D_ if D is not None else dummy, z if z is not None else dummy,
            bias_ if delta_bias is not None else dummy, out, last,
            *_strides3(u), *_strides3(delta), *(_strides3(z) if z is not None else (0, 0, 0)),
            *_strides3(B), *_strides3(C), dim, n, length,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus), BLOCK_D=block_d, BLOCK_N=block_n, CT=_triton_dtype(ct),
        )
        ctx.save_for_backward(u, delta, A_, B, C, D_, z, bias_)
        ctx.delta_softplus = bool(delta_softplus)
        ctx.mark_non_differentiable(last)
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, dout, _dlast_state):
        u, delta, A, B, C, D, z, bias = ctx.saved_tensors
        batch, dim, length = u.shape
        n = A.shape[1]
        ct = _compute_dtype(u)
        block_d, block_n = _blocks(dim, n)
        n_blocks = triton.cdiv(dim, block_d)
        seg = min(SEGMENT, triton.next_power_of_2(max(length, 1)))
        n_segments = triton.cdiv(length, seg)
        new = dict(device=u.device, dtype=ct)
        du, ddelta = torch.empty(batch, dim, length, **new), torch.empty(batch, dim, length, **new)
        dz = torch.empty(batch, dim, length, **new) if z is not None else du
        dA_part = torch.empty(batch, dim, n, **new)
        dB_part, dC_part = (torch.empty(n_blocks, batch, n, length, **new) for _ in range(2))
        dD_part, dbias_part = torch.empty(batch, dim, **new), torch.empty(batch, dim, **new)
        start_states = torch.empty(batch, n_segments, dim, n, **new)
        states = torch.empty(batch, seg, dim, n, **new)
        _scan_bwd[(batch, n_blocks)](
            u, delta, A, B, C, D if D is not None else du, z if z is not None else du,
            bias if bias is not None else du, dout,
            du, ddelta, dz, dA_part, dB_part, dC_part, dD_part, dbias_part, start_states, states,
            *_strides3(u), *_strides3(delta), *(_strides3(z) if z is not None else (0, 0, 0)),
            *_strides3(B), *_strides3(C), *_strides3(dout), dim, n, length, n_segments,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=bias is not None,
            SOFTPLUS=ctx.delta_softplus, SEG=seg, BLOCK_D=block_d, BLOCK_N=block_n, CT=_triton_dtype(ct),
        )
        return (
            du.to(u.dtype),
            ddelta.to(delta.dtype),
            dA_part.sum(0).to(A.dtype),
            dB_part.sum(0).to(B.dtype),
            dC_part.sum(0).to(C.dtype),
            dD_part.sum(0).to(D.dtype) if D is not None else None,
            dz.to(z.dtype) if z is not None else None,
            dbias_part.sum(0).to(bias.dtype) if bias is not None else None,
            None,
        )
