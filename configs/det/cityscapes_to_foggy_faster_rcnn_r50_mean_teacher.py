# Cityscapes -> Foggy Cityscapes (detection UDA), mean teacher on Faster R-CNN (timm resnet50),
# 8 classes, AP/AP50 per domain on both val sets. Expected layout (released archives +
# mmdet's converter):
#   data/cityscapes/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png
#   data/cityscapes/annotations/instancesonly_filtered_gtFine_{train,val}.json
#       (python mmdetection/tools/dataset_converters/cityscapes.py data/cityscapes)
#   data/foggy_cityscapes/leftImg8bit_foggy/{train,val}/<city>/
#       <name>_leftImg8bit_foggy_beta_0.02.png
#   data/foggy_cityscapes/annotations/instancesonly_filtered_gtFine_val_foggy.json
#       (the val json above with file_name -> leftImg8bit_foggy/..._foggy_beta_0.02.png;
#        the foggy *train* images are used unlabeled: listed from the folder, no json read)
_base_ = ['_base_/faster_rcnn_timm_r50_public.py', '_base_/runtime_iter.py']
classes = ('person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle')
metainfo = dict(classes=classes)
cs_root = 'data/cityscapes/'
foggy_root = 'data/foggy_cityscapes/'
scale = (1200, 600)
burn_in_iters = 10000
max_iters = 40000
train_cfg = dict(max_iters=max_iters, val_interval=4000)
default_hooks = dict(checkpoint=dict(interval=4000, max_keep_ckpts=3))
optim_wrapper = dict(optimizer=dict(_delete_=True, type='SGD', lr=0.01, momentum=0.9,
                                    weight_decay=1e-4))
branch_field = ['sup', 'unsup_teacher', 'unsup_student']
homography_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                   'flip_direction', 'homography_matrix')
color_space = [
    [dict(type='ColorTransform')], [dict(type='AutoContrast')], [dict(type='Equalize')],
    [dict(type='Sharpness')], [dict(type='Posterize')], [dict(type='Solarize')],
    [dict(type='Color')], [dict(type='Contrast')], [dict(type='Brightness')]]
sup_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=scale, keep_ratio=True), dict(type='RandomFlip', prob=0.5),
    dict(type='MultiBranch', branch_field=branch_field, sup=dict(type='PackDetInputs'))]
weak_pipeline = [dict(type='Resize', scale=scale, keep_ratio=True),
                 dict(type='PackDetInputs', meta_keys=homography_keys)]
strong_pipeline = [
    dict(type='Resize', scale=scale, keep_ratio=True), dict(type='RandomFlip', prob=0.5),
    dict(type='RandAugment', aug_space=color_space, aug_num=2),
    dict(type='RandomErasing', n_patches=(1, 5), ratio=(0, 0.2)),
    dict(type='PackDetInputs', meta_keys=homography_keys)]
unsup_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='LoadEmptyAnnotations'),
    dict(type='MultiBranch', branch_field=branch_field, unsup_teacher=weak_pipeline,
         unsup_student=strong_pipeline)]
test_pipeline = [
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor'))]
labeled = dict(type='CheckedCocoDataset', metainfo=metainfo, data_root=cs_root,
               ann_file='annotations/instancesonly_filtered_gtFine_train.json',
               data_prefix=dict(img='leftImg8bit/train/'),
               filter_cfg=dict(filter_empty_gt=True, min_size=16), pipeline=sup_pipeline)
unlabeled = dict(type='UnlabeledImageFolder', metainfo=metainfo, data_root=foggy_root,
                 data_prefix=dict(img='leftImg8bit_foggy/train/'),
                 suffix='_foggy_beta_0.02.png', pipeline=unsup_pipeline)
train_dataloader = dict(
    _delete_=True, batch_size=4, num_workers=4, persistent_workers=True,
    sampler=dict(type='GroupMultiSourceSampler', batch_size=4, source_ratio=[1, 1]),
    dataset=dict(type='ConcatDataset', datasets=[labeled, unlabeled]))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='ConcatDataset', datasets=[
        dict(type='CheckedCocoDataset', metainfo=metainfo, data_root=cs_root,
             ann_file='annotations/instancesonly_filtered_gtFine_val.json',
             data_prefix=dict(img='leftImg8bit/val/'), test_mode=True,
             pipeline=test_pipeline),
        dict(type='CheckedCocoDataset', metainfo=metainfo, data_root=foggy_root,
             ann_file='annotations/instancesonly_filtered_gtFine_val_foggy.json',
             data_prefix=dict(img=''), test_mode=True, pipeline=test_pipeline)]))
test_dataloader = val_dataloader
domains = dict(cityscapes='/cityscapes/leftImg8bit/', foggy_cityscapes='/leftImg8bit_foggy/')
val_evaluator = dict(
    type='DomainMetric', metric=dict(type='CocoMetric', metric='bbox'), domains=domains,
    per_domain=dict(
        cityscapes=dict(ann_file=cs_root + 'annotations/instancesonly_filtered_gtFine_val.json'),
        foggy_cityscapes=dict(
            ann_file=foggy_root + 'annotations/instancesonly_filtered_gtFine_val_foggy.json')),
    train_domains=['cityscapes'])
test_evaluator = val_evaluator
detector = _base_.model
detector.roi_head.bbox_head.num_classes = 8
model = dict(
    _delete_=True, type='MeanTeacherDetector', detector=detector,
    data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                           data_preprocessor=detector.data_preprocessor),
    burn_in_iters=burn_in_iters,  # read by EMATeacherHook too
    semi_train_cfg=dict(cls_pseudo_thr=0.8, unsup_weight=1.0),
    semi_test_cfg=dict(predict_on='teacher'))
custom_hooks = [dict(type='EMATeacherHook', momentum=0.0004)]
