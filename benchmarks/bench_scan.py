"""One Mamba mixer forward+backward against RecBole's SASRec encoder on the same (B, L, 64) batch.

Mixer: d_model 64, d_state 32, d_conv 4, expand 2, float32, CPU, all threads. SASRec: RecBole's
``TransformerEncoder`` with SASRec's defaults (2 layers, 2 heads, inner 256, causal mask).
Prints one summary line per case; run with ``python benchmarks/bench_scan.py`` (< 5 minutes).
All cases run twice, each time in a fresh process: with glibc's default allocator policy, and with
:func:`recbole_mamba.allocator.keep_large_allocations` (what the command line uses). Both sides of
every ratio are measured in the same process, so under the same policy: it speeds up SASRec's
encoder at least as much as the mixer, and a ratio under one policy alone would mislead.
"""

import argparse
import json
import subprocess
import sys
import time

import torch

from recbole_mamba.allocator import keep_large_allocations
from recbole_mamba.layers import Mamba

D_MODEL, D_STATE = 64, 32
ALLOCATORS = ("default", "keep")


def mixer(backend="torch"):
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
    """Every case, in this process, under ``allocator``; one summary line per case."""
    if allocator == "keep":
        keep_large_allocations()
    # memory first: VmHWM is this process's peak so far
    m = mixer()
    x = torch.randn(32, 5000, D_MODEL, requires_grad=True)
    before = _status_bytes("VmRSS")
    m(x).sum().backward()
    growth = _status_bytes("VmHWM") - before
    lines = []
    for batch, length, target in [(256, 200, 0.5), (32, 2000, 0.1)]:
        ours = fwd_bwd_seconds(mixer(), batch, length, repeats)
        theirs = fwd_bwd_seconds(sasrec_encoder(), batch, length, 1, sasrec=True)
        lines.append(
            f"B={batch} L={length}: mixer {ours:.2f}s, SASRec {theirs:.2f}s, "
            f"ratio {ours / theirs:.3f} (target <= {target}), {batch * length / ours:,.0f} tokens/s"
        )
    batch, length = 16, 200  # small enough for the step-by-step reference
    ours = fwd_bwd_seconds(mixer(), batch, length, repeats)
    ref = fwd_bwd_seconds(mixer("ref"), batch, length, 1)
    lines.append(
        f"B={batch} L={length}: mixer torch {ours:.3f}s, ref {ref:.3f}s, ratio torch/ref {ours / ref:.3f}"
    )
    long = fwd_bwd_seconds(m, 32, 5000, repeats)
    short = fwd_bwd_seconds(m, 32, 1000, repeats)
    lines.append(
        f"B=32 L=5000: mixer {long:.2f}s ({32 * 5000 / long:,.0f} tokens/s), L=5000/L=1000 time "
        f"{long / short:.2f}x (target <= 5.5), peak memory growth {growth / 2**30:.2f} GiB "
        "(target < 3 GB)"
    )
    print(json.dumps(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", choices=ALLOCATORS, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.child:
        return measure(args.child, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    for allocator in ALLOCATORS:
        out = subprocess.run(
            [sys.executable, __file__, "--child", allocator, "--repeats", str(args.repeats)],
            check=True, capture_output=True, text=True,
        )
        for line in json.loads(out.stdout.strip().splitlines()[-1]):
            print(f"[{allocator} allocator] {line}")


if __name__ == "__main__":
    main()
