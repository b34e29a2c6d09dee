# Dithered backprop at s = 8 with the cheaper CPU quantizer: pooled U(0, 1) noise (exact marginals,
# a number reused ~8 times across steps) and the torch.compile'd fused quantizer (eager fallback
# with a warning where it cannot compile). Same δ̃ distribution per element as `dither`; measured
# quantizer cost per step in docs/results/benchmark_sparse_steps_cpu.md ("Compiled quantizer").
custom_hooks = [
    dict(type='SparseBackwardHook', method='dither', noise='pool', quantizer='compiled')]
