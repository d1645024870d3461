"""Dense products on CPU through an optimised BLAS, as an XLA FFI custom call (fp32).

Why: on CPU, XLA's own dot kernels lose to an optimised BLAS where it matters most for this
project — the tied LM head of small models (≈ 30 % slower than OpenBLAS at [2048, 384] × [384,
8192]), skinny decode products (M = 1..8), and every backward-pass product with a transposed
operand, for which XLA first materialises a transposed copy; on the baby GPT those copies (with
the elementwise chains XLA re-fuses into each of them) took a third of a training step. CBLAS
takes a transposition as a flag, and a custom call is a fusion boundary, so the residual-stream
gradient is computed once.

What: :func:`dense` is ``x @ w`` contracting the last ``contract`` axes of ``x`` with the first
of ``w`` (``transpose_w=True``: with the *last* axes of ``w``, as a tied embedding head needs),
with a custom VJP whose two products are BLAS calls too. It uses the BLAS path when all of these
hold, else ``jnp`` (identical results up to fp32 summation order):

* the default backend is CPU, one process, and the program spans one device: the function being
  traced was wrapped with :func:`on_devices` (the trainer, evaluator and generator declare their
  mesh size), else the process sees one device. A sharded program keeps XLA's dots, which the
  SPMD partitioner understands (a custom call would be computed replicated);
* operands are fp32 (bf16/fp16 compute keeps XLA's dots);
* ``$DEEPDIVE_CPU_GEMM`` is not ``0``;
* the kernels (``framework/kernels/cpu/src/``) could be compiled — once per source, jaxlib version
  and CPU, with the C++ compiler found at run time, into the deepdive cache directory — and a
  CBLAS was found: ``$DEEPDIVE_CBLAS`` (a shared library exporting ``cblas_sgemm``), else on
  Intel CPUs MKL when installed (``pip install deepdive[mkl]``; 7-10 % faster training steps
  than OpenBLAS on a 2-core Xeon), else the OpenBLAS that numpy wheels
  ship (ILP64, ``scipy_`` prefix, loaded from a private copy so that numpy's own instance is
  left as it was). The BLAS runs single-threaded: XLA's intra-op pool splits each product over
  its threads.

Products of at most 8 rows (decode steps) do not reach the BLAS: ``kernels/skinny_gemm.h`` keeps
all rows' partial sums in registers and reads the weight once, in contiguous stretches, which a
BLAS sgemm (it packs the weight first) does not; at batch 8 they run nearly as fast as at batch 1.
They share the helper threads of ``kernels/spin_pool.h``, which stay awake between the dozens of
short kernels of a decode step instead of being woken for each.

``status()`` says which path is active and why; ``deepdive train`` logs it.
"""

from __future__ import annotations

import contextvars
import ctypes
import functools
import glob
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from framework.core.cache import cache_dir

ENV_SWITCH = "DEEPDIVE_CPU_GEMM"
ENV_CBLAS = "DEEPDIVE_CBLAS"
TARGET = "deepdive_cpu_gemm"
MATERIALIZE = "deepdive_cpu_materialize"
# FFI target name -> handler symbol of the compiled library
TARGETS = {
    TARGET: "DeepdiveCpuGemm",
    MATERIALIZE: "DeepdiveCpuMaterialize",
    "deepdive_cpu_attention_fwd": "DeepdiveCpuAttentionFwd",
    "deepdive_cpu_attention_bwd": "DeepdiveCpuAttentionBwd",
    "deepdive_cpu_attention_decode": "DeepdiveCpuAttentionDecode",
}

# (sgemm symbol, integer bits) to try in a CBLAS library, in order.
_SYMBOLS = (
    ("scipy_cblas_sgemm64_", 64),  # numpy's scipy-openblas64
    ("cblas_sgemm64_", 64),
    ("scipy_cblas_sgemm", 32),  # scipy-openblas32
    ("cblas_sgemm", 32),  # a plain LP64 CBLAS (OpenBLAS, BLIS, MKL)
)


