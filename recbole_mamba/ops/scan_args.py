"""The selective scan's arguments, checked once before any backend runs.

Every backend computes the same forms, exactly as mamba-ssm's ``selective_scan_ref`` does
(``dim`` channels, ``n`` = d_state, ``L`` time steps)::

    u, delta       (batch, dim, L)            floating point
    z              (batch, dim, L) or None
    A              (dim, n)                   real floating point
    B, C           (batch, n, L)              one B_t / C_t shared by all channels
                   (1, n, L)                  the same for every batch row (broadcast)
                   (batch, G, n, L)           G groups of dim / G consecutive channels, each with
                   (1, G, n, L)               its own B_t / C_t (G divides dim); B and C may differ in G
    D, delta_bias  (dim,) or None

Everything else is refused with a ``ValueError`` naming the argument, its shape and the shape
expected: other shapes, a time-invariant B or C of shape (dim, n) and complex A, B or C (mamba-ssm's
reference takes those; no backend here computes them), tensors on another device than ``u``,
integer or boolean tensors. The C and Triton kernels read memory through the shapes and strides
they are given, so nothing reaches them unchecked: :func:`check_scan_args` normalises B and C to
(batch, G, n, L) views (a broadcast batch is a stride-0 view, never a copy), and
:func:`check_kernel_args` guards the kernels' own entry: exactly the (batch, n, L) form.
"""

import math


def _shape(t):
    return tuple(t.shape)


def _refuse(name, tensor, expected):
    raise ValueError(f"selective_scan: {name} has shape {_shape(tensor)}, expected {expected}")


def _check_tensor(name, t, device):
    """A floating point, real tensor on ``device``."""
    if t.is_complex():
        raise ValueError(f"selective_scan: {name} is complex ({t.dtype}); only real A, B and C are computed here")
    if not t.is_floating_point():
        raise ValueError(f"selective_scan: {name} has dtype {t.dtype}, expected a floating point dtype")
    if t.device != device:
        raise ValueError(f"selective_scan: {name} is on {t.device}, u on {device}; pass all on one device")


def _check_common(u, delta, A, D, z, delta_bias):
    """(batch, dim, L, n) after checking every argument but B and C."""
    if u.dim() != 3:
        _refuse("u", u, "(batch, dim, L)")
    batch, dim, length = u.shape
    _check_tensor("u", u, u.device)
    for name, t in (("delta", delta), ("z", z)):
        if t is None and name == "z":
            continue
        _check_tensor(name, t, u.device)
        if _shape(t) != _shape(u):
            _refuse(name, t, f"{_shape(u)}, the shape of u (batch, dim, L)")
    _check_tensor("A", A, u.device)
    if A.dim() != 2 or A.shape[0] != dim or A.shape[1] < 1:
        _refuse("A", A, f"(dim, d_state) = ({dim}, d_state >= 1)")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            _check_tensor(name, t, u.device)
            if _shape(t) != (dim,):
                _refuse(name, t, f"({dim},), one value per channel")
    return batch, dim, length, A.shape[1]


def _grouped(name, t, batch, dim, length, n):
    """B or C as a (batch, G, n, L) view; refuses every other form."""
    expected = (f"({batch} or 1, {n}, {length}) = (batch, d_state, L), or "
                f"({batch} or 1, G, {n}, {length}) with G dividing dim = {dim}")
    if t.dim() == 2:
        raise ValueError(f"selective_scan: {name} has shape {_shape(t)}: a time-invariant {name} (dim, d_state) "
                         f"is not computed here; expected {expected}")
    if t.dim() not in (3, 4):
        _refuse(name, t, expected)
    grouped = t.unsqueeze(1) if t.dim() == 3 else t
    rows, groups, t_n, t_length = grouped.shape
    if rows not in (1, batch) or t_n != n or t_length != length or groups < 1 or dim % groups:
        _refuse(name, t, expected)
    return grouped.expand(batch, groups, n, length)


def check_scan_args(u, delta, A, B, C, D=None, z=None, delta_bias=None):
    """Check every argument (see the module docstring); returns B and C as (batch, G, n, L) views."""
    batch, dim, length, n = _check_common(u, delta, A, D, z, delta_bias)
    grouped = []
    for name, t in (("B", B), ("C", C)):
        _check_tensor(name, t, u.device)
        grouped.append(_grouped(name, t, batch, dim, length, n))
    return tuple(grouped)


def common_groups(B, C):
    """The number of channel groups that both (batch, G, n, L) views are constant on."""
    return math.lcm(B.shape[1], C.shape[1])


def check_kernel_args(u, delta, A, B, C, D, z, delta_bias):
    """What a kernel reads: :func:`check_scan_args` with B and C of shape exactly (batch, n, L)."""
    B4, C4 = check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    for name, t, t4 in (("B", B, B4), ("C", C, C4)):
        if t.dim() != 3 or t.shape[0] != u.shape[0]:
            _refuse(name, t, f"{_shape(t4[:, 0])} = (batch, d_state, L) at a kernel's entry; "
                             "selective_scan() takes the broadcast and grouped forms")
