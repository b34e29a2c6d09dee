"""GradSampHook: GradSamp in any mmengine config with one entry in ``custom_hooks``::

    custom_hooks = [dict(type='GradSampHook', schedule=dict(type='periodic', every=4, warmup=2),
                         distribution='gaussian', statistics='layerwise')]

Skipping an epoch for real needs a loop that can leave one out (`dgsamp.engine.loops`). In
``before_run`` (mmengine 0.10.7 builds the train loop just before it) the hook turns a stock
`EpochBasedTrainLoop`/`IterBasedTrainLoop` into its skip-aware subclass in place (the subclasses
add no state, so changing the instance's class is safe) and attaches itself to it. Any other
custom loop is refused with a message; the alternative is the one-line config change
``train_cfg = dict(type='GradSampEpochBasedTrainLoop', ...)`` (or
``'GradSampIterBasedTrainLoop'``).

Iteration-based training: an "epoch" is a window of ``window`` iterations (default: the loop's
``val_interval``), so windows end where validation and, usually, checkpoints happen.

The sampler's state (snapshots, epoch records) is written to ``checkpoint['gradsamp']`` and read
back on resume, so that a resumed run continues exactly as the uninterrupted one.
"""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..methods.gradsamp import GradSampler
from .loops import GradSampEpochBasedTrainLoop, GradSampIterBasedTrainLoop

CHECKPOINT_KEY = "gradsamp"


