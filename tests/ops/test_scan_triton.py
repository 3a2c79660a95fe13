"""The triton backend against the ref backend: every output and gradient, in Triton's interpreter
on CPU tensors (TRITON_INTERPRET=1, set by conftest where there is no GPU), and how ``auto`` picks
it on a CUDA device."""

import os

import pytest
import torch

from recbole_mamba.layers import Mamba
from recbole_mamba.ops import TritonUnavailable, choose_backend, selective_scan
from recbole_mamba.ops import scan as scan_module
from tests.ops.test_scan import OPTION_SETS, assert_all_close, grads_of, make_inputs

scan_triton = pytest.importorskip("recbole_mamba.ops.scan_triton", reason="Triton does not import here")
needs_device = pytest.mark.skipif(
    not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1",
    reason="no GPU and not in Triton's interpreter",
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def on_device(inputs):
    return {k: v.detach().to(DEVICE).requires_grad_() for k, v in inputs.items()}


@pytest.fixture
def short_segments(monkeypatch):
    """Backward segments of 4 steps (several per sequence, the last one partial) and blocks of 8
    channels (several per row, the last one partial: dB and dC add up over blocks)."""
    monkeypatch.setattr(scan_triton, "SEGMENT", 4)
    monkeypatch.setattr(scan_triton, "MAX_BLOCK_D", 8)


@needs_device
@pytest.mark.parametrize("shape", [(2, 3, 4, 1), (2, 3, 5, 10), (1, 20, 2, 7)])  # (batch, dim, d_state, L)
@pytest.mark.parametrize("options", OPTION_SETS)
def test_equals_ref_in_float64(shape, options, short_segments):
    inputs = on_device(make_inputs(*shape))
    cotangent = torch.randn(shape[0], shape[1], shape[3], dtype=torch.float64, device=DEVICE)
    assert_all_close(grads_of("triton", inputs, options, cotangent), grads_of("ref", inputs, options, cotangent), 1e-8)


@needs_device
def test_equals_ref_in_float32_over_several_segments(short_segments):
    inputs = on_device(make_inputs(2, 12, 16, 19, dtype=torch.float32))
    cotangent = torch.randn(2, 12, 19, device=DEVICE)
    expected = grads_of("ref", inputs, OPTION_SETS[0], cotangent)
    assert_all_close(grads_of("triton", inputs, OPTION_SETS[0], cotangent), expected, 1e-4)


@needs_device
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_accumulate_in_float32(dtype):
    inputs = make_inputs(2, 4, 8, 9, dtype=torch.float32)
    half = {k: v.detach().to(dtype).to(DEVICE) for k, v in inputs.items()}
    out = selective_scan(*(half[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")),
                         delta_softplus=True, backend="triton")
    exact = selective_scan(*(half[k].double() for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")),
                           delta_softplus=True, backend="ref")
    assert out.dtype == dtype
    assert ((out.double() - exact).abs().max() / exact.abs().max()).item() < 1e-2


@needs_device
def test_gradcheck(short_segments):
    """Finite differences against the backward kernel (fast mode: random projections of the
    Jacobian, since each interpreted call takes a tenth of a second; the comparisons with ref
    above check every gradient element by element)."""
    inputs = on_device(make_inputs(1, 2, 2, 6))
    args = tuple(inputs[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias"))
    fn = lambda *a: scan_triton.TritonScanFn.apply(*a, True)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, args, fast_mode=True)


@needs_device
def test_mixer_on_triton_equals_ref():
    x = torch.randn(2, 6, 8, dtype=torch.float64, device=DEVICE)
    results = {}
    for backend in ("ref", "triton"):
        torch.manual_seed(0)
        mixer = Mamba(8, d_state=4, backend=backend).double().to(DEVICE)
        xi = x.clone().requires_grad_()
        y = mixer(xi)
        y.pow(2).sum().backward()
        results[backend] = {"out": y.detach(), "grad x": xi.grad,
                            **{f"grad {name}": p.grad for name, p in mixer.named_parameters()}}
    assert_all_close(results["triton"], results["ref"], 1e-8)


def test_auto_on_a_gpu_prefers_mamba_ssm_then_triton_then_torch(monkeypatch):
    monkeypatch.setattr(scan_module, "_mamba_ssm_scan", lambda: None)
    name, skipped = choose_backend("auto", "cuda")
    assert name == "triton" and len(skipped) == 1 and "mamba-ssm" in skipped[0]
    monkeypatch.setattr(scan_module, "_triton_module", lambda: (None, "ImportError: no module named triton"))
    name, skipped = choose_backend("auto", "cuda")
    assert name == "torch" and "needs Triton" in skipped[1] and "no module named triton" in skipped[1]
    assert choose_backend("auto", "cpu")[0] in ("cpu", "torch")  # never the interpreted kernels


def test_triton_without_triton_says_why(monkeypatch):
    monkeypatch.setattr(scan_module, "_triton_module", lambda: (None, "ImportError: no module named triton"))
    with pytest.raises(TritonUnavailable, match=r"needs Triton.*no module named triton.*pip install triton"):
        choose_backend("triton", "cuda")
