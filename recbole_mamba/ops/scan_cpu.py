"""The ``cpu`` backend of the selective scan (and the mixer's causal convolution):
``scan_cpu.c``, compiled at first use.

Nothing is built at install time. The first call compiles ``scan_cpu.c`` with the system's C
compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) for this machine's CPU into
``$RECBOLE_MAMBA_CACHE`` (default ``~/.cache/recbole_mamba``), named by a hash of the source,
the compiler command and the CPU, and written to a temporary file that is then renamed, so
concurrent processes never load a half-written library. Later processes load the cached file.
Where no compiler works, :func:`unavailable_reason` says why; ``mamba_backend=auto`` then uses the
PyTorch-ops backend and ``mamba_backend=cpu`` raises :class:`CpuKernelUnavailable`.

The kernel runs rows (batch, channel) in Python threads, ``torch.get_num_threads()`` of them:
ctypes releases the GIL during the call, so no OpenMP runtime is loaded beside PyTorch's.
"""

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from recbole_mamba.files import atomic_path

SOURCE = Path(__file__).with_name("scan_cpu.c")
# no -ffast-math: linking with it would set flush-to-zero for the whole process
_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-fPIC", "-shared"]
_ARCH_FLAGS = (["-march=native"], ["-mcpu=native"], [])
_WORK_ITEMS_PER_THREAD = 4
# Elements of one time segment's state buffer in the backward pass (steps = this / d_state), which
# bounds each thread's workspace (2 such buffers) for any length. Measured on a 2-core EPYC at
# B=32, L=5000, d_state 32: whole rows took 0.43 s, cache-sized segments of 512 steps 0.53 s (their
# extra forward pass costs more than the cache misses they save), so segments are long.
_SEGMENT_ELEMENTS = 1 << 20


class CpuKernelUnavailable(RuntimeError):
    """Raised when ``backend='cpu'`` is asked for and the kernel cannot be compiled or loaded."""


_i64 = ctypes.c_int64
_ptr = ctypes.c_void_p


class ScanArgs(ctypes.Structure):
    """Mirror of ``ScanArgs`` in scan_cpu.c."""

    _fields_ = [
        ("batch", _i64), ("dim", _i64), ("length", _i64), ("n", _i64),
        ("softplus", ctypes.c_int),
        ("u", _ptr), ("delta", _ptr), ("A", _ptr), ("B", _ptr), ("C", _ptr),
        ("D", _ptr), ("z", _ptr), ("delta_bias", _ptr),
        ("su", _i64 * 3), ("sdelta", _i64 * 3), ("sz", _i64 * 3),
        ("sB", _i64 * 2), ("sC", _i64 * 2),
        ("out", _ptr), ("last_state", _ptr), ("sout", _i64 * 3),
        ("dout", _ptr), ("sdout", _i64 * 3),
        ("du", _ptr), ("ddelta", _ptr), ("dz", _ptr), ("sgrad", _i64 * 3),
        ("groups", _i64), ("segment", _i64),
        ("dB", _ptr), ("dC", _ptr),
        ("dA", _ptr), ("dD", _ptr), ("ddelta_bias", _ptr),
    ]


class StepArgs(ctypes.Structure):
    """Mirror of ``StepArgs`` in scan_cpu.c."""

    _fields_ = [
        ("batch", _i64), ("dim", _i64), ("n", _i64), ("rank", _i64), ("width", _i64),
        ("x", _ptr), ("z", _ptr), ("conv_state", _ptr), ("conv_w", _ptr), ("conv_b", _ptr),
        ("x_proj_w", _ptr), ("dt_w", _ptr), ("dt_b", _ptr), ("A_log", _ptr), ("D", _ptr),
        ("ssm_state", _ptr), ("y", _ptr), ("work", _ptr),
    ]


class BlockStepArgs(ctypes.Structure):
    """Mirror of ``BlockStepArgs`` in scan_cpu.c."""

    _fields_ = [
        ("in_w", _ptr), ("in_b", _ptr), ("mixer", StepArgs), ("out_w", _ptr), ("out_b", _ptr),
        ("norm_w", _ptr), ("norm_b", _ptr), ("eps", ctypes.c_double), ("residual", _i64),
    ]


