"""Fixtures for the model tests: small random Hugging Face models saved as safetensors folders.

The references are ``transformers``' own ``GPT2LMHeadModel`` / ``LlamaForCausalLM`` (torch, CPU,
fp32), built from a fixed seed; nothing is downloaded.
"""

from __future__ import annotations

import pytest

from tests.models.hf_reference import random_llama


@pytest.fixture(scope="session")
def torch_transformers():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    torch.set_num_threads(2)
    return torch, transformers


@pytest.fixture(scope="session")
def hf_gpt2(torch_transformers, tmp_path_factory):
    """(folder, torch model): a 3-layer GPT-2, vocab 300, context 64, random weights."""
    torch, transformers = torch_transformers
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=300,
        n_positions=64,
        n_embd=48,
        n_layer=3,
        n_head=4,
        bos_token_id=256,
        eos_token_id=256,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    # Non-trivial LayerNorm parameters and biases (HF initialises them to 1 and 0).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("hf_gpt2")
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model


@pytest.fixture(scope="session")
def hf_llama_gqa(torch_transformers, tmp_path_factory):
    """(folder, torch model): a 2-layer Llama with 4 query / 2 key-value heads, untied head."""
    torch, transformers = torch_transformers
    model = random_llama(torch, transformers, seed=1)
    folder = tmp_path_factory.mktemp("hf_llama")
    model.save_pretrained(folder, safe_serialization=True)
    return folder, model
