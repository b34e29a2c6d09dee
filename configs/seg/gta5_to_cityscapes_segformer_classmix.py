# GTA5 -> Cityscapes (segmentation UDA), DAFormer-style self-training (EMA teacher, ClassMix,
# confidence-weighted pseudo-labels) with a timm ConvNeXt-T + SegFormer head. Layout:
#   data/gta/images/<id>.png
#   data/gta/labels/<id>_labelTrainIds.png   (GTA5 labels converted to the 19 Cityscapes
#                                             train ids, e.g. DAFormer's convert_datasets/gta.py)
#   data/cityscapes/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png
#   data/cityscapes/gtFine/val/<city>/<name>_gtFine_labelTrainIds.png
#                                            (cityscapesscripts createTrainIdLabelImgs)
# Cityscapes train images are unlabeled (no seg_map_path: label maps are never opened).
_base_ = ['_base_/public_segformer_convnext.py']
burn_in_iters = 0
segmentor = _base_.model
model = dict(
    _delete_=True, type='ClassMixMeanTeacher', segmentor=segmentor,
    data_preprocessor=dict(_base_.data_preprocessor, type='MultiBranchSegDataPreProcessor'),
    pseudo_threshold=0.968, unsup_weight=1.0, burn_in_iters=burn_in_iters, predict_on='teacher')
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='PairedSourceTargetDataset', source=_base_.gta_train,
                 target=_base_.cs_train_unlabeled))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ConcatDataset', datasets=[_base_.cs_val]))
test_dataloader = val_dataloader
val_evaluator = dict(type='DomainMetric', metric=dict(type='IoUMetric', iou_metrics=['mIoU']),
                     domains=dict(cityscapes='/cityscapes/'))
test_evaluator = val_evaluator
custom_hooks = [dict(type='EMATeacherHook', momentum=0.001)]
