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
"""

from __future__ import annotations

import math
from typing import Any

from .ssprop import check_keep

__all__ = [
    "BarKeep",
    "ConstantKeep",
    "CosineKeep",
    "InterleaveKeep",
    "KeepSchedule",
    "LinearKeep",
    "WarmupKeep",
    "build_keep_schedule",
]


class KeepSchedule:
    """Base: ``__call__(step) -> keep``."""

    def __call__(self, step: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def mean_keep(self, steps: int) -> float:
        """Average keep over steps 0..steps−1 (what fraction of backward work is done)."""
        return sum(self(i) for i in range(steps)) / max(1, steps)


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"schedule step must be a non-negative int, got {step!r}")
    return step


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
        self.total = _check_total(total if total is not None else self.period)

    def _e(self, step: int) -> int:
        step = _check_step(step)
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
    ``keep``/``total`` fill in values the dict leaves out (SparseBackwardHook passes its own).
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
