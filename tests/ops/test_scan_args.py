"""What the public ops take and refuse: every backend here (``ref``, ``torch``, ``cpu`` and
``triton`` in Triton's interpreter) over a table of wrong shapes, each refused with the same
``ValueError`` naming the argument, and over mamba-ssm's broadcast and grouped B/C forms, each
equal to an independent float64 recurrence (outputs, last states) and to ``ref``'s gradients."""

import math
import os

import pytest
import torch

from recbole_mamba.layers import Mamba
from recbole_mamba.ops import selective_scan
from recbole_mamba.ops.causal_conv import causal_conv1d_cpu, causal_conv1d_ref

BATCH, DIM, N, L = 2, 4, 3, 5
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def _backends():
    names = ["ref", "torch", "cpu"]
    try:
        import recbole_mamba.ops.scan_triton  # noqa: F401
    except Exception:
        return names
    if torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1":
        names.append("triton")
    return names


BACKENDS = _backends()
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def valid_inputs(B_shape=(BATCH, N, L), C_shape=(BATCH, N, L), seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    return {
        "u": rand(BATCH, DIM, L),
        "delta": rand(BATCH, DIM, L, scale=0.5),
        "A": -torch.rand(DIM, N, generator=g, dtype=torch.float64) - 0.1,
        "B": rand(*B_shape),
        "C": rand(*C_shape),
        "D": rand(DIM),
        "z": rand(BATCH, DIM, L),
        "delta_bias": rand(DIM, scale=0.5),
    }


def run(backend, inputs, requires_grad=False):
    def place(v):
        if v.device.type == "meta":
            return v
        v = v.to(DEVICE)
        return v.requires_grad_(requires_grad) if v.is_floating_point() else v

    args = {k: place(v) for k, v in inputs.items()}
    out, last = selective_scan(*(args[k] for k in NAMES), delta_softplus=True, return_last_state=True,
                               backend=backend)
    return args, out, last


def independent_recurrence(u, delta, A, B, C, D, z, delta_bias):
    """Python floats only, one channel at a time; B and C read as mamba-ssm's reference reads
    them: (batch or 1, n, L) for every channel, or (batch or 1, G, n, L) for channel d's group
    d // (dim / G)."""
    batch, dim, length = u.shape
    out = torch.zeros(batch, dim, length, dtype=torch.float64)
    last = torch.zeros(batch, dim, A.shape[1], dtype=torch.float64)

    def at(M, b, d, k, t):
        row = b if M.shape[0] > 1 else 0
        if M.dim() == 3:
            return float(M[row, k, t])
        return float(M[row, d // (dim // M.shape[1]), k, t])

    for b in range(batch):
        for d in range(dim):
            h = [0.0] * A.shape[1]
            for t in range(length):
                dt = math.log1p(math.exp(float(delta[b, d, t]) + float(delta_bias[d])))
                x = float(u[b, d, t])
                y = float(D[d]) * x
                for k in range(A.shape[1]):
                    h[k] = math.exp(dt * float(A[d, k])) * h[k] + dt * at(B, b, d, k, t) * x
                    y += at(C, b, d, k, t) * h[k]
                zz = float(z[b, d, t])
                out[b, d, t] = y * zz / (1.0 + math.exp(-zz))
            last[b, d] = torch.tensor(h, dtype=torch.float64)
    return out, last


ACCEPTED = {  # name: (B shape, C shape)
    "B and C (batch, n, L)": ((BATCH, N, L), (BATCH, N, L)),
    "B broadcast (1, n, L)": ((1, N, L), (BATCH, N, L)),
    "C broadcast (1, n, L)": ((BATCH, N, L), (1, N, L)),
    "grouped, G = 2": ((BATCH, 2, N, L), (BATCH, 2, N, L)),
    "grouped, G = dim": ((BATCH, DIM, N, L), (BATCH, DIM, N, L)),
    "B in 2 groups, C in 1": ((BATCH, 2, N, L), (BATCH, N, L)),
    "B in 2 groups, C in 4": ((BATCH, 2, N, L), (BATCH, 4, N, L)),
    "grouped and broadcast (1, G, n, L)": ((1, 2, N, L), (BATCH, 1, N, L)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form", list(ACCEPTED))
def test_accepted_forms_equal_the_independent_recurrence(backend, form):
    inputs = valid_inputs(*ACCEPTED[form])
    expected_out, expected_last = independent_recurrence(*(inputs[k] for k in NAMES))
    _, out, last = run(backend, inputs)
    torch.testing.assert_close(out.cpu(), expected_out, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(last.cpu(), expected_last, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "ref"])
@pytest.mark.parametrize("form", list(ACCEPTED))
def test_accepted_forms_have_ref_gradients(backend, form):
    inputs = valid_inputs(*ACCEPTED[form], seed=1)
    cotangent = torch.randn(BATCH, DIM, L, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    grads = {}
    for name in ("ref", backend):
        args, out, _ = run(name, inputs, requires_grad=True)
        (out * cotangent.to(out.device)).sum().backward()
        grads[name] = {k: args[k].grad.cpu() for k in NAMES}
        assert all(g is not None for g in grads[name].values())
        assert grads[name]["B"].shape == ACCEPTED[form][0] and grads[name]["C"].shape == ACCEPTED[form][1]
    for k in NAMES:
        torch.testing.assert_close(grads[backend][k], grads["ref"][k], rtol=1e-9, atol=1e-9, msg=k)


def _replace(name, value):
    return lambda inputs: {**inputs, name: value(inputs[name]) if callable(value) else value}


WRONG = {  # case: (change of the valid inputs, the argument the error names)
    "B shorter in time than u": (_replace("B", lambda t: t[..., :-1]), "B"),
    "C longer in time than u (mamba-ssm's complex 2L form)": (_replace("C", lambda t: t.repeat(1, 1, 2)), "C"),
    "B with another d_state than A": (_replace("B", torch.zeros(BATCH, N + 1, L, dtype=torch.float64)), "B"),
    "C with another d_state than A": (_replace("C", torch.zeros(BATCH, N - 1, L, dtype=torch.float64)), "C"),
    "B of another batch": (_replace("B", torch.zeros(BATCH + 1, N, L, dtype=torch.float64)), "B"),
    "C of another batch (broadcast only from 1)": (_replace("C", torch.zeros(BATCH + 1, N, L, dtype=torch.float64)), "C"),
    "B time-invariant (dim, n)": (_replace("B", torch.zeros(DIM, N, dtype=torch.float64)), "B"),
    "B grouped with G not dividing dim": (_replace("B", torch.zeros(BATCH, 3, N, L, dtype=torch.float64)), "B"),
    "B of five dimensions": (_replace("B", torch.zeros(BATCH, 1, 1, N, L, dtype=torch.float64)), "B"),
    "delta shorter than u": (_replace("delta", lambda t: t[..., :-1]), "delta"),
    "delta of another batch": (_replace("delta", lambda t: t[:1]), "delta"),
    "z of another shape": (_replace("z", lambda t: t[:, :-1]), "z"),
    "D of another length": (_replace("D", torch.zeros(DIM + 1, dtype=torch.float64)), "D"),
    "delta_bias of another length": (_replace("delta_bias", torch.zeros(DIM - 1, dtype=torch.float64)), "delta_bias"),
    "A of another dim": (_replace("A", -torch.ones(DIM + 1, N, dtype=torch.float64)), "A"),
    "A of one dimension": (_replace("A", -torch.ones(DIM, dtype=torch.float64)), "A"),
    "A with d_state 0": (_replace("A", -torch.ones(DIM, 0, dtype=torch.float64)), "A"),
    "u of two dimensions": (_replace("u", lambda t: t[0]), "u"),
    "A complex": (_replace("A", lambda t: t.to(torch.complex128)), "A"),
    "C integer": (_replace("C", lambda t: t.to(torch.int64)), "C"),
    "B on another device": (_replace("B", lambda t: t.to("meta")), "B"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(WRONG))
def test_wrong_inputs_are_refused_naming_the_argument(backend, case):
    change, argument = WRONG[case]
    inputs = change(valid_inputs())
    with pytest.raises(ValueError, match=rf"^selective_scan: {argument} (has|is)") as refused:
        run(backend, inputs)
    assert "\n" not in str(refused.value)


def test_every_backend_gives_the_same_refusal():
    """No backend computes what another refuses: the message is the checker's, before dispatch."""
    for case, (change, _) in WRONG.items():
        messages = set()
        for backend in BACKENDS:
            with pytest.raises(ValueError) as refused:
                run(backend, change(valid_inputs()))
            messages.add(str(refused.value))
        assert len(messages) == 1, case


@pytest.mark.parametrize("backend", [b for b in ("cpu", "triton") if b in BACKENDS])
def test_kernel_entries_take_exactly_the_kernel_layout(backend):
    """The table's entry that the mixer calls directly checks too: a broadcast B reaches a kernel
    only through selective_scan's expansion, never as a (1, n, L) tensor it would read past."""
    from recbole_mamba.ops import BACKENDS as TABLE

    inputs = valid_inputs(B_shape=(1, N, L))
    with pytest.raises(ValueError, match=r"^selective_scan: B has shape \(1, 3, 5\), expected \(2, 3, 5\)"):
        TABLE[backend].scan(*(inputs[k] for k in NAMES), True)


CONV_WRONG = {
    "x of two dimensions": (lambda x, w, b: (x[0], w, b), "x"),
    "weight of another dim": (lambda x, w, b: (x, w[:-1], b), "weight"),
    "weight of width 0": (lambda x, w, b: (x, w[:, :0], b), "weight"),
    "weight of three dimensions": (lambda x, w, b: (x, w[:, None], b), "weight"),
    "bias of another length": (lambda x, w, b: (x, w, b[:-1]), "bias"),
    "integer x": (lambda x, w, b: (x.long(), w, b), "x"),
    "bias on another device": (lambda x, w, b: (x, w, b.to("meta")), "bias"),
}


@pytest.mark.parametrize("conv", [causal_conv1d_ref, causal_conv1d_cpu])
@pytest.mark.parametrize("case", list(CONV_WRONG))
def test_causal_conv_refuses_wrong_shapes(conv, case):
    change, argument = CONV_WRONG[case]
    x, w, b = torch.randn(2, 5, 4), torch.randn(4, 3), torch.randn(4)
    with pytest.raises(ValueError, match=rf"^causal_conv1d: {argument} (has|is)"):
        conv(*change(x, w, b))


@pytest.mark.parametrize("dtypes", [(torch.float16,) * 3, (torch.float32, torch.float64, torch.float32),
                                    (torch.float64, torch.float64, torch.float32)])
def test_causal_conv_kernel_refuses_dtypes_it_would_misread(dtypes):
    x, w, b = (t.to(dtype) for t, dtype in zip((torch.randn(2, 5, 4), torch.randn(4, 3), torch.randn(4)),
                                                dtypes, strict=True))
    with pytest.raises(ValueError, match=r"^causal_conv1d_cpu: the kernel takes CPU tensors of one dtype"):
        causal_conv1d_cpu(x, w, b)
    torch.testing.assert_close(causal_conv1d_ref(x.double(), w.double(), b.double()).shape, (2, 5, 4))


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("wrong", ["hidden_states", "conv_state", "ssm_state", "batch"])
def test_mixer_step_refuses_states_of_another_shape(backend, wrong):
    """The ``cpu`` backend's one-call step reads the states through their shapes: a state from
    a mixer of another d_conv or d_state, or of another batch, is refused on every path."""
    torch.manual_seed(0)
    mixer = Mamba(8, d_state=4, d_conv=4, backend=backend)
    other = Mamba(8, d_state=6, d_conv=6, backend=backend)
    conv_state, ssm_state = mixer.allocate_inference_cache(2, 1)
    hidden = torch.randn(2, 1, 8)
    if wrong == "hidden_states":
        hidden = torch.randn(2, 2, 8)
    elif wrong == "conv_state":
        conv_state = other.allocate_inference_cache(2, 1)[0]
    elif wrong == "ssm_state":
        ssm_state = other.allocate_inference_cache(2, 1)[1]
    else:
        conv_state, ssm_state = mixer.allocate_inference_cache(3, 1)
    name = "conv_state" if wrong == "batch" else wrong
    with torch.no_grad(), pytest.raises(ValueError, match=rf"^Mamba.step: {name} has shape"):
        mixer.step(hidden, conv_state, ssm_state)
    out, *_ = mixer.step(torch.randn(2, 1, 8), *mixer.allocate_inference_cache(2, 1))
    assert out.shape == (2, 1, 8)
