# ssProp (paper's setting) with a dense input gradient: only the weight gradient is channel-sparse.
# The paper's truncated input gradient compounds through the layers below; this keeps accuracy
# at about half the FLOP saving.
custom_hooks = [dict(type='SparseBackwardHook', method='ssprop', keep=0.2,
                     schedule=dict(type='constant', interleave=True), only_weight=True)]
