"""Keep-fraction schedules for sparse backward (methods.md §2).

A schedule maps a step (an epoch index, or an iteration index) to the keep fraction p ∈ (0, 1]
that :func:`dgsamp.methods.patch.set_sparsity` applies to every patched layer. ``p == 1`` means a
dense step (for dither: no dithering).

Formulas, e = step (0-based) clipped to [0, E−1], E = ``total``:

- ``constant``: p_max (alias ``keep``)
- ``linear``:   p_max + (p_min − p_max) · e/(E−1)
- ``cosine``:   p_min + ½(p_max − p_min)(1 + cos(π e/(E−1)))
- ``bar``:      p_max for e < E/2, then p_min

Modifiers (any schedule): ``warmup=W`` makes steps 0..W−1 dense; ``interleave=True`` alternates
dense and sparse steps after the warmup, the first one dense (every ``interleave_every`` steps).
``period=T`` makes the schedule cyclic in the step (step mod T; total defaults to T), which is how
an iteration-based run repeats a schedule over windows of T iterations.

A ramp built with ``total=RUN_LENGTH`` takes the length of the run it is used in: the config is
parsed and validated once, when it enters (a hook's constructor), and :meth:`~KeepSchedule.\
with_total` fills in the number of epochs or iterations once the run knows it.
:class:`ScheduledSparseBackward` is a schedule driving a patched model: what SparseBackwardHook
and SparseBackwardOptimWrapper share (here, beside the schedules it steps: slightly over 350
lines).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from torch import nn

from .patch import (
    layer_options,
    output_layers,
    patch,
    patched_modules,
    set_sparsity,
    sparse_stats,
    unpatch,
)
from .ssprop import check_keep

__all__ = [
    "BarKeep",
    "ConstantKeep",
    "positive_int",
    "window_step",
    "CosineKeep",
    "InterleaveKeep",
    "KeepSchedule",
    "LinearKeep",
    "RUN_LENGTH",
    "SPARSE_STEP",
    "ScheduledSparseBackward",
    "WarmupKeep",
    "build_keep_schedule",
]

#: ``total`` meaning "the length of the run this schedule is used in" (see with_total)
RUN_LENGTH = "run length"
#: value of a schedule built without a keep on its sparse steps (constant type): methods with no
#: keep fraction (dither) only ask whether a step is dense (1) or not
SPARSE_STEP = 0.5


class KeepSchedule:
    """Base: ``__call__(step) -> keep``."""

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean_keep(self, steps: int) -> float:
        """Average keep over steps 0..steps−1 (what fraction of backward work is done)."""
        return sum(self(i) for i in range(steps)) / max(1, steps)

    def with_total(self, total: int) -> KeepSchedule:
        """This schedule with a ``RUN_LENGTH`` total replaced by ``total`` (else itself)."""
        return self


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"schedule step must be a non-negative int, got {step!r}")
    return step


def positive_int(value: Any, what: str) -> int:
    """``value`` if it is an int ≥ 1 (not a bool), else ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


def window_step(iteration: int, total_iters: int, window: int) -> tuple[int, int]:
    """Schedule step and run length (in steps) when one step spans ``window`` iterations: the
    "epochs" of a by-epoch schedule on an iteration-based loop (hook and optim wrapper alike)."""
    return iteration // window, -(-total_iters // window)


def _check_total(total: Any, name: str = "total") -> int:
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"{name} must be a positive int (number of epochs or iterations), "
                         f"got {total!r}")
    return total


class ConstantKeep(KeepSchedule):
    """p = p_max at every step."""

    def __init__(self, keep: float) -> None:
        self.keep = check_keep(keep)

    def __call__(self, step: int) -> float:
        _check_step(step)
        return self.keep

    def __repr__(self) -> str:
        return f"ConstantKeep(keep={self.keep})"


class _Ramp(KeepSchedule):
    def __init__(self, total: int, p_min: float, p_max: float = 1.0,
                 period: int | None = None) -> None:
        self.p_min = check_keep(p_min)
        self.p_max = check_keep(p_max)
        self.period = None if period is None else _check_total(period, "period")
        if total == RUN_LENGTH:
            self.total = None  # filled in by with_total
        else:
            self.total = _check_total(total if total is not None else self.period)

    def with_total(self, total: int) -> KeepSchedule:
        if self.total is not None:
            return self
        return type(self)(total=total, p_min=self.p_min, p_max=self.p_max, period=self.period)

    def _e(self, step: int) -> int:
        step = _check_step(step)
        if self.total is None:
            raise ValueError(f"{self!r} takes the run's length: call with_total(n) first")
        if self.period is not None:
            step %= self.period
        return min(step, self.total - 1)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(total={self.total}, p_min={self.p_min}, "
                f"p_max={self.p_max}, period={self.period})")


class LinearKeep(_Ramp):
    """p_max → p_min linearly over E steps."""

    def __call__(self, step: int) -> float:
        e = self._e(step)
        if self.total == 1:
            return self.p_max
        return self.p_max + (self.p_min - self.p_max) * e / (self.total - 1)


