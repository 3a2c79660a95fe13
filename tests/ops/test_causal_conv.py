"""The mixer's causal depthwise convolution: the compiled kernel against ``F.conv1d`` (values and
gradients, every width, lengths shorter than the kernel, channel counts with and without a partial
block), against an independent loop, gradcheck, causality and thread splits."""

import pytest
import torch

from recbole_mamba.ops.causal_conv import causal_conv1d_cpu, causal_conv1d_ref


def make_inputs(batch, length, dim, width, dtype=torch.float64, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, dim, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(dim, width, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(dim, generator=g, dtype=dtype).requires_grad_() if bias else None
    return x, weight, b


def outputs_and_grads(fn, x, weight, bias, cotangent):
    y = fn(x, weight, bias)
    inputs = [t for t in (x, weight, bias) if t is not None]
    return [y, *torch.autograd.grad(y, inputs, cotangent)]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("length,dim,width,bias", [
    (9, 6, 4, True),      # channels fewer than one block
    (30, 40, 64, True),   # one full block and a tail; the kernel longer than the sequence
    (70, 64, 16, False),  # two full blocks, no bias
    (300, 33, 5, True),   # more than one time block in the weight gradient
    (5, 3, 1, True),      # width 1
])
def test_equals_conv1d(dtype, tol, length, dim, width, bias):
    x, weight, b = make_inputs(3, length, dim, width, dtype, bias=bias)
    cotangent = torch.randn(3, length, dim, dtype=dtype, generator=torch.Generator().manual_seed(1))
    expected = outputs_and_grads(causal_conv1d_ref, x, weight, b, cotangent)
    got = outputs_and_grads(causal_conv1d_cpu, x, weight, b, cotangent)
    names = ("y", "dx", "dweight", "dbias") if bias else ("y", "dx", "dweight")
    for name, a, e in zip(names, got, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=tol, atol=tol, msg=name)


def test_reference_equals_an_independent_loop():
    """The oracle itself, against the definition y[t] = bias + sum_k w[k] x[t - width + 1 + k]."""
    x, weight, bias = (t.detach() for t in make_inputs(2, 7, 3, 4))
    width = weight.shape[1]
    expected = torch.zeros(2, 7, 3, dtype=torch.float64)
    for b in range(2):
        for t in range(7):
            for c in range(3):
                taps = [float(weight[c, k]) * float(x[b, t - width + 1 + k, c])
                        for k in range(width) if t - width + 1 + k >= 0]
                expected[b, t, c] = float(bias[c]) + sum(taps)
    torch.testing.assert_close(causal_conv1d_ref(x, weight, bias), expected, rtol=1e-12, atol=1e-12)


def test_gradcheck():
    x, weight, bias = make_inputs(2, 6, 35, 8)
    assert torch.autograd.gradcheck(causal_conv1d_cpu, (x, weight, bias))


def test_causal():
    x, weight, bias = make_inputs(2, 20, 40, 8)
    changed = x.detach().clone()
    changed[:, 11:] = torch.randn_like(changed[:, 11:])
    with torch.no_grad():
        y, y2 = causal_conv1d_cpu(x, weight, bias), causal_conv1d_cpu(changed, weight, bias)
    assert torch.equal(y[:, :11], y2[:, :11])
    assert not torch.equal(y[:, 11:], y2[:, 11:])


@pytest.mark.parametrize("batch", [1, 5])
def test_same_result_on_one_thread_and_several(batch):
    """Batch rows split in groups, one per thread; the weight gradient summed over the groups."""
    x, weight, bias = make_inputs(batch, 50, 40, 12, torch.float32)
    cotangent = torch.randn(batch, 50, 40)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            results.append(outputs_and_grads(causal_conv1d_cpu, x, weight, bias, cotangent))
    finally:
        torch.set_num_threads(threads)
    for one, several in zip(*results, strict=True):
        torch.testing.assert_close(one, several, rtol=1e-5, atol=1e-5)  # float32 sums in another order


def test_strided_input_and_broadcast_gradient():
    """A (batch, L, dim) view with strides (as a slice of a projection) and a stride-0 gradient."""
    g = torch.Generator().manual_seed(0)
    both = torch.randn(2, 9, 80, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(40, 4, dtype=torch.float64, generator=g, requires_grad=True)
    grads = [torch.autograd.grad(fn(both[..., :40], weight, None).sum(), (both, weight))
             for fn in (causal_conv1d_ref, causal_conv1d_cpu)]
    for got, expected in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
