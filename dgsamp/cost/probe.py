"""Measure training steps from outside: wrap the step's callables for the duration of a run.

`StepProbe` puts wrappers on an object's ``train_step`` (the whole step: its duration, and the
`StepFlopCounter` spanning it on counted steps) and on each optimizer wrapper's ``backward``,
``step`` and ``zero_grad`` (phase times, FLOP attribution, optimizer-step count), plus forward
hooks on the model (forward time). Each step is armed first (`arm`: count FLOPs? split into
phases?) and read after (`take`). The wrappers are instance attributes, removed by `uninstall`.

Plain PyTorch; `dgsamp.engine.cost_hook.CostHook` installs it on the runner's model and optim
wrappers.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from torch import nn

from .flops import StepFlopCounter, StepFlops
from .timing import PhaseTimer, cuda_sync

__all__ = ["StepMeasurement", "StepProbe"]

_MISSING = object()


class StepMeasurement:
    """What one armed step measured."""

    __slots__ = ("flops", "optimizer_steps", "phases", "step_s")

    def __init__(self, step_s: float, phases: dict[str, float] | None,
                 flops: StepFlops | None, optimizer_steps: int):
        self.step_s, self.phases, self.flops = step_s, phases, flops
        self.optimizer_steps = optimizer_steps


class StepProbe:
    """Wrappers that time and count training steps. ``model``: the module whose forward is
    timed and whose dithered layers the FLOP counter reads; ``sync``: synchronize CUDA at the
    boundaries of timed steps (asynchronous kernels would otherwise land in the wrong phase)."""

    def __init__(self, model: nn.Module, sync: bool = False):
        self.model = model
        self.counter = StepFlopCounter(model)
        self.timer = PhaseTimer(sync=sync)
        self._wrapped: list[tuple[Any, str, Any]] = []
        self._handles: list[Any] = []
        self.arm(False, False, None)

    def arm(self, count_flops: bool, time_phases: bool, samples: int | None) -> None:
        """Set what the next step measures."""
        self._count, self._time, self._samples = count_flops, time_phases, samples
        self._step_s, self._phases, self._opt_steps = 0.0, None, 0

    def take(self) -> StepMeasurement:
        """The last step's measurement; disarms."""
        flops, self.counter.result = self.counter.result, None
        m = StepMeasurement(self._step_s, self._phases if self._time else None,
                            flops if self._count else None, self._opt_steps)
        self.arm(False, False, None)
        return m

    # ------------------------------------------------------------------ wrappers
    def install(self, step_owner: Any, optim_wrappers: list[Any]) -> None:
        """Wrap ``step_owner.train_step`` and each wrapper's backward/step/zero_grad."""
        probe, timer, counter = self, self.timer, self.counter
        orig_train_step = step_owner.train_step

        def train_step(*args, **kwargs):
            timer.begin(probe._time)
            if probe._time and timer.sync:
                cuda_sync()
            t0 = time.perf_counter()
            try:
                if probe._count:
                    with counter.step(samples=probe._samples):
                        return orig_train_step(*args, **kwargs)
                return orig_train_step(*args, **kwargs)
            finally:
                if probe._time and timer.sync:
                    cuda_sync()
                probe._step_s = time.perf_counter() - t0
                probe._phases = dict(timer.current)
                timer.begin(False)

        self._put(step_owner, "train_step", train_step)
        for ow in optim_wrappers:
            orig_backward, orig_step, orig_zero = ow.backward, ow.step, ow.zero_grad

            def backward(*args, _orig=orig_backward, **kwargs):
                with timer.phase("backward"), counter.backward():
                    return _orig(*args, **kwargs)

            def step(*args, _orig=orig_step, **kwargs):
                probe._opt_steps += 1
                with timer.phase("optimizer"), counter.optimizer():
                    return _orig(*args, **kwargs)

            def zero_grad(*args, _orig=orig_zero, **kwargs):
                with timer.phase("optimizer"):
                    return _orig(*args, **kwargs)

            for name, fn in (("backward", backward), ("step", step), ("zero_grad", zero_grad)):
                self._put(ow, name, fn)
        self._handles = [
            self.model.register_forward_pre_hook(lambda *_: timer.start("forward")),
            self.model.register_forward_hook(lambda *_: timer.stop("forward")),
        ]

    def _put(self, obj: Any, name: str, fn) -> None:
        """Set ``obj.name = fn``, remembering what to put back. Attributes of the original
        (mmengine's parameter schedulers mark ``step`` with ``_with_counter``) are copied so
        that code inspecting them sees no change."""
        orig = getattr(obj, name)
        functools.update_wrapper(fn, orig, assigned=(), updated=())
        try:
            fn.__dict__.update(getattr(orig, "__dict__", {}))
        except (AttributeError, TypeError):
            pass
        own = vars(obj).get(name, _MISSING)
        setattr(obj, name, fn)
        self._wrapped.append((obj, name, own))

    def uninstall(self) -> None:
        for obj, name, own in reversed(self._wrapped):
            if own is _MISSING:
                vars(obj).pop(name, None)
            else:
                setattr(obj, name, own)
        self._wrapped = []
        for h in self._handles:
            h.remove()
        self._handles = []
