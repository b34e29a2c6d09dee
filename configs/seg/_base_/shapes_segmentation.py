# Embedded shapes benchmark, segmentation: image + label-map pairs (0 background, 1 circle,
# 2 square, 3 triangle, 255 ignore). Train on the source style, validate on every style.
shapes = dict(image_size=128, num_train=200, num_val=60, seed=0)
train_domains = ['clean']
all_domains = ['clean', 'fog', 'dark', 'texture']
num_classes = 4
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='ValidateSegLabels', num_classes=num_classes),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='ValidateSegLabels', num_classes=num_classes),
    dict(type='PackSegInputs')]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='ConcatDataset', datasets=[
        dict(type='ShapesSegDataset', domain=d, split='train', shapes=shapes,
             pipeline=train_pipeline) for d in train_domains]))
val_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ConcatDataset', datasets=[
        dict(type='ShapesSegDataset', domain=d, split='val', shapes=shapes, test_mode=True,
             pipeline=test_pipeline) for d in all_domains]))
test_dataloader = val_dataloader
val_evaluator = dict(type='DomainMetric', metric=dict(type='IoUMetric', iou_metrics=['mIoU']),
                     domains=all_domains, train_domains=train_domains)
test_evaluator = val_evaluator
