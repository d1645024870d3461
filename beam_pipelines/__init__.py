"""Apache Beam pipelines: FineWeb-style processing, MinHash dedup, corpus tokenization."""
