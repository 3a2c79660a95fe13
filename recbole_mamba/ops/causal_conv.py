"""The Mamba mixer's causal depthwise convolution, time-major.

    x: (batch, L, dim);  weight: (dim, width);  bias: (dim,) or None
    y[b, t, c] = bias[c] + sum_k weight[c, k] * x[b, t - width + 1 + k, c]   (zero before t = 0)

which is ``nn.Conv1d(dim, dim, width, groups=dim, padding=width - 1)`` on (batch, dim, L), cut to
the first L outputs: :func:`causal_conv1d_ref`, the test oracle and the path on every device
without the compiled kernel. :class:`CpuCausalConvFn` is the same convolution in ``scan_cpu.c``
(float32 and float64, any width): it reads and writes time-major rows, so the mixer needs no
transposes, and it is several times faster than PyTorch's depthwise convolution on a CPU at wide
kernels (``benchmarks/bench_causal_conv.py``). Output t reads inputs 0..t only.
"""

import torch
import torch.nn.functional as F

from recbole_mamba.ops import scan_cpu


def check_conv_args(x, weight, bias):
    """Refuse, with a ``ValueError`` naming the argument, what neither path computes: x not
    (batch, L, dim), weight not (dim, width >= 1), bias not (dim,), another device or a
    non-floating dtype. Both public functions below check first."""
    if x.dim() != 3:
        raise ValueError(f"causal_conv1d: x has shape {tuple(x.shape)}, expected (batch, L, dim)")
    dim = x.shape[2]
    if weight.dim() != 2 or weight.shape[0] != dim or weight.shape[1] < 1:
        raise ValueError(f"causal_conv1d: weight has shape {tuple(weight.shape)}, expected (dim, width) = ({dim}, width >= 1)")
    if bias is not None and tuple(bias.shape) != (dim,):
        raise ValueError(f"causal_conv1d: bias has shape {tuple(bias.shape)}, expected ({dim},)")
    for name, t in (("x", x), ("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if not t.is_floating_point():
            raise ValueError(f"causal_conv1d: {name} has dtype {t.dtype}, expected a floating point dtype")
        if t.device != x.device:
            raise ValueError(f"causal_conv1d: {name} is on {t.device}, x on {x.device}; pass all on one device")


def causal_conv1d_ref(x, weight, bias=None):
    """(batch, L, dim), (dim, width), (dim,) -> (batch, L, dim), by ``F.conv1d``."""
    check_conv_args(x, weight, bias)
    dim, width = weight.shape
    y = F.conv1d(x.transpose(1, 2), weight.unsqueeze(1), bias, padding=width - 1, groups=dim)
    return y[..., : x.shape[1]].transpose(1, 2)


def _kernel(kind, dtype):
    return getattr(scan_cpu.library(), f"recbole_mamba_conv_{kind}_{'f64' if dtype == torch.float64 else 'f32'}")


class CpuCausalConvFn(torch.autograd.Function):
    """``apply(x, weight, bias) -> y`` (shapes above; float32 or float64 CPU tensors, one dtype).
    Batch rows run in groups, one per thread; the weight gradient is summed over the groups."""

    @staticmethod
    def _args(x, weight, bias):
        """Contiguous inputs (weight transposed to (width, dim)) and the ConvArgs pointing at them
        (keep both alive while the kernel runs)."""
        x = x.contiguous()
        w = weight.t().contiguous()
        bias = None if bias is None else bias.contiguous()
        batch, length, dim = x.shape
        groups = max(1, min(torch.get_num_threads(), batch))
        args = scan_cpu.ConvArgs(batch=batch, length=length, dim=dim, width=w.shape[0], groups=groups,
                                 x=x.data_ptr(), w=w.data_ptr(), bias=scan_cpu.ptr_of(bias))
        return (x, w, bias), args

    @staticmethod
    def forward(ctx, x, weight, bias):
        inputs, args = CpuCausalConvFn._args(x, weight, bias)
        cx = inputs[0]
        y = torch.empty_like(cx)
        args.y = y.data_ptr()
        scan_cpu.run_parallel(_kernel("fwd", cx.dtype), args, args.groups)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        inputs, args = CpuCausalConvFn._args(x, weight, None)
        cx = inputs[0]
        dy = dy.to(cx.dtype).contiguous()
        dx = torch.empty_like(cx)
        dw = cx.new_empty(args.groups, args.width, args.dim)
        args.dy, args.dx, args.dw = dy.data_ptr(), dx.data_ptr(), dw.data_ptr()
        scan_cpu.run_parallel(_kernel("bwd", cx.dtype), args, args.groups)
        dbias = dy.sum((0, 1)) if ctx.has_bias else None
        return dx, dw.sum(0).t().to(weight.dtype), dbias


def causal_conv1d_cpu(x, weight, bias=None):
    """:class:`CpuCausalConvFn` (raises :class:`~recbole_mamba.ops.CpuKernelUnavailable` where the
    kernel does not compile): CPU tensors of one dtype, float32 or float64; anything else is
    refused with a ``ValueError``, as the kernel would read it with the wrong element size."""
    check_conv_args(x, weight, bias)
    dtypes = {t.dtype for t in (x, weight, bias) if t is not None}
    if x.device.type != "cpu" or len(dtypes) != 1 or x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"causal_conv1d_cpu: the kernel takes CPU tensors of one dtype, float32 or float64; "
                         f"got x {x.dtype} on {x.device}, weight {weight.dtype}"
                         + (f", bias {bias.dtype}" if bias is not None else ""))
    return CpuCausalConvFn.apply(x, weight, bias)
