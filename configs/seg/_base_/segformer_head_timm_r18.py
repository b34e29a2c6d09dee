# EncoderDecoder: timm resnet18 backbone (from scratch unless a local file is given) + a light
# SegFormer all-MLP head over the four stride-4..32 maps.
norm_cfg = dict(type='BN', requires_grad=True)
data_preprocessor = dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                         seg_pad_val=255, size=(128, 128))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(type='TimmBackbone', model_name='resnet18', out_indices=(1, 2, 3, 4),
                  frozen_stages=0, pretrained=None),
    decode_head=dict(
        type='SegformerHead', in_channels=[64, 128, 256, 512], in_index=[0, 1, 2, 3],
        channels=64, dropout_ratio=0.1, num_classes=4, norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
