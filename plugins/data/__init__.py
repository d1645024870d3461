"""Training data sources (``data`` kind) beyond the built-in token shards, text files and synthetic tokens."""
