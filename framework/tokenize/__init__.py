"""Tokenizers as files and tools: loading a tokenizer directory through the registry, the
training driver behind ``deepdive tokenizer train``, and the token explorer."""
