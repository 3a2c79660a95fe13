"""Operators (PyTorch, and a C kernel compiled at first use); import neither RecBole nor anything
above them."""

from recbole_mamba.ops.scan import (
    BACKEND_NAMES,
    BACKENDS,
    CpuKernelUnavailable,
    CudaBackendUnavailable,
    TritonUnavailable,
    choose_backend,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
)

__all__ = [
    "BACKEND_NAMES",
    "BACKENDS",
    "CpuKernelUnavailable",
    "CudaBackendUnavailable",
    "TritonUnavailable",
    "choose_backend",
    "resolve_backend",
    "selective_scan",
    "selective_scan_ref",
]
