"""Building blocks vs hand-written numpy references; logical axes; parameter and FLOP counts."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from framework.core.registry import MODELS
from framework.models import layers

# ----------------------------------------------------------------------------------------------
# numpy references (written from the papers' definitions, independently of framework/models/layers.py)


def np_rope(x, positions, theta):
    """RoPE as complex rotation: pair (i, i + D/2) is the complex number x_i + j·x_{i+D/2},
    multiplied by exp(j · position · theta^(-2i/D))."""
    d = x.shape[-1]
    half = d // 2
    z = x[..., :half] + 1j * x[..., half:]
    freq = theta ** (-2.0 * np.arange(half) / d)
    rot = np.exp(1j * positions[:, :, None, None] * freq)  # [B, T, 1, D/2]
    z = z * rot
    return np.concatenate([z.real, z.imag], axis=-1)


def np_attention(x, wq, wk, wv, wo, positions, theta, mask):
    """x [B,T,C]; wq [C,H,D]; wk/wv [C,K,D]; wo [H,D,C]; query head h uses kv head h // (H/K)."""
    q = np.einsum("btc,chd->bthd", x, wq)
    k = np.einsum("btc,ckd->btkd", x, wk)
    v = np.einsum("btc,ckd->btkd", x, wv)
    if theta is not None:
        q, k = np_rope(q, positions, theta), np_rope(k, positions, theta)
    heads, kv_heads, d = wq.shape[1], wk.shape[1], wq.shape[2]
    out = np.zeros(q.shape)
    for h in range(heads):
        g = h // (heads // kv_heads)
        scores = np.einsum("bqd,bkd->bqk", q[:, :, h], k[:, :, g]) / math.sqrt(d)
        scores = np.where(mask, scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out[:, :, h] = np.einsum("bqk,bkd->bqd", p, v[:, :, g])
    return np.einsum("bthd,hdc->btc", out, wo)


# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kv_heads,theta", [(2, 10000.0), (1, 500.0), (4, None)])
def test_attention_matches_numpy_reference(kv_heads, theta):
    c, h, b, t = 32, 4, 2, 7
    attn = layers.CausalSelfAttention(
        c,
        h,
        kv_heads,
        use_bias=False,
        rope_theta=theta,
        init=layers.normal(0.3),
        out_init=layers.normal(0.3),
        dtype="float32",
        rngs=nnx.Rngs(0),
    )
    if attn.fused:
        wq, wk, wv = (np.asarray(attn.qkv[...][:, i]) for i in range(3))
    else:
        wq, wk, wv = np.asarray(attn.q[...]), *(np.asarray(attn.kv[...][:, i]) for i in range(2))
    x = np.random.default_rng(0).normal(size=(b, t, c)).astype(np.float32)
    positions = np.array([np.arange(t), np.arange(t) + 5])  # row 1: an offset start position
    causal = np.tril(np.ones((t, t), bool))[None]
    ctx, _ = layers.attention_context(b, t, None)
    ours, _ = attn(jnp.asarray(x), jnp.asarray(positions, jnp.int32), ctx)
    ref = np_attention(x, wq, wk, wv, np.asarray(attn.out[...]), positions, theta, causal)
    np.testing.assert_allclose(np.asarray(ours), ref, atol=2e-5, rtol=1e-5)


def test_rope_is_relative():
    """Rotated q·k depends only on the position difference (the point of RoPE)."""
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(2, 1, 1, 1, 16))

    def score(pq, pk):
        rq = layers.apply_rope(jnp.asarray(q), jnp.full((1, 1), pq), 10000.0)
        rk = layers.apply_rope(jnp.asarray(k), jnp.full((1, 1), pk), 10000.0)
        return float(jnp.sum(rq * rk))

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-4)
    np.testing.assert_allclose(
        np.asarray(layers.apply_rope(jnp.asarray(q), jnp.zeros((1, 1), jnp.int32), 1e4)), q
    )


def test_norms_match_numpy():
    x = np.random.default_rng(2).normal(2.0, 3.0, size=(2, 3, 16)).astype(np.float32)
    ln = layers.LayerNorm(16, eps=1e-5, dtype="float32", rngs=nnx.Rngs(0))
    ln.scale.set_value(jnp.linspace(0.5, 1.5, 16))
    ln.bias.set_value(jnp.linspace(-1, 1, 16))
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    ref = ref * np.linspace(0.5, 1.5, 16) + np.linspace(-1, 1, 16)
    np.testing.assert_allclose(np.asarray(ln(jnp.asarray(x))), ref, atol=1e-5)
    rms = layers.RMSNorm(16, eps=1e-6, dtype="bfloat16", rngs=nnx.Rngs(0))
    out = rms(jnp.asarray(x))
    assert out.dtype == jnp.bfloat16
    ref = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, atol=2e-2, rtol=1e-2)


