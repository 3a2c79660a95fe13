"""GPU check of the selective scan and the mixer (needs CUDA; run where a GPU is available).

1. ``torch`` backend vs ``ref`` backend on CUDA tensors: forward and all gradients (float64,
   rel. 1e-8; float32, rel. 1e-4).
2. Mixer forward+backward vs RecBole's SASRec encoder on the GPU at B=256 L=200 and B=32 L=2000,
   with the ``torch`` backend and, when mamba-ssm imports, the ``cuda`` backend.
Prints one line per check; exits 1 if an equality check fails. ``python benchmarks/gpu_check.py``
"""

import sys
import time

import torch

from recbole_mamba.layers import Mamba
from recbole_mamba.ops import resolve_backend, selective_scan


def equality(dtype, rtol):
    g = torch.Generator(device="cuda").manual_seed(0)
    b, d, n, length = 3, 8, 16, 77

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, device="cuda", dtype=dtype) * scale).requires_grad_()

    inputs = [rand(b, d, length), rand(b, d, length, scale=0.5),
              (-torch.rand(d, n, generator=g, device="cuda", dtype=dtype) - 0.1).requires_grad_(),
              rand(b, n, length), rand(b, n, length), rand(d), rand(b, d, length), rand(d, scale=0.5)]
    cotangent = torch.randn(b, d, length, generator=g, device="cuda", dtype=dtype)
    outs = []
    for backend in ("ref", "torch"):
        for t in inputs:
            t.grad = None
        y = selective_scan(*inputs, delta_softplus=True, backend=backend)
        (y * cotangent).sum().backward()
        outs.append([y.detach()] + [t.grad.clone() for t in inputs])
    worst = max(((a - r).abs().max() / r.abs().max().clamp_min(1e-12)).item() for a, r in zip(*outs))
    ok = worst < rtol
    print(f"torch vs ref on CUDA, {dtype}: max relative error {worst:.2e} ({'ok' if ok else 'FAIL'}, < {rtol})")
    return ok


def seconds(fn, repeats=5):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def ratios():
    from recbole.model.layers import TransformerEncoder

    backends = ["torch"] + (["cuda"] if _has_cuda_kernels() else [])
    for batch, length in ((256, 200), (32, 2000)):
        x = torch.randn(batch, length, 64, device="cuda", requires_grad=True)
        encoder = TransformerEncoder(n_layers=2, n_heads=2, hidden_size=64, inner_size=256,
                                     hidden_dropout_prob=0.5, attn_dropout_prob=0.5, hidden_act="gelu",
                                     layer_norm_eps=1e-12).cuda()
        mask = torch.triu(torch.full((length, length), -10000.0, device="cuda"), 1).expand(batch, 1, length, length)
        sasrec = seconds(lambda: encoder(x, mask, output_all_encoded_layers=True)[-1].sum().backward())
        for backend in backends:
            mixer = Mamba(64, d_state=32, backend=backend).cuda()
            ours = seconds(lambda: mixer(x).sum().backward())
            print(f"GPU B={batch} L={length}: mixer ({backend}) {ours * 1e3:.1f} ms, SASRec {sasrec * 1e3:.1f} ms, "
                  f"ratio {ours / sasrec:.3f}")


def _has_cuda_kernels():
    try:
        resolve_backend("cuda", "cuda")
        return True
    except RuntimeError:
        print("mamba-ssm kernels not importable: cuda backend skipped")
        return False


def main():
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    ok = equality(torch.float64, 1e-8) & equality(torch.float32, 1e-4)
    ratios()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
