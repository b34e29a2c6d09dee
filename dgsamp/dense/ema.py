"""EMA teacher for mean-teacher models (``model.teacher`` / ``model.student``), with burn-in.

mmdet's ``MeanTeacherHook`` starts averaging at iteration 0, so after a source-only burn-in the
teacher would still be mostly the random initialisation. `EMATeacherHook` copies the student
into the teacher during the burn-in (``burn_in_iters``) and averages afterwards::

    teacher = (1 - momentum) * teacher + momentum * student   (mmdet's convention)

Buffers (BN statistics) are copied. Works for any model with ``teacher`` and ``student``
sub-modules: mmdet's ``SemiBaseDetector`` family and dgsamp's ``ClassMixMeanTeacher``.
"""

from __future__ import annotations

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class EMATeacherHook(Hook):
    """Args: momentum (student weight per update), interval (iterations between updates),
    burn_in_iters (iterations in which teacher := student)."""

    priority = "ABOVE_NORMAL"

    def __init__(self, momentum: float = 0.001, interval: int = 1, burn_in_iters: int = 0):
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"EMATeacherHook momentum must be in (0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.interval = int(interval)
        self.burn_in_iters = int(burn_in_iters)

    @staticmethod
    def _model(runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
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
        if it <= self.burn_in_iters:
            self.update(model, 1.0)
        elif it % self.interval == 0:
            self.update(model, self.momentum)

    @staticmethod
    @torch.no_grad()
    def update(model, momentum: float) -> None:
        student = dict(model.student.named_parameters())
        for name, p in model.teacher.named_parameters():
            if momentum >= 1.0:
                p.data.copy_(student[name].data)
            else:
                p.data.mul_(1 - momentum).add_(student[name].data, alpha=momentum)
        sbuf = dict(model.student.named_buffers())
        for name, b in model.teacher.named_buffers():
            b.data.copy_(sbuf[name].data)
