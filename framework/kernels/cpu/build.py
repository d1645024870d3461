"""Building and loading the CPU kernels: find a CBLAS, compile ``src/`` for this CPU, register
the FFI targets with XLA:CPU.

The kernels (``src/*.cc``) are compiled once per source, jaxlib version and CPU, with the C++
compiler found at run time, into the deepdive cache directory. A CBLAS is taken from
``$DEEPDIVE_CBLAS`` (a shared library exporting ``cblas_sgemm``), else on Intel CPUs MKL when
installed (``pip install deepdive[mkl]``; 7-10 % faster training steps than OpenBLAS on a
2-core Xeon), else the OpenBLAS that numpy wheels ship (ILP64, ``scipy_`` prefix, loaded from a
private copy so that numpy's own instance is left as it was). The BLAS runs single-threaded:
XLA's intra-op pool splits each product over its threads.

Switches: ``$DEEPDIVE_CPU_GEMM=0`` turns the kernels off. ``$DEEPDIVE_REQUIRE_CPU_KERNELS=1``
(set by CI) makes a failed build an error instead of a quiet fallback to XLA's ops, so a
broken kernel cannot hide behind skipped tests.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from framework.core.cache import cache_dir

ENV_REQUIRE = "DEEPDIVE_REQUIRE_CPU_KERNELS"

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
# The library is built for this machine's CPU (it is built where it runs). No -ffast-math: it
# makes NaN and inf undefined, and the trainer's non-finite-loss stop relies on them. The loops
# that reduce (sums, maxima) say so with `#pragma omp simd reduction` (-fopenmp-simd: no OpenMP
# runtime), and the attention kernel has its own vectorizable exp.
CXXFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp-simd", "-std=c++17", "-shared",
            "-fPIC", "-w"]  # fmt: skip


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
    compiler = _compiler()
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
    """Register the FFI targets; None on success, else the reason the kernels are off."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return f"${ENV_SWITCH}=0"
    found = _find_cblas()
    if found is None:
        return _unavailable(f"no CBLAS found (set ${ENV_CBLAS} to a library exporting cblas_sgemm)")
    blas, sgemm, bits, name = found
    try:
        kernel = ctypes.CDLL(str(_compile()))
    except (OSError, RuntimeError) as err:
        return _unavailable(f"kernel not built: {err}")
    kernel.deepdive_set_blas(ctypes.c_void_p(sgemm), ctypes.c_int(bits))
    _setup.libraries = (blas, kernel)  # keep both loaded for the life of the process
    _setup.blas_name = name
    for target, symbol in TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(kernel, symbol)), "cpu")
    return None


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")


def _unavailable(reason: str) -> str:
    """``reason``, or an error where the kernels are required and a compiler could build them."""
    if os.environ.get(ENV_REQUIRE, "0") == "1" and _compiler() is not None:
        raise RuntimeError(
            f"${ENV_REQUIRE}=1 but the deepdive CPU kernels are unavailable: {reason}"
        )
    return reason


def unavailable_reason() -> str | None:
    """None when the kernels are built and registered, else why they are not."""
    return _setup()


def blas_name() -> str:
    """The CBLAS the kernels call ("" before a successful build)."""
    return getattr(_setup, "blas_name", "")


def require() -> None:
    """Raise RuntimeError unless the CPU kernels are built and registered (for direct calls)."""
    if (reason := _setup()) is not None:
        raise RuntimeError(f"the deepdive CPU kernels are unavailable: {reason}")
