"""EMA teacher for mean-teacher models (``model.teacher`` / ``model.student``), with burn-in.

mmdet's ``MeanTeacherHook`` starts averaging at iteration 0, so after a source-only burn-in the
teacher would still be mostly the random initialisation. `EMATeacherHook` copies the student
into the teacher during the model's burn-in (its ``burn_in_iters``, 0 for a model without one;
`dgsamp.detseg.mean_teacher.MeanTeacherMixin`) and averages afterwards::

    teacher = (1 - momentum) * teacher + momentum * student   (mmdet's convention)

Buffers (BN statistics) are copied. Works for any model with ``teacher`` and ``student``
sub-modules: mmdet's ``SemiBaseDetector`` family and dgsamp's ``ClassMixMeanTeacher``.
"""

from __future__ import annotations

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch import nn

from .runner_utils import unwrap_model


@HOOKS.register_module()
class EMATeacherHook(Hook):
    """Args: momentum (student weight per update), interval (iterations between updates).
    The burn-in is the model's ``burn_in_iters`` (given once, on the model)."""

    priority = "ABOVE_NORMAL"

    def __init__(self, momentum: float = 0.001, interval: int = 1,
                 burn_in_iters: int | None = None):
        if burn_in_iters is not None:
            raise ValueError("EMATeacherHook(burn_in_iters=...): the burn-in is given once, on "
                             "the model. Fix: set model.burn_in_iters and drop it here.")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"EMATeacherHook momentum must be in (0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.interval = int(interval)

    @staticmethod
    def _model(runner) -> nn.Module:
        model = unwrap_model(runner.model)
        if not (hasattr(model, "teacher") and hasattr(model, "student")):
            raise TypeError(f"EMATeacherHook needs a model with `teacher` and `student`, got "
                            f"{type(model).__name__}.")
        return model

    def before_train(self, runner) -> None:
        model = self._model(runner)
        if runner.iter == 0:
            self.update(model, 1.0)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        it = runner.iter + 1
        model = self._model(runner)
        if it <= getattr(model, "burn_in_iters", 0):
            self.update(model, 1.0)
        elif it % self.interval == 0:
            self.update(model, self.momentum)

    @staticmethod
    @torch.no_grad()
    def update(model: nn.Module, momentum: float) -> None:
        student = dict(model.student.named_parameters())
        for name, p in model.teacher.named_parameters():
            if momentum >= 1.0:
                p.data.copy_(student[name].data)
            else:
                p.data.mul_(1 - momentum).add_(student[name].data, alpha=momentum)
        sbuf = dict(model.student.named_buffers())
        for name, b in model.teacher.named_buffers():
            b.data.copy_(sbuf[name].data)
