# ssProp (paper's setting) alternating dense and sparse iterations instead of epochs.
custom_hooks = [dict(type='SparseBackwardHook', method='ssprop', keep=0.2,
                     schedule=dict(type='constant', interleave=True), by_epoch=False)]
