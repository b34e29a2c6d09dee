"""Detection (mmdet) and segmentation (mmseg) under domain shift: the parts that need them.

- `det_datasets` (mmdet): shapes / checked COCO / unlabeled-folder data sets.
- `det_mean_teacher` (mmdet): `MeanTeacherDetector`.
- `seg_datasets` (mmseg): shapes segmentation data, source/target pairs, label validation.
- `seg_mean_teacher` (mmseg): `ClassMixMeanTeacher` (DAFormer-style self-training).
- `mean_teacher` (mmengine only): `MeanTeacherMixin`, what both mean teachers share.

The task-independent pieces live in their layers: `dgsamp.evaluation.domain_metric`
(per-domain AP/mIoU), `dgsamp.engine.ema_teacher_hook` (EMA teacher), `dgsamp.engine.adabn_loop`
(AdaBN test loop), `dgsamp.methods.bn_stats` (BatchNorm re-estimation). mmdet and mmseg are
optional: without them (or without mmcv's compiled ops) this package registers nothing and
``import dgsamp`` still works.
"""

try:
    from . import det_datasets, det_mean_teacher  # noqa: F401
except ImportError:  # mmdet / mmcv.ops not installed
    pass

try:
    from . import seg_datasets, seg_mean_teacher  # noqa: F401
except ImportError:  # mmseg / mmcv not installed
    pass