# Functions that set a BLAS library's thread count, tried in order (OpenBLAS ILP64 / LP64, MKL,
# BLIS).
_THREAD_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads",
    "MKL_Set_Num_Threads",
    "bli_thread_set_num_threads",
)


@functools.cache
def _cpuinfo(field: str) -> str:
    """The first ``field`` line's value in /proc/cpuinfo ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _blas_candidates() -> list[tuple[Path, bool]]:
    """(library, load a private copy of it) in order of preference."""
    if env := os.environ.get(ENV_CBLAS):
        return [(Path(env), False)]
    found: list[tuple[Path, bool]] = []
    if _cpuinfo("vendor_id") == "GenuineIntel":  # MKL (the `mkl` extra) where it is at its best
        found += [(Path(p), False) for p in sorted(glob.glob(f"{sys.prefix}/lib/libmkl_rt.so*"))]
    numpy_libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    found += [
        (Path(p), True) for p in sorted(glob.glob(str(numpy_libs / "libscipy_openblas*.so*")))
    ]
    return found


def _private_copy(path: Path) -> Path:
    """A copy of the library under the cache, so that loading it gives this process a second,
    independent instance (its own thread count) beside the one numpy uses."""
    target = cache_dir() / "kernels" / f"private-{path.stat().st_size}-{path.name}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    return target


MKL_THREADING_SEQUENTIAL = 1  # mkl_service.h


def _find_cblas() -> tuple[ctypes.CDLL, int, int, str] | None:
    """(library, sgemm address, integer bits, name) of the first usable CBLAS,
    set to run single-threaded (numpy's OpenBLAS is loaded as a private copy for that: numpy
    keeps its own instance and thread count; MKL is switched to its sequential layer)."""
    for path, private in _blas_candidates():
        try:
            lib = ctypes.CDLL(str(_private_copy(path) if private else path), mode=os.RTLD_LOCAL)
        except OSError:
            continue
        for gemm, bits in _SYMBOLS:
            try:
                f = getattr(lib, gemm)
            except AttributeError:
                continue
            if hasattr(lib, "MKL_Set_Threading_Layer"):
                lib.MKL_Set_Threading_Layer(ctypes.c_int(MKL_THREADING_SEQUENTIAL))
            for setter in _THREAD_SETTERS:
                if hasattr(lib, setter):
                    getattr(lib, setter)(ctypes.c_int(1))
                    break
            name = "MKL" if hasattr(lib, "MKL_Set_Threading_Layer") else path.name.split(".")[0]
            return lib, ctypes.cast(f, ctypes.c_void_p).value, bits, name
    return None


KERNELS = Path(__file__).resolve().parent / "src"
SOURCES = ("cpu_gemm.cc", "cpu_attention.cc")  # compiled into one library with the headers
# The library is built for this machine's CPU (it is built where it runs), with fast-math for the
# attention kernel's exp/log (their inputs are finite by construction there).
CXXFLAGS = ["-O3", "-march=native", "-ffast-math", "-std=c++17", "-shared", "-fPIC", "-w"]


def _cpu_identity() -> bytes:
    """What the compiled code depends on besides its source: the CPU model and flags."""
    return f"{os.uname().machine}|{_cpuinfo('model name')}|{_cpuinfo('flags')}".encode()


def _compile() -> Path:
    """The compiled kernel library (built once per source, jaxlib version and CPU)."""
    import jaxlib

    include = jax.ffi.include_dir()
    digest = hashlib.sha256()
    for path in sorted(KERNELS.glob("*.[ch]*")):  # the sources and every header they include
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(f"{jaxlib.__version__}|{include}|{CXXFLAGS}".encode() + _cpu_identity())
    target = cache_dir() / "kernels" / f"deepdive_cpu-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if not compiler:
        raise RuntimeError("no C++ compiler (set $CXX)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        sources = [str(KERNELS / name) for name in SOURCES]
        cmd = [compiler, *CXXFLAGS, f"-I{include}", *sources, "-o", str(built)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {proc.stderr.strip()[-500:]}")
        os.replace(built, target)  # atomic: concurrent builders leave one complete file
    return target


@functools.cache
def _setup() -> str | None:
    """Register the FFI target; None on success, else the reason the BLAS path is off."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return f"${ENV_SWITCH}=0"
    found = _find_cblas()
    if found is None:
        return f"no CBLAS found (set ${ENV_CBLAS} to a library exporting cblas_sgemm)"
    blas, sgemm, bits, name = found
    try:
        kernel = ctypes.CDLL(str(_compile()))
    except (OSError, RuntimeError) as err:
        return f"kernel not built: {err}"
    kernel.deepdive_set_blas(ctypes.c_void_p(sgemm), ctypes.c_int(bits))
    _setup.libraries = (blas, kernel)  # keep both loaded for the life of the process
    _setup.blas_name = name
    for target, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(kernel, symbol)), "cpu")
    return None


