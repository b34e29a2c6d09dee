# Source-only baseline: Faster R-CNN (timm resnet18) trained on the 'clean' shapes style,
# validated on clean/fog/dark/texture (AP/<domain>, AP50/<domain>; AP50/test_domains: the
# mean of the three targets).
_base_ = ['_base_/faster_rcnn_timm_r18.py', '_base_/shapes_detection.py',
          '_base_/runtime_iter.py']
