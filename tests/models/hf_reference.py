"""The transformers side of the model parity tests: small random Llama models and their logits."""

from __future__ import annotations

from typing import Any


def random_llama(torch: Any, transformers: Any, seed: int, **config: Any) -> Any:
    """A 2-layer ``LlamaForCausalLM`` (vocab 300, width 64, 4 query / 2 key-value heads) from
    ``seed``, with ``config`` overriding ``LlamaConfig`` fields, and norm weights moved off 1 so
    they are tested too (HF initialises them to 1)."""
    torch.manual_seed(seed)
    fields = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  rope_theta=1000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  bos_token_id=256, eos_token_id=256, pad_token_id=256)  # fmt: skip
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**fields, **config})).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def hf_logits(model: Any, tokens: Any, attention_mask: Any = None, position_ids: Any = None):
    """fp32 logits ``[B, T, V]`` of a transformers causal LM as numpy."""
    import torch

    kwargs = {}
    if attention_mask is not None:
        kwargs["attention_mask"] = torch.tensor(attention_mask, dtype=torch.long)
    if position_ids is not None:
        kwargs["position_ids"] = torch.tensor(position_ids, dtype=torch.long)
    with torch.no_grad():
        return model(torch.tensor(tokens, dtype=torch.long), **kwargs).logits.float().numpy()
