"""Mean-teacher domain adaptation for any mmdet detector (Faster R-CNN, RetinaNet, ...).

Built on mmdet's ``SemiBaseDetector``: student and EMA teacher are two copies of
``detector``; each batch holds labeled source images (``sup`` branch) and unlabeled target
images in two views, weak for the teacher (``unsup_teacher``) and strong for the student
(``unsup_student``), made by mmdet's ``MultiBranch`` transform. The teacher's detections with
score >= ``cls_pseudo_thr`` become the student's targets on the strong view (boxes mapped
between views by the homography matrices mmdet's transforms record).

Added here: ``burn_in_iters`` (an argument of the model, `MeanTeacherMixin`). Before that
iteration only the supervised loss is computed (the teacher would produce noise), and
`EMATeacherHook` (which reads the model's ``burn_in_iters``) keeps teacher == student, so
adaptation starts from a source-trained teacher in one run.

Also added: ``skip_empty_pseudo`` (default False, mmdet's behaviour). mmdet trains every
unlabeled image on its pseudo-labels, so an image where the teacher is confident about nothing is
trained as pure background; under domain shift those are the images of the styles the teacher
knows least. With the option on, such images are left out of the unsupervised loss instead. On
the 300-iteration shapes demo (which turns it on) it changed little (seed 0, threshold 0.5:
target AP50 20.3 with it, 19.9 without); the fog style collapses either way (docs/dense.md).

And ``target_bn_stats`` (default True, mmdet's behaviour): whether the unlabeled target batches
update the student's BatchNorm running statistics, which the teacher copies. Measured on the shapes
demo, a from-scratch backbone: with them the test-time statistics mix all styles, which helps dark
and texture and makes fog (low contrast) collapse even at unsupervised weight 0; with False
(statistics from the source only, `dgsamp.methods.bn_stats.frozen_bn_stats`) fog is kept and
the dark/texture gains are lost (docs/dense.md).
"""

from __future__ import annotations

import contextlib

from mmdet.models.detectors import SemiBaseDetector
from mmdet.models.utils import filter_gt_instances, rename_loss_dict, reweight_loss_dict
from mmengine.config import ConfigDict
from mmengine.registry import MODELS
from torch import Tensor

from ..methods.bn_stats import frozen_bn_stats
from .mean_teacher import MeanTeacherMixin

_DEFAULT_SEMI_TRAIN = dict(freeze_teacher=True, sup_weight=1.0, unsup_weight=1.0,
                           cls_pseudo_thr=0.7, min_pseudo_bbox_wh=(1e-2, 1e-2),
                           skip_empty_pseudo=False, target_bn_stats=True)


@MODELS.register_module()
class MeanTeacherDetector(MeanTeacherMixin, SemiBaseDetector):
    """SemiBaseDetector with a source-only burn-in (see module docstring)."""

    def __init__(self, detector: dict, semi_train_cfg: dict | None = None,
                 semi_test_cfg: dict | None = None, data_preprocessor: dict | None = None,
                 burn_in_iters: int = 0, init_cfg: dict | None = None) -> None:
        if "burn_in_iters" in (semi_train_cfg or {}):
            raise ValueError("semi_train_cfg.burn_in_iters: the burn-in is given once, on the "
                             "model. Fix: model.burn_in_iters=N (EMATeacherHook reads it).")
        train_cfg = dict(_DEFAULT_SEMI_TRAIN)
        train_cfg.update(semi_train_cfg or {})
        super().__init__(detector=detector, semi_train_cfg=ConfigDict(train_cfg),
                         semi_test_cfg=ConfigDict(semi_test_cfg or dict(predict_on="teacher")),
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.set_burn_in(burn_in_iters)

    def loss(self, multi_batch_inputs: dict, multi_batch_data_samples: dict) -> dict:
        if self.in_burn_in():
            return self.loss_by_gt_instances(multi_batch_inputs["sup"],
                                             multi_batch_data_samples["sup"])
        return super().loss(multi_batch_inputs, multi_batch_data_samples)

    def loss_by_pseudo_instances(self, batch_inputs: Tensor, batch_data_samples: list,
                                 batch_info: dict | None = None) -> dict:
        """mmdet's pseudo-label loss, without the images that have no confident pseudo-box
        (``skip_empty_pseudo``). With none left the loss is computed on all images at weight 0,
        as mmdet does, so every parameter still takes part in the graph (DDP)."""
        cfg = self.semi_train_cfg
        samples = filter_gt_instances(batch_data_samples, score_thr=cfg.cls_pseudo_thr)
        keep = [i for i, s in enumerate(samples) if len(s.gt_instances) > 0]
        if cfg.get("skip_empty_pseudo", False) and 0 < len(keep) < len(samples):
            batch_inputs = batch_inputs[keep]
            samples = [samples[i] for i in keep]
        keep_stats = cfg.get("target_bn_stats", True)
        with contextlib.nullcontext() if keep_stats else frozen_bn_stats(self.student):
            losses = self.student.loss(batch_inputs, samples)
        weight = cfg.get("unsup_weight", 1.0) if keep else 0.0
        return rename_loss_dict("unsup_", reweight_loss_dict(losses, weight))
