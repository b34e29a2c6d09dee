# mmseg's own, unmodified SegFormer MiT-B0 config inherited as it is; only the data are swapped
# for the embedded shapes benchmark (128 px, 4 classes incl. background, every style
# validated), the schedule shortened and dgsamp's hooks added. The MiT backbone starts from
# scratch (mmseg's init_cfg would download ImageNet weights; dgsamp never downloads).
_base_ = 'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['dgsamp', 'dgsamp.models.backbones', 'dgsamp.detseg'],
                      allow_failed_imports=False)
shapes = dict(image_size=128, num_train=200, num_val=60, seed=0)
all_domains = ['clean', 'fog', 'dark', 'texture']
crop_size = (128, 128)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, backbone=dict(init_cfg=None),
             decode_head=dict(num_classes=4))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='ValidateSegLabels', num_classes=4),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')]
train_dataloader = dict(
    _delete_=True, batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='ShapesSegDataset', domain='clean', split='train', shapes=shapes,
                 pipeline=train_pipeline))
val_dataloader = dict(
    _delete_=True, batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ConcatDataset', datasets=[
        dict(type='ShapesSegDataset', domain=d, split='val', shapes=shapes, test_mode=True,
             pipeline=test_pipeline) for d in all_domains]))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='DomainMetric',
                     metric=dict(type='IoUMetric', iou_metrics=['mIoU']), domains=all_domains,
                     train_domains=['clean'])
test_evaluator = val_evaluator
max_iters = 200
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1),
                     logger=dict(interval=20), visualization=dict(draw=False))
custom_hooks = [
    dict(type='CostHook'),
    dict(type='SparseBackwardHook', method='ssprop', keep=0.5, include=['backbone'],
         by_epoch=False),
    dict(type='GradSampHook', schedule=dict(type='periodic', every=4, warmup=2),
         window=max_iters // 10),
]
