# Source-only baseline: RetinaNet (timm resnet18) on the 'clean' shapes style, every style
# validated.
_base_ = ['_base_/retinanet_timm_r18.py', '_base_/shapes_detection.py',
          '_base_/runtime_iter.py']
