# Sim10k -> Cityscapes (detection UDA, class 'car'), mean teacher on Faster R-CNN (timm
# resnet50); car AP/AP50 on Cityscapes val. Expected layout (released archives):
#   data/sim10k/VOC2012/JPEGImages/<id>.jpg
#   data/sim10k/VOC2012/Annotations/<id>.xml
#   data/sim10k/VOC2012/ImageSets/Main/trainval.txt     (all 10k ids)
#   data/cityscapes/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png
#   data/cityscapes/annotations/instancesonly_filtered_gtFine_val.json  (mmdet converter)
# Cityscapes train images are used unlabeled (listed from the folder, no json read).
_base_ = ['cityscapes_to_foggy_faster_rcnn_r50_mean_teacher.py']
classes = ('car', )
metainfo = dict(classes=classes)
labeled = dict(type='VOCDataset', metainfo=metainfo, data_root='data/sim10k/VOC2012/',
               ann_file='ImageSets/Main/trainval.txt',
               data_prefix=dict(sub_data_root=''),
               filter_cfg=dict(filter_empty_gt=True, min_size=16),
               pipeline=_base_.sup_pipeline)
unlabeled = dict(type='UnlabeledImageFolder', metainfo=metainfo,
                 data_root='data/cityscapes/', data_prefix=dict(img='leftImg8bit/train/'),
                 suffix='_leftImg8bit.png', pipeline=_base_.unsup_pipeline)
train_dataloader = dict(dataset=dict(datasets=[labeled, unlabeled]))
val_dataloader = dict(
    _delete_=True, batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ConcatDataset', datasets=[
        dict(type='CheckedCocoDataset', metainfo=metainfo, data_root='data/cityscapes/',
             ann_file='annotations/instancesonly_filtered_gtFine_val.json',
             data_prefix=dict(img='leftImg8bit/val/'), test_mode=True,
             pipeline=_base_.test_pipeline)]))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True, type='DomainMetric', metric=dict(type='CocoMetric', metric='bbox'),
    domains=dict(cityscapes='/cityscapes/leftImg8bit/'),
    per_domain=dict(cityscapes=dict(
        ann_file='data/cityscapes/annotations/instancesonly_filtered_gtFine_val.json')))
test_evaluator = val_evaluator
model = dict(detector=dict(roi_head=dict(bbox_head=dict(num_classes=1))))
