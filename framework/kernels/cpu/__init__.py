"""CPU kernels: BLAS dense products, blocked causal attention, decode kernels, the XLA:CPU
options, and the build of the C++ sources in ``src/`` (compiled at first use)."""
