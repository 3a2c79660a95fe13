"""The Mamba mixer: mamba-ssm's parameter layout and initialisation, causality, right padding,
recurrent step, and backends."""

import math

import pytest
import torch

from recbole_mamba.layers import Mamba, MambaBlock

D_MODEL, D_STATE, D_CONV, EXPAND = 64, 32, 4, 2
D_INNER, DT_RANK = EXPAND * D_MODEL, math.ceil(D_MODEL / 16)

MAMBA_SSM_SHAPES = {  # mamba_ssm.modules.mamba_simple.Mamba(64, d_state=32, d_conv=4, expand=2)
    "A_log": (D_INNER, D_STATE),
    "D": (D_INNER,),
    "in_proj.weight": (2 * D_INNER, D_MODEL),
    "conv1d.weight": (D_INNER, 1, D_CONV),
    "conv1d.bias": (D_INNER,),
    "x_proj.weight": (DT_RANK + 2 * D_STATE, D_INNER),
    "dt_proj.weight": (D_INNER, DT_RANK),
    "dt_proj.bias": (D_INNER,),
    "out_proj.weight": (D_MODEL, D_INNER),
}


def mixer(backend="torch", d_model=16, d_state=8, seed=0, d_conv=D_CONV):
    torch.manual_seed(seed)
    return Mamba(d_model, d_state=d_state, d_conv=d_conv, expand=EXPAND, backend=backend).eval()


def test_state_dict_matches_mamba_ssm():
    m = Mamba(D_MODEL, d_state=D_STATE, d_conv=D_CONV, expand=EXPAND)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == MAMBA_SSM_SHAPES


def test_initialisation_as_mamba_ssm():
    m = Mamba(D_MODEL, d_state=D_STATE, dt_min=0.001, dt_max=0.1)
    assert torch.equal(m.A_log, torch.log(torch.arange(1, D_STATE + 1.0)).repeat(D_INNER, 1))
    assert torch.equal(m.D, torch.ones(D_INNER))
    dt = torch.nn.functional.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.001 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    bound = DT_RANK**-0.5
    assert m.dt_proj.weight.abs().max() <= bound


def test_loads_its_own_state_dict_across_instances():
    a, b = mixer(seed=0), mixer(seed=1)
    x = torch.randn(2, 5, 16)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("d_conv", [D_CONV, 64])
