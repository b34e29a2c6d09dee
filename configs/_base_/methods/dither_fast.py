# Dithered backprop at s = 8 with the cheapest CPU quantizer that keeps the paper's noise:
# quantizer='native' (one C++ kernel, built on first use: ~10 µs per call instead of ~90 for
# the torch.compile'd graph) with noise='philox' (fresh Philox4x32-10 numbers made in the kernel,
# none reused). Same δ̃ distribution per element as `dither`; eager fallback with a warning where
# the kernel cannot be built. Measured quantizer cost per step in
# docs/results/benchmark_sparse_steps_cpu.md ("Native quantizer"); noise='pool' is ~1.5 points
# of a dense step cheaper still, at the price of reusing each number ~8 times.
custom_hooks = [
    dict(type='SparseBackwardHook', method='dither', noise='philox', quantizer='native')]
