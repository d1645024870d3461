"""Hand-written kernels for one kind of device each; reached only through
``framework.models.backend``."""
