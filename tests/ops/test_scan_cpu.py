"""The compiled cpu backend: its elementwise functions, strides and thread splits, the compile
cache, and what happens where no compiler works."""

import os

import pytest
import torch

from recbole_mamba.ops import CpuKernelUnavailable, resolve_backend, selective_scan
from recbole_mamba.ops import scan_cpu
from tests.ops.test_scan import INPUT_NAMES, OPTION_SETS, assert_all_close, call_args, grads_of, make_inputs


def test_exp_is_accurate_over_the_float_range():
    x = torch.linspace(-87.0, 88.0, 200_001)
    expected = torch.exp(x.double())
    rel = ((scan_cpu.exp_f32(x).double() - expected) / expected).abs()
    assert rel.max().item() < 2e-7


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
def test_softplus_and_gate_over_a_wide_range(dtype, rtol):
    """delta + bias and z from -40 to 40: softplus's threshold and both tails of the sigmoid."""
    inputs = make_inputs(2, 4, 8, 30, dtype=dtype)
    with torch.no_grad():
        inputs["delta"].copy_(torch.linspace(-40, 40, 2 * 4 * 30, dtype=dtype).view(2, 4, 30))
        inputs["z"].copy_(torch.linspace(40, -40, 2 * 4 * 30, dtype=dtype).view(2, 4, 30))
        inputs["A"].mul_(0.05)  # keep exp(dt * A) away from 0 at dt = 40
    cotangent = torch.randn(2, 4, 30, dtype=dtype, generator=torch.Generator().manual_seed(2))
    expected = grads_of("ref", inputs, OPTION_SETS[0], cotangent)
    assert_all_close(grads_of("cpu", inputs, OPTION_SETS[0], cotangent), expected, rtol)


def test_time_major_views_and_broadcast_gradients():
    """Inputs as (batch, dim, L) views of (batch, L, dim) tensors, B and C sliced out of one
    projection, and an output gradient with stride 0 (from .sum())."""
    batch, dim, n, length = 3, 6, 4, 11
    g = torch.Generator().manual_seed(0)
    u, delta, z = (torch.randn(batch, length, dim, generator=g, dtype=torch.float64).transpose(1, 2)
                   for _ in range(3))
    x_dbl = torch.randn(batch, length, 1 + 2 * n, generator=g, dtype=torch.float64)
    B, C = x_dbl[..., 1:1 + n].transpose(1, 2), x_dbl[..., 1 + n:].transpose(1, 2)
    A = -torch.rand(dim, n, generator=g, dtype=torch.float64) - 0.1
    D, bias = torch.randn(dim, generator=g, dtype=torch.float64), torch.zeros(dim, dtype=torch.float64)
    args = [t.clone().requires_grad_() if t.is_contiguous() else t.detach().requires_grad_()
            for t in (u, delta, A, B, C, D, z, bias)]
    results = []
    for backend in ("ref", "cpu"):
        out = selective_scan(*args, delta_softplus=True, backend=backend)
        grads = torch.autograd.grad(out.sum(), args)
        names = ["out", *(f"grad {name}" for name in INPUT_NAMES)]
        results.append(dict(zip(names, [out, *grads], strict=True)))
    assert_all_close(results[1], results[0], 1e-10)


@pytest.mark.parametrize("batch", [1, 5])
def test_same_result_on_one_thread_and_several(batch):
    """One batch row on two threads splits the channels in groups, whose dB and dC partials sum."""
    inputs = make_inputs(batch, 8, 4, 13)
    cotangent = torch.randn(batch, 8, 13, dtype=torch.float64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = grads_of("cpu", inputs, OPTION_SETS[0], cotangent)
        torch.set_num_threads(2)
        two = grads_of("cpu", inputs, OPTION_SETS[0], cotangent)
    finally:
        torch.set_num_threads(before)
    assert_all_close(two, one, 1e-12)
    assert_all_close(two, grads_of("ref", inputs, OPTION_SETS[0], cotangent), 1e-8)


def test_loading_the_kernel_keeps_denormals():
    """Built without -ffast-math, whose crtfastmath.o would flush denormals process-wide."""
    scan_cpu.library()
    tiny = torch.tensor([1e-40], dtype=torch.float32)
    assert (tiny * 0.5).item() > 0


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """The kernel module as if nothing had been compiled or loaded, caching into tmp_path."""
    monkeypatch.setenv("RECBOLE_MAMBA_CACHE", str(tmp_path))
    monkeypatch.setattr(scan_cpu, "_loaded", None)
    return tmp_path


def test_compiles_once_into_the_cache(fresh_kernel):
    scan_cpu.library()
    built = list(fresh_kernel.iterdir())
    assert [p.suffix for p in built] == [".so"]  # no temporary left behind
    stamp = built[0].stat().st_mtime_ns
    scan_cpu._loaded = None  # a new process: loads the cached file, compiles nothing
    scan_cpu.library()
    assert list(fresh_kernel.iterdir()) == built and built[0].stat().st_mtime_ns == stamp


def test_without_a_compiler_auto_falls_back_and_cpu_says_why(fresh_kernel, monkeypatch):
    monkeypatch.setattr(scan_cpu, "_compilers", lambda: [])
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(CpuKernelUnavailable, match="no C compiler found.*mamba_backend=torch"):
        resolve_backend("cpu", "cpu")


def test_a_failing_compiler_is_reported(fresh_kernel, monkeypatch):
    monkeypatch.setenv("CC", "false")
    reason = scan_cpu.unavailable_reason()
    assert reason and "compiling scan_cpu.c failed" in reason
    assert os.listdir(fresh_kernel) == []  # nothing half-written
    inputs = make_inputs(1, 2, 3, 4)
    out = selective_scan(*call_args(inputs, **OPTION_SETS[0]), backend="auto")  # PyTorch ops
    torch.testing.assert_close(out, selective_scan(*call_args(inputs, **OPTION_SETS[0]), backend="ref"))
