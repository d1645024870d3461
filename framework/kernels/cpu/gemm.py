"""Dense products on CPU through an optimised BLAS, as an XLA FFI custom call (fp32).

Why: on CPU, XLA's own dot kernels lose to an optimised BLAS where it matters most for this
project — the tied LM head of small models (≈ 30 % slower than OpenBLAS at [2048, 384] × [384,
8192]), skinny decode products (M = 1..8), and every backward-pass product with a transposed
operand, for which XLA first materialises a transposed copy; on the baby GPT those copies (with
the elementwise chains XLA re-fuses into each of them) took a third of a training step. CBLAS
takes a transposition as a flag, and a custom call is a fusion boundary, so the residual-stream
gradient is computed once (:func:`gradient_boundary`).

What: :func:`dense` is ``x @ w`` contracting the last ``contract`` axes of ``x`` with the first
of ``w`` (``transpose_w=True``: with the *last* axes of ``w``, as a tied embedding head needs),
with a custom VJP whose two products are BLAS calls too; shapes where the BLAS does not pay
keep ``jnp.einsum``. Whether these kernels serve a program at all (fp32, one CPU device, one
process) is decided by ``framework.models.backend``, the only caller.

Products of at most 8 rows (decode steps) do not reach the BLAS: ``src/skinny_gemm.h`` keeps
all rows' partial sums in registers and reads the weight once, in contiguous stretches, which a
BLAS sgemm (it packs the weight first) does not; at batch 8 they run nearly as fast as at batch 1.
They share the helper threads of ``src/spin_pool.h``, which stay awake between the dozens of
short kernels of a decode step instead of being woken for each.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from framework.kernels.cpu import build
from framework.kernels.cpu.build import MATERIALIZE, TARGET, require


@jax.custom_vjp
def gradient_boundary(x: jax.Array) -> jax.Array:
    """Identity whose gradient is computed once, as a whole array, on the BLAS path.

    Why: in a residual network the gradient reaching block ``l`` is a sum over every later
    block's branch; XLA:CPU fuses that elementwise chain into each of its consumers (bias and
    norm gradients, transposes), recomputing it once per consumer and layer — on the baby GPT a
    third of the backward pass. The boundary is a custom call whose output aliases its input:
    nothing is copied, but nothing fuses across it. Elsewhere (accelerators, sharded programs)
    it is not used (``framework.models.backend`` decides).
    """
    return x


def _boundary_fwd(x):
    return x, None


def _boundary_bwd(_, g):
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
    min_rows = MIN_ROWS.get(build.blas_name(), MIN_ROWS_DEFAULT)
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
    """``backend.dense`` (same contract) through the BLAS custom call; shapes where the BLAS
    does not pay (:func:`_worth_it`) keep one ``jnp.einsum``."""
    batch, k_dims = x.shape[: x.ndim - contract], x.shape[x.ndim - contract :]
    if transpose_w:
        out_dims, w_k = w.shape[: w.ndim - contract], w.shape[w.ndim - contract :]
    else:
        w_k, out_dims = w.shape[:contract], w.shape[contract:]
    if tuple(w_k) != tuple(k_dims):
        raise ValueError(f"dense: x {x.shape} and w {w.shape} do not contract over {contract}")
    if not _worth_it(math.prod(batch), w.size):
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
