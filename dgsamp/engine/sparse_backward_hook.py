"""SparseBackwardHook: ssProp or dithered backprop in any mmengine config::

    custom_hooks = [dict(type='SparseBackwardHook', method='ssprop', keep=0.2,
                         schedule=dict(type='constant', interleave=True), include=['backbone'])]

The hook is a thin adapter over :class:`dgsamp.methods.keep_schedules.ScheduledSparseBackward`
(shared with ``SparseBackwardOptimWrapper``): it patches ``runner.model`` (the module inside a
DDP/FSDP wrapper) in ``before_train``, steps the schedule before every epoch (``by_epoch=True``)
or iteration, writes the current keep fraction and the measured gradient sparsity to the
message hub (ssprop: ``train/sparse_keep``, ``train/sparse_kept_fraction``; dither:
``train/dither_active``, ``train/dither_scale``, ``train/grad_density``; both:
``train/grad_sparsity``), so they appear in the training log, and unpatches in ``after_train``
(and, should training stop early, ``after_run``). Validation and test forwards are unaffected:
patched layers compute the same outputs.

For ``method='dither'`` the schedule only decides dense versus dithered steps: a value of 1
(warmup, the dense half of ``interleave``) turns dithering off for that epoch/iteration, any
value below 1 turns it on at ``scale``.

In an iteration-based loop (mmdet/mmseg configs) the epoch never advances, so with
``by_epoch=True`` an "epoch" of the schedule is a window of ``window`` iterations (default: the
loop's ``val_interval``), as GradSampHook counts it; without this the paper's interleaved
schedule stayed at its first, dense step for the whole run.

It keeps no state of its own that a resumed run would need (the keep fraction is a function of
the epoch/iteration), and it touches neither parameters nor the train loop, so it can be used
together with GradSampHook: on a skipped epoch no backward runs at all.
"""

from __future__ import annotations

from typing import Any

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from ..methods.keep_schedules import ScheduledSparseBackward, positive_int, window_step
from .runner_utils import unwrap_model


@HOOKS.register_module()
class SparseBackwardHook(Hook):
    """Channel-sparse (ssProp) or dithered backward for the layers of ``runner.model``.

    Args:
        method: 'ssprop' or 'dither'.
        keep: ssProp keep fraction in (0, 1] (default 0.5); fills in the schedule's ``keep``
            (constant) or ``p_min`` (ramps) when the schedule leaves them out.
        scale: dither scale s > 0 (default 8: Δ = 8·std(δ), ≈90% zeros).
        schedule: a keep schedule config (see ``dgsamp.methods.keep_schedules``); default
            ``dict(type='constant')``. Ramps default ``total`` to max_epochs / max_iters. On a
            model that starts slowly, add ``warmup=N`` dense epochs: sparse epochs during
            DigitsCNN's near-chance start stall it (docs/results/headline_rotated_digits.md).
        include, exclude, types: layer selection (see ``dgsamp.methods.patch``).
        dense_output: keep the output (prediction) layers dense (default True).
        by_epoch: step the schedule per epoch (True) or per iteration (False).
        window: iterations per schedule step when ``by_epoch`` and the loop is iteration-based
            (default: the loop's ``val_interval``).
        stats_interval: measure and log the gradient sparsity every n iterations.
        **options: fields of the layer options (ssprop: select, group_select, only_weight,
            rescale, grouped, native; dither: mode, sparse_kernel, sparse_threshold, noise,
            quantizer).
    """

    priority = "ABOVE_NORMAL"  # keep set before other hooks (cost counting) see the step

    def __init__(self, method: str = "ssprop", keep: float | None = None,
                 scale: float | None = None, schedule: dict | None = None,
                 include: Any = None, exclude: Any = None, types: Any = None,
                 dense_output: bool = True, by_epoch: bool = True, stats_interval: int = 1,
                 window: int | None = None, **options: Any) -> None:
        self.stats_interval = positive_int(stats_interval, "stats_interval")
        self.window = None if window is None else positive_int(window, "window")
        self.sparse = ScheduledSparseBackward(method, keep, scale, schedule, include, exclude,
                                              types, dense_output, **options)
        self.schedule_cfg = schedule if schedule is not None else dict(type="constant")
        self.by_epoch = bool(by_epoch)
        self._step_iters: int | None = None  # iterations per schedule step; None: per epoch

    @property
    def keep(self) -> float | None:
        """ssProp's keep (the schedule's fill-in value); None for dither."""
        return self.sparse.options.keep if self.sparse.method == "ssprop" else None

    def before_train(self, runner) -> None:
        if not self.by_epoch:
            self._step_iters = 1
        elif isinstance(runner.train_loop, IterBasedTrainLoop):
            self._step_iters = self.window or positive_int(
                runner.train_loop.val_interval, "window (default: the loop's val_interval)")
        else:
            self._step_iters = None
        if self._step_iters is None:
            total, step, unit = runner.max_epochs, runner.epoch, "epoch"
        else:
            step, total = window_step(runner.iter, runner.max_iters, self._step_iters)
            unit = "iteration" if self._step_iters == 1 else f"{self._step_iters} iterations"
        self.sparse.attach(unwrap_model(runner.model), total=total, step=step)
        runner.logger.info("SparseBackwardHook: " + self.sparse.describe(unit))

    def after_train(self, runner) -> None:
        self.sparse.detach()

    def after_run(self, runner) -> None:
        self.sparse.detach()

    def before_train_epoch(self, runner) -> None:
        if self._step_iters is None:
            self.sparse.step(runner.epoch)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._step_iters is not None:
            self.sparse.step(window_step(runner.iter, runner.max_iters, self._step_iters)[0])

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.sparse.model is None or (runner.iter + 1) % self.stats_interval:
            return
        for key, value in self.sparse.scalars().items():
            runner.message_hub.update_scalar(key, value)