def test_mlps_match_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 4, 8)).astype(np.float32)
    gelu = layers.GeluMLP(
        8,
        32,
        use_bias=True,
        init=layers.normal(0.5),
        out_init=layers.normal(0.5),
        dtype="float32",
        rngs=nnx.Rngs(1),
    )
    h = x @ np.asarray(gelu.fc[...]) + np.asarray(gelu.fc_bias[...])
    h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))  # gelu_new
    ref = h @ np.asarray(gelu.proj[...]) + np.asarray(gelu.proj_bias[...])
    np.testing.assert_allclose(np.asarray(gelu(jnp.asarray(x))), ref, atol=1e-5)
    glu = layers.SwiGLU(
        8,
        12,
        init=layers.normal(0.5),
        out_init=layers.normal(0.5),
        dtype="float32",
        rngs=nnx.Rngs(2),
    )
    w = np.asarray(glu.gate_up[...])
    g, u = x @ w[:, 0], x @ w[:, 1]
    ref = (g / (1 + np.exp(-g)) * u) @ np.asarray(glu.down[...])
    np.testing.assert_allclose(np.asarray(glu(jnp.asarray(x))), ref, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Logical axes

LOGICAL = {"vocab", "embed", "heads", "kv_heads", "head_dim", "mlp", "norm", "layers", None}


@pytest.mark.parametrize(
    "name,kwargs,expected",
    [
        (
            "gpt2",
            dict(vocab_size=64, max_seq_len=16, num_layers=1, num_heads=2, d_model=16),
            {
                ("wte", "embedding"): ("vocab", "embed"),
                ("wpe", "embedding"): (None, "embed"),
                ("blocks", "attn", "qkv"): ("layers", "embed", None, "heads", "head_dim"),
                ("blocks", "attn", "out"): ("layers", "heads", "head_dim", "embed"),
                ("blocks", "mlp", "fc"): ("layers", "embed", "mlp"),
                ("blocks", "mlp", "proj"): ("layers", "mlp", "embed"),
                ("ln_f", "scale"): ("norm",),
            },
        ),
        (
            "llama",
            dict(
                vocab_size=64,
                max_seq_len=16,
                num_layers=1,
                num_heads=4,
                num_kv_heads=2,
                d_model=16,
                mlp_dim=24,
            ),
            {
                ("embed", "embedding"): ("vocab", "embed"),
                ("blocks", "attn", "q"): ("layers", "embed", "heads", "head_dim"),
                ("blocks", "attn", "kv"): ("layers", "embed", None, "kv_heads", "head_dim"),
                ("blocks", "mlp", "gate_up"): ("layers", "embed", None, "mlp"),
                ("blocks", "mlp", "down"): ("layers", "mlp", "embed"),
                ("lm_head",): ("embed", "vocab"),
            },
        ),
    ],
)
def test_every_parameter_carries_logical_axes(name, kwargs, expected):
    model = nnx.eval_shape(lambda: MODELS.get(name)(**kwargs).build(nnx.Rngs(0)))
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    for path, var in flat.items():
        axes = var.get_metadata().get("out_sharding")
        assert axes is not None and len(axes) == len(var.shape), path
        assert set(axes) <= LOGICAL, (path, axes)
        assert var.dtype == jnp.float32, path  # params fp32 whatever the compute dtype
    for path, axes in expected.items():
        assert tuple(flat[path].get_metadata()["out_sharding"]) == axes, path


def test_eager_sharding_under_a_mesh_and_flax_rules():
    mesh = jax.make_mesh((2, 4), ("fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    # flax keeps unmapped names as mesh axes, so eager sharding needs every name mapped
    rules = (
        ("embed", "fsdp"),
        ("heads", "tensor"),
        ("mlp", "tensor"),
        ("vocab", "tensor"),
        ("kv_heads", "tensor"),
        ("head_dim", None),
        ("norm", None),
        ("layers", None),
    )
    config = MODELS.get("gpt2")(
        vocab_size=64, max_seq_len=16, num_layers=1, num_heads=4, d_model=16
    )
    with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
        model = config.build(nnx.Rngs(0))
    qkv = model.blocks.attn.qkv[...]  # [L, C, 3, H, D], stacked layers
    assert qkv.sharding.spec == jax.P(None, "fsdp", None, "tensor")
    assert model.wte.embedding[...].sharding.spec == jax.P("tensor", "fsdp")
    plain = config.build(nnx.Rngs(0))  # no mesh: plain single-device arrays, same values
    np.testing.assert_array_equal(np.asarray(qkv), np.asarray(plain.blocks.attn.qkv[...]))


# ----------------------------------------------------------------------------------------------
# Counts (training.md: HF GPT-2 124M and the baby GPT)


def _count(config):
    model = nnx.eval_shape(lambda: config.build(nnx.Rngs(0)))
    return layers.count_params(layers.param_shapes(model))


def test_gpt2_124m_counts_and_flops():
    config = MODELS.get("gpt2")()
    assert config.num_params(non_embedding=False) == 124_439_808  # HF gpt2, with biases
    assert config.num_params() == 123_653_376  # minus wpe (1024 × 768)
    assert _count(config) == 124_439_808
    assert config.flops_per_token(1024) / 1e6 == pytest.approx(855.17, abs=0.005)
    assert 6 * config.num_params() / 1e6 == pytest.approx(741.92, abs=0.005)


def test_baby_gpt_counts_and_flops():
    config = MODELS.get("gpt2")(
        vocab_size=8192, max_seq_len=256, num_layers=6, num_heads=6, d_model=384
    )
    assert config.num_params() == 13_793_280
    assert _count(config) == 13_793_280 + 256 * 384
    assert config.flops_per_token(256) / 1e6 == pytest.approx(89.84, abs=0.005)
    assert 12 * 6 * 6 * 64 * 256 / 1e6 == pytest.approx(7.08, abs=0.005)  # attention term


def test_llama_counts_match_transformers(hf_llama_gqa):
    folder, reference = hf_llama_gqa
    from framework.models import hf_import

    _, config, _ = hf_import.load(folder)
    hf_total = sum(p.numel() for p in reference.parameters())
    assert config.num_params(non_embedding=False) == hf_total == _count(config)
    assert config.num_params() == hf_total - 300 * 64  # untied: the input table is a lookup
    assert config.flops_per_token(128) == 6 * config.num_params() + 12 * 2 * 4 * 16 * 128


def test_llama_default_mlp_width_follows_meta_rule():
    config = MODELS.get("llama")(d_model=4096, num_heads=32, num_kv_heads=8)
    assert config.hidden_dim == 11008  # Llama-2 7B
    assert MODELS.get("llama")(d_model=4096, num_heads=32, mlp_dim=14336).hidden_dim == 14336


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2)])
@pytest.mark.parametrize("masked", [False, True])
def test_lowmem_attention_matches_xla_values_and_gradients(heads, kv_heads, masked):
    rng = np.random.default_rng(heads + kv_heads + masked)
    q = jnp.asarray(rng.normal(size=(2, 9, heads, 8)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(2, 9, kv_heads, 8)), jnp.float32) for _ in range(2))
    if masked:  # causal + random padded keys, with fully masked rows (padding queries)
        keep = rng.random((2, 1, 1, 9)) > 0.3
        keep[0, 0, 0, 0] = False
        kw = dict(mask=jnp.asarray(np.tril(np.ones((9, 9), bool))[None, None] & keep))
    else:
        kw = dict(is_causal=True)

    def reference(q, k, v):
        return jnp.sum(jnp.sin(jax.nn.dot_product_attention(q, k, v, **kw)))

    def ours(q, k, v):
        return jnp.sum(jnp.sin(layers.lowmem_attention(q, k, v, **kw)))

    assert float(ours(q, k, v)) == pytest.approx(float(reference(q, k, v)), abs=1e-5)
    for a, b in zip(
        jax.grad(ours, (0, 1, 2))(q, k, v), jax.grad(reference, (0, 1, 2))(q, k, v), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_lowmem_model_matches_default_attention():
    base = dict(
        vocab_size=64,
        max_seq_len=16,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        d_model=32,
        mlp_dim=48,
    )
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 64, (2, 12)), jnp.int32)
    grads = []
    for impl in (None, "lowmem"):
        model = MODELS.get("llama")(**base, attention_impl=impl).build(nnx.Rngs(0))
        graphdef, params = nnx.split(model, nnx.Param)

        def loss(p, graphdef=graphdef):
            return jnp.mean(jax.nn.log_softmax(nnx.merge(graphdef, p)(tokens)[0]) ** 2)

        grads.append(jax.grad(loss)(params))
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
