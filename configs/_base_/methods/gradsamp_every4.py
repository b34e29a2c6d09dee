# GradSamp: skip one epoch in 4 (epochs 2, 6, 10, ... 0-based) and sample its update.
# Inherit in one line:  _base_ = [..., '../_base_/methods/gradsamp_every4.py']
# or on the command line: tools/train.py CONFIG --methods gradsamp-every4
custom_hooks = [dict(type='GradSampHook', schedule=dict(type='periodic', every=4))]
