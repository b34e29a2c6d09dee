"""SWADHook: dense weight averaging over a validation-selected window (SWAD, Cha et al. 2021).

The weights are summed after every ``interval``-th training step; each validation closes a
*segment* (the sum since the previous validation) scored by a training-domain validation
metric. The averaging window is chosen as SWAD's "loss valley", with accuracy in place of loss:

- *start*: once the oldest of the last ``n_converge`` segments scores best among them (the
  metric stopped improving), those ``n_converge`` segments open the average;
- *continue*: a later segment joins once it scores within ``tolerance`` (metric units, e.g.
  accuracy points) of the best score seen; segments that do not wait, and join when a later
  one is back within tolerance;
- *end*: after ``n_tolerance`` waiting segments in a row the window closes (they are dropped).

A run too short for the metric to stop improving averages its last ``n_converge`` segments
(logged). With ``begin_iter`` set the window is fixed instead: every step from there on.
After training the averaged weights are loaded into the model, BatchNorm statistics are
recomputed on ``bn_update_iters`` training batches when the model has BatchNorm, the model is
validated again (so ``results.json`` and the last record in ``scalars.json`` are SWAD's) and
saved as ``swad.pth``. Selection never reads test-domain labels: a ``metric`` that names a
test domain is refused.

Config::

    custom_hooks = [dict(type='SWADHook', metric='acc/train_domains', n_converge=3,
                         n_tolerance=6, tolerance=1.0)]
"""

from __future__ import annotations

import os.path as osp

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn


def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if torch.is_floating_point(v)}


class _Segment:
    """A sum of weight snapshots, its count, and its validation score."""

    def __init__(self, sums: dict[str, torch.Tensor], count: int, score: float | None = None):
        self.sums, self.count, self.score = sums, count, score

    def add(self, other: _Segment) -> None:
        for k, v in other.sums.items():
            self.sums[k] += v.to(self.sums[k].device)
        self.count += other.count

    def state(self) -> dict:
        return dict(sums={k: v.cpu() for k, v in self.sums.items()}, count=self.count,
                    score=self.score)

    @classmethod
    def from_state(cls, state: dict) -> _Segment:
        return cls(dict(state["sums"]), int(state["count"]), state["score"])


@HOOKS.register_module()
class SWADHook(Hook):
    """Args:
        metric: training-domain validation metric that picks the window.
        rule: 'greater' (accuracy) or 'less' (a loss).
        n_converge, n_tolerance, tolerance: the valley rule (module docstring).
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
        self.n_converge, self.n_tolerance, self.tolerance = n_converge, n_tolerance, tolerance
        self.interval, self.begin_iter = interval, begin_iter
        self.bn_update_iters, self.final_val = bn_update_iters, final_val
        self._reset()

    def _reset(self) -> None:
        self.phase = "converging"  # -> 'averaging' -> 'done'
        self.current: _Segment | None = None
        self.queue: list[_Segment] = []
        self.pending: list[_Segment] = []
        self.final: _Segment | None = None
        self.best = float("-inf")
        self._finishing = False

    @staticmethod
    def _model(runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    # -- collecting ----------------------------------------------------------------------------
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        it = runner.iter + 1  # runner.iter is bumped after this hook
        if it % self.interval:
            return
        if self.begin_iter is not None and it < self.begin_iter:
            return
        state = _float_state(self._model(runner))
        if self.current is None:
            self.current = _Segment({k: v.detach().clone().double() for k, v in state.items()},
                                    1)
        else:
            for k, v in state.items():
                self.current.sums[k] += v.detach()
            self.current.count += 1

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        if self._finishing or self.begin_iter is not None or self.current is None:
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
        seg, self.current = self.current, None
        seg.score = self.sign * float(metrics[self.metric])
        self._add_segment(seg, runner)

    def _add_segment(self, seg: _Segment, runner) -> None:
        if self.phase == "converging":
            self.queue = (self.queue + [seg])[-self.n_converge:]
            scores = [s.score for s in self.queue]
            if len(self.queue) == self.n_converge and scores[0] >= max(scores):
                self.final = _Segment({k: v.clone() for k, v in self.queue[0].sums.items()},
                                      self.queue[0].count)
                for s in self.queue[1:]:
                    self.final.add(s)
                self.best = max(scores)
                self.phase, self.queue = "averaging", []
                print_log(f"SWAD: window opens at iteration {runner.iter} "
                          f"(best {self.metric} {self.sign * self.best:.2f})", "current")
        elif self.phase == "averaging":
            self.best = max(self.best, seg.score)
            self.pending.append(seg)
            if seg.score >= self.best - self.tolerance:
                for s in self.pending:
                    self.final.add(s)
                self.pending = []
            elif len(self.pending) >= self.n_tolerance:
                self.phase, self.pending = "done", []
                print_log(f"SWAD: window closes at iteration {runner.iter}", "current")

    # -- finishing -----------------------------------------------------------------------------
    def averaged(self) -> _Segment | None:
        """The window's weight sum so far (what `after_train` loads, divided by its count)."""
        if self.final is not None:
            return self.final
        if self.begin_iter is not None:
            return self.current
        segs = self.queue or ([self.current] if self.current is not None else [])
        if not segs:
            return None
        total = _Segment({k: v.clone() for k, v in segs[0].sums.items()}, segs[0].count)
        for s in segs[1:]:
            total.add(s)
        return total

    def after_train(self, runner) -> None:
        if self.final is None and self.begin_iter is None:
            print_log(f"SWAD: {self.metric} never stopped improving; averaging the last "
                      f"{len(self.queue)} validation segments.", "current")
        avg = self.averaged()
        if avg is None:
            print_log("SWAD: no weights were collected; the model stays as trained.",
                      "current")
            return
        model = self._model(runner)
        state = model.state_dict()
        for k, v in avg.sums.items():
            state[k].copy_((v / avg.count).to(state[k].dtype))
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
        bns = [m for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if not bns or self.bn_update_iters <= 0:
            return
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the update batches
        was_training = model.training
        model.train()
        with torch.no_grad():
            for i, batch in enumerate(runner.train_dataloader):
                if i >= self.bn_update_iters:
                    break
                data = model.data_preprocessor(batch, True)
                model(data["inputs"], data.get("data_samples"), mode="tensor")
        for m, mom in zip(bns, momenta, strict=True):
            m.momentum = mom
        model.train(was_training)

    # -- resume --------------------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._finishing:
            return
        checkpoint["swad"] = dict(
            phase=self.phase, best=self.best,
            current=self.current.state() if self.current is not None else None,
            queue=[s.state() for s in self.queue], pending=[s.state() for s in self.pending],
            final=self.final.state() if self.final is not None else None)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get("swad")
        if state is None:
            return
        device = next(self._model(runner).parameters()).device

        def load(s):
            if s is None:
                return None
            seg = _Segment.from_state(s)
            seg.sums = {k: v.to(device) for k, v in seg.sums.items()}
            return seg

        self.phase, self.best = state["phase"], float(state["best"])
        self.current, self.final = load(state["current"]), load(state["final"])
        self.queue = [load(s) for s in state["queue"]]
        self.pending = [load(s) for s in state["pending"]]
