"""Documents and what is computed from them, shared by the Beam pipelines and the commands:
the document format, readers of WARC/HTML/JSONL inputs, text statistics, MinHash signatures and
the built-in pages of the quickstart."""
