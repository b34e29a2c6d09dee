# GradSamp: skip one epoch in 3 (epochs 2, 5, 8, ... 0-based) and sample its update.
custom_hooks = [dict(type='GradSampHook', schedule=dict(type='periodic', every=3))]
