"""deepdive's gpt2 / llama vs Hugging Face transformers on the same weights (fp32, 1e-4)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from framework.models import hf_import
from tests.models.hf_reference import hf_logits

ATOL = 1e-4


def _left_padded(rng, lengths, vocab, pad=0):
    width = max(lengths)
    tokens = np.full((len(lengths), width), pad, np.int32)
    mask = np.zeros((len(lengths), width), bool)
    for row, n in enumerate(lengths):
        tokens[row, width - n :] = rng.integers(0, vocab, n)
        mask[row, width - n :] = True
    positions = np.where(mask, np.cumsum(mask, axis=1) - 1, 0)
    return tokens, mask, positions


def test_gpt2_import_matches_transformers_logits(hf_gpt2):
    folder, reference = hf_gpt2
    plugin, config, model = hf_import.load(folder, expect="gpt2")
    assert plugin == "gpt2"
    assert (config.num_layers, config.num_heads, config.d_model, config.max_seq_len) == (
        3,
        4,
        48,
        64,
    )
    tokens = np.random.default_rng(0).integers(0, 300, (2, 64)).astype(np.int32)
    ours, cache = model(jnp.asarray(tokens))
    assert cache is None and ours.dtype == jnp.float32 and ours.shape == (2, 64, 300)
    np.testing.assert_allclose(np.asarray(ours), hf_logits(reference, tokens), atol=ATOL, rtol=0)


def test_gpt2_left_padded_batch_matches_transformers(hf_gpt2):
    folder, reference = hf_gpt2
    _, _, model = hf_import.load(folder)
    tokens, mask, positions = _left_padded(np.random.default_rng(1), [7, 12, 3], 300)
    ours, _ = model(jnp.asarray(tokens), token_mask=jnp.asarray(mask))  # positions derived
    ref = hf_logits(reference, tokens, attention_mask=mask, position_ids=positions)
    np.testing.assert_allclose(np.asarray(ours)[mask], ref[mask], atol=ATOL, rtol=0)
    assert np.isfinite(np.asarray(ours)).all()  # padding rows stay finite


def test_llama_gqa_import_matches_transformers_logits(hf_llama_gqa):
    folder, reference = hf_llama_gqa
    plugin, config, model = hf_import.load(folder, expect="llama")
    assert plugin == "llama"
    assert (config.num_heads, config.kv_heads, config.tie_embeddings) == (4, 2, False)
    assert config.rope_theta == 1000.0 and config.norm_eps == 1e-5
    tokens = np.random.default_rng(2).integers(0, 300, (2, 48)).astype(np.int32)
    ours, _ = model(jnp.asarray(tokens))
    np.testing.assert_allclose(np.asarray(ours), hf_logits(reference, tokens), atol=ATOL, rtol=0)
    padded, mask, positions = _left_padded(np.random.default_rng(3), [9, 4], 300)
    ours, _ = model(jnp.asarray(padded), token_mask=jnp.asarray(mask))
    ref = hf_logits(reference, padded, attention_mask=mask, position_ids=positions)
    np.testing.assert_allclose(np.asarray(ours)[mask], ref[mask], atol=ATOL, rtol=0)


def test_llama_tied_multihead_import(torch_transformers, tmp_path):
    torch, transformers = torch_transformers
    torch.manual_seed(4)
    config = transformers.LlamaConfig(
        vocab_size=120,
        hidden_size=32,
        intermediate_size=40,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    reference = transformers.LlamaForCausalLM(config).eval()
    reference.save_pretrained(tmp_path, safe_serialization=True)
    _, ours_config, model = hf_import.load(tmp_path)
    assert ours_config.tie_embeddings and model.lm_head is None
    tokens = np.random.default_rng(5).integers(0, 120, (1, 20)).astype(np.int32)
    ours, _ = model(jnp.asarray(tokens))
    np.testing.assert_allclose(np.asarray(ours), hf_logits(reference, tokens), atol=ATOL, rtol=0)


def test_bfloat16_compute_stays_close_to_fp32(hf_gpt2):
    folder, _ = hf_gpt2
    _, _, fp32 = hf_import.load(folder)
    _, config, bf16 = hf_import.load(folder, compute_dtype="bfloat16")
    assert config.compute_dtype == "bfloat16"
    tokens = jnp.asarray(np.random.default_rng(6).integers(0, 300, (2, 32)), jnp.int32)
    a, _ = fp32(tokens)
    b, _ = bf16(tokens)
    assert b.dtype == jnp.float32  # logits are fp32 whatever the compute dtype
    assert float(jnp.max(jnp.abs(a - b))) < 0.05 * float(jnp.max(jnp.abs(a)))


def test_import_refuses_bad_folders(hf_gpt2, tmp_path):
    from framework.core.errors import InputError

    folder, _ = hf_gpt2
    with pytest.raises(InputError, match="config.json"):
        hf_import.load(tmp_path)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")  # a pickle: never opened
    with pytest.raises(InputError, match="safetensors only"):
        hf_import.load(tmp_path)
    with pytest.raises(InputError, match="not a llama"):
        hf_import.load(folder, expect="llama")
    # a config that disagrees with the tensors: the shape is named
    import json
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = json.loads((bad / "config.json").read_text())
    config["n_positions"] = 32
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"wpe.weight.*shape"):
        hf_import.load(bad)


def test_bf16_checkpoint_loads_as_its_exact_values(hf_gpt2, tmp_path):
    """A bf16 safetensors file (as many checkpoints are published) is read by safetensors itself;
    every parameter equals the bf16 rounding of the original, widened to fp32 (ml_dtypes)."""
    import shutil

    import ml_dtypes
    from safetensors.numpy import load_file, save_file

    folder, _ = hf_gpt2
    original = load_file(str(folder / "model.safetensors"))
    shutil.copy(folder / "config.json", tmp_path / "config.json")
    save_file({k: v.astype(ml_dtypes.bfloat16) for k, v in original.items()},
              str(tmp_path / "model.safetensors"))  # fmt: skip
    tensors = hf_import.read_tensors(tmp_path)
    assert tensors["transformer.wte.weight"].dtype == ml_dtypes.bfloat16
    _, _, model = hf_import.load(tmp_path)
    expected = original["transformer.wte.weight"].astype(ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(model.wte.embedding[...]), expected)


def test_a_checkpoint_loads_into_scanned_layers_with_the_same_logits(hf_gpt2):
    folder, _ = hf_gpt2
    _, _, unrolled = hf_import.load(folder)
    _, config, scanned = hf_import.load(folder, scan_layers=True)
    assert config.scan_layers
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, 300, (2, 20)), jnp.int32)
    np.testing.assert_allclose(scanned(tokens)[0], unrolled(tokens)[0], rtol=1e-5, atol=1e-5)
