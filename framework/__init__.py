"""deepdive: web pages → tokenizer → trained model → sampled text, every part a plugin chosen in gin."""

__version__ = "0.1.0"
