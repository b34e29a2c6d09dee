# Embedded shapes benchmark, detection: train on the source style, validate on every style.
# Images are generated into ~/.cache/dgsamp/data/shapes/<hash>/ on first use (about 20 s).
shapes = dict(image_size=128, num_train=200, num_val=60, seed=0)
train_domains = ['clean']
all_domains = ['clean', 'fog', 'dark', 'texture']
color_space = [
    [dict(type='ColorTransform')], [dict(type='AutoContrast')], [dict(type='Equalize')],
    [dict(type='Sharpness')], [dict(type='Posterize')], [dict(type='Solarize')],
    [dict(type='Color')], [dict(type='Contrast')], [dict(type='Brightness')]]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandAugment', aug_space=color_space, aug_num=1),
    dict(type='PackDetInputs')]
# 'instances' is packed so that CocoMetric builds the ground truth from the samples
# (one CocoMetric per domain inside DomainMetric, no ann_file needed).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor', 'instances'))]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='ConcatDataset', datasets=[
        dict(type='ShapesDetDataset', domain=d, split='train', shapes=shapes,
             filter_cfg=dict(filter_empty_gt=True), pipeline=train_pipeline)
        for d in train_domains]))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ConcatDataset', datasets=[
        dict(type='ShapesDetDataset', domain=d, split='val', shapes=shapes, test_mode=True,
             pipeline=test_pipeline) for d in all_domains]))
test_dataloader = val_dataloader
val_evaluator = dict(type='DomainMetric', metric=dict(type='CocoMetric', metric='bbox'),
                     domains=all_domains, train_domains=train_domains)
test_evaluator = val_evaluator
