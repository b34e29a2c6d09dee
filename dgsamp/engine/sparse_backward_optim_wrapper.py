"""Sparse backward as an optimizer wrapper: the second way mmengine users attach step behaviour::

    optim_wrapper = dict(type='SparseBackwardOptimWrapper',
                         sparse=dict(method='ssprop', keep=0.2,
                                     schedule=dict(type='constant', interleave=True)),
                         optimizer=dict(type='SGD', lr=0.01))
    # with mixed precision: the same behaviour on mmengine's AmpOptimWrapper
    optim_wrapper = dict(type='SparseBackwardAmpOptimWrapper', dtype='float16',
                         sparse=dict(method='dither'), optimizer=dict(type='SGD', lr=0.01))

``sparse`` takes what SparseBackwardHook takes (method, keep, scale, schedule, include, exclude,
types, dense_output, layer options); both run the same
:class:`~dgsamp.methods.keep_schedules.ScheduledSparseBackward`, so a run with the wrapper and a
run with the hook compute the same gradients. Use one or the other, not both.

Which backward an autograd graph runs is fixed by its forward, and mmengine's ``train_step`` runs
the forward inside ``optim_context(model)``: that is where the wrapper patches the model (first
call) and steps the schedule (epoch and run length from the message hub, which mmengine's
RuntimeInfoHook fills; ``by_epoch=False`` uses the wrapper's own iteration count, which the Runner
initializes and which works without a Runner too). An iteration-based loop (mmdet, mmseg) never
advances the epoch, so there ``by_epoch=True`` needs ``window=N``: a schedule "epoch" of N
iterations, as SparseBackwardHook's ``window`` (the wrapper cannot read the loop's
``val_interval``, the hook's default); without it a one-epoch run warns that its schedule never
steps. ``backward`` / ``update_params`` then run the
configured sparse backward and publish the same message-hub scalars as the hook. An optimizer
wrapper sees no end of training, so the layers stay patched after it (forward outputs and
``state_dict`` are those of the original layers); ``optim_wrapper.sparse.detach()`` restores them.

:class:`SparseBackwardMixin` puts this on any OptimWrapper class; the two registered here cover
plain and AMP training.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any

import torch
from mmengine.logging import MessageHub, print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

from ..methods.keep_schedules import ScheduledSparseBackward, positive_int, window_step
from .runner_utils import unwrap_model

__all__ = ["SparseBackwardAmpOptimWrapper", "SparseBackwardMixin", "SparseBackwardOptimWrapper"]


class SparseBackwardMixin:
    """ssProp or dithered backward for whatever ``optim_context`` sees (see module docstring).

    Args:
        sparse: SparseBackwardHook's arguments as a dict (``method`` defaults to 'ssprop').
        by_epoch: step the schedule per epoch (message hub ``epoch``) or per iteration.
        window: with ``by_epoch``, step the schedule every ``window`` iterations instead of
            every epoch (for iteration-based loops).
        stats_interval: publish keep and measured sparsity every n backward calls.
        **kwargs: the base optimizer wrapper's own arguments.
    """

    def __init__(self, sparse: dict | None = None, by_epoch: bool = True,
                 stats_interval: int = 1, window: int | None = None, **kwargs: Any) -> None:
        if sparse is not None and not isinstance(sparse, dict):
            raise ValueError(f"sparse must be a dict of SparseBackwardHook arguments, e.g. "
                             f"dict(method='ssprop', keep=0.2); got {sparse!r}")
        stats_interval = positive_int(stats_interval, "stats_interval")
        window = None if window is None else positive_int(window, "window")
        self.sparse = ScheduledSparseBackward(**(sparse or {}))
        self.by_epoch = bool(by_epoch)
        self.window = window
        self.stats_interval = stats_interval
        super().__init__(**kwargs)

    def _step_and_total(self) -> tuple[int, int]:
        if not self.by_epoch or self.window:  # the Runner sets these to runner.iter / max_iters
            if self._max_counts < 1:
                raise ValueError(f"{type(self).__name__}(by_epoch={self.by_epoch}, "
                                 f"window={self.window}) needs initialize_count_status(model, "
                                 f"start_iter, max_iters) (the Runner calls it) before the "
                                 f"first step")
            if not self.by_epoch:
                return self._inner_count, self._max_counts
            return window_step(self._inner_count, self._max_counts, self.window)
        hub = MessageHub.get_current_instance()
        epoch, max_epochs = hub.get_info("epoch"), hub.get_info("max_epochs")
        if epoch is None or max_epochs is None:
            raise ValueError(f"{type(self).__name__}(by_epoch=True) reads the epoch from the "
                             f"message hub (mmengine's RuntimeInfoHook); outside a Runner "
                             f"pass by_epoch=False")
        if max_epochs == 1 and self.sparse.model is None:
            print_log(f"{type(self).__name__}(by_epoch=True): this run has one epoch (an "
                      f"iteration-based loop?), so the schedule never steps and stays at its "
                      f"first value (dense under warmup or interleave). Fix: pass window=N "
                      f"(iterations per schedule step) or by_epoch=False.",
                      logger="current", level=logging.WARNING)
        return epoch, max_epochs

    @contextmanager
    def optim_context(self, model: nn.Module):
        step, total = self._step_and_total()
        if self.sparse.model is None:
            self.sparse.attach(unwrap_model(model), total=total, step=step)
            print_log(f"{type(self).__name__}: {self.sparse.describe(self._unit)}",
                      logger="current")
        else:
            self.sparse.step(step)
        with super().optim_context(model):
            yield

    @property
    def _unit(self) -> str:
        return "epoch" if self.by_epoch else "iteration"

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        super().backward(loss, **kwargs)
        if self.sparse.model is not None and self._inner_count % self.stats_interval == 0:
            hub = MessageHub.get_current_instance()
            for key, value in self.sparse.scalars().items():
                hub.update_scalar(key, value)


@OPTIM_WRAPPERS.register_module()
class SparseBackwardOptimWrapper(SparseBackwardMixin, OptimWrapper):
    """mmengine's OptimWrapper with the sparse backward of :class:`SparseBackwardMixin`."""


@OPTIM_WRAPPERS.register_module()
class SparseBackwardAmpOptimWrapper(SparseBackwardMixin, AmpOptimWrapper):
    """mmengine's AmpOptimWrapper (autocast + loss scaling) with the sparse backward."""
