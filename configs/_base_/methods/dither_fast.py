# Dithered backprop at s = 8 with Philox noise and the native quantizer, spelled out. Since
# 2026-12-07 (the AVX-512 Philox) these are the defaults of `dither` too, so the two presets
# train identically; this one stays so that configs and runs named `dither-fast` (the probes
# in docs/results/runs/dither_training_probes_2026-12-07/) still resolve to what they ran.
# Fresh Philox4x32-10 numbers made inside the native quantizer, none reused, instead of
# torch's generator (~3 ns per number); eager quantizer and fresh noise with a warning where
# the kernel cannot be built. noise='pool' is cheaper still, at the price of reusing each
# number ~8 times.
custom_hooks = [
    dict(type='SparseBackwardHook', method='dither', noise='philox', quantizer='native')]
