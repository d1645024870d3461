"""The generation engine: KV-cache greedy decoding equals re-running the full forward pass each
step (both model plugins, batched prompts of different lengths), seeds, stops, sharding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from framework.core.errors import ConfigError
from framework.core.registry import MODELS, SAMPLERS
from framework.sample import generate as sample

VOCAB = 97
PROMPTS = [[5, 17, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19], [42]]
NEW = 12


def tiny(plugin):
    if plugin == "gpt2":
        config = MODELS.get("gpt2")(
            vocab_size=VOCAB, max_seq_len=64, num_layers=2, num_heads=4, d_model=32,
            init_std=0.2,
        )  # fmt: skip
    else:
        config = MODELS.get("llama")(
            vocab_size=VOCAB, max_seq_len=64, num_layers=2, num_heads=4, num_kv_heads=2,
            d_model=32, multiple_of=16, init_std=0.2,
        )  # fmt: skip
    with nnx.use_eager_sharding(False):
        model = config.build(nnx.Rngs(0))
    return model, config


_FORWARD = {}


def full_forward_greedy(model, prompt, steps, width=64):
    """Reference: no cache; the whole sequence through the model again at every step.

    The sequence is right-padded to a fixed ``width`` so the forward compiles once; with causal
    attention the logits at the last real position do not see the padding after it.
    """
    if id(model) not in _FORWARD:
        _FORWARD[id(model)] = jax.jit(lambda t: model(t)[0])
    forward = _FORWARD[id(model)]
    seq = list(prompt)
    out = []
    for _ in range(steps):
        padded = np.zeros((1, width), np.int32)
        padded[0, : len(seq)] = seq
        logits = forward(jnp.asarray(padded))
        token = int(jnp.argmax(logits[0, len(seq) - 1]))
        out.append(token)
        seq.append(token)
    return out


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny_model(request):
    return tiny(request.param)


def test_kv_cache_greedy_equals_full_forward(tiny_model):
    model, config = tiny_model
    gen = sample.Generator(model, config, SAMPLERS.get("greedy")(), batch_size=4)
    got = gen.generate(PROMPTS, max_new_tokens=NEW)
    for prompt, completion in zip(PROMPTS, got, strict=True):
        assert completion.tokens == full_forward_greedy(model, prompt, NEW)
        assert completion.finish_reason == "length"
        assert len(completion.logprobs) == NEW


def test_logprobs_are_model_logprobs(tiny_model):
    model, config = tiny_model
    gen = sample.Generator(model, config, SAMPLERS.get("temperature")(temperature=1.3))
    (c,) = gen.generate([PROMPTS[0]], max_new_tokens=5, seed=3)
    seq = PROMPTS[0] + c.tokens
    logits, _ = jax.jit(model)(jnp.asarray([seq], jnp.int32))
    logp = jax.nn.log_softmax(logits[0], axis=-1)
    want = [float(logp[len(PROMPTS[0]) - 1 + i, t]) for i, t in enumerate(c.tokens)]
    np.testing.assert_allclose(c.logprobs, want, atol=1e-4)


def test_seed_determinism_and_batching_independence():
    model, config = tiny("gpt2")
    chain = [SAMPLERS.get("temperature")(temperature=1.0)]
    a = sample.Generator(model, config, chain, batch_size=4)
    b = sample.Generator(model, config, chain, batch_size=1)
    first = a.generate(PROMPTS, max_new_tokens=8, num_samples=2, seed=7)
    again = a.generate(PROMPTS, max_new_tokens=8, num_samples=2, seed=7)
    one_by_one = b.generate(PROMPTS, max_new_tokens=8, num_samples=2, seed=7)
    other = a.generate(PROMPTS, max_new_tokens=8, num_samples=2, seed=8)
    tokens = [c.tokens for c in first]
    assert tokens == [c.tokens for c in again]
    assert tokens == [c.tokens for c in one_by_one]
    assert tokens != [c.tokens for c in other]
    assert tokens[0] != tokens[1]  # two samples of one prompt differ


def test_eos_and_stop_strings():
    model, config = tiny("gpt2")
    ref = full_forward_greedy(model, PROMPTS[0], NEW)
    eos = ref[4]
    first = ref.index(eos)
    gen = sample.Generator(model, config, SAMPLERS.get("greedy")(), eos_id=eos, batch_size=2)
    (c,) = gen.generate([PROMPTS[0]], max_new_tokens=NEW)
    assert c.tokens == ref[: first + 1] and c.finish_reason == "eos"

    def decode(ids):
        return "".join(f"<{i}>" for i in ids)

    ref = full_forward_greedy(model, PROMPTS[1], NEW)
    stop = decode(ref[3:5])
    text = decode(ref)
    cut = text.index(stop)  # the first occurrence (may start before token 3 on repeats)
    keep = next(k for k in range(1, NEW + 1) if stop in decode(ref[:k]))
    gen = sample.Generator(model, config, SAMPLERS.get("greedy")(), batch_size=2)
    for every in (0, 1, 3):
        (c,) = gen.generate(
            [PROMPTS[1]], max_new_tokens=NEW, stop_strings=[stop, "never"], decode=decode,
            stream_every=every,
        )  # fmt: skip
        assert c.finish_reason == "stop"
        assert c.tokens == ref[:keep]
        assert c.text == text[:cut]


def test_streaming_updates_grow(tiny_model):
    model, config = tiny_model
    gen = sample.Generator(model, config, SAMPLERS.get("greedy")(), batch_size=2)
    seen = []
    (c,) = gen.generate(
        [PROMPTS[1]], max_new_tokens=NEW, stream_every=5, on_update=lambda p: seen.append(p)
    )
    lengths = [len(p[0].tokens) for p in seen]
    assert lengths == [1, 6, 11, 12]
    assert seen[-1][0].tokens == c.tokens


def test_prompt_longer_than_context_is_cut_from_the_left():
    model, config = tiny("gpt2")
    gen = sample.Generator(model, config, SAMPLERS.get("greedy")())
    long = list(range(1, 90))
    (c,) = gen.generate([long], max_new_tokens=4)
    assert c.prompt_tokens == long[-60:]
    assert c.tokens == full_forward_greedy(model, long[-60:], 4)
    with pytest.raises(ConfigError, match="no room"):
        gen.generate([long], max_new_tokens=64)


def test_sharded_model_matches_single_device():
    from framework.train import sharding

    if len(jax.devices()) < 8:
        pytest.skip("needs 8 host devices")
    model, config = tiny("llama")
    mesh = sharding.MeshConfig(shape=(2, 2, 2)).make()
    gen = sample.Generator(
        model, config, SAMPLERS.get("greedy")(), batch_size=4, mesh=mesh,
        rules=sharding.FSDP_TENSOR,
    )  # fmt: skip
    got = gen.generate(PROMPTS, max_new_tokens=NEW)
    leaf = jax.tree.leaves(gen.params)[0]
    assert len(leaf.sharding.device_set) > 1
    for prompt, completion in zip(PROMPTS, got, strict=True):
        assert completion.tokens == full_forward_greedy(model, prompt, NEW)


def test_ids_past_the_tokenizer_are_never_drawn(tiny_model):
    """A model vocabulary padded past the tokenizer's ids (room for special tokens added later):
    sampling draws only ids the tokenizer can decode; log-probabilities stay the model's."""
    model, config = tiny_model
    limit = 20
    gen = sample.Generator(
        model, config, SAMPLERS.get("temperature")(temperature=3.0), batch_size=4,
        token_limit=limit,
    )  # fmt: skip
    completions = gen.generate(PROMPTS, max_new_tokens=24, num_samples=2, seed=1)
    drawn = [t for c in completions for t in c.tokens]
    assert drawn and max(drawn) < limit
    free = sample.Generator(model, config, SAMPLERS.get("temperature")(temperature=3.0))
    assert (
        max(t for c in free.generate(PROMPTS, max_new_tokens=24, seed=1) for t in c.tokens) >= limit
    )
