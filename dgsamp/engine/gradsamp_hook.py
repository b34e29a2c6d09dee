"""GradSampHook: GradSamp in any mmengine config with one entry in ``custom_hooks``::

    custom_hooks = [dict(type='GradSampHook', schedule=dict(type='periodic', every=4, warmup=2),
                         distribution='gaussian', statistics='layerwise')]

The hook only sets GradSamp up and keeps its state in checkpoints; the skip-aware loops of
`dgsamp.engine.loops` own the sampler (decide, sample, record, snapshot). In ``before_run``
(mmengine 0.10.7 builds the train loop just before it) the hook turns a stock
`EpochBasedTrainLoop`/`IterBasedTrainLoop` into its skip-aware subclass in place (the subclasses
add no instance state, so changing the instance's class is safe) and gives it the sampler. Any
other custom loop is refused with a message; the alternative is the one-line config change
``train_cfg = dict(type='GradSampEpochBasedTrainLoop', ...)`` (or
``'GradSampIterBasedTrainLoop'``).

Iteration-based training: an "epoch" is a window of ``window`` iterations (default: the loop's
``val_interval``), so windows end where validation and, usually, checkpoints happen.

The sampler's state (snapshots, epoch records, settings) is written to ``checkpoint['gradsamp']``
and read back on resume, so that a resumed run continues exactly as the uninterrupted one; a
checkpoint saved with other GradSamp settings (or another window) is refused on resume.
GradSamp per iteration, through the optimizer wrapper instead of the loop:
`dgsamp.engine.gradsamp_optim_wrapper.GradSampOptimWrapper`.
"""

from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from ..methods.gradsamp import GradSampler
from .loops import GradSampEpochBasedTrainLoop, GradSampIterBasedTrainLoop

CHECKPOINT_KEY = "gradsamp"


def _window(value, what: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"GradSampHook: {what}={value!r} must be a positive integer "
                         "(iterations per skippable window); set window=N.")
    return int(value)


def _unit(window: int | None) -> str:
    return "epochs" if window is None else f"windows of {window} iterations"


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

    priority = "NORMAL"

    def __init__(self, schedule: dict | None = None, distribution: str = "gaussian",
                 statistics: str = "layerwise", tau: float = 1.0, history: str = "trained",
                 seed: int = 0, window: int | None = None, snapshot_device: str = "cpu"):
        self.sampler = GradSampler(
            schedule=schedule if schedule is not None else dict(type="periodic", every=4,
                                                                warmup=2),
            distribution=distribution, statistics=statistics, tau=tau, history=history,
            seed=seed, snapshot_device=snapshot_device)
        self._window = None if window is None else _window(window, "window")
        self._pending_state: dict | None = None

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
        loop.gradsampler = self.sampler
        if isinstance(loop, GradSampIterBasedTrainLoop):
            loop.window = (self._window if self._window is not None
                           else _window(loop.val_interval, "window (default: val_interval)"))
            mode = f"windows of {loop.window} iterations"
        else:
            mode = "epochs"
        s = self.sampler
        runner.logger.info(f"GradSamp on ({mode}): {s.schedule.config()}, "
                           f"distribution={s.distribution}, statistics={s.statistics}, "
                           f"tau={s.tau}, history={s.history}, seed={s.seed}")

    # -- checkpoints -----------------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        window = runner.train_loop.window
        checkpoint[CHECKPOINT_KEY] = dict(sampler=self.sampler.state_dict(),
                                          by_epoch=window is None, window=window)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # load_checkpoint serves both `load_from` (weights only: GradSamp starts afresh) and
        # resume; which one it was is known in before_train (the loop's counters moved).
        self._pending_state = checkpoint.get(CHECKPOINT_KEY)

    def before_train(self, runner) -> None:
        state, self._pending_state = self._pending_state, None
        loop = runner.train_loop
        if not (loop.epoch > 0 or loop.iter > 0):
            return
        if state is None:
            runner.logger.warning("GradSamp: resumed from a checkpoint without GradSamp state; "
                                  "sampling restarts (two trained epochs needed first).")
            return
        if state.get("window") != loop.window:
            raise ValueError(f"GradSampHook cannot resume: the checkpoint skipped "
                             f"{_unit(state.get('window'))}, this run {_unit(loop.window)}. "
                             "Fix: give GradSampHook the checkpoint's window, or load only its "
                             "weights (load_from=CKPT, resume=False) to start GradSamp afresh.")
        try:
            self.sampler.load_state_dict(state["sampler"])
        except ValueError as e:
            raise ValueError(f"GradSampHook cannot resume: {e} (Weights only: "
                             "load_from=CKPT, resume=False.)") from None
        runner.logger.info(f"GradSamp state resumed: trained {self.sampler.trained_epochs}, "
                           f"skipped {self.sampler.skipped_epochs}")
