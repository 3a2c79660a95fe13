"""Exact softmax cross-entropy over a whole catalogue without its logits matrix.

``chunked_cross_entropy(hidden, items, targets)`` equals
``F.cross_entropy(hidden @ items.T, targets, reduction="sum")`` (value and gradients), but the
(N, n_items) logits are never held: the forward pass walks the items in chunks with an online
log-sum-exp, and the backward pass recomputes each chunk's logits to form its share of both
gradients. Working memory is O(N x chunk); time is that of the dense loss plus one extra
(N, H) x (H, n_items) product in backward.

On a GPU with the ``cut-cross-entropy`` package installed (Apple's fused linear-cross-entropy
kernels, optional), :func:`cross_entropy_sum` hands the same computation to it instead.
"""

import time

import torch

LOGITS_PER_CHUNK = 1 << 24  # states x items scored at once (float32: 64 MiB a buffer)


def _accumulation_dtype(tensor):
    """float64 for float64 inputs, float32 for float32 and half-precision ones."""
    return torch.promote_types(tensor.dtype, torch.float32)


def item_chunk(n_states, n_items, logits_per_chunk=None):
    """Items per chunk for ``n_states`` states: at most ``logits_per_chunk`` (default
    :data:`LOGITS_PER_CHUNK`) logits at once."""
    return max(1, min(n_items, (logits_per_chunk or LOGITS_PER_CHUNK) // max(1, n_states)))


class ChunkedCrossEntropy(torch.autograd.Function):
    """Sum over N states of ``logsumexp(h . E^T) - h . E[target]``; see the module's docstring."""

    @staticmethod
    def forward(ctx, hidden, items, targets, chunk):
        """hidden: (N, H); items: (n_items, H); targets: (N,) ids in [0, n_items) -> () sum."""
        n, acc = hidden.size(0), _accumulation_dtype(hidden)
        running_max = hidden.new_full((n,), float("-inf"), dtype=acc)
        running_sum = hidden.new_zeros((n,), dtype=acc)
        for start in range(0, items.size(0), chunk):
            logits = (hidden @ items[start:start + chunk].T).to(acc)  # (N, C)
            new_max = torch.maximum(running_max, logits.max(dim=1).values)
            running_sum = running_sum * torch.exp(running_max - new_max) + torch.exp(
                logits - new_max.unsqueeze(1)).sum(dim=1)
            running_max = new_max
        lse = running_max + torch.log(running_sum)  # (N,)
        target_logits = (hidden * items[targets]).sum(dim=1).to(acc)
        ctx.save_for_backward(hidden, items, targets, lse)
        ctx.chunk = chunk
        return (lse - target_logits).sum()

    @staticmethod
    def backward(ctx, grad_output):
        hidden, items, targets, lse = ctx.saved_tensors
        chunk, acc = ctx.chunk, lse.dtype
        need_hidden, need_items = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.zeros_like(hidden, dtype=acc) if need_hidden else None
        grad_items = torch.zeros_like(items, dtype=acc) if need_items else None
        for start in range(0, items.size(0), chunk):
            block = items[start:start + chunk]
            probs = torch.exp((hidden @ block.T).to(acc) - lse.unsqueeze(1))  # softmax share, (N, C)
            if need_hidden:
                grad_hidden += probs @ block.to(acc)
            if need_items:
                grad_items[start:start + chunk] = probs.T @ hidden.to(acc)
        if need_hidden:
            grad_hidden -= items[targets].to(acc)
            grad_hidden = (grad_hidden * grad_output).to(hidden.dtype)
        if need_items:
            grad_items.index_add_(0, targets, hidden.to(acc), alpha=-1.0)
            grad_items = (grad_items * grad_output).to(items.dtype)
        return grad_hidden, grad_items, None, None


def _cut_cross_entropy():
    """cut-cross-entropy's ``linear_cross_entropy``, or None where it is not installed."""
    try:
        from cut_cross_entropy import linear_cross_entropy
    except ImportError:
        return None
    return linear_cross_entropy


def cross_entropy_sum(hidden, items, targets, chunk=None):
    """Summed exact softmax CE of N states over all items: (N, H), (n_items, H), (N,) -> ().

    CUDA tensors go to cut-cross-entropy where it is installed; everything else to
    :class:`ChunkedCrossEntropy` (``chunk`` items at a time; default :func:`item_chunk`)."""
    if hidden.is_cuda:
        fused = _cut_cross_entropy()
        if fused is not None:
            return fused(hidden, items, targets, reduction="sum")
    chunk = chunk or item_chunk(hidden.size(0), items.size(0))
    return ChunkedCrossEntropy.apply(hidden, items, targets, chunk)


def cross_entropy_flops(n_states, n_items, hidden_size):
    """Multiply-adds x 2 of one exact CE forward and backward: the forward product, its
    recomputation in backward, and the two gradient products."""
    return 4 * 2 * n_states * n_items * hidden_size


def measured_seconds_per_logit(hidden_size, device="cpu", states=256, items=1 << 18, repeats=2):
    """Seconds an exact CE forward and backward (:func:`cross_entropy_sum`, the loss training
    runs) takes per state x item on ``device``: the fastest of ``repeats`` timings on ``states`` x
    ``items`` (about 0.8 s each on a 2-core CPU; the first also pays for touching its buffers'
    pages, which an epoch pays once): an epoch's cost is its positions x the catalogue x this."""
    hidden = torch.randn(states, hidden_size, device=device, requires_grad=True)
    table = torch.randn(items, hidden_size, device=device, requires_grad=True)
    targets = torch.randint(0, items, (states,), device=device)
    best = float("inf")
    for _ in range(repeats):
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        cross_entropy_sum(hidden, table, targets).backward()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best / (states * items)