class CosineKeep(_Ramp):
    """p_min + ½(p_max − p_min)(1 + cos(π e/(E−1)))."""

    def __call__(self, step: int) -> float:
        e = self._e(step)
        if self.total == 1:
            return self.p_max
        return self.p_min + 0.5 * (self.p_max - self.p_min) * (
            1 + math.cos(math.pi * e / (self.total - 1)))


class BarKeep(_Ramp):
    """p_max for the first half of the E steps, p_min for the second."""

    def __call__(self, step: int) -> float:
        e = self._e(step)
        return self.p_max if e < self.total / 2 else self.p_min


class WarmupKeep(KeepSchedule):
    """Steps 0..warmup−1 dense (p = 1), then the inner schedule (same step numbering)."""

    def __init__(self, inner: KeepSchedule, warmup: int) -> None:
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValueError(f"warmup must be a non-negative int, got {warmup!r}")
        self.inner = inner
        self.warmup = warmup

    def with_total(self, total: int) -> KeepSchedule:
        return WarmupKeep(self.inner.with_total(total), self.warmup)

    def __call__(self, step: int) -> float:
        step = _check_step(step)
        return 1.0 if step < self.warmup else self.inner(step)

    def __repr__(self) -> str:
        return f"WarmupKeep({self.inner!r}, warmup={self.warmup})"


class InterleaveKeep(KeepSchedule):
    """Alternate dense and sparse blocks of ``every`` steps, the first block dense.

    ``offset`` (the warmup length when combined) shifts where the alternation starts.
    """

    def __init__(self, inner: KeepSchedule, every: int = 1, offset: int = 0) -> None:
        self.inner = inner
        self.every = _check_total(every, "interleave_every")
        self.offset = int(offset)

    def with_total(self, total: int) -> KeepSchedule:
        return InterleaveKeep(self.inner.with_total(total), self.every, self.offset)

    def __call__(self, step: int) -> float:
        step = _check_step(step)
        block = max(0, step - self.offset) // self.every
        return 1.0 if block % 2 == 0 else self.inner(step)

    def __repr__(self) -> str:
        return f"InterleaveKeep({self.inner!r}, every={self.every})"


_TYPES = {"constant": ConstantKeep, "linear": LinearKeep, "cosine": CosineKeep, "bar": BarKeep}


def build_keep_schedule(cfg: dict | KeepSchedule | float | None, *, keep: float | None = None,
                        total: int | None = None) -> KeepSchedule:
    """Build a schedule from a config dict.

    ``dict(type='constant'|'linear'|'cosine'|'bar'|'interleave'|'warmup', ...)``:
    constant takes ``keep`` (or ``p_max``); the ramps take ``p_min`` (default: the ``keep``
    argument), ``p_max`` (default 1) and ``total`` (default: the ``total`` argument, e.g. the
    number of epochs) or ``period``. Any type accepts ``warmup=W``, ``interleave=True`` and
    ``interleave_every=N``. ``type='interleave'``/``'warmup'`` wrap ``schedule=dict(...)`` (or a
    constant at ``keep``). A float is a constant; a KeepSchedule passes through.
    ``keep``/``total`` fill in values the dict leaves out (SparseBackwardHook passes its keep
    and ``total=RUN_LENGTH``).
    """
    if isinstance(cfg, KeepSchedule):
        return cfg
    if cfg is None:
        cfg = {"type": "constant"}
    if isinstance(cfg, (int, float)) and not isinstance(cfg, bool):
        return ConstantKeep(cfg)
    if not isinstance(cfg, dict):
        raise ValueError(f"schedule must be a dict, a float or a KeepSchedule, got {cfg!r}")
    cfg = dict(cfg)
    typ = cfg.pop("type", "constant")
    warmup = cfg.pop("warmup", 0)
    interleave = cfg.pop("interleave", False)
    every = cfg.pop("interleave_every", 1)
    if typ in ("interleave", "warmup"):
        inner_cfg = cfg.pop("schedule", None)
        if typ == "interleave":
            interleave = True
        else:
            warmup = cfg.pop("steps", warmup)
        inner = build_keep_schedule(inner_cfg if inner_cfg is not None else
                                    {"type": "constant", **cfg}, keep=keep, total=total)
    elif typ in _TYPES:
        if typ == "constant":
            k = cfg.pop("keep", cfg.pop("p_max", keep))
            if k is None:
                raise ValueError("constant schedule needs 'keep' (or the hook's keep)")
            _no_extra(cfg, typ)
            inner = ConstantKeep(k)
        else:
            p_min = cfg.pop("p_min", cfg.pop("keep", keep))
            if p_min is None:
                raise ValueError(f"{typ} schedule needs 'p_min' (or the hook's keep)")
            p_max = cfg.pop("p_max", 1.0)
            period = cfg.pop("period", None)
            tot = cfg.pop("total", total if period is None else period)
            if tot is None:
                raise ValueError(f"{typ} schedule needs 'total' (epochs or iterations) or "
                                 f"'period'")
            _no_extra(cfg, typ)
            inner = _TYPES[typ](total=tot, p_min=p_min, p_max=p_max, period=period)
    else:
        raise ValueError(f"unknown keep schedule type {typ!r}; expected one of "
                         f"{sorted([*_TYPES, 'interleave', 'warmup'])}")
    sched: KeepSchedule = inner
    if interleave:
        sched = InterleaveKeep(sched, every=every, offset=warmup)
    if warmup:
        sched = WarmupKeep(sched, warmup)
    return sched


