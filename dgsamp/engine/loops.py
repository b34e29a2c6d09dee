"""Skip-aware training loops: mmengine's epoch- and iteration-based loops that can jump a whole
epoch (or iteration window) without loading data or running forward/backward.

The stock loops have no place where an epoch could be left out: `EpochBasedTrainLoop.run_epoch`
always iterates the dataloader. These subclasses ask the `GradSampHook` attached to them
(``loop.gradsamp``, set by the hook in ``before_run``) whether to skip; a skipped epoch then

- replaces the update by the hook's sample (before any epoch hook runs),
- advances the iteration counter by ``len(dataloader)`` and the optimizer wrapper's inner count
  with it, and steps every iteration-based parameter scheduler ``len(dataloader)`` times (what
  `ParamSchedulerHook.after_train_iter` would have done; by-epoch schedulers step once, in
  `ParamSchedulerHook.after_train_epoch`, which fires as usual),
- fires ``before_train_epoch``/``after_train_epoch`` so that validation, checkpointing and
  logging behave as after a trained epoch. ``*_train_iter`` hooks do not fire: no iteration ran.

`GradSampHook` swaps stock loops for these itself; a config may also name them directly::

    train_cfg = dict(type='GradSampEpochBasedTrainLoop', max_epochs=12, val_interval=1)
    train_cfg = dict(type='GradSampIterBasedTrainLoop', max_iters=8000, val_interval=1000)

Without a `GradSampHook` they behave exactly like the stock loops.
"""

from __future__ import annotations

import logging

from mmengine.logging import print_log
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop


def step_iter_schedulers(runner, n: int) -> None:
    """Step every non-by-epoch parameter scheduler ``n`` times (n skipped iterations)."""
    schedulers = runner.param_schedulers
    if schedulers is None or n <= 0:
        return
    groups = schedulers.values() if isinstance(schedulers, dict) else [schedulers]
    for group in groups:
        for scheduler in group:
            if not scheduler.by_epoch:
                for _ in range(n):
                    scheduler.step()


def advance_optim_count(runner, n: int) -> None:
    """Advance the optimizer wrappers' inner (gradient-accumulation) count by ``n``.

    After a trained epoch ``_inner_count`` equals the iteration counter; a resumed run
    re-initializes it to the iteration counter. Advancing it on a skip keeps the uninterrupted
    and the resumed run on the same accumulation boundaries.
    """
    wrapper = runner.optim_wrapper
    wrappers = wrapper.values() if isinstance(wrapper, OptimWrapperDict) else [wrapper]
    for w in wrappers:
        if isinstance(w, OptimWrapper) and hasattr(w, "_inner_count"):
            w._inner_count += n


@LOOPS.register_module()
class GradSampEpochBasedTrainLoop(EpochBasedTrainLoop):
    """`EpochBasedTrainLoop` whose epochs a `GradSampHook` may skip (see module docstring)."""

    gradsamp = None  # the GradSampHook driving this loop; set by the hook in before_run

    def run_epoch(self) -> None:
        hook = self.gradsamp
        if hook is not None and hook.try_skip(self.runner, self._epoch, self._max_epochs):
            self.skip_epoch()
        else:
            super().run_epoch()

    def skip_epoch(self) -> None:
        """An epoch that loads no data: counters, schedulers and epoch hooks as after training."""
        n = len(self.dataloader)
        self.runner.call_hook("before_train_epoch")
        step_iter_schedulers(self.runner, n)
        advance_optim_count(self.runner, n)
        self._iter += n
        self.runner.message_hub.update_info("iter", self._iter)
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1


@LOOPS.register_module()
class GradSampIterBasedTrainLoop(IterBasedTrainLoop):
    """`IterBasedTrainLoop` whose windows of ``hook.window`` iterations may be skipped.

    Window w covers iterations [w·N, (w+1)·N). A skipped window advances the counter by its
    length, steps iteration-based schedulers as many times, runs validation once if a
    validation point falls in the window, and saves a checkpoint once if an iteration-based
    `CheckpointHook` would have saved within it (the checkpoint holds the state at the window's
    end). Resuming advances the dataloader by the *trained* iterations only, the batches the
    uninterrupted run consumed.
    """

    gradsamp = None

    @property
    def window(self) -> int | None:
        """Iterations per GradSamp window (None without GradSamp): cost rows line up with it."""
        hook = self.gradsamp
        return hook.window if hook is not None else None

    def run(self):
        hook = self.gradsamp
        if hook is None:
            return super().run()
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        consumed = hook.trained_iters(self._iter)
        if consumed > 0:
            print_log(f"Advance dataloader {consumed} steps (the trained iterations of "
                      f"{self._iter}) to skip data that has already been trained",
                      logger="current", level=logging.WARNING)
            for _ in range(consumed):
                next(self.dataloader_iterator)
        window = hook.window
        num_windows = -(-self._max_iters // window)
        while self._iter < self._max_iters and not self.stop_training:
            if self._iter % window == 0:
                w = self._iter // window
                if hook.try_skip(self.runner, w, num_windows):
                    self.skip_window(min(window, self._max_iters - self._iter))
                    continue
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model

    def skip_window(self, n: int) -> None:
        """Jump ``n`` iterations without data: schedulers, validation and checkpoints as usual."""
        from mmengine.hooks import CheckpointHook

        start = self._iter
        step_iter_schedulers(self.runner, n)
        advance_optim_count(self.runner, n)
        save = []
        for h in self.runner.hooks:
            if isinstance(h, CheckpointHook) and not h.by_epoch:
                hit = False
                for i in range(start, start + n):
                    self._iter = i  # CheckpointHook reads runner.iter before the increment
                    if h.every_n_train_iters(self.runner, h.interval, h.save_begin) or (
                            h.save_last and h.is_last_train_iter(self.runner)):
                        hit = True
                        break
                if hit:
                    save.append(h)
        self._iter = start + n - 1
        for h in save:
            self.runner.logger.info(f"Saving checkpoint at {self._iter + 1} iterations "
                                    "(GradSamp-skipped window)")
            h._save_checkpoint(self.runner)
        self._iter = start + n
        self.runner.message_hub.update_info("iter", self._iter)
        val = False
        for i in range(start + 1, start + n + 1):
            self._iter = i
            self._decide_current_val_interval()
            if i >= self.val_begin and (i % self.val_interval == 0 or i == self._max_iters):
                val = True
        self._iter = start + n
        if val and self.runner.val_loop is not None:
            self.runner.val_loop.run()
