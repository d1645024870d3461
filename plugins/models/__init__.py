"""Model plugins (kind ``models``): a gin-configurable hyper-parameter dataclass per architecture.

Each config has ``vocab_size, max_seq_len, num_layers, num_heads, d_model`` (and ``dtype``), and
``build(rngs) -> nnx.Module`` whose call follows the contract
``model(tokens, positions=None, *, cache=None, token_mask=None) -> (logits fp32 [B,T,V], cache)``.
Shared building blocks live in ``framework/models/layers.py``; the cache in ``framework/models/kv_cache.py``.
"""
