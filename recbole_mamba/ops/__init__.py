"""Pure-PyTorch operators; imports neither RecBole nor anything above it."""

from recbole_mamba.ops.scan import (
    BACKENDS,
    CudaBackendUnavailable,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
)

__all__ = [
    "BACKENDS",
    "CudaBackendUnavailable",
    "resolve_backend",
    "selective_scan",
    "selective_scan_ref",
]