class ConvArgs(ctypes.Structure):
    """Mirror of ``ConvArgs`` in scan_cpu.c."""

    _fields_ = [
        ("batch", _i64), ("length", _i64), ("dim", _i64), ("width", _i64), ("groups", _i64),
        ("x", _ptr), ("w", _ptr), ("bias", _ptr), ("y", _ptr), ("dy", _ptr), ("dx", _ptr), ("dw", _ptr),
    ]


class ModelStepArgs(ctypes.Structure):
    """Mirror of ``ModelStepArgs`` in scan_cpu.c."""

    _fields_ = [
        ("d_model", _i64), ("n_items", _i64), ("n_blocks", _i64), ("emb", _ptr), ("norm_w", _ptr),
        ("norm_b", _ptr), ("eps", ctypes.c_double), ("blocks", ctypes.POINTER(BlockStepArgs)), ("h", _ptr),
    ]


def cache_dir():
    return Path(os.environ.get("RECBOLE_MAMBA_CACHE") or Path.home() / ".cache" / "recbole_mamba")


def _compilers():
    names = [os.environ["CC"]] if os.environ.get("CC") else ["cc", "gcc", "clang"]
    return [path for path in map(shutil.which, names) if path]


def _cpu_id():
    """What -march=native depends on: the CPU model and flags where Linux tells them."""
    try:
        with open("/proc/cpuinfo") as f:
            keep = [line for line in f if line.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(keep)))
    except OSError:
        return platform.processor() or platform.machine()


class _CompileFailed(Exception):
    """The compiler's complaint (its last line of stderr)."""


