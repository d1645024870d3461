"""Model plugins (kind ``models``): a gin-configurable hyper-parameter dataclass per architecture.

Each config has ``vocab_size, max_seq_len, num_layers, num_heads, d_model`` (and ``dtype``), and
``build(rngs) -> nnx.Module`` whose call follows the contract
``model(tokens, positions=None, *, cache=None, token_mask=None, segment_ids=None)
-> (logits fp32 [B,T,V], cache)``; ``segment_ids`` int [B,T] packs several sequences in a row
(attention stays inside a segment, positions restart; see ``layers.forward_context``).
Shared building blocks live in ``framework/models/layers.py``; the cache in ``framework/models/kv_cache.py``.
"""
