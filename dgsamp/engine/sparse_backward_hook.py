"""SparseBackwardHook: ssProp or dithered backprop in any mmengine config::

    custom_hooks = [dict(type='SparseBackwardHook', method='ssprop', keep=0.2,
                         schedule=dict(type='constant', interleave=True), include=['backbone'])]

The hook is a thin adapter over :mod:`dgsamp.methods.patch`: it patches ``runner.model`` (the
module inside a DDP/FSDP wrapper) in ``before_train``, sets the keep fraction from the schedule
before every epoch (``by_epoch=True``) or iteration, writes the current keep fraction and the
measured gradient sparsity to the message hub (ssprop: ``train/sparse_keep``,
``train/sparse_kept_fraction``; dither: ``train/dither_active``, ``train/dither_scale``,
``train/grad_density``; both: ``train/grad_sparsity``), so they appear in the training log,
and unpatches in ``after_train`` (and, should training stop early, ``after_run``). Validation
and test forwards are unaffected: patched layers compute the same outputs.

For ``method='dither'`` the schedule only decides dense versus dithered steps: a value of 1
(warmup, the dense half of ``interleave``) turns dithering off for that epoch/iteration, any
value below 1 turns it on at ``scale``.

It keeps no state of its own that a resumed run would need (the keep fraction is a function of
the epoch/iteration), and it touches neither parameters nor the train loop, so it can be used
together with GradSampHook: on a skipped epoch no backward runs at all.
"""

from __future__ import annotations

from typing import Any

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..methods.dither import DEFAULT_SCALE, check_scale
from ..methods.keep_schedules import build_keep_schedule
from ..methods.patch import (
    DEFAULT_KEEP,
    SPARSE_METHODS,
    output_layers,
    patch,
    patched_modules,
    set_sparsity,
    sparse_stats,
    unpatch,
)
from ..methods.ssprop import check_keep

_DITHER_ON = 0.5  # schedule value meaning "dithered step" when the config gives no keep


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
        stats_interval: measure and log the gradient sparsity every n iterations.
        **options: passed to the patched layers (ssprop: select, group_select, only_weight,
            rescale; dither: mode, sparse_kernel, sparse_threshold).
    """

    priority = "ABOVE_NORMAL"  # keep set before other hooks (cost counting) see the step

    def __init__(self, method: str = "ssprop", keep: float | None = None,
                 scale: float | None = None, schedule: dict | None = None,
                 include: Any = None, exclude: Any = None, types: Any = None,
                 by_epoch: bool = True, stats_interval: int = 1, **options: Any) -> None:
        if method not in SPARSE_METHODS:
            raise ValueError(f"SparseBackwardHook method must be one of {SPARSE_METHODS}, "
                             f"got {method!r}")
        if method == "ssprop":
            if scale is not None:
                raise ValueError("SparseBackwardHook: scale is the dither knob; ssprop takes keep")
            self.keep = check_keep(DEFAULT_KEEP if keep is None else keep)
            self.scale = None
        else:
            self.scale = check_scale(DEFAULT_SCALE if scale is None else scale)
            self.keep = _DITHER_ON if keep is None else check_keep(keep)
        if int(stats_interval) != stats_interval or stats_interval < 1:
            raise ValueError(f"stats_interval must be a positive int, got {stats_interval!r}")
        self.method = method
        self.schedule_cfg = schedule if schedule is not None else dict(type="constant")
        # validate now (a ramp without total gets a placeholder; the real one in before_train)
        build_keep_schedule(self.schedule_cfg, keep=self.keep, total=1)
        self.include, self.exclude, self.types = include, exclude, types
        self.by_epoch = bool(by_epoch)
        self.stats_interval = int(stats_interval)
        self.options = options
        self.schedule = None
        self.current_keep: float | None = None
        self.patched: list[str] = []
        self._model = None

    @staticmethod
    def _unwrap(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    # -- patch / unpatch -----------------------------------------------------------------------
    def before_train(self, runner) -> None:
        self._model = self._unwrap(runner)
        total = runner.max_epochs if self.by_epoch else runner.max_iters
        self.schedule = build_keep_schedule(self.schedule_cfg, keep=self.keep, total=total)
        kw = {"keep": self.keep} if self.method == "ssprop" else {"scale": self.scale}
        self.patched = patch(self._model, self.method, include=self.include,
                             exclude=self.exclude, types=self.types, **kw, **self.options)
        dense = output_layers(self._model) if self.options.get("dense_output", True) else []
        runner.logger.info(
            f"SparseBackwardHook: {self.method} on {len(self.patched)} layers, schedule "
            f"{self.schedule!r} per {'epoch' if self.by_epoch else 'iteration'}"
            + (f"; output layers kept dense: {', '.join(dense)}" if dense else ""))
        self._apply(runner.epoch if self.by_epoch else runner.iter)

    def after_train(self, runner) -> None:
        self._unpatch()

    def after_run(self, runner) -> None:
        self._unpatch()

    def _unpatch(self) -> None:
        if self._model is not None and patched_modules(self._model):
            unpatch(self._model)
        self._model = None

    # -- schedule --------------------------------------------------------------------------------
    def _apply(self, step: int) -> None:
        keep = float(self.schedule(int(step)))
        if keep != self.current_keep:
            set_sparsity(self._model, keep=keep)
            self.current_keep = keep

    def before_train_epoch(self, runner) -> None:
        if self.by_epoch and self._model is not None:
            self._apply(runner.epoch)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if not self.by_epoch and self._model is not None:
            self._apply(runner.iter)

    # -- logging -------------------------------------------------------------------------------
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self._model is None or (runner.iter + 1) % self.stats_interval:
            return
        hub = runner.message_hub
        dense = self.current_keep is not None and self.current_keep >= 1.0
        if self.method == "ssprop":
            hub.update_scalar("train/sparse_keep", self.current_keep)
        else:
            hub.update_scalar("train/dither_active", 0.0 if dense else 1.0)
            hub.update_scalar("train/dither_scale", self.scale)
        st = sparse_stats(self._model)
        if dense:
            hub.update_scalar("train/grad_sparsity", 0.0)
        elif st["grad_sparsity"] is not None:
            hub.update_scalar("train/grad_sparsity", st["grad_sparsity"])
        if self.method == "ssprop" and st["kept_fraction"] is not None and not dense:
            hub.update_scalar("train/sparse_kept_fraction", st["kept_fraction"])
        if self.method == "dither" and st["grad_density"] is not None and not dense:
            hub.update_scalar("train/grad_density", st["grad_density"])
