"""Wall time per training phase (data, forward, backward, optimizer step), sampled and cheap.

CPU work is timed with ``time.perf_counter``. CUDA work is asynchronous, so on sampled steps the
device is synchronized at phase boundaries (and only then: a sync on every step would itself
slow training). Unsampled steps still get their whole duration measured, which is what the
per-phase means of the sampled steps are scaled to.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator

import torch

__all__ = ["PhaseTimer", "cuda_sync", "scale_phases"]

PHASES = ("forward", "backward", "optimizer")


def cuda_sync() -> None:
    """Wait for queued CUDA work, when there is a CUDA device (no-op on CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class PhaseTimer:
    """Accumulates the phases of the current step; ``enabled`` is set per step by the caller.

    ``start``/``stop`` pairs serve module hooks (forward pre-hook / forward hook); ``phase`` is
    the context-manager form. Re-entrant calls of the same phase (a model calling a submodule
    that is also hooked, a second backward) add up.
    """

    def __init__(self, sync: bool = False):
        self.sync = sync
        self.enabled = False
        self.current: dict[str, float] = {}
        self._open: dict[str, tuple[int, float]] = {}

    def begin(self, enabled: bool) -> None:
        self.enabled = enabled
        self.current = {}
        self._open = {}

    def start(self, name: str) -> None:
        if not self.enabled:
            return
        depth, t0 = self._open.get(name, (0, 0.0))
        if depth == 0:
            if self.sync:
                cuda_sync()
            t0 = time.perf_counter()
        self._open[name] = (depth + 1, t0)

    def stop(self, name: str) -> None:
        if not self.enabled or name not in self._open:
            return
        depth, t0 = self._open[name]
        if depth > 1:
            self._open[name] = (depth - 1, t0)
            return
        if self.sync:
            cuda_sync()
        self.current[name] = self.current.get(name, 0.0) + time.perf_counter() - t0
        del self._open[name]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.start(name)
        try:
            yield
        finally:
            self.stop(name)


def scale_phases(sampled: list[dict[str, float]], step_total_s: float,
                 n_steps: int) -> dict[str, float | None]:
    """Per-phase totals for ``n_steps`` steps whose summed duration was ``step_total_s``.

    Each sampled step gives the fraction of its duration spent in each phase (``step`` is the
    whole of ``train_step``); the mean fractions are applied to the measured total, so that
    phases add up to what really elapsed and a slow sampled step cannot inflate them.
    Returns None for every phase when nothing was sampled.
    """
    out: dict[str, float | None] = {p: None for p in (*PHASES, "other")}
    usable = [s for s in sampled if s.get("step", 0.0) > 0]
    if not usable or n_steps == 0:
        return out
    for p in PHASES:
        out[p] = statistics.fmean(s.get(p, 0.0) / s["step"] for s in usable) * step_total_s
    out["other"] = max(0.0, step_total_s - sum(out[p] or 0.0 for p in PHASES))
    return out
