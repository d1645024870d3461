"""The CPU BLAS custom call (framework/kernels/cpu/gemm.py) vs float64 numpy, jax's own gradients, and
Hugging Face; and when it is (not) used."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from framework.kernels.cpu import build
from framework.kernels.cpu import gemm as cpu_gemm
from framework.models import backend, hf_import

ONE = jax.devices()[:1]  # a program compiled for one CPU device

pytestmark = pytest.mark.skipif(
    build.unavailable_reason() is not None,
    reason=f"BLAS path unavailable: {build.unavailable_reason()}",
)

# (M, K, N): a matrix-vector product (M = 1), skinny products split over N, products split over
# rows, a degenerate K = 0, and odd sizes that do not divide evenly between threads.
SHAPES = [(1, 7, 5), (1, 768, 3001), (3, 8, 9), (8, 384, 1537), (200, 64, 300), (513, 97, 65),
          (4, 0, 3)]  # fmt: skip


@pytest.mark.parametrize("m,k,n", SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_matmul2d_matches_float64_numpy(m, k, n, trans_a, trans_b):
    rng = np.random.default_rng(m * 1000 + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    ref = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    out = jax.jit(lambda a, b: cpu_gemm.matmul2d(a, b, trans_a, trans_b))(a, b)
    assert out.shape == (m, n) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-4 * max(1, np.sqrt(k)), rtol=1e-5)


@pytest.mark.parametrize("m", range(1, 9))
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("k,n", [(101, 16 * 13 + 5), (515, 1029)])  # one chunk; one per thread
def test_skinny_products_match_float64_numpy(m, trans_b, k, n):
    """The decode kernels (M <= 8 rows, skinny_gemm.h) for every row count: K spans several
    panels plus a remainder and N leaves partial vectors, so every tail path runs; the 2 MB
    weight is split over the helper threads (by rows of [N, K], by partial sums over K of
    [K, N])."""
    rng = np.random.default_rng(m)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    ref = a.astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
    out = jax.jit(lambda a, b: cpu_gemm.matmul2d(a, b, False, trans_b))(a, b)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-4 * np.sqrt(k), rtol=1e-5)


def test_skinny_products_from_concurrent_callers():
    """Two threads' decode products at once: one gets the helper threads, the other runs alone
    (spin_pool.h); both must be right."""
    import threading

    rng = np.random.default_rng(7)
    a = rng.standard_normal((4, 512)).astype(np.float32)
    b = rng.standard_normal((512, 4096)).astype(np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    product = jax.jit(lambda a, b: cpu_gemm.matmul2d(a, b))
    product(a, b).block_until_ready()
    errors = []

    def worker():
        for _ in range(20):
            out = np.asarray(product(a, b))
            errors.append(float(np.max(np.abs(out - ref))))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 40 and max(errors) < 1e-3


@pytest.mark.parametrize(
    "x_shape,w_shape,contract,transpose_w,spec",
    [
        ((2, 40, 48), (48, 3, 4, 12), 1, False, "btc,cxhd->btxhd"),  # fused QKV [C, 3, H, D]
        ((2, 40, 4, 12), (4, 12, 48), 2, False, "bthd,hdc->btc"),  # output projection [H, D, C]
        ((2, 40, 48), (300, 48), 1, True, "btc,vc->btv"),  # tied head: x @ embeddingᵀ
    ],
)
def test_dense_value_and_gradients_match_einsum(x_shape, w_shape, contract, transpose_w, spec):
    def einsum_reference(x, w):
        return jnp.einsum(spec, x, w, precision="highest")

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    w = jnp.asarray(rng.standard_normal(w_shape), jnp.float32)
    probe = jnp.asarray(rng.standard_normal(einsum_reference(x, w).shape))

    def loss(fn):
        return lambda x, w: jnp.sum(fn(x, w) * probe)

    ours = backend.compiled_for(
        jax.value_and_grad(loss(lambda x, w: cpu_gemm.dense(x, w, contract, transpose_w)), (0, 1)),
        ONE,
    )
    assert "ffi_call" in str(jax.make_jaxpr(ours)(x, w))  # the BLAS path really ran
    (value, (dx, dw)) = jax.jit(ours)(x, w)
    ref_value, (rdx, rdw) = jax.value_and_grad(loss(einsum_reference), (0, 1))(x, w)
    np.testing.assert_allclose(value, ref_value, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(dx, rdx, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dw, rdw, rtol=1e-5, atol=1e-4)


def _uses_blas(fn, *args) -> bool:
    return "ffi_call" in str(jax.make_jaxpr(fn)(*args))


def test_blas_path_only_for_one_device_fp32_and_large_enough_products():
    x = jnp.ones((64, 48), jnp.float32)
    w = jnp.ones((48, 96), jnp.float32)
    dense = backend.dense
    assert jax.device_count() == 8  # the test session's 8 host devices
    assert not _uses_blas(dense, x, w)  # undeclared program on an 8-device host: XLA's dots
    assert _uses_blas(backend.compiled_for(dense, ONE), x, w)
    assert not _uses_blas(backend.compiled_for(dense, jax.devices()), x, w)  # a sharded program
    bf16 = backend.compiled_for(
        lambda x, w: dense(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)), ONE
    )
    assert not _uses_blas(bf16, x, w)
    one_row = jnp.ones((1, 48), jnp.float32)  # one row against a 18 KB weight: XLA is as fast
    assert not _uses_blas(backend.compiled_for(dense, ONE), one_row, w)
    layer_w = jnp.ones((48, 2048), jnp.float32)  # 384 KB: the decode kernels from one row on
    assert _uses_blas(backend.compiled_for(dense, ONE), one_row, layer_w)
    nine_rows = jnp.ones((9, 48), jnp.float32)  # past the decode kernels: BLAS rules again
    expected = build.blas_name() == "MKL"  # MKL from 2 rows on; OpenBLAS from 32
    assert _uses_blas(backend.compiled_for(dense, ONE), nine_rows, layer_w) == expected


def test_blas_choice_by_environment(monkeypatch):
    """$DEEPDIVE_CBLAS names the library; one without a CBLAS sgemm turns the path off."""
    numpy_openblas = [p for p, private in build._blas_candidates() if private]
    monkeypatch.setenv(build.ENV_CBLAS, str(numpy_openblas[0]))
    assert build._blas_candidates() == [(numpy_openblas[0], False)]
    monkeypatch.setenv(build.ENV_CBLAS, "/nonexistent/libblas.so")
    monkeypatch.delenv(build.ENV_REQUIRE, raising=False)  # this failure is the point here
    build._setup.cache_clear()
    try:
        assert "no CBLAS found" in backend.describe(ONE)
    finally:
        monkeypatch.undo()
        build._setup.cache_clear()


def test_unusable_cache_directory_falls_back_to_xla(monkeypatch, tmp_path):
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    monkeypatch.setenv("DEEPDIVE_CACHE_DIR", str(blocker))
    monkeypatch.delenv(build.ENV_REQUIRE, raising=False)  # this failure is the point here
    build._setup.cache_clear()
    try:
        # nothing compiled yet under this cache: the build (or the private BLAS copy) fails
        assert backend.describe(ONE).startswith("XLA's ops (")
        x = jnp.ones((64, 48), jnp.float32)
        assert not _uses_blas(backend.compiled_for(backend.dense, ONE), x, jnp.ones((48, 8)))
    finally:
        monkeypatch.undo()
        build._setup.cache_clear()


def test_switch_off_by_environment(monkeypatch):
    monkeypatch.setenv(build.ENV_SWITCH, "0")
    build._setup.cache_clear()
    try:
        assert "DEEPDIVE_CPU_GEMM=0" in backend.describe(ONE)
        x = jnp.ones((64, 48), jnp.float32)
        assert not _uses_blas(backend.compiled_for(backend.dense, ONE), x, jnp.ones((48, 8)))
    finally:
        monkeypatch.undo()
        build._setup.cache_clear()
    assert backend.describe(ONE).startswith("CPU kernels (fp32")


def test_gpt2_logits_on_the_blas_path_match_transformers(hf_gpt2):
    import torch

    folder, reference = hf_gpt2
    _, _, model = hf_import.load(folder, expect="gpt2")
    tokens = np.random.default_rng(0).integers(0, 300, (2, 64)).astype(np.int32)
    forward = backend.compiled_for(lambda t: model(t)[0], ONE)
    assert _uses_blas(forward, jnp.asarray(tokens))
    ours = jax.jit(forward)(jnp.asarray(tokens))
    with torch.no_grad():
        ref = reference(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours), ref, atol=1e-4, rtol=0)


def test_required_kernels_turn_a_failed_build_into_an_error(monkeypatch, tmp_path):
    """$DEEPDIVE_REQUIRE_CPU_KERNELS=1 (CI): a build that fails where a compiler exists raises
    instead of quietly falling back to XLA's ops (which would only skip the kernel tests)."""
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    monkeypatch.setenv("DEEPDIVE_CACHE_DIR", str(blocker))
    monkeypatch.setenv(build.ENV_REQUIRE, "1")
    build._setup.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="DEEPDIVE_REQUIRE_CPU_KERNELS=1"):
            build.unavailable_reason()
    finally:
        monkeypatch.undo()
        build._setup.cache_clear()
    assert build.unavailable_reason() is None
