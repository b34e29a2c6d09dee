# Domain generalization: train on two source styles (clean + fog), test on every style; dark
# and texture are never seen in training (held out).
_base_ = ['_base_/faster_rcnn_timm_r18.py', '_base_/shapes_detection.py',
          '_base_/runtime_iter.py']
train_domains = ['clean', 'fog']
train_dataloader = dict(dataset=dict(datasets=[
    dict(type='ShapesDetDataset', domain=d, split='train', shapes={{_base_.shapes}},
         filter_cfg=dict(filter_empty_gt=True), pipeline={{_base_.train_pipeline}})
    for d in train_domains]))
val_evaluator = dict(train_domains=train_domains)
test_evaluator = val_evaluator
