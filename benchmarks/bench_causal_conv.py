"""The mixer's causal convolution at widths 4 to 64: the compiled kernel against ``F.conv1d``, and
what a wide convolution (a delay line, ``d_conv``) costs the whole mixer.

1. The convolution alone, forward + backward on one (batch, L, d_inner) float32 batch: the cpu
   backend's kernel (``recbole_mamba.ops.causal_conv``) against ``F.conv1d`` (what the ``torch``
   backend, and mamba-ssm without causal-conv1d, run), same inputs, same process.
2. One Mamba mixer forward + backward (d_model 64, d_state 32, expand 2) on the cpu backend at each
   width, as a ratio of the shipped width 4.

Median of ``--repeats`` timed runs after one warm-up; all threads. ``python
benchmarks/bench_causal_conv.py [--batch 8] [--length 2000] [--widths 4,16,64] [--repeats 5]``
"""

import argparse
import platform
import statistics
import time

import torch

from recbole_mamba.layers import Mamba
from recbole_mamba.ops.causal_conv import causal_conv1d_cpu, causal_conv1d_ref

D_MODEL, D_STATE, EXPAND = 64, 32, 2


def fwd_bwd_seconds(fn, inputs, repeats):
    """Median seconds of ``fn(*inputs)`` forward and its backward of a sum, after one warm-up."""
    times = []
    for _ in range(repeats + 1):
        for t in inputs:
            t.grad = None
        start = time.perf_counter()
        fn(*inputs).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--widths", default="4,16,64")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",") if w]
    batch, length, d_inner = args.batch, args.length, EXPAND * D_MODEL
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}; "
          f"batch {batch}, L {length}, d_inner {d_inner}, float32, forward + backward, median of {args.repeats}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, d_inner, generator=g, requires_grad=True)
    for width in widths:
        weight = torch.randn(d_inner, width, generator=g, requires_grad=True)
        bias = torch.randn(d_inner, generator=g, requires_grad=True)
        ours = fwd_bwd_seconds(causal_conv1d_cpu, (x, weight, bias), args.repeats)
        conv1d = fwd_bwd_seconds(causal_conv1d_ref, (x, weight, bias), args.repeats)
        print(f"convolution, width {width}: kernel {ours * 1e3:.1f} ms, F.conv1d {conv1d * 1e3:.1f} ms, "
              f"ratio {conv1d / ours:.1f}x")
    hidden = torch.randn(batch, length, D_MODEL, generator=g, requires_grad=True)
    shipped = None
    for width in widths:
        torch.manual_seed(0)
        mixer = Mamba(D_MODEL, d_state=D_STATE, d_conv=width, expand=EXPAND, backend="cpu")
        seconds = fwd_bwd_seconds(mixer, (hidden,), args.repeats)
        shipped = seconds if shipped is None else shipped
        print(f"mixer (cpu backend), d_conv {width}: {seconds * 1e3:.0f} ms, {seconds / shipped:.2f}x d_conv {widths[0]}")


if __name__ == "__main__":
    main()
