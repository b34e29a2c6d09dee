# Domain generalization: train on clean + fog, test on every style (dark, texture held out).
_base_ = ['_base_/segformer_head_timm_r18.py', '_base_/shapes_segmentation.py',
          '_base_/runtime_iter.py']
train_domains = ['clean', 'fog']
train_dataloader = dict(dataset=dict(datasets=[
    dict(type='ShapesSegDataset', domain=d, split='train', shapes={{_base_.shapes}},
         pipeline={{_base_.train_pipeline}}) for d in train_domains]))
val_evaluator = dict(train_domains=train_domains)
test_evaluator = val_evaluator
