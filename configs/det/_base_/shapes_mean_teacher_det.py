# Mean-teacher adaptation data on the shapes benchmark: labeled 'clean' images (sup branch)
# and unlabeled fog/dark/texture images (weak view -> teacher, strong view -> student).
# Unlabeled sets are built with labeled=False: their annotations are never read.
# Use with a detector base config and _base_/runtime_iter.py.
_base_ = ['shapes_detection.py']
shapes = _base_.shapes
color_space = _base_.color_space
target_domains = ['fog', 'dark', 'texture']
branch_field = ['sup', 'unsup_teacher', 'unsup_student']
homography_keys = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'flip',
                   'flip_direction', 'homography_matrix')
sup_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandAugment', aug_space=color_space, aug_num=1),
    dict(type='MultiBranch', branch_field=branch_field, sup=dict(type='PackDetInputs'))]
# weak view: no flip, so the teacher's boxes are already in original-image coordinates;
# Resize (to the same size) records the homography matrix the box projection needs.
weak_pipeline = [
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=homography_keys)]
strong_pipeline = [
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandAugment', aug_space=color_space, aug_num=2),
    dict(type='RandomErasing', n_patches=(1, 3), ratio=(0, 0.15)),
    dict(type='PackDetInputs', meta_keys=homography_keys)]
unsup_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadEmptyAnnotations'),
    dict(type='MultiBranch', branch_field=branch_field, unsup_teacher=weak_pipeline,
         unsup_student=strong_pipeline)]
labeled_dataset = dict(type='ShapesDetDataset', domain='clean', split='train', shapes=shapes,
                       filter_cfg=dict(filter_empty_gt=True), pipeline=sup_pipeline)
# one unlabeled data set per target style, flat (mmdet's ConcatDataset refuses nesting): each
# batch holds 4 labeled source images and one unlabeled image of each target style.
unlabeled_datasets = [
    dict(type='ShapesDetDataset', domain=d, split='train', labeled=False, shapes=shapes,
         pipeline=unsup_pipeline) for d in target_domains]
train_dataloader = dict(
    _delete_=True, batch_size=7, num_workers=0, persistent_workers=False,
    sampler=dict(type='MultiSourceSampler', batch_size=7, source_ratio=[4, 1, 1, 1]),
    dataset=dict(type='ConcatDataset', datasets=[labeled_dataset] + unlabeled_datasets))
