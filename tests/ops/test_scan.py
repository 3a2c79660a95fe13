"""The selective scan: the torch and cpu backends against the ref backend, and all three against
an independent scalar recurrence written from the equations."""

import math

import pytest
import torch

from recbole_mamba.ops import (
    CpuKernelUnavailable,
    CudaBackendUnavailable,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
)
from recbole_mamba.ops import scan as scan_module
from recbole_mamba.ops import scan_cpu


def make_inputs(batch, dim, d_state, length, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    return {
        "u": rand(batch, dim, length),
        "delta": rand(batch, dim, length, scale=0.5),
        "A": (-torch.rand(dim, d_state, generator=g, dtype=dtype) - 0.1).requires_grad_(),
        "B": rand(batch, d_state, length),
        "C": rand(batch, d_state, length),
        "D": rand(dim),
        "z": rand(batch, dim, length),
        "delta_bias": rand(dim, scale=0.5),
    }


def scalar_recurrence(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Python scalars and math.exp only: h = exp(dt*A) h + dt*B*u; y = C.h + D*u; y *= silu(z)."""
    batch, dim, length = u.shape
    d_state = A.shape[1]
    out = torch.zeros(batch, dim, length, dtype=torch.float64)
    last = torch.zeros(batch, dim, d_state, dtype=torch.float64)
    for b in range(batch):
        for d in range(dim):
            h = [0.0] * d_state
            for t in range(length):
                dt = float(delta[b, d, t]) + (float(delta_bias[d]) if delta_bias is not None else 0.0)
                if delta_softplus:
                    dt = math.log1p(math.exp(dt))
                x = float(u[b, d, t])
                y = 0.0
                for n in range(d_state):
                    h[n] = math.exp(dt * float(A[d, n])) * h[n] + dt * float(B[b, n, t]) * x
                    y += float(C[b, n, t]) * h[n]
                if D is not None:
                    y += float(D[d]) * x
                if z is not None:
                    zz = float(z[b, d, t])
                    y *= zz / (1.0 + math.exp(-zz))
                out[b, d, t] = y
            last[b, d] = torch.tensor(h, dtype=torch.float64)
    return out, last


OPTION_SETS = [
    dict(use_D=True, use_z=True, use_bias=True, softplus=True),
    dict(use_D=False, use_z=False, use_bias=False, softplus=False),
    dict(use_D=True, use_z=False, use_bias=True, softplus=False),
    dict(use_D=False, use_z=True, use_bias=False, softplus=True),
]


def call_args(inputs, use_D, use_z, use_bias, softplus):
    return (
        inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"],
        inputs["D"] if use_D else None,
        inputs["z"] if use_z else None,
        inputs["delta_bias"] if use_bias else None,
        softplus,
    )


@pytest.mark.parametrize("backend", ["ref", "torch", "cpu"])
@pytest.mark.parametrize("options", OPTION_SETS)
def test_matches_scalar_recurrence(backend, options):
    inputs = make_inputs(2, 3, 4, 6)
    args = call_args(inputs, **options)
    expected, expected_last = scalar_recurrence(*(a.detach() if torch.is_tensor(a) else a for a in args))
    out, last = selective_scan(*args, return_last_state=True, backend=backend)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last, expected_last, rtol=1e-10, atol=1e-10)


SHAPES = [  # (batch, dim, d_state, length)
    (2, 3, 4, 1),
    (2, 3, 4, 3),
    (3, 5, 1, 37),
    (2, 4, 64, 19),
    (5, 2, 8, 50),
]


@pytest.fixture
def small_blocks(monkeypatch):
    """Force several batch blocks and time chunks (torch backend) and time segments of at most
    3 steps (cpu backend) even on small inputs."""
    monkeypatch.setattr(scan_module, "_CHUNK_ELEMENTS", 2 * 3 * 64)
    monkeypatch.setattr(scan_module, "_MIN_STEPS", 3)
    monkeypatch.setattr(scan_cpu, "_SEGMENT_ELEMENTS", 3)


INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def grads_of(backend, inputs, options, cotangent):
    """{'out', 'last_state', 'grad <input>' for every input given}: what a backend computes."""
    for t in inputs.values():
        t.grad = None
    args = call_args(inputs, **options)
    out, last = selective_scan(*args, return_last_state=True, backend=backend)
    (out * cotangent).sum().backward()
    results = {"out": out.detach(), "last_state": last.detach()}
    for name, arg in zip(INPUT_NAMES, args[:8], strict=True):
        if arg is not None:
            results[f"grad {name}"] = arg.grad.clone()
    return results


def assert_all_close(got, expected, rtol):
    """Every output and gradient, by name, within ``rtol`` of the largest expected magnitude."""
    assert list(got) == list(expected)
    for name, a in got.items():
        b = expected[name]
        scale = b.abs().max().clamp_min(1e-12)
        error = ((a - b).abs().max() / scale).item()
        assert error < rtol, f"{name}: relative error {error:.2e} >= {rtol:.0e}"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("options", OPTION_SETS)
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_fast_backends_equal_ref(backend, shape, options, dtype, rtol, small_blocks):
    inputs = make_inputs(*shape, dtype=dtype)
    cotangent = torch.randn(shape[0], shape[1], shape[3], dtype=dtype, generator=torch.Generator().manual_seed(1))
    ref = grads_of("ref", inputs, options, cotangent)
    fast = grads_of(backend, inputs, options, cotangent)
    given = sum(options[k] for k in ("use_D", "use_z", "use_bias"))
    assert len(ref) == 2 + 5 + given  # out, last_state, u/delta/A/B/C and the optional inputs
    assert_all_close(fast, ref, rtol)


def test_equality_check_sees_every_gradient():
    """A wrong gradient of the last input (delta_bias) fails the comparison, naming it."""
    inputs = make_inputs(2, 3, 4, 5)
    cotangent = torch.randn(2, 3, 5, dtype=torch.float64)
    ref = grads_of("ref", inputs, OPTION_SETS[0], cotangent)
    broken = dict(ref, **{"grad delta_bias": ref["grad delta_bias"] * 1.01})
    with pytest.raises(AssertionError, match="grad delta_bias"):
        assert_all_close(broken, ref, 1e-8)


@pytest.mark.parametrize("scan_fn", [scan_module.TorchScanFn, scan_cpu.CpuScanFn])
def test_gradcheck(scan_fn, small_blocks):
    inputs = make_inputs(2, 3, 2, 7)
    args = tuple(inputs[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"))
    fn = lambda *a: scan_fn.apply(*a, True)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, args)


def test_never_materialises_full_state(monkeypatch):
    """The torch backend's buffers are blocks, never (batch, L, dim, d_state)."""
    batch, dim, d_state, length = 8, 16, 8, 64
    full = batch * length * dim * d_state
    largest = []
    real_exp = torch.exp

    def spy_exp(x, *a, **k):
        largest.append(x.numel())
        return real_exp(x, *a, **k)

    monkeypatch.setattr(scan_module, "_CHUNK_ELEMENTS", full // 16)
    monkeypatch.setattr(scan_module.torch, "exp", spy_exp)
    inputs = make_inputs(batch, dim, d_state, length, dtype=torch.float32)
    out = selective_scan(*call_args(inputs, **OPTION_SETS[0]), backend="torch")
    out.sum().backward()
    assert largest and max(largest) <= full // 8


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_causal(backend):
    inputs = make_inputs(2, 3, 4, 12)
    args = list(call_args(inputs, **OPTION_SETS[0]))
    out = selective_scan(*args, backend=backend).detach()
    t = 5
    changed = [a.detach().clone() if torch.is_tensor(a) else a for a in args]
    for i in (0, 1, 3, 4, 6):  # u, delta, B, C, z: the time-indexed inputs
        changed[i][..., t + 1:] = torch.randn_like(changed[i][..., t + 1:])
    out2 = selective_scan(*changed, backend=backend)
    assert torch.equal(out[..., : t + 1], out2[..., : t + 1])
    assert not torch.equal(out[..., t + 1:], out2[..., t + 1:])


def test_ref_is_the_exported_oracle():
    inputs = make_inputs(1, 2, 3, 4)
    args = call_args(inputs, **OPTION_SETS[0])
    torch.testing.assert_close(selective_scan_ref(*args), selective_scan(*args, backend="ref"))


def test_backend_resolution_on_cpu():
    assert resolve_backend("auto", "cpu") == "cpu"  # this machine has a C compiler
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("ref", "cpu") == "ref"
    with pytest.raises(ValueError, match="auto, cuda, triton, cpu, torch, ref"):
        resolve_backend("fast", "cpu")


def test_cpu_backend_refuses_cuda_tensors():
    with pytest.raises(CpuKernelUnavailable, match="CPU tensors"):
        resolve_backend("cpu", "cuda")


def test_cuda_backend_without_kernels_says_how_to_install(monkeypatch):
    monkeypatch.setattr(scan_module, "_mamba_ssm_scan", lambda: None)
    with pytest.raises(CudaBackendUnavailable, match=r"recbole-mamba\[cuda\]"):
        resolve_backend("cuda", "cpu")
