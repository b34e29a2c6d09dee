# mmdet's own, unmodified Faster R-CNN R50-FPN config inherited as it is; only the data are
# swapped for the embedded shapes benchmark (128 px, 3 classes, every style validated), the
# schedule made iteration-based and short, and dgsamp's hooks added. The backbone starts from
# scratch (mmdet's init_cfg would download torchvision weights; dgsamp never downloads).
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['dgsamp', 'dgsamp.models.backbones', 'dgsamp.detseg'],
                      allow_failed_imports=False)
shapes = dict(image_size=128, num_train=200, num_val=60, seed=0)
all_domains = ['clean', 'fog', 'dark', 'texture']
model = dict(backbone=dict(init_cfg=None),
             roi_head=dict(bbox_head=dict(num_classes=3)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor', 'instances'))]
train_dataloader = dict(
    _delete_=True, batch_size=2, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ShapesDetDataset', domain='clean', split='train', shapes=shapes,
                 filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline))
val_dataloader = dict(
    _delete_=True, batch_size=4, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ConcatDataset', datasets=[
        dict(type='ShapesDetDataset', domain=d, split='val', shapes=shapes, test_mode=True,
             pipeline=test_pipeline) for d in all_domains]))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='DomainMetric',
                     metric=dict(type='CocoMetric', metric='bbox'), domains=all_domains,
                     train_domains=['clean'])
test_evaluator = val_evaluator
max_iters = 200
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50)]
optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=10.0))
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1),
                     logger=dict(interval=20))
log_processor = dict(by_epoch=False)
custom_hooks = [
    dict(type='CostHook'),
    dict(type='SparseBackwardHook', method='ssprop', keep=0.5, include=['backbone'],
         by_epoch=False),
    dict(type='GradSampHook', schedule=dict(type='periodic', every=4, warmup=2),
         window=max_iters // 10),
]