@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_causal(backend, d_conv):
    m = mixer(backend, d_conv=d_conv)
    x = torch.randn(3, 80, 16)
    t = 70
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:])
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    assert torch.equal(y[:, : t + 1], y2[:, : t + 1])
    assert not torch.equal(y[:, t + 1:], y2[:, t + 1:])


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_right_padding_does_not_change_real_positions(backend):
    m = mixer(backend)
    x = torch.randn(1, 7, 16)
    padded = torch.cat([x, torch.zeros(1, 5, 16)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(m(padded)[:, :7], m(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "cpu"])
@pytest.mark.parametrize("length,d_conv", [(1, D_CONV), (3, D_CONV), (9, D_CONV), (40, 16)])
def test_step_equals_forward(length, d_conv, backend):
    m = mixer(backend, d_model=32, d_state=16, d_conv=d_conv)
    x = torch.randn(2, length, 32)
    conv_state, ssm_state = m.allocate_inference_cache(2, length)
    with torch.no_grad():
        full = m(x)
        steps = [m.step(x[:, t : t + 1], conv_state, ssm_state)[0] for t in range(length)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch,d_conv", [(1, D_CONV), (3, D_CONV), (2, 16)])
def test_fused_cpu_step_equals_the_pytorch_step(batch, d_conv, monkeypatch):
    """On the cpu backend, inference steps run in one kernel call; states and outputs equal the
    PyTorch-ops step, and the kernel is what ran."""
    from recbole_mamba.ops import scan_cpu

    calls = []
    real = scan_cpu.mixer_step
    monkeypatch.setattr(scan_cpu, "mixer_step", lambda *a: calls.append(1) or real(*a))
    fused = mixer("cpu", d_model=32, d_state=16, d_conv=d_conv)
    plain = mixer("torch", d_model=32, d_state=16, d_conv=d_conv)
    x = torch.randn(batch, 6, 32)
    states = [fused.allocate_inference_cache(batch, 6), plain.allocate_inference_cache(batch, 6)]
    with torch.inference_mode():
        for t in range(6):
            a = fused.step(x[:, t:t + 1], *states[0])[0]
            b = plain.step(x[:, t:t + 1], *states[1])[0]
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert len(calls) == 6
    for got, expected in zip(states[0], states[1], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    with torch.enable_grad():  # a step that must be differentiated takes the PyTorch ops
        fused.step(x[:, :1].requires_grad_(), *fused.allocate_inference_cache(batch, 1))
    assert len(calls) == 6


def test_inference_cache_takes_mamba_ssm_arguments():
    """Code written for mamba_ssm.Mamba: allocate_inference_cache(batch_size, max_seqlen, dtype)."""
    m = mixer(d_model=32, d_state=16)
    conv_state, ssm_state = m.allocate_inference_cache(batch_size=3, max_seqlen=100, dtype=torch.float64)
    assert conv_state.shape == (3, 64, D_CONV) and ssm_state.shape == (3, 64, 16)
    assert conv_state.dtype == ssm_state.dtype == torch.float64
    conv_state, ssm_state = m.allocate_inference_cache(2, 100)
    assert conv_state.dtype == m.conv1d.weight.dtype and ssm_state.dtype == m.dt_proj.weight.dtype


def test_backend_is_resolved_once_per_device(monkeypatch):
    from recbole_mamba.layers import mamba as mamba_module

    calls = []
    real = mamba_module.resolve_backend
    monkeypatch.setattr(mamba_module, "resolve_backend", lambda *a: calls.append(a) or real(*a))
    m = mixer("auto")
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        for _ in range(3):
            m(x)
    assert calls == [("auto", torch.device("cpu"))]


@pytest.mark.parametrize("d_conv", [D_CONV, 16])
def test_backends_agree_on_mixer_outputs_and_grads(d_conv, monkeypatch):
    """The cpu backend runs its compiled scan and convolution; ref and torch run F.conv1d."""
    from recbole_mamba.layers import mamba as mamba_module

    compiled = []
    real = mamba_module.causal_conv1d_cpu
    monkeypatch.setattr(mamba_module, "causal_conv1d_cpu", lambda *a: compiled.append(1) or real(*a))
    x = torch.randn(2, 20, 16, dtype=torch.float64)
    results = []
    for backend in ("ref", "torch", "cpu"):
        m = mixer(backend=backend, d_conv=d_conv).double().train()
        xi = x.clone().requires_grad_()
        y = m(xi)
        y.pow(2).sum().backward()
        results.append({"out": y.detach(), "grad x": xi.grad,
                        **{f"grad {name}": p.grad for name, p in m.named_parameters()}})
    assert len(results[0]) == 2 + len(MAMBA_SSM_SHAPES)
    assert compiled == [1]
    for fast in results[1:]:
        assert list(fast) == list(results[0])
        for name, value in fast.items():
            torch.testing.assert_close(value, results[0][name], rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("block_type", ["mamba", "mamba_ffn"])
def test_block_is_causal(block_type):
    torch.manual_seed(0)
    block = MambaBlock(16, 8, 4, 2, dropout=0.2, block_type=block_type, inner_size=32).eval()
    x = torch.randn(2, 8, 16)
    x2 = x.clone()
    x2[:, 4:] = 0
    with torch.no_grad():
        assert torch.equal(block(x)[:, :4], block(x2)[:, :4])


def test_unknown_block_type():
    with pytest.raises(ValueError, match="mamba_ffn"):
        MambaBlock(16, 8, 4, 2, dropout=0.0, block_type="attention")
