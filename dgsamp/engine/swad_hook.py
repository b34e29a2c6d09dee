"""SWADHook: SWAD's weight averaging (`dgsamp.methods.swad.SWAD`) wired to the runner.

The hook sums the weights after every ``interval``-th training step, closes a segment with each
validation (scored by a training-domain validation ``metric``) and leaves the window rule to
`SWAD`. With ``begin_iter`` set the window is fixed instead: every step from there on.
After training the averaged weights are loaded into the model, BatchNorm statistics are
recomputed on ``bn_update_iters`` training batches when the model has BatchNorm
(`dgsamp.methods.bn_stats.reestimate_bn_stats`, the whole model in train mode as
``torch.optim.swa_utils.update_bn`` does), the model is validated again (so ``results.json``
and the last record in ``scalars.json`` are SWAD's) and saved as ``swad.pth``. Selection never
reads test-domain labels: a ``metric`` that names a test domain is refused.

Config::

    custom_hooks = [dict(type='SWADHook', metric='acc/train_domains', n_converge=3,
                         n_tolerance=6, tolerance=1.0)]
"""

from __future__ import annotations

import itertools
import os.path as osp

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from torch import nn

from ..methods.bn_stats import bn_layers, reestimate_bn_stats
from ..methods.swad import SWAD, WeightSum
from .runner_utils import unwrap_model


@HOOKS.register_module()
class SWADHook(Hook):
    """Args:
        metric: training-domain validation metric that picks the window.
        rule: 'greater' (accuracy) or 'less' (a loss).
        n_converge, n_tolerance, tolerance: the valley rule (`dgsamp.methods.swad`).
        interval: sum the weights every this many training steps.
        begin_iter: fixed window from this iteration on (no valley rule) when given.
        bn_update_iters: training batches to recompute BatchNorm statistics with (0: skip).
        final_val: validate the averaged model after training.
    """

    priority = "LOW"

    def __init__(self, metric: str = "acc/train_domains", rule: str = "greater",
                 n_converge: int = 3, n_tolerance: int = 6, tolerance: float = 1.0,
                 interval: int = 1, begin_iter: int | None = None, bn_update_iters: int = 50,
                 final_val: bool = True):
        if rule not in ("greater", "less"):
            raise ValueError(f"rule={rule!r}: choose 'greater' or 'less'.")
        if "test_domains" in metric:
            raise ValueError(f"SWADHook metric {metric!r} reads test-domain labels. Fix: select "
                             f"on training-domain validation, e.g. 'acc/train_domains'.")
        self.metric, self.sign = metric, 1.0 if rule == "greater" else -1.0
        self.interval, self.begin_iter = interval, begin_iter
        self.bn_update_iters, self.final_val = bn_update_iters, final_val
        self.swad = SWAD(n_converge, n_tolerance, tolerance, fixed_window=begin_iter is not None)
        self._finishing = False

    @property
    def phase(self) -> str:
        """'converging', 'averaging' or 'done' (the window rule's state)."""
        return self.swad.phase

    def averaged(self) -> WeightSum | None:
        """The window's weight sum so far (what `after_train` loads, divided by its count)."""
        return self.swad.averaged()

    # -- collecting ----------------------------------------------------------------------------
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        it = runner.iter + 1  # runner.iter is bumped after this hook
        if it % self.interval:
            return
        if self.begin_iter is not None and it < self.begin_iter:
            return
        self.swad.collect(unwrap_model(runner.model))

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        if self._finishing or self.swad.fixed_window or self.swad.current is None:
            return
        metrics = metrics or {}
        test_domains = (runner.val_dataloader.dataset.metainfo or {}).get("test_domains") or []
        if self.metric in {f"acc/{d}" for d in test_domains}:
            raise ValueError(f"SWADHook metric {self.metric!r} is a test domain's accuracy; "
                             f"selection must not read test-domain labels. Fix: use "
                             f"'acc/train_domains'.")
        if self.metric not in metrics:
            raise KeyError(f"SWADHook metric {self.metric!r} is not among the validation "
                           f"metrics {sorted(metrics)}. Fix: set metric to one of them.")
        event = self.swad.end_segment(self.sign * float(metrics[self.metric]))
        if event == "opened":
            print_log(f"SWAD: window opens at iteration {runner.iter} "
                      f"(best {self.metric} {self.sign * self.swad.best:.2f})", "current")
        elif event == "closed":
            print_log(f"SWAD: window closes at iteration {runner.iter}", "current")

    # -- finishing -----------------------------------------------------------------------------
    def after_train(self, runner) -> None:
        if not self.swad.converged:
            print_log(f"SWAD: {self.metric} never stopped improving; averaging the last "
                      f"{len(self.swad.queue)} validation segments.", "current")
        avg = self.swad.averaged()
        if avg is None:
            print_log("SWAD: no weights were collected; the model stays as trained.",
                      "current")
            return
        model = unwrap_model(runner.model)
        avg.load_mean_into(model)
        print_log(f"SWAD: loaded the average of {avg.count} weight snapshots.", "current")
        self._update_bn(runner, model)
        self._finishing = True
        try:
            if self.final_val and runner.val_loop is not None:
                runner.val_loop.run()
            runner.save_checkpoint(runner.work_dir, "swad.pth", save_optimizer=False,
                                   save_param_scheduler=False)
        finally:
            self._finishing = False
        print_log(f"SWAD: saved {osp.join(runner.work_dir, 'swad.pth')}", "current")

    def _update_bn(self, runner, model: nn.Module) -> None:
        if self.bn_update_iters <= 0 or not any(m.track_running_stats for m in bn_layers(model)):
            return

        def forward(batch) -> None:
            data = model.data_preprocessor(batch, True)
            model(data["inputs"], data.get("data_samples"), mode="tensor")

        was_training = model.training
        model.train()
        try:
            reestimate_bn_stats(model, itertools.islice(runner.train_dataloader,
                                                        self.bn_update_iters), forward)
        finally:
            model.train(was_training)

    # -- resume --------------------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self._finishing:
            checkpoint["swad"] = self.swad.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if checkpoint.get("swad") is not None:
            device = next(unwrap_model(runner.model).parameters()).device
            self.swad.load_state_dict(checkpoint["swad"], device)