_PROGRAM_DEVICES: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "deepdive_program_devices", default=None
)


def on_devices(fn, num_devices: int):
    """``fn`` declared to run on ``num_devices`` devices: while it runs (that is, while ``jax.jit``
    traces it), :func:`dense` takes the BLAS path only if ``num_devices == 1``."""

    @functools.wraps(fn)
    def traced(*args, **kwargs):
        token = _PROGRAM_DEVICES.set(int(num_devices))
        try:
            return fn(*args, **kwargs)
        finally:
            _PROGRAM_DEVICES.reset(token)

    return traced


def _program_devices() -> int:
    declared = _PROGRAM_DEVICES.get()
    return jax.device_count() if declared is None else declared


def status(num_devices: int | None = None) -> str:
    """One line: whether dense products use the BLAS path, and why not when they do not."""
    if jax.default_backend() != "cpu":
        return f"XLA dots ({jax.default_backend()} backend)"
    devices = jax.device_count() if num_devices is None else num_devices
    if devices != 1 or jax.process_count() != 1:
        return f"XLA dots ({devices} devices: sharded programs keep XLA's dots)"
    reason = _setup()
    if reason is not None:
        return f"XLA dots ({reason})"
    return f"CBLAS custom call (fp32, {_setup.blas_name})"


def _active() -> bool:
    return (
        jax.default_backend() == "cpu"
        and jax.process_count() == 1
        and _program_devices() == 1
        and _setup() is None
    )


def usable(*arrays: jax.Array) -> bool:
    """Whether the CPU kernels apply to these operands in the program being traced."""
    return all(a.dtype == jnp.float32 for a in arrays) and _active()


def require() -> None:
    """Raise RuntimeError unless the CPU kernels are built and registered (for direct calls)."""
    if (reason := _setup()) is not None:
        raise RuntimeError(f"the deepdive CPU kernels are unavailable: {reason}")


@jax.custom_vjp
def gradient_boundary(x: jax.Array) -> jax.Array:
    """Identity whose gradient is computed once, as a whole array, on the BLAS path.

    Why: in a residual network the gradient reaching block ``l`` is a sum over every later
    block's branch; XLA:CPU fuses that elementwise chain into each of its consumers (bias and
    norm gradients, transposes), recomputing it once per consumer and layer — on the baby GPT a
    third of the backward pass. The boundary is a custom call whose output aliases its input:
    nothing is copied, but nothing fuses across it. Elsewhere (accelerators, sharded programs)
    it is a plain identity.
    """
    return x


def _boundary_fwd(x):
    return x, None


def _boundary_bwd(_, g):
    if not _active():
        return (g,)
    call = jax.ffi.ffi_call(
        MATERIALIZE,
        jax.ShapeDtypeStruct(g.shape, g.dtype),
        input_output_aliases={0: 0},
        vmap_method="expand_dims",
    )
    return (call(g),)


gradient_boundary.defvjp(_boundary_fwd, _boundary_bwd)


# When the custom call pays (measured on 2-core machines). Products of at most 8 rows (decoding)
# run skinny_gemm.h's kernels, which read the weight once: from 64 KB weights on they beat XLA's
# dots (baby GPT decode, batch 8: +45 %; GPT-2 124M, batch 1: +3 %). Larger products go to the
# BLAS: with OpenBLAS from 32 rows or a 4 MB weight on; MKL from 2 rows on.
SKINNY_MAX_ROWS = 8  # skinny_gemm.h: kMaxRows
SKINNY_MIN_WEIGHT_BYTES = 64 << 10
MIN_ROWS = {"MKL": 2}
MIN_ROWS_DEFAULT = 32
MIN_WEIGHT_BYTES = 4 << 20


