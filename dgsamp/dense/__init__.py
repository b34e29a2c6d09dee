"""Dense prediction under domain shift: detection (mmdet) and segmentation (mmseg).

- `domain_metric.DomainMetric`: per-domain AP/AP50/mIoU table in one validation run.
- `ema.EMATeacherHook`: EMA teacher with burn-in for mean-teacher models.
- `det_datasets`, `det_mean_teacher` (need mmdet): shapes/checked COCO data sets,
  `MeanTeacherDetector`.
- `seg_datasets`, `seg_mean_teacher` (need mmseg): shapes segmentation data, source/target
  pairs, label validation, `ClassMixMeanTeacher`.

mmdet and mmseg are optional: without them (or without mmcv's compiled ops) only the
mmengine-level parts are registered, and ``import dgsamp`` still works.
"""

from . import domain_metric, ema  # noqa: F401  (registers DomainMetric, EMATeacherHook)

try:
    from . import det_datasets, det_mean_teacher  # noqa: F401
except ImportError:  # mmdet / mmcv.ops not installed
    pass

try:
    from . import seg_datasets, seg_mean_teacher  # noqa: F401
except ImportError:  # mmseg / mmcv not installed
    pass
