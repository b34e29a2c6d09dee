# Domain generalization: train on GTA5 only (no target images), test on Cityscapes, BDD100K and
# Mapillary Vistas val (mIoU per domain, 19 Cityscapes classes). Layout:
#   data/gta/images/<id>.png, data/gta/labels/<id>_labelTrainIds.png   (see gta5_to_cityscapes)
#   data/cityscapes/leftImg8bit/val/..., data/cityscapes/gtFine/val/..._labelTrainIds.png
#   data/bdd100k/images/10k/val/<id>.jpg
#   data/bdd100k/labels/sem_seg/masks/val/<id>.png        (released 19-class train ids)
#   data/mapillary/validation/images/<id>.jpg
#   data/mapillary/validation/labels_cityscapes19/<id>.png (Vistas labels mapped to the 19
#                                                           Cityscapes train ids, 255 = other)
_base_ = ['_base_/public_segformer_convnext.py']
train_dataloader = dict(
    batch_size=2, num_workers=4, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True), dataset=_base_.gta_train)
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ConcatDataset', datasets=[
        _base_.cs_val,
        dict(type='CityscapesDataset', data_root='data/bdd100k/', img_suffix='.jpg',
             seg_map_suffix='.png', test_mode=True, pipeline=_base_.test_pipeline,
             data_prefix=dict(img_path='images/10k/val',
                              seg_map_path='labels/sem_seg/masks/val')),
        dict(type='CityscapesDataset', data_root='data/mapillary/', img_suffix='.jpg',
             seg_map_suffix='.png', test_mode=True, pipeline=_base_.test_pipeline,
             data_prefix=dict(img_path='validation/images',
                              seg_map_path='validation/labels_cityscapes19'))]))
test_dataloader = val_dataloader
val_evaluator = dict(type='DomainMetric', metric=dict(type='IoUMetric', iou_metrics=['mIoU']),
                     domains=dict(cityscapes='/cityscapes/', bdd100k='/bdd100k/',
                                  mapillary='/mapillary/'))
test_evaluator = val_evaluator
