# ssProp as in the paper: keep 20% of the channels, sparse epochs alternating with dense ones.
# The input gradient is truncated to the kept channels too; the output layer stays dense.
custom_hooks = [dict(type='SparseBackwardHook', method='ssprop', keep=0.2,
                     schedule=dict(type='constant', interleave=True))]
