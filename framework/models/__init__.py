"""What model plugins are built from: shared layers, the KV cache, Hugging Face weight import,
and the backend seam that decides which kernels serve a dense product or an attention."""
