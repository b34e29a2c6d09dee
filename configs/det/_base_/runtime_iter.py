# Iteration-based runtime for detection (see configs/_base_/iter_runtime.py).
_base_ = ['../../_base_/iter_runtime.py']
default_scope = 'mmdet'
