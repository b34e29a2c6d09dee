# Dithered backprop at its default scale s = 8 (about 90% of the output-gradient entries zero).
custom_hooks = [dict(type='SparseBackwardHook', method='dither')]
