# Source-only baseline with mmseg's FCNHead on the last timm resnet18 stage.
_base_ = ['_base_/segformer_head_timm_r18.py', '_base_/shapes_segmentation.py',
          '_base_/runtime_iter.py']
model = dict(decode_head=dict(
    _delete_=True, type='FCNHead', in_channels=512, in_index=3, channels=128, num_convs=2,
    concat_input=True, dropout_ratio=0.1, num_classes=4, norm_cfg={{_base_.norm_cfg}},
    align_corners=False,
    loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
