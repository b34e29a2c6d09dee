# Iteration-based runtime for segmentation (see configs/_base_/iter_runtime.py).
_base_ = ['../../_base_/iter_runtime.py']
default_scope = 'mmseg'
