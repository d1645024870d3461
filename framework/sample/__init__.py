"""Generation from a trained run: prefill and decode with the KV cache, sampler plugins."""
