# Mean-teacher adaptation, RetinaNet (timm resnet18): source 'clean' labeled, targets
# fog/dark/texture unlabeled. burn_in_iters of source-only training (teacher == student), then
# EMA teacher, pseudo-labels with score >= cls_pseudo_thr on weak views, student on strong
# views. Same number of labeled images per step as the source-only config (4), plus one
# unlabeled image of each target style.
_base_ = ['_base_/retinanet_timm_r18.py', '_base_/runtime_iter.py',
          '_base_/shapes_mean_teacher_det.py']
burn_in_iters = 500
detector = _base_.model
model = dict(
    _delete_=True, type='MeanTeacherDetector', detector=detector,
    data_preprocessor=dict(type='MultiBranchDataPreprocessor',
                           data_preprocessor=detector.data_preprocessor),
    burn_in_iters=burn_in_iters,  # read by EMATeacherHook too
    semi_train_cfg=dict(cls_pseudo_thr=0.7, sup_weight=1.0,
                        unsup_weight=1.0, freeze_teacher=True),
    semi_test_cfg=dict(predict_on='teacher'))
custom_hooks = [dict(type='EMATeacherHook', momentum=0.01)]
