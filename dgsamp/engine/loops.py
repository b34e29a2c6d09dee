"""Skip-aware training loops: mmengine's epoch- and iteration-based loops that own a GradSamp
sampler and can jump a whole epoch (or iteration window) without loading data or running
forward/backward.

The stock loops have no place where an epoch could be left out: `EpochBasedTrainLoop.run_epoch`
always iterates the dataloader. These subclasses hold the `GradSampler` given to them
(``loop.gradsampler``; `GradSampHook` attaches it in ``before_run`` and keeps only set-up and
checkpoint state). At the start of each epoch (window) the loop asks the sampler whether to skip;
a skipped epoch then

- replaces the update by the sampler's sample (before any epoch hook runs) and records it (log
  line, ``gradsamp/*`` scalars in the message hub and the visualizer),
- advances the iteration counter by ``len(dataloader)`` and the optimizer wrapper's inner count
  with it, and steps every iteration-based parameter scheduler ``len(dataloader)`` times (what
  `ParamSchedulerHook.after_train_iter` would have done; by-epoch schedulers step once, in
  `ParamSchedulerHook.after_train_epoch`, which fires as usual),
- fires ``before_train_epoch``/``after_train_epoch`` so that validation, checkpointing and
  logging behave as after a trained epoch. ``*_train_iter`` hooks do not fire: no iteration ran.

After a trained epoch (window) the loop gives the sampler its snapshot before the
``after_train_epoch`` (``after_train_iter``) hooks run, so the checkpoint written there holds it.

`GradSampHook` swaps stock loops for these itself; a config may also name them directly::

    train_cfg = dict(type='GradSampEpochBasedTrainLoop', max_epochs=12, val_interval=1)
    train_cfg = dict(type='GradSampIterBasedTrainLoop', max_iters=8000, val_interval=1000)

Without a sampler they behave exactly like the stock loops.
"""

from __future__ import annotations

import logging

from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..methods.gradsamp import GradSampler
from .runner_utils import optim_wrappers, unwrap_model


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
    for w in optim_wrappers(runner.optim_wrapper):
        if hasattr(w, "_inner_count"):
            w._inner_count += n


class _GradSampLoop:
    """What both skip-aware loops add to mmengine's: the sampler they own and the skip.

    Class attributes only (no ``__init__``): `GradSampHook` may change a stock loop's class to a
    subclass in place.
    """

    gradsampler: GradSampler | None = None  # attached by GradSampHook.before_run
    window: int | None = None  # iterations per skippable window (iteration loops only)

    def _sample_instead(self, index: int, total: int, unit: str, where: str = "") -> bool:
        """Decide epoch/window ``index`` of ``total``; on a skip, apply and record the sample.

        False (train it) when the schedule says train, and when the sample was refused as
        non-finite (parameters untouched).
        """
        sampler, runner = self.gradsampler, self.runner
        if sampler is None or not sampler.should_skip(index, total):
            return False
        stats = sampler.step_skip(unwrap_model(runner.model), index)
        summary = (f"mu_mean={stats['mu_mean']:.3e} sigma_mean={stats['sigma_mean']:.3e} "
                   f"beta_mean={stats['beta_mean']:.3f} (min {stats['beta_min']:.3f}, "
                   f"max {stats['beta_max']:.3f}) over {stats['num_tensors']} tensors")
        if stats["status"] != "applied":
            runner.logger.warning(f"GradSamp: {unit} {index + 1}/{total}: sampled update "
                                  f"refused ({stats.get('reason')}); training it instead. "
                                  f"{summary}")
            return False
        runner.logger.info(f"GradSamp: {unit} {index + 1}/{total}{where} skipped: no data, "
                           f"no forward/backward; parameters += sample "
                           f"({sampler.distribution}, {sampler.statistics}): {summary}")
        scalars = {"gradsamp/skipped": 1.0, "gradsamp/mu_mean": stats["mu_mean"],
                   "gradsamp/sigma_mean": stats["sigma_mean"],
                   "gradsamp/beta_mean": stats["beta_mean"],
                   "gradsamp/num_skipped": float(len(sampler.skipped_epochs))}
        for k, v in scalars.items():
            runner.message_hub.update_scalar(k, v)
        runner.message_hub.update_info("gradsamp/last_skipped", index)
        runner.visualizer.add_scalars(scalars, step=runner.iter)
        return True

    def _observe(self, index: int) -> None:
        """The sampler's snapshot after trained epoch/window ``index``."""
        self.gradsampler.observe(unwrap_model(self.runner.model), index)


@LOOPS.register_module()
class GradSampEpochBasedTrainLoop(_GradSampLoop, EpochBasedTrainLoop):
    """`EpochBasedTrainLoop` whose epochs its GradSamp sampler may skip (see module docstring)."""

    def run_epoch(self) -> None:
        if self.gradsampler is None:
            return super().run_epoch()
        if self._sample_instead(self._epoch, self._max_epochs, "epoch"):
            return self.skip_epoch()
        # mmengine's run_epoch, with the snapshot before the epoch hooks (and their checkpoint)
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        self._observe(self._epoch)
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1

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
class GradSampIterBasedTrainLoop(_GradSampLoop, IterBasedTrainLoop):
    """`IterBasedTrainLoop` whose windows of ``window`` iterations may be skipped.

    Window w covers iterations [w·N, (w+1)·N). A skipped window advances the counter by its
    length, steps iteration-based schedulers as many times, runs validation once if a
    validation point falls in the window, and saves a checkpoint once if an iteration-based
    `CheckpointHook` would have saved within it (the checkpoint holds the state at the window's
    end). Resuming advances the dataloader by the *trained* iterations only, the batches the
    uninterrupted run consumed.
    """

    def trained_iters(self, cur_iter: int) -> int:
        """How many of the first ``cur_iter`` iterations were trained."""
        skipped = sum(1 for w in self.gradsampler.skipped_epochs if w * self.window < cur_iter)
        return max(0, cur_iter - skipped * self.window)

    def run(self):
        if self.gradsampler is None:
            return super().run()
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        consumed = self.trained_iters(self._iter)
        if consumed > 0:
            print_log(f"Advance dataloader {consumed} steps (the trained iterations of "
                      f"{self._iter}) to skip data that has already been trained",
                      logger="current", level=logging.WARNING)
            for _ in range(consumed):
                next(self.dataloader_iterator)
        window = self.window
        num_windows = -(-self._max_iters // window)
        while self._iter < self._max_iters and not self.stop_training:
            if self._iter % window == 0:
                w = self._iter // window
                last = min((w + 1) * window, self._max_iters) - 1
                if self._sample_instead(w, num_windows, "window",
                                        f" (iterations {w * window}-{last})"):
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

    def run_iter(self, data_batch) -> None:
        if self.gradsampler is None:
            return super().run_iter(data_batch)
        # mmengine's run_iter, with the snapshot at a window's end before the iteration hooks
        # (and the checkpoint they may write)
        self.runner.call_hook("before_train_iter", batch_idx=self._iter, data_batch=data_batch)
        outputs = self.runner.model.train_step(data_batch,
                                               optim_wrapper=self.runner.optim_wrapper)
        done = self._iter + 1
        if done % self.window == 0 or done == self._max_iters:
            self._observe(self._iter // self.window)
        self.runner.call_hook("after_train_iter", batch_idx=self._iter, data_batch=data_batch,
                              outputs=outputs)
        self._iter += 1

    def skip_window(self, n: int) -> None:
        """Jump ``n`` iterations without data: schedulers, validation and checkpoints as usual."""
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