def _worth_it(rows: int, weight_elements: int) -> bool:
    if rows <= SKINNY_MAX_ROWS:
        return 4 * weight_elements >= SKINNY_MIN_WEIGHT_BYTES
    min_rows = MIN_ROWS.get(getattr(_setup, "blas_name", ""), MIN_ROWS_DEFAULT)
    return rows >= min_rows or 4 * weight_elements >= MIN_WEIGHT_BYTES


def matmul2d(a: jax.Array, b: jax.Array, trans_a: bool = False, trans_b: bool = False):
    """``op(a) @ op(b)`` of 2-D fp32 arrays by the BLAS custom call (no fallback)."""
    require()
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    call = jax.ffi.ffi_call(
        TARGET, jax.ShapeDtypeStruct((m, n), jnp.float32), vmap_method="sequential"
    )
    return call(a, b, trans_a=bool(trans_a), trans_b=bool(trans_b))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _blas_dense(x2, w2, transpose_w):
    return matmul2d(x2, w2, trans_b=transpose_w)


def _blas_dense_fwd(x2, w2, transpose_w):
    return matmul2d(x2, w2, trans_b=transpose_w), (x2, w2)


def _blas_dense_bwd(transpose_w, residuals, g):
    x2, w2 = residuals  # x2 [M, K]; w2 [K, N] (or [N, K] when transposed); g [M, N]
    dx = matmul2d(g, w2, trans_b=not transpose_w)  # [M, K]
    if transpose_w:
        dw = matmul2d(g, x2, trans_a=True)  # [N, K]
    else:
        dw = matmul2d(x2, g, trans_a=True)  # [K, N]
    return dx, dw


_blas_dense.defvjp(_blas_dense_fwd, _blas_dense_bwd)


def dense(
    x: jax.Array,
    w: jax.Array,
    contract: int = 1,
    transpose_w: bool = False,
    preferred_element_type: jnp.dtype | None = None,
) -> jax.Array:
    """Contract the last ``contract`` axes of ``x`` with the leading axes of ``w``.

    ``transpose_w``: contract with the trailing axes of ``w`` instead (``x @ wᵀ``, e.g. logits
    from a ``[V, C]`` embedding). x ``[*batch, *k]``, w ``[*k, *out]`` -> ``[*batch, *out]``.
    Off the BLAS path this is one ``jnp.einsum`` over the original axes (so a sharded weight's
    axes stay visible to the partitioner), with ``preferred_element_type``.
    """
    batch, k_dims = x.shape[: x.ndim - contract], x.shape[x.ndim - contract :]
    if transpose_w:
        out_dims, w_k = w.shape[: w.ndim - contract], w.shape[w.ndim - contract :]
    else:
        w_k, out_dims = w.shape[:contract], w.shape[contract:]
    if tuple(w_k) != tuple(k_dims):
        raise ValueError(f"dense: x {x.shape} and w {w.shape} do not contract over {contract}")
    if not (usable(x, w) and _worth_it(math.prod(batch), w.size)):
        return jnp.einsum(_spec(len(batch), contract, len(out_dims), transpose_w), x, w,
                          preferred_element_type=preferred_element_type)  # fmt: skip
    k, n, m = math.prod(k_dims), math.prod(out_dims), math.prod(batch)
    x2 = x.reshape(m, k)
    w2 = w.reshape(n, k) if transpose_w else w.reshape(k, n)
    return _blas_dense(x2, w2, transpose_w).reshape(*batch, *out_dims)


def _spec(batch: int, contract: int, out: int, transpose_w: bool) -> str:
    """The einsum of :func:`dense`, e.g. ``"ab c,c de->ab de"`` without the spaces."""
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    b, k, o = ("".join(next(letters) for _ in range(n)) for n in (batch, contract, out))
    return f"{b}{k},{o + k if transpose_w else k + o}->{b}{o}"
