# Shared parts of the public segmentation DA/DG configs: timm ConvNeXt-T backbone + SegFormer
# head, 19 Cityscapes classes, 512x512 crops, iteration schedule. Weights from a local file only:
# set model.backbone.pretrained (or model.segmentor.backbone.pretrained in self-training
# configs) to e.g. 'checkpoints/convnext_tiny.fb_in1k.pth'.
_base_ = ['runtime_iter.py']
crop_size = (512, 512)
num_classes = 19
data_preprocessor = dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                         seg_pad_val=255, size=crop_size)
model = dict(
    type='EncoderDecoder', data_preprocessor=data_preprocessor,
    backbone=dict(type='TimmBackbone', model_name='convnext_tiny', out_indices=(0, 1, 2, 3),
                  pretrained=None, drop_path_rate=0.1),
    decode_head=dict(
        type='SegformerHead', in_channels=[96, 192, 384, 768], in_index=[0, 1, 2, 3],
        channels=256, dropout_ratio=0.1, num_classes=num_classes,
        norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
gta_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
    dict(type='ValidateSegLabels', num_classes=num_classes),
    dict(type='Resize', scale=(1280, 720), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]
cs_train_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
    dict(type='ValidateSegLabels', num_classes=num_classes),
    dict(type='Resize', scale=(1024, 512), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]
target_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=(1024, 512), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size), dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=(1024, 512), keep_ratio=True),
    dict(type='LoadAnnotations'), dict(type='ValidateSegLabels', num_classes=num_classes),
    dict(type='PackSegInputs')]
# released layouts (see each config's header)
gta_train = dict(type='CityscapesDataset', data_root='data/gta/', img_suffix='.png',
                 seg_map_suffix='_labelTrainIds.png',
                 data_prefix=dict(img_path='images', seg_map_path='labels'),
                 pipeline=gta_pipeline)
cs_val = dict(type='CityscapesDataset', data_root='data/cityscapes/',
              data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
              test_mode=True, pipeline=test_pipeline)
cs_train_unlabeled = dict(type='CityscapesDataset', data_root='data/cityscapes/',
                          data_prefix=dict(img_path='leftImg8bit/train'),
                          pipeline=target_pipeline)
max_iters = 40000
train_cfg = dict(max_iters=max_iters, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000, max_keep_ckpts=3))
optim_wrapper = dict(optimizer=dict(lr=6e-5, weight_decay=0.01),
                     paramwise_cfg=dict(custom_keys=dict(decode_head=dict(lr_mult=10.0))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=max_iters)]
