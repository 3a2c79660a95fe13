"""Exact full cross-entropy at a million-item catalogue: the item-chunked loss against the dense one.

One batch of ``--tokens`` states (hidden ``--hidden``) over ``--items`` items, forward and
backward, each in a fresh process: peak RSS above the inputs and their gradients (the loss's
working set), seconds, and what the dense ``F.cross_entropy(h @ E.T)`` would need for its logits
(measured too where it fits ``--dense-limit-gb``). Then the time of one epoch of ``--epoch-tokens``
training positions on this CPU, and what the FLOP count implies on a GPU at ``--gpu-tflops``.

``python benchmarks/bench_chunked_ce.py [--items 1230000 --tokens 12800 --hidden 64]``
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(kind, items, tokens, hidden):
    from recbole_mamba.model.chunked_ce import cross_entropy_flops, cross_entropy_sum

    torch.manual_seed(0)
    h = (torch.randn(tokens, hidden) * 0.1).requires_grad_()
    e = (torch.randn(items, hidden) * 0.1).requires_grad_()
    targets = torch.randint(1, items, (tokens,))
    # the inputs' gradients are part of training either way: allocate them before the baseline
    h.grad, e.grad = torch.zeros_like(h), torch.zeros_like(e)
    base = peak_rss()
    start = time.perf_counter()
    if kind == "chunked":
        loss = cross_entropy_sum(h, e, targets)
    else:
        loss = torch.nn.functional.cross_entropy(h @ e.T, targets, reduction="sum")
    loss.backward()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "extra_bytes": peak_rss() - base, "loss": loss.item() / tokens,
                      "flops": cross_entropy_flops(tokens, items, hidden)}))


def run(kind, args):
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--items", str(args.items), "--tokens",
                          str(args.tokens), "--hidden", str(args.hidden)], capture_output=True, text=True)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_230_000)
    parser.add_argument("--tokens", type=int, default=12_800)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epoch-tokens", type=float, default=2.0e6, help="training positions of an epoch")
    parser.add_argument("--gpu-tflops", type=float, default=400.0,
                        help="GPU throughput for the estimate (an H100's TF32 dense peak is about 400)")
    parser.add_argument("--dense-limit-gb", type=float, default=6.0)
    parser.add_argument("--child", choices=["chunked", "dense"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.items, args.tokens, args.hidden)
    gib = 1 << 30
    logits_bytes = args.tokens * args.items * 4
    print(f"exact CE, {args.tokens:,} states x {args.items:,} items, hidden {args.hidden}, float32, "
          f"{torch.get_num_threads()} threads; dense logits alone: {logits_bytes / gib:.1f} GiB")
    chunked = run("chunked", args)
    print(f"chunked: {chunked['seconds']:.1f} s forward+backward, working set {chunked['extra_bytes'] / gib:.2f} GiB"
          f", loss {chunked['loss']:.4f}")
    if 3 * logits_bytes <= args.dense_limit_gb * gib:
        dense = run("dense", args)
        print(f"dense:   {dense['seconds']:.1f} s, working set {dense['extra_bytes'] / gib:.2f} GiB, loss "
              f"{dense['loss']:.4f}; time ratio chunked/dense {chunked['seconds'] / dense['seconds']:.2f}")
    else:
        print(f"dense:   not run (its logits, softmax and gradient, about {3 * logits_bytes / gib:.0f} GiB, "
              f"exceed --dense-limit-gb {args.dense_limit_gb:g})")
    batches = args.epoch_tokens / args.tokens
    epoch_flops = chunked["flops"] * batches
    print(f"one epoch of {args.epoch_tokens:,.0f} positions ({batches:.0f} batches): "
          f"{chunked['seconds'] * batches / 3600:.1f} h on this CPU (measured batch x batches), "
          f"{epoch_flops / 1e15:.2f} PFLOP: {epoch_flops / (args.gpu_tflops * 1e12):.0f} s at "
          f"{args.gpu_tflops:g} TFLOP/s")


if __name__ == "__main__":
    sys.exit(main())
