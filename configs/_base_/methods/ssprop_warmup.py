# ssProp (paper's setting) after 5 dense warmup epochs: for models that start slowly.
# DigitsCNN sits near chance for its first dense epochs; sparse epochs there delay its escape
# (docs/results/headline_rotated_digits.md).
custom_hooks = [dict(type='SparseBackwardHook', method='ssprop', keep=0.2,
                     schedule=dict(type='constant', interleave=True, warmup=5))]
