"""GPU check of the selective scan and the mixer: one script, under 10 minutes, run where a GPU is.

Needs only torch (with CUDA) and, for the ``triton`` backend, Triton: no RecBole, so it runs on a
GPU machine with its own Python that cannot install this project's pinned stack.

1. Equality on CUDA tensors: the ``torch`` and ``triton`` backends (and ``cuda`` where mamba-ssm
   imports) against ``ref``, output and every gradient by name (float64 rel. 1e-8, float32 1e-4).
2. For B=64 at L = 1k, 2k, 5k (d_model 64, d_state 32, expand 2, float32): forward+backward time
   and peak memory of the mixer on each backend and of a SASRec encoder (2 layers, 2 heads, inner
   256, causal; RecBole's ``TransformerEncoder`` where RecBole imports, else the same computation
   written out below), side by side in this process; ratios mixer / SASRec; and the mixer on the
   first backend with a delay line (``d_conv`` 64, its convolution in ``F.conv1d``) as a ratio of
   the shipped width 4.
3. The triton scan's effective memory bandwidth (bytes its forward must read and write / time) as
   a fraction of a device-to-device copy measured in the same run.

4. Where the machine has 2 GPUs: DistributedDataParallel on 2 ranks (NCCL) against 1 GPU, an
   item embedding + mixer + dot-product head after 5 Adam steps on batches of uneven lengths,
   each rank's loss weighted by its share of the positions (``global_mean``): max |dtheta|.

5. With ``--devices`` (needs RecBole and the plugin installed): the GPU a run takes, by the UUID
   of the device its config resolves, in child processes: ``CUDA_VISIBLE_DEVICES`` unset (GPU 0,
   left unset), set by a launcher to the last GPU (that GPU, kept), ``gpu_id`` given (RecBole's
   meaning), ``use_gpu False`` (the CPU), and Ray tasks given one GPU each (each on the GPU Ray
   assigned it, no two on one).

Prints one line per measurement; exits 1 if an equality or device check fails.
``python benchmarks/gpu_check.py [--lengths 1000,2000,5000] [--batch 64] [--ddp] [--devices]``
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

from recbole_mamba.distributed.context import DistributedContext
from recbole_mamba.distributed.global_loss import global_mean
from recbole_mamba.layers import Mamba
from recbole_mamba.ops import BACKENDS, selective_scan

ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def available(backend):
    reason = BACKENDS[backend].unavailable()
    if reason:
        print(f"{backend} backend skipped: {reason}")
    return reason is None


def equality(backend, dtype, rtol):
    g = torch.Generator(device="cuda").manual_seed(0)
    b, d, n, length = 3, 8, 16, 77

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, device="cuda", dtype=dtype) * scale).requires_grad_()

    inputs = [rand(b, d, length), rand(b, d, length, scale=0.5),
              (-torch.rand(d, n, generator=g, device="cuda", dtype=dtype) - 0.1).requires_grad_(),
              rand(b, n, length), rand(b, n, length), rand(d), rand(b, d, length), rand(d, scale=0.5)]
    cotangent = torch.randn(b, d, length, generator=g, device="cuda", dtype=dtype)
    results = []
    for name in ("ref", backend):
        for t in inputs:
            t.grad = None
        y = selective_scan(*inputs, delta_softplus=True, backend=name)
        (y * cotangent).sum().backward()
        results.append({"out": y.detach(), **{f"grad {a}": t.grad.clone() for a, t in zip(ARGS, inputs, strict=True)}})
    errors = {key: ((results[1][key] - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
              for key, ref in results[0].items()}
    worst = max(errors, key=errors.get)
    ok = errors[worst] < rtol
    print(f"{backend} vs ref on CUDA, {dtype}: max relative error {errors[worst]:.2e} in {worst} "
          f"({'ok' if ok else 'FAIL'}, < {rtol})")
    return ok


class CausalEncoder(nn.Module):
    """SASRec's encoder as RecBole 1.2.1 computes it (explicit softmax attention with an additive
    causal mask, post-LayerNorm residual blocks, GELU feed-forward), for machines without RecBole."""

    def __init__(self, hidden=64, heads=2, inner=256, layers=2, dropout=0.5):
        super().__init__()
        self.heads = heads
        self.blocks = nn.ModuleList(nn.ModuleDict({
            "qkv": nn.Linear(hidden, 3 * hidden), "out": nn.Linear(hidden, hidden), "norm1": nn.LayerNorm(hidden),
            "ff1": nn.Linear(hidden, inner), "ff2": nn.Linear(inner, hidden), "norm2": nn.LayerNorm(hidden),
        }) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask):
        batch, length, hidden = x.shape
        for block in self.blocks:
            q, k, v = block["qkv"](x).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
            scores = q @ k.transpose(-1, -2) / math.sqrt(hidden // self.heads) + mask
            attended = (self.dropout(scores.softmax(-1)) @ v).transpose(1, 2).reshape(batch, length, hidden)
            x = block["norm1"](x + self.dropout(block["out"](attended)))
            ff = block["ff2"](self.dropout(nn.functional.gelu(block["ff1"](x))))
            x = block["norm2"](x + self.dropout(ff))
        return x


def sasrec_encoder():
    try:
        from recbole.model.layers import TransformerEncoder
    except ImportError:
        return "written out", CausalEncoder().cuda()
    encoder = TransformerEncoder(n_layers=2, n_heads=2, hidden_size=64, inner_size=256, hidden_dropout_prob=0.5,
                                 attn_dropout_prob=0.5, hidden_act="gelu", layer_norm_eps=1e-12).cuda()
    return "RecBole's", lambda x, mask: encoder(x, mask, output_all_encoded_layers=True)[-1]


def measure(fn, repeats=3):
    """(best seconds, peak bytes above what was allocated before) of fn() on the GPU."""
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, torch.cuda.max_memory_allocated() - base


def speed(batch, lengths, backends):
    kind, encoder = sasrec_encoder()
    print(f"SASRec encoder: {kind} computation")
    for length in lengths:
        x = torch.randn(batch, length, 64, device="cuda", requires_grad=True)
        line = f"B={batch} L={length}:"
        mask = torch.triu(torch.full((length, length), -10000.0, device="cuda"), 1).expand(batch, 1, length, length)
        try:
            sasrec = measure(lambda: encoder(x, mask).sum().backward())
            line += f" SASRec {sasrec[0] * 1e3:.1f} ms {sasrec[1] / 2**30:.2f} GiB;"
        except torch.cuda.OutOfMemoryError:
            sasrec = None
            line += " SASRec out of memory;"
        x.grad = None
        torch.cuda.empty_cache()
        times = {}
        for backend in backends:
            mixer = Mamba(64, d_state=32, expand=2, backend=backend).cuda()
            ours = measure(lambda: mixer(x).sum().backward())
            times[backend] = ours[0]
            ratio = f", ratio {ours[0] / sasrec[0]:.3f}" if sasrec else ""
            line += f" mixer {backend} {ours[0] * 1e3:.1f} ms {ours[1] / 2**30:.2f} GiB{ratio};"
        wide = Mamba(64, d_state=32, d_conv=64, expand=2, backend=backends[0]).cuda()
        delay = measure(lambda: wide(x).sum().backward())
        line += (f" mixer {backends[0]} d_conv 64 {delay[0] * 1e3:.1f} ms {delay[1] / 2**30:.2f} GiB, "
                 f"{delay[0] / times[backends[0]]:.2f}x d_conv 4;")
        print(line)


def bandwidth(batch, length):
    """The triton forward scan's bytes (inputs read once, output written once) per second, as a
    fraction of a device-to-device copy of as many bytes."""
    dim, n = 128, 32
    u, delta, z = (torch.randn(batch, dim, length, device="cuda") for _ in range(3))
    B, C = (torch.randn(batch, n, length, device="cuda") for _ in range(2))
    A = -torch.rand(dim, n, device="cuda") - 0.1
    D, bias = torch.randn(dim, device="cuda"), torch.randn(dim, device="cuda")
    scan = lambda: selective_scan(u, delta, A, B, C, D, z, bias, True, backend="triton")  # noqa: E731
    seconds, _ = measure(scan, repeats=5)
    moved = 4 * (4 * batch * dim * length + 2 * batch * n * length)  # u, delta, z, out; B, C
    src = torch.empty(moved // 8, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    copy_seconds, _ = measure(lambda: dst.copy_(src), repeats=5)  # reads and writes moved/2 each
    print(f"triton scan forward B={batch} L={length}: {moved / seconds / 1e9:.0f} GB/s, device copy "
          f"{moved / copy_seconds / 1e9:.0f} GB/s, fraction {copy_seconds / seconds:.2f}")


class TinyRecommender(nn.Module):
    """Item embedding, a Mamba mixer and a dot-product head: (B, L) item ids -> (B, L, items) logits."""

    def __init__(self, items, hidden=64):
        super().__init__()
        self.embedding = nn.Embedding(items, hidden, padding_idx=0)
        self.mixer = Mamba(hidden, d_state=16)

    def forward(self, sequences):
        return self.mixer(self.embedding(sequences)) @ self.embedding.weight.T


def ddp_batches(steps, rows=16, length=64, items=1000):
    """``steps`` batches of (B, L) item ids and next-item targets, of uneven lengths (0 pads)."""
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(steps):
        ids = torch.randint(1, items, (rows, length + 1), generator=g)
        lengths = torch.randint(4, length + 1, (rows,), generator=g)
        keep = torch.arange(length + 1) < lengths[:, None] + 1
        ids = ids * keep
        batches.append((ids[:, :-1], ids[:, 1:]))
    return batches


def ddp_train(model, batches, rank=0, world=1, context=None, lr=3e-3):
    """Adam on ``batches``: one process whole, or rank ``rank`` of ``world`` its rows, the loss
    weighted by its share of the batch's positions."""
    device = torch.device("cuda", rank)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for sequences, targets in batches:
        sequences, targets = sequences.to(device), targets.to(device)
        mine = slice(rank, None, world)
        loss = F.cross_entropy(model(sequences[mine]).flatten(0, 1), targets[mine].flatten(), ignore_index=0)
        if context is not None:
            share = (targets[mine] > 0).sum().item() / (targets > 0).sum().item()
            loss, _ = global_mean(loss, share, context)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _ddp_rank(rank, port, steps, path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.cuda.set_device(rank)
    torch.manual_seed(0)
    model = TinyRecommender(1000).cuda(rank)
    ddp = DistributedDataParallel(model, device_ids=[rank])
    ddp_train(ddp, ddp_batches(steps), rank, 2, DistributedContext(rank, 2, rank, 2))
    if rank == 0:
        torch.save(model.state_dict(), path)
    dist.destroy_process_group()


def ddp(steps=5):
    """2 GPUs under DistributedDataParallel (NCCL) against 1 GPU: the same parameters after
    ``steps`` Adam steps on batches of uneven lengths (max |dtheta| <= 1e-4, float32, TF32 off)."""
    import tempfile

    import torch.multiprocessing as mp

    from recbole_mamba.distributed.launch import free_port

    if torch.cuda.device_count() < 2:
        print(f"DDP check skipped: {torch.cuda.device_count()} GPU(s), it needs 2")
        return True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    one = TinyRecommender(1000).cuda(0)
    ddp_train(one, ddp_batches(steps))
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/ranks.pt"
        mp.spawn(_ddp_rank, args=(free_port(), steps, path), nprocs=2)
        two = torch.load(path, weights_only=True)
    worst = max((value - two[key].to(value.device)).abs().max().item() for key, value in one.state_dict().items())
    ok = worst <= 1e-4
    print(f"DDP 2 GPUs (NCCL) vs 1 GPU after {steps} Adam steps: max |dtheta| {worst:.2e} {'ok' if ok else 'FAILED'}")
    return ok


DEVICE_CHILD = """
import json, os, sys, torch
from recbole_mamba.config import RecboleMambaConfig
config = RecboleMambaConfig("MambaRec", "ml-100k", config_dict=json.loads(sys.argv[1]))
device = config["device"]
torch.zeros(1, device=device)
uuid = str(torch.cuda.get_device_properties(device).uuid) if device.type == "cuda" else "cpu"
print(json.dumps({"uuid": uuid, "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}))
"""


def device_run(given, visible):
    """{uuid, visible} of a config made in a child with ``CUDA_VISIBLE_DEVICES`` = ``visible``
    (None: unset) and ``given`` RecBole keys: the device the run trains on, and the variable after."""
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update({} if visible is None else {"CUDA_VISIBLE_DEVICES": visible})
    out = subprocess.run([sys.executable, "-c", DEVICE_CHILD, json.dumps(given)], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _ray_device_run(given):
    return device_run(given, os.environ.get("CUDA_VISIBLE_DEVICES"))  # as Ray set it for this task


def devices():
    """The GPU each way of choosing one gives a run (5. above); True when every one is right."""
    physical = json.loads(subprocess.run(
        [sys.executable, "-c", "import json, torch; print(json.dumps([str(torch.cuda.get_device_properties(i).uuid)"
         " for i in range(torch.cuda.device_count())]))"],
        env={k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}, capture_output=True, text=True,
        timeout=120, check=True).stdout)
    last = str(len(physical) - 1)
    cases = [("CUDA_VISIBLE_DEVICES unset", {}, None, physical[0], None),
             (f"CUDA_VISIBLE_DEVICES={last} (a launcher's)", {}, last, physical[-1], last),
             (f"gpu_id {last} given", {"gpu_id": last}, None, physical[-1], last),
             (f"use_gpu False, CUDA_VISIBLE_DEVICES={last}", {"use_gpu": False}, last, "cpu", last)]
    ok = True
    for name, given, visible, want, want_visible in cases:
        got = device_run(given, visible)
        right = got == {"uuid": want, "visible": want_visible}
        ok &= right
        print(f"devices: {name}: trains on {'GPU ' + str(physical.index(got['uuid'])) if got['uuid'] in physical else got['uuid']}, "
              f"CUDA_VISIBLE_DEVICES after {got['visible']!r} {'ok' if right else 'FAILED'}")
    import ray

    ray.init(num_cpus=len(physical), num_gpus=len(physical), include_dashboard=False)
    try:
        runs = ray.get([ray.remote(num_gpus=1)(_ray_device_run).remote({}) for _ in physical])
    finally:
        ray.shutdown()
    right = (sorted(run["uuid"] for run in runs) == sorted(physical)
             and all(run["uuid"] == physical[int(run["visible"])] for run in runs))
    ok &= right
    print(f"devices: {len(runs)} Ray tasks of 1 GPU each train on GPUs "
          f"{sorted(physical.index(run['uuid']) if run['uuid'] in physical else run['uuid'] for run in runs)} "
          f"{'ok' if right else 'FAILED'}")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1000,2000,5000")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--ddp", action="store_true", help="only the 2-GPU DDP check (4.)")
    parser.add_argument("--devices", action="store_true", help="only the GPU each run takes (5.; needs RecBole)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(torch.cuda.get_device_name(), "torch", torch.__version__, time.strftime("%Y-%m-%d"))
    if args.ddp:
        return 0 if ddp() else 1
    if args.devices:
        return 0 if devices() else 1
    backends = [b for b in ("triton", "cuda") if available(b)] + ["torch"]
    checks = [equality(b, dtype, rtol) for b in backends for dtype, rtol in ((torch.float64, 1e-8), (torch.float32, 1e-4))]
    speed(args.batch, [int(v) for v in args.lengths.split(",")], backends)
    if "triton" in backends:
        bandwidth(args.batch, 2000)
    checks.append(ddp())
    return 0 if all(checks) else 1


if __name__ == "__main__":
    sys.exit(main())
