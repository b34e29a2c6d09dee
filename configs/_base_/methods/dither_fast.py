# Dithered backprop at s = 8 with the cheapest CPU noise that keeps the paper's distribution:
# noise='philox' (fresh Philox4x32-10 numbers made inside the native quantizer, none reused,
# on every thread) instead of torch's generator (~3.4 ns per number, one thread). The native
# quantizer and the native sparse products are the default since 2026-12-07; this preset only
# changes the noise. Same δ̃ distribution per element as `dither`; eager quantizer and fresh
# noise with a warning where the kernel cannot be built. Whole dithered steps 1.14-1.61x dense
# against 1.00-1.46x for `dither` (docs/results/benchmark_sparse_steps_cpu.md, "Native sparse
# products"); noise='pool' is cheaper still, at the price of reusing each number ~8 times.
custom_hooks = [
    dict(type='SparseBackwardHook', method='dither', noise='philox', quantizer='native')]
