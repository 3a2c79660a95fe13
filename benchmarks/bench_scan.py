"""One Mamba mixer forward+backward against RecBole's SASRec encoder on the same (B, L, 64) batch.

Mixer: d_model 64, d_state 32, d_conv 4, expand 2, float32, CPU, all threads. SASRec: RecBole's
``TransformerEncoder`` with SASRec's defaults (2 layers, 2 heads, inner 256, causal mask).
Prints one summary line per case; run with ``python benchmarks/bench_scan.py`` (< 5 minutes).
"""

import argparse
import json
import subprocess
import sys
import time

import torch

from recbole_mamba.layers import Mamba

D_MODEL, D_STATE = 64, 32


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


def peak_memory_child(batch, length):
    """In a fresh process: peak RSS growth (bytes) of one mixer forward+backward."""
    m = mixer()
    x = torch.randn(batch, length, D_MODEL, requires_grad=True)
    before = _status_bytes("VmRSS")
    m(x).sum().backward()
    after = _status_bytes("VmHWM")
    print(json.dumps({"peak_growth": after - before, "peak_rss": after}))


def peak_memory(batch, length):
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(batch), str(length)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-child", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.memory_child:
        return peak_memory_child(*args.memory_child)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    for batch, length, target in [(256, 200, 0.5), (32, 2000, 0.1)]:
        ours = fwd_bwd_seconds(mixer(), batch, length, args.repeats)
        theirs = fwd_bwd_seconds(sasrec_encoder(), batch, length, 1, sasrec=True)
        print(
            f"B={batch} L={length}: mixer {ours:.2f}s, SASRec {theirs:.2f}s, "
            f"ratio {ours / theirs:.3f} (target <= {target}), "
            f"{batch * length / ours:,.0f} tokens/s"
        )

    batch, length = 16, 200  # small enough for the step-by-step reference
    ours = fwd_bwd_seconds(mixer(), batch, length, args.repeats)
    ref = fwd_bwd_seconds(mixer("ref"), batch, length, 1)
    print(f"B={batch} L={length}: mixer torch {ours:.3f}s, ref {ref:.3f}s, ratio torch/ref {ours / ref:.3f}")

    short = fwd_bwd_seconds(mixer(), 32, 1000, args.repeats)
    long = fwd_bwd_seconds(mixer(), 32, 5000, args.repeats)
    mem = peak_memory(32, 5000)
    print(
        f"B=32 L=5000: mixer {long:.2f}s ({32 * 5000 / long:,.0f} tokens/s), L=5000/L=1000 time "
        f"{long / short:.2f}x (target <= 5.5), peak memory growth "
        f"{mem['peak_growth'] / 2**30:.2f} GiB (process peak {mem['peak_rss'] / 2**30:.2f} GiB; "
        "target < 3 GB)"
    )


if __name__ == "__main__":
    main()