@HOOKS.register_module()
class GradSampHook(Hook):
    """Skip whole epochs (or iteration windows) and sample their update (GradSamp).

    Args:
        schedule: ``dict(type='periodic', every=4, warmup=2)`` or
            ``dict(type='random', p=0.25, warmup=2)``; bad values raise at construction.
        distribution: 'gaussian' or 'ggd' (generalized Gaussian, β fitted per tensor).
        statistics: 'layerwise' or 'elementwise'.
        tau: noise scale factor.
        history: 'trained' or 'any' (see `dgsamp.methods.gradsamp.GradSampler`).
        seed: seed of every GradSamp draw; the same on every DDP rank by construction.
        window: iterations per "epoch" for iteration-based loops (default: ``val_interval``).
        snapshot_device: where the two parameter snapshots live.
    """

    # before CheckpointHook (VERY_LOW): the snapshot of a trained epoch is taken before the
    # checkpoint that should contain it is written.
    priority = "NORMAL"

    def __init__(self, schedule: dict | None = None, distribution: str = "gaussian",
                 statistics: str = "layerwise", tau: float = 1.0, history: str = "trained",
                 seed: int = 0, window: int | None = None, snapshot_device: str = "cpu"):
        if window is not None and (int(window) != window or window < 1):
            raise ValueError(f"GradSampHook window={window!r} must be a positive integer.")
        self.sampler = GradSampler(
            schedule=schedule if schedule is not None else dict(type="periodic", every=4,
                                                                warmup=2),
            distribution=distribution, statistics=statistics, tau=tau, history=history,
            seed=seed, snapshot_device=snapshot_device)
        self._window_arg = window
        self.window: int | None = None
        self.by_epoch = True
        self._skipped_now = False
        self._pending_state: dict | None = None
        self.last_stats: dict | None = None

    # -- set-up ------------------------------------------------------------------------------------
    def before_run(self, runner) -> None:
        loop = runner.train_loop  # built by Runner.train before before_run; builds it otherwise
        if type(loop) is EpochBasedTrainLoop:
            loop.__class__ = GradSampEpochBasedTrainLoop
        elif type(loop) is IterBasedTrainLoop:
            loop.__class__ = GradSampIterBasedTrainLoop
        elif not isinstance(loop, (GradSampEpochBasedTrainLoop, GradSampIterBasedTrainLoop)):
            raise TypeError(
                f"GradSampHook cannot skip epochs in the custom train loop "
                f"{type(loop).__name__}: it supports mmengine's EpochBasedTrainLoop and "
                "IterBasedTrainLoop (swapped automatically) or, in the config, "
                "train_cfg=dict(type='GradSampEpochBasedTrainLoop', ...) / "
                "dict(type='GradSampIterBasedTrainLoop', ...).")
        loop.gradsamp = self
        self.by_epoch = isinstance(loop, GradSampEpochBasedTrainLoop)
        if not self.by_epoch:
            window = self._window_arg if self._window_arg is not None else loop.val_interval
            if int(window) != window or window < 1:
                raise ValueError(f"GradSampHook: iteration window {window!r} must be a "
                                 "positive integer (set window=N).")
            self.window = int(window)
        mode = "epochs" if self.by_epoch else f"windows of {self.window} iterations"
        runner.logger.info(f"GradSamp on ({mode}): {self.sampler.schedule.config()}, "
                           f"distribution={self.sampler.distribution}, "
                           f"statistics={self.sampler.statistics}, tau={self.sampler.tau}, "
                           f"history={self.sampler.history}, seed={self.sampler.seed}")

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    # -- the loop's questions -------------------------------------------------------------------
    def try_skip(self, runner, index: int, total: int) -> bool:
        """Called by the skip-aware loop at the start of epoch/window ``index`` of ``total``.

        Applies the sampled update and returns True when the epoch is to be skipped; returns
        False (train it) otherwise, also when the sampled update was refused as non-finite.
        """
        self._skipped_now = False
        if not self.sampler.should_skip(index, total):
            return False
        stats = self.sampler.step_skip(self._model(runner), index)
        self.last_stats = stats
        unit = "epoch" if self.by_epoch else "window"
        summary = (f"mu_mean={stats['mu_mean']:.3e} sigma_mean={stats['sigma_mean']:.3e} "
                   f"beta_mean={stats['beta_mean']:.3f} (min {stats['beta_min']:.3f}, "
                   f"max {stats['beta_max']:.3f}) over {stats['num_tensors']} tensors")
        if stats["status"] != "applied":
            runner.logger.warning(f"GradSamp: {unit} {index + 1}/{total}: sampled update "
                                  f"refused ({stats.get('reason')}); training it instead. "
                                  f"{summary}")
            return False
        extra = "" if self.by_epoch else f" (iterations {index * self.window}-" \
            f"{min((index + 1) * self.window, runner.max_iters) - 1})"
        runner.logger.info(f"GradSamp: {unit} {index + 1}/{total}{extra} skipped: no data, "
                           f"no forward/backward; parameters += sample "
                           f"({self.sampler.distribution}, {self.sampler.statistics}): "
                           f"{summary}")
        scalars = {"gradsamp/skipped": 1.0, "gradsamp/mu_mean": stats["mu_mean"],
                   "gradsamp/sigma_mean": stats["sigma_mean"],
                   "gradsamp/beta_mean": stats["beta_mean"],
                   "gradsamp/num_skipped": float(len(self.sampler.skipped_epochs))}
        for k, v in scalars.items():
            runner.message_hub.update_scalar(k, v)
        runner.message_hub.update_info("gradsamp/last_skipped", index)
        runner.visualizer.add_scalars(scalars, step=runner.iter)
        self._skipped_now = True
        return True

    def trained_iters(self, cur_iter: int) -> int:
        """How many of the first ``cur_iter`` iterations were trained (iteration mode)."""
        skipped = sum(1 for w in self.sampler.skipped_epochs if w * self.window < cur_iter)
        return max(0, cur_iter - skipped * self.window)

    # -- snapshots -----------------------------------------------------------------------------
    def after_train_epoch(self, runner) -> None:
        if not self.by_epoch:
            return
        if not self._skipped_now:
            self.sampler.observe(self._model(runner), runner.epoch)
        self._skipped_now = False

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.by_epoch:
            return
        done = runner.iter + 1  # the loop increments after the hooks
        if done % self.window == 0 or done == runner.max_iters:
            self.sampler.observe(self._model(runner), runner.iter // self.window)

    # -- checkpoints -----------------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = dict(sampler=self.sampler.state_dict(),
                                          by_epoch=self.by_epoch, window=self.window)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # load_checkpoint serves both `load_from` (weights only: GradSamp starts afresh) and
        # resume; which one it was is known in before_train (the loop's counters moved).
        self._pending_state = checkpoint.get(CHECKPOINT_KEY)

    def before_train(self, runner) -> None:
        state, self._pending_state = self._pending_state, None
        resumed = runner.train_loop.epoch > 0 or runner.train_loop.iter > 0
        if not resumed:
            return
        if state is None:
            runner.logger.warning("GradSamp: resumed from a checkpoint without GradSamp state; "
                                  "sampling restarts (two trained epochs needed first).")
            return
        if state.get("window") not in (None, self.window):
            runner.logger.warning(f"GradSamp: checkpoint window {state.get('window')} differs "
                                  f"from this run's {self.window}.")
        self.sampler.load_state_dict(state["sampler"])
        runner.logger.info(f"GradSamp state resumed: trained {self.sampler.trained_epochs}, "
                           f"skipped {self.sampler.skipped_epochs}")