def _compile(compiler, arch, target):
    """Compile into ``target`` atomically; returns the compiler's complaint or None."""
    try:
        with atomic_path(target, suffix=".so.tmp") as tmp:
            done = subprocess.run(
                [compiler, *_FLAGS, *arch, "-o", tmp, str(SOURCE), "-lm"],
                capture_output=True, text=True, timeout=300,
            )
            if done.returncode != 0:
                raise _CompileFailed(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    except _CompileFailed as failed:
        return str(failed)
    return None


def _build():
    """Load the cached library, compiling it first where needed. Returns (CDLL, None) or
    (None, reason)."""
    source, cpu = SOURCE.read_bytes(), _cpu_id().encode()
    complaints = []
    for compiler in _compilers():
        for arch in _ARCH_FLAGS:
            key = hashlib.sha256(
                b"\0".join([source, " ".join([compiler, *_FLAGS, *arch]).encode(), cpu])
            ).hexdigest()[:16]
            target = cache_dir() / f"scan_cpu-{key}.so"
            try:
                if not target.exists():
                    complaint = _compile(compiler, arch, target)
                    if complaint:
                        complaints.append(f"{Path(compiler).name} {' '.join(arch)}: {complaint}")
                        continue
                lib = ctypes.CDLL(str(target))
            except (OSError, subprocess.SubprocessError) as err:
                complaints.append(f"{Path(compiler).name} {' '.join(arch)}: {err}")
                continue
            for name in ("recbole_mamba_scan_fwd_f32", "recbole_mamba_scan_bwd_f32",
                         "recbole_mamba_scan_fwd_f64", "recbole_mamba_scan_bwd_f64"):
                getattr(lib, name).argtypes = (ctypes.POINTER(ScanArgs), _i64, _i64)
                getattr(lib, name).restype = ctypes.c_int
            for name in ("recbole_mamba_conv_fwd_f32", "recbole_mamba_conv_bwd_f32",
                         "recbole_mamba_conv_fwd_f64", "recbole_mamba_conv_bwd_f64"):
                getattr(lib, name).argtypes = (ctypes.POINTER(ConvArgs), _i64, _i64)
                getattr(lib, name).restype = None
            lib.recbole_mamba_exp_f32.argtypes = (_ptr, _ptr, _i64)
            lib.recbole_mamba_exp_f32.restype = None
            lib.recbole_mamba_step_f32.argtypes = (ctypes.POINTER(StepArgs),)
            lib.recbole_mamba_step_f32.restype = None
            lib.recbole_mamba_mambarec_step_f32.argtypes = (ctypes.POINTER(ModelStepArgs), _i64, _ptr)
            lib.recbole_mamba_mambarec_step_f32.restype = ctypes.c_int
            return lib, None
    if not complaints:
        return None, "no C compiler found (set $CC, or install gcc or clang)"
    return None, "compiling scan_cpu.c failed: " + "; ".join(complaints)


_lock = threading.Lock()
_loaded = None  # (lib, reason) once tried


def library():
    """The compiled kernel (a ctypes library); raises :class:`CpuKernelUnavailable`."""
    global _loaded
    with _lock:
        if _loaded is None:
            _loaded = _build()
    lib, reason = _loaded
    if lib is None:
        raise CpuKernelUnavailable(f"mamba_backend=cpu is unavailable: {reason}. "
                                   "Use mamba_backend=torch (PyTorch ops) instead.")
    return lib


def unavailable_reason():
    """None where the kernel loads, else why not (compiling it on the first call)."""
    try:
        library()
    except CpuKernelUnavailable as err:
        return str(err)
    return None


_pool = None  # (pid, workers, ThreadPoolExecutor)


def run_parallel(fn, args, total):
    """Run ``fn(args, begin, end)`` over [0, total) split in contiguous ranges, one per thread."""
    global _pool
    threads = max(1, min(torch.get_num_threads(), total))
    bounds = [total * i // threads for i in range(threads + 1)]
    ranges = [(bounds[i], bounds[i + 1]) for i in range(threads)]
    pointer = ctypes.byref(args)
    if threads > 1:
        with _lock:
            if _pool is None or _pool[0] != os.getpid() or _pool[1] < threads - 1:
                _pool = (os.getpid(), threads - 1, ThreadPoolExecutor(threads - 1, "scan_cpu"))
            pool = _pool[2]
        futures = [pool.submit(fn, pointer, *r) for r in ranges[1:]]
        codes = [fn(pointer, *ranges[0])] + [f.result() for f in futures]
    else:
        codes = [fn(pointer, 0, total)]
    if any(codes):
        raise MemoryError("selective scan (cpu backend): out of memory for its workspace")


def _n_contiguous(x):
    """(batch, n, L) with unit stride along n."""
    return x if x.stride(1) == 1 else x.transpose(1, 2).contiguous().transpose(1, 2)


def ptr_of(t):
    return None if t is None else t.data_ptr()


def _sum_groups(partials):
    """(groups, batch, L, n) partial sums -> (batch, L, n), without a copy for one group."""
    return partials[0] if partials.shape[0] == 1 else partials.sum(0)


def exp_f32(x):
    """The kernel's vectorised float32 exp, elementwise (for tests)."""
    x = x.to(torch.float32).contiguous()
    y = torch.empty_like(x)
    library().recbole_mamba_exp_f32(x.data_ptr(), y.data_ptr(), x.numel())
    return y


def mixer_step(x, z, conv_state, conv_w, conv_b, x_proj_w, dt_w, dt_b, A_log, D, ssm_state):
    """``Mamba.step`` after in_proj, in one kernel call (inference, float32, contiguous tensors):
    x, z (batch, dim); conv_state (batch, dim, width) and ssm_state (batch, dim, n), updated in
    place; weights as the mixer holds them (conv_w (dim, width)). Returns y (batch, dim), gated."""
    batch, dim = x.shape
    n, rank = A_log.shape[1], dt_w.shape[1]
    y = torch.empty_like(x)
    work = torch.empty(dim + rank + 2 * n, dtype=torch.float32)
    args = StepArgs(batch, dim, n, rank, conv_state.shape[2], ptr_of(x), ptr_of(z), ptr_of(conv_state),
                    ptr_of(conv_w), ptr_of(conv_b), ptr_of(x_proj_w), ptr_of(dt_w), ptr_of(dt_b),
                    ptr_of(A_log), ptr_of(D), ptr_of(ssm_state), ptr_of(y), ptr_of(work))
    library().recbole_mamba_step_f32(ctypes.byref(args))
    return y


class CpuScanFn(torch.autograd.Function):
    """``apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> (out, last_state)``.

    u, delta, z: (batch, dim, L) with any strides; A: (dim, n); B, C: (batch, n, L);
    D, delta_bias: (dim,). Only the inputs are saved for backward.
    """

    @staticmethod
    def _args(u, delta, A, B, C, D, z, delta_bias, softplus):
        """Compute-dtype inputs and the ScanArgs that point at them (keep both alive)."""
        ct = torch.float64 if u.dtype == torch.float64 else torch.float32
        u, delta, z = (None if t is None else t.to(ct) for t in (u, delta, z))
        A = A.to(ct).contiguous()
        B, C = (_n_contiguous(t.to(ct)) for t in (B, C))
        D, delta_bias = (None if t is None else t.to(ct).contiguous() for t in (D, delta_bias))
        batch, dim, length = u.shape
        args = ScanArgs(
            batch=batch, dim=dim, length=length, n=A.shape[1], softplus=int(bool(softplus)),
            u=u.data_ptr(), delta=delta.data_ptr(), A=A.data_ptr(), B=B.data_ptr(),
            C=C.data_ptr(), D=ptr_of(D), z=ptr_of(z), delta_bias=ptr_of(delta_bias),
            su=u.stride(), sdelta=delta.stride(), sz=z.stride() if z is not None else (0, 0, 0),
            sB=(B.stride(0), B.stride(2)), sC=(C.stride(0), C.stride(2)),
        )
        return (u, delta, A, B, C, D, z, delta_bias), args

    @staticmethod
    def _kernel(kind, dtype):
        return getattr(library(), f"recbole_mamba_scan_{kind}_{'f64' if dtype == torch.float64 else 'f32'}")

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        inputs, args = CpuScanFn._args(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
        cu = inputs[0]
        batch, dim, length = cu.shape
        out = cu.new_empty(batch, length, dim).transpose(1, 2)  # time-major, as the mixer wants
        last = cu.new_empty(batch, dim, A.shape[1])
        args.out, args.sout, args.last_state = out.data_ptr(), out.stride(), last.data_ptr()
        run_parallel(CpuScanFn._kernel("fwd", cu.dtype), args, batch * dim)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        ctx.delta_softplus = delta_softplus
        ctx.mark_non_differentiable(last)
        return out.to(u.dtype), last

    @staticmethod
    def backward(ctx, dout, _dlast_state):
        u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
        inputs, args = CpuScanFn._args(u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus)
        cu = inputs[0]
        batch, dim, length = cu.shape
        n = A.shape[1]
        dout = dout.to(cu.dtype)
        du = torch.empty_like(cu)
        ddelta = torch.empty_like(du)
        dz = torch.empty_like(du) if z is not None else None
        threads = torch.get_num_threads()
        # channel groups per batch row, enough for every thread to have work; at most dim, so
        # every group has a channel and writes its partial dB, dC
        groups = max(1, min(dim, -(-_WORK_ITEMS_PER_THREAD * threads // batch)))
        dB = cu.new_empty(groups, batch, length, n)
        dC = cu.new_empty(groups, batch, length, n)
        dA = cu.new_empty(batch, dim, n)
        dD = cu.new_empty(batch, dim)
        ddelta_bias = cu.new_empty(batch, dim)
        args.dout, args.sdout = dout.data_ptr(), dout.stride()
        args.du, args.ddelta, args.dz, args.sgrad = (
            du.data_ptr(), ddelta.data_ptr(), ptr_of(dz), du.stride()
        )
        args.groups = groups
        args.segment = max(1, _SEGMENT_ELEMENTS // n)
        args.dB, args.dC = dB.data_ptr(), dC.data_ptr()
        args.dA, args.dD, args.ddelta_bias = dA.data_ptr(), dD.data_ptr(), ddelta_bias.data_ptr()
        run_parallel(CpuScanFn._kernel("bwd", cu.dtype), args, groups * batch)
        return (
            du.to(u.dtype),
            ddelta.to(delta.dtype),
            dA.sum(0).to(A.dtype),
            _sum_groups(dB).transpose(1, 2).to(B.dtype),
            _sum_groups(dC).transpose(1, 2).to(C.dtype),
            dD.sum(0).to(D.dtype) if D is not None else None,
            dz.to(z.dtype) if z is not None else None,
            ddelta_bias.sum(0).to(delta_bias.dtype) if delta_bias is not None else None,
            None,
        )
