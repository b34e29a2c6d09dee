# Source-only baseline: timm resnet18 + SegFormer head trained on the 'clean' shapes style,
# mIoU on clean/fog/dark/texture (mIoU/test_domains = mean over the three targets).
_base_ = ['_base_/segformer_head_timm_r18.py', '_base_/shapes_segmentation.py',
          '_base_/runtime_iter.py']
