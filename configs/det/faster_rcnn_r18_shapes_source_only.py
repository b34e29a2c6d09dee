# Source-only baseline: Faster R-CNN (timm resnet18) trained on the 'clean' shapes style,
# validated on clean/fog/dark/texture (AP, AP50 per domain; target/* = mean of the targets).
_base_ = ['_base_/faster_rcnn_timm_r18.py', '_base_/shapes_detection.py',
          '_base_/runtime_iter.py']