def _no_extra(cfg: dict, typ: str) -> None:
    if cfg:
        raise ValueError(f"unexpected arguments for {typ} schedule: {sorted(cfg)}")


class ScheduledSparseBackward:
    """A sparse-backward method on a model, its keep schedule stepping it: the code that
    SparseBackwardHook and SparseBackwardOptimWrapper share (mmengine-free).

    Settings are validated here, once, into frozen layer options (:func:`layer_options`) and a
    schedule whose ramp length is the run's (``RUN_LENGTH``). :meth:`attach` patches the model
    with the keep of the starting step; from then on the schedule drives ``set_sparsity`` only.
    For dither the schedule says which steps are dense (value 1: dithering off); any value
    below 1 dithers at ``scale``.
    """

    def __init__(self, method: str = "ssprop", keep: float | None = None,
                 scale: float | None = None, schedule: dict | KeepSchedule | None = None,
                 include: Any = None, exclude: Any = None, types: Any = None,
                 dense_output: bool = True, **options: Any) -> None:
        self.options = layer_options(method, keep=keep, scale=scale, **options)
        self.method = self.options.method
        fill = self.options.keep if self.method == "ssprop" else SPARSE_STEP
        self.schedule = build_keep_schedule(
            schedule if schedule is not None else dict(type="constant"), keep=fill,
            total=RUN_LENGTH)
        self.include, self.exclude, self.types = include, exclude, types
        self.dense_output = bool(dense_output)
        self.model: nn.Module | None = None
        self.patched: list[str] = []
        self.current_keep: float | None = None

    def attach(self, model: nn.Module, total: int, step: int) -> list[str]:
        """Patch ``model`` for a run of ``total`` steps starting at ``step``."""
        self.schedule = self.schedule.with_total(total)
        self.current_keep = float(self.schedule(int(step)))
        self.model = model
        self.patched = patch(model, self._options_at(self.current_keep), include=self.include,
                             exclude=self.exclude, types=self.types,
                             dense_output=self.dense_output)
        return self.patched

    def _options_at(self, keep: float):
        if self.method == "ssprop":
            return dataclasses.replace(self.options, keep=keep)
        return dataclasses.replace(self.options, enabled=keep < 1.0)

    def step(self, step: int) -> None:
        """Apply the schedule's value at ``step`` (a no-op while it does not change)."""
        keep = float(self.schedule(int(step)))
        if self.model is None or keep == self.current_keep:
            return
        if self.method == "ssprop":
            set_sparsity(self.model, keep=keep)
        else:
            set_sparsity(self.model, dither=keep < 1.0)
        self.current_keep = keep

    def detach(self) -> None:
        """Restore the model's original layers."""
        if self.model is not None and patched_modules(self.model):
            unpatch(self.model)
        self.model = None

    def describe(self, unit: str) -> str:
        """One log line: what is patched, the schedule, which layers stay dense."""
        dense = output_layers(self.model) if self.dense_output else []
        depthwise = [n for n, m in patched_modules(self.model).items()
                     if getattr(m, "dense_backward", False)]
        return (f"{self.method} on {len(self.patched)} layers, schedule {self.schedule!r} per "
                f"{unit}" + (f"; output layers kept dense: {', '.join(dense)}" if dense else "")
                + (f"; depthwise convs with a dense backward: {', '.join(depthwise)}"
                   if depthwise else ""))

    def scalars(self) -> dict[str, float]:
        """The current keep (ssprop) or on/off and scale (dither), and the sparsity the last
        backward measured (``sparse_stats``), under the message-hub names the docs list."""
        dense = self.current_keep is not None and self.current_keep >= 1.0
        out: dict[str, float] = {}
        if self.method == "ssprop":
            out["train/sparse_keep"] = self.current_keep
        else:
            out["train/dither_active"] = 0.0 if dense else 1.0
            out["train/dither_scale"] = self.options.scale
        st = sparse_stats(self.model)
        if dense:
            out["train/grad_sparsity"] = 0.0
        elif st["grad_sparsity"] is not None:
            out["train/grad_sparsity"] = st["grad_sparsity"]
        if self.method == "ssprop" and st["kept_fraction"] is not None and not dense:
            out["train/sparse_kept_fraction"] = st["kept_fraction"]
        if self.method == "dither" and st["grad_density"] is not None and not dense:
            out["train/grad_density"] = st["grad_density"]
        return out
