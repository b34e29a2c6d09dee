# DAFormer-style self-training (EMA teacher + ClassMix + confidence-weighted pseudo-labels)
# from the labeled 'clean' style to the unlabeled fog/dark/texture styles. Each step: 4 labeled
# source images (as the source-only config) + 4 unlabeled target images (labeled=False: their
# label maps are never opened).
_base_ = ['_base_/segformer_head_timm_r18.py', '_base_/shapes_segmentation.py',
          '_base_/runtime_iter.py']
burn_in_iters = 300
target_domains = ['fog', 'dark', 'texture']
target_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')]
segmentor = _base_.model
model = dict(
    _delete_=True, type='ClassMixMeanTeacher', segmentor=segmentor,
    data_preprocessor=dict(_base_.data_preprocessor, type='MultiBranchSegDataPreProcessor'),
    pseudo_threshold=0.968, unsup_weight=1.0, burn_in_iters=burn_in_iters, color_jitter=0.3,
    blur_prob=0.5, predict_on='teacher')
train_dataloader = dict(
    _delete_=True, batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='PairedSourceTargetDataset',
        source=dict(type='ShapesSegDataset', domain='clean', split='train',
                    shapes={{_base_.shapes}}, pipeline={{_base_.train_pipeline}}),
        target=dict(type='ConcatDataset', datasets=[
            dict(type='ShapesSegDataset', domain=d, split='train', labeled=False,
                 shapes={{_base_.shapes}}, pipeline=target_pipeline)
            for d in target_domains])))
custom_hooks = [dict(type='EMATeacherHook', momentum=0.01)]
