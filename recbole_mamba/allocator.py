"""Process allocator policy for long sequences (glibc only).

glibc serves every allocation above its mmap threshold (at most 32 MiB when adjusted dynamically)
with a fresh mmap, which the kernel zero-fills page by page and unmaps on free. At L=5000 a single
(batch, L, d_inner) activation is ~80 MiB, so each forward+backward faults in gigabytes of fresh
pages: measured on 2 cores, a Mamba mixer step at B=32, L=5000 took 4.2 s with 2.2 s of it in the
kernel, and 2.8 s with large blocks kept in the heap for reuse (``benchmarks/bench_scan.py``).

:func:`keep_large_allocations` is process-wide, so the library never calls it on import; the
command line and the benchmarks call it at start, and library users may call it themselves. Its
default keeps blocks below 256 MiB (a Mamba step's activations) and still maps larger ones: kept
in the heap, SASRec's 1 GiB attention tensors at L = 2,000 (32 evaluation rows) fragmented it so
that one evaluation pass peaked at 7.6 GiB of resident memory instead of 3.8 GiB
(``benchmarks/bench_scale.py``).
"""

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def _mallopt(mmap_threshold, trim_threshold):
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )


def keep_large_allocations(threshold_bytes=256 << 20):
    """Serve allocations below ``threshold_bytes`` from the heap and keep freed memory for reuse.

    Returns True where the policy was applied (glibc), False elsewhere (no effect).
    """
    return _mallopt(threshold_bytes, min(2 * threshold_bytes, 2**31 - 1))


def return_large_allocations(threshold_bytes=1 << 20):
    """Serve allocations of ``threshold_bytes`` and more by mmap (fixed, not glibc's adaptive
    threshold), so that freeing them returns the memory at once. True where applied (glibc)."""
    return _mallopt(threshold_bytes, threshold_bytes)
