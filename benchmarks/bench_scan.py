"""One Mamba mixer forward+backward against RecBole's SASRec encoder on the same (B, L, 64) batch.

Mixer: d_model 64, d_state 32, d_conv 4, expand 2, float32, CPU, all threads, on the ``cpu`` scan
backend (the compiled kernel, what ``mamba_backend=auto`` picks on a CPU) and on the ``torch``
backend (PyTorch ops). SASRec: RecBole's ``TransformerEncoder`` with SASRec's defaults (2 layers,
2 heads, inner 256, causal mask).
Prints one summary line per case; run with ``python benchmarks/bench_scan.py`` (< 5 minutes).
All cases run three times, each time in a fresh process: with glibc's default allocator policy;
with PyTorch's transparent huge pages for large tensors (``THP_MEM_ALLOC_ENABLE=1`` in the
environment, read when torch is imported); and with
:func:`recbole_mamba.allocator.keep_large_allocations` (what the command line uses). Both sides of
every ratio are measured in the same process, so under the same policy: the policies speed up
SASRec's encoder at least as much as the mixer, and a ratio under one policy alone would mislead.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

from recbole_mamba.allocator import keep_large_allocations
from recbole_mamba.layers import Mamba

D_MODEL, D_STATE = 64, 32
ALLOCATORS = ("default", "thp", "keep")
BACKENDS = ("cpu", "torch")


def mixer(backend):
    torch.manual_seed(0)
    return Mamba(D_MODEL, d_state=D_STATE, d_conv=4, expand=2, backend=backend)


def sasrec_encoder():
    from recbole.model.layers import TransformerEncoder

    torch.manual_seed(0)
    return TransformerEncoder(
        n_layers=2, n_heads=2, hidden_size=D_MODEL, inner_size=256, hidden_dropout_prob=0.5,
        attn_dropout_prob=0.5, hidden_act="gelu", layer_norm_eps=1e-12,
    )


def fwd_bwd_seconds(module, batch, length, repeats, sasrec=False):
    """Best of ``repeats`` timed forward+backward passes, after one warm-up pass."""
    x = torch.randn(batch, length, D_MODEL, requires_grad=True)
    if sasrec:
        mask = torch.triu(torch.full((length, length), -10000.0), diagonal=1)
        mask = mask.expand(batch, 1, length, length)
        run = lambda: module(x, mask, output_all_encoded_layers=True)[-1]  # noqa: E731
    else:
        run = lambda: module(x)  # noqa: E731
    best = float("inf")
    for i in range(repeats + 1):
        module.zero_grad(set_to_none=True)
        x.grad = None
        start = time.perf_counter()
        run().sum().backward()
        elapsed = time.perf_counter() - start
        if i:
            best = min(best, elapsed)
    return best


def _status_bytes(field):
    """A memory field of /proc/self/status (Linux), in bytes. VmHWM is this process's own peak
    RSS; getrusage's ru_maxrss would also count the parent's peak, inherited across exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(allocator, repeats):
    """Every case, in this process, under ``allocator``; one summary line per case. The targets
    apply to the ``cpu`` backend (what ``auto`` picks on a CPU); the PyTorch-ops ``torch`` backend
    (the fallback where no C compiler works) is timed beside it."""
    if allocator == "keep":
        keep_large_allocations()
    # memory first: VmHWM is this process's peak so far
    m = mixer("cpu")
    x = torch.randn(32, 5000, D_MODEL, requires_grad=True)
    before = _status_bytes("VmRSS")
    m(x).sum().backward()
    growth = _status_bytes("VmHWM") - before
    # then the length cases, before SASRec's long sequences leave this process's heap in pieces
    lines = []
    for backend in BACKENDS:
        m = mixer(backend)
        long = fwd_bwd_seconds(m, 32, 5000, repeats)
        short = fwd_bwd_seconds(m, 32, 1000, repeats)
        memory = (
            f", peak memory growth {growth / 2**30:.2f} GiB (target < 3 GB)" if backend == "cpu" else ""
        )
        lines.append(
            f"B=32 L=5000: mixer {backend} {long:.2f}s ({32 * 5000 / long:,.0f} tokens/s), "
            f"L=5000/L=1000 time {long / short:.2f}x" + (" (target <= 5.5)" if backend == "cpu" else "")
            + memory
        )
    for batch, length, target in [(256, 200, 0.5), (32, 2000, 0.1)]:
        theirs = fwd_bwd_seconds(sasrec_encoder(), batch, length, 1, sasrec=True)
        ours = {b: fwd_bwd_seconds(mixer(b), batch, length, repeats) for b in BACKENDS}
        lines.append(
            f"B={batch} L={length}: SASRec {theirs:.2f}s; mixer cpu {ours['cpu']:.2f}s, ratio "
            f"{ours['cpu'] / theirs:.3f} (target <= {target}), {batch * length / ours['cpu']:,.0f} "
            f"tokens/s; mixer torch {ours['torch']:.2f}s, ratio {ours['torch'] / theirs:.3f}"
        )
    batch, length = 16, 200  # small enough for the step-by-step reference
    ref = fwd_bwd_seconds(mixer("ref"), batch, length, 1)
    ours = {b: fwd_bwd_seconds(mixer(b), batch, length, repeats) for b in BACKENDS}
    lines.append(
        f"B={batch} L={length}: mixer ref {ref:.3f}s; cpu {ours['cpu']:.3f}s, ratio cpu/ref "
        f"{ours['cpu'] / ref:.3f}; torch {ours['torch']:.3f}s, ratio torch/ref {ours['torch'] / ref:.3f}"
    )
    print(json.dumps(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", choices=ALLOCATORS, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.child:
        return measure(args.child, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU: "
          f"{platform.processor() or platform.machine()}")
    for allocator in ALLOCATORS:
        env = dict(os.environ, THP_MEM_ALLOC_ENABLE="1" if allocator == "thp" else "0")
        out = subprocess.run(
            [sys.executable, __file__, "--child", allocator, "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True, env=env,
        )
        for line in json.loads(out.stdout.strip().splitlines()[-1]):
            print(f"[{allocator} allocator] {line}")


if __name__ == "__main__":
    main()
