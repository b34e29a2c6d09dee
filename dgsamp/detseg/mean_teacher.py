"""What the detection and segmentation mean teachers share (mmengine only, no mmdet/mmseg).

- ``burn_in_iters``: iterations of source-only training before the unsupervised loss starts.
  It is given once, on the model; `dgsamp.engine.ema_teacher_hook.EMATeacherHook` reads it
  from there (teacher := student during the burn-in), so model and hook cannot disagree.
- The teacher predicts in eval mode always (BN running statistics, no dropout), whatever mode
  the runner puts the model in.
"""

from __future__ import annotations

from mmengine.logging import MessageHub


class MeanTeacherMixin:
    """Mixed into an ``nn.Module`` with ``teacher`` and ``student`` sub-modules."""

    burn_in_iters: int = 0

    def set_burn_in(self, burn_in_iters: int) -> None:
        if int(burn_in_iters) < 0:
            raise ValueError(f"burn_in_iters must be >= 0, got {burn_in_iters}")
        self.burn_in_iters = int(burn_in_iters)

    def in_burn_in(self) -> bool:
        """Whether the runner's current iteration is still in the source-only burn-in."""
        it = MessageHub.get_current_instance().get_info("iter", 0) or 0
        return it < self.burn_in_iters

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self
