"""SWAD (Cha et al. 2021): dense weight averaging over a validation-selected window.

Plain PyTorch and its state; `dgsamp.engine.swad_hook.SWADHook` only feeds it runner events.
The weights are summed at every `SWAD.collect`; each `SWAD.end_segment` closes a *segment* (the
sum since the previous one) scored by a training-domain validation metric. The averaging window
is chosen as SWAD's "loss valley", with any score (higher is better) in place of the loss:

- *start*: once the oldest of the last ``n_converge`` segments scores best among them (the
  metric stopped improving), those ``n_converge`` segments open the average;
- *continue*: a later segment joins once it scores within ``tolerance`` (metric units, e.g.
  accuracy points) of the best score seen; segments that do not wait, and join when a later
  one is back within tolerance;
- *end*: after ``n_tolerance`` waiting segments in a row the window closes (they are dropped).

A run too short for the metric to stop improving averages its last ``n_converge`` segments.
With ``fixed_window`` every collected snapshot is averaged (no valley rule).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SWAD", "WeightSum"]


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The floating-point entries of ``model.state_dict()`` (what averaging applies to)."""
    return {k: v for k, v in model.state_dict().items() if torch.is_floating_point(v)}


class WeightSum:
    """A sum of weight snapshots (float64), its count, and its validation score."""

    def __init__(self, sums: dict[str, torch.Tensor], count: int, score: float | None = None):
        self.sums, self.count, self.score = sums, count, score

    @classmethod
    def of(cls, model: nn.Module) -> WeightSum:
        return cls({k: v.detach().clone().double() for k, v in float_state(model).items()}, 1)

    def copy(self) -> WeightSum:
        return WeightSum({k: v.clone() for k, v in self.sums.items()}, self.count)

    def add(self, other: WeightSum) -> None:
        for k, v in other.sums.items():
            self.sums[k] += v.to(self.sums[k].device)
        self.count += other.count

    def add_model(self, model: nn.Module) -> None:
        for k, v in float_state(model).items():
            self.sums[k] += v.detach()
        self.count += 1

    def load_mean_into(self, model: nn.Module) -> None:
        """Write the mean of the snapshots into ``model`` (in place, its dtypes kept)."""
        state = model.state_dict()
        for k, v in self.sums.items():
            state[k].copy_((v / self.count).to(state[k].dtype))

    def state(self) -> dict:
        return dict(sums={k: v.cpu() for k, v in self.sums.items()}, count=self.count,
                    score=self.score)

    @classmethod
    def from_state(cls, state: dict | None, device: torch.device | str = "cpu"
                   ) -> WeightSum | None:
        if state is None:
            return None
        return cls({k: v.to(device) for k, v in state["sums"].items()}, int(state["count"]),
                   state["score"])


class SWAD:
    """The valley rule and the running sums (module docstring).

    Args:
        n_converge, n_tolerance, tolerance: the valley rule.
        fixed_window: average every collected snapshot instead.
    """

    def __init__(self, n_converge: int = 3, n_tolerance: int = 6, tolerance: float = 1.0,
                 fixed_window: bool = False) -> None:
        if n_converge < 1 or n_tolerance < 1:
            raise ValueError(f"SWAD n_converge={n_converge}, n_tolerance={n_tolerance}: both "
                             f"must be at least 1.")
        self.n_converge, self.n_tolerance = int(n_converge), int(n_tolerance)
        self.tolerance, self.fixed_window = float(tolerance), bool(fixed_window)
        self.phase = "converging"  # -> 'averaging' -> 'done'
        self.current: WeightSum | None = None
        self.queue: list[WeightSum] = []
        self.pending: list[WeightSum] = []
        self.final: WeightSum | None = None
        self.best = float("-inf")

    def collect(self, model: nn.Module) -> None:
        """Add the model's current weights to the open segment."""
        if self.current is None:
            self.current = WeightSum.of(model)
        else:
            self.current.add_model(model)

    def end_segment(self, score: float) -> str | None:
        """Close the open segment with its score (higher is better). Returns 'opened' or
        'closed' when the window does so at this segment, else None."""
        if self.fixed_window or self.current is None:
            return None
        seg, self.current = self.current, None
        seg.score = float(score)
        if self.phase == "converging":
            self.queue = (self.queue + [seg])[-self.n_converge:]
            scores = [s.score for s in self.queue]
            if len(self.queue) == self.n_converge and scores[0] >= max(scores):
                self.final = self.queue[0].copy()
                for s in self.queue[1:]:
                    self.final.add(s)
                self.best = max(scores)
                self.phase, self.queue = "averaging", []
                return "opened"
        elif self.phase == "averaging":
            self.best = max(self.best, seg.score)
            self.pending.append(seg)
            if seg.score >= self.best - self.tolerance:
                for s in self.pending:
                    self.final.add(s)
                self.pending = []
            elif len(self.pending) >= self.n_tolerance:
                self.phase, self.pending = "done", []
                return "closed"
        return None

    @property
    def converged(self) -> bool:
        """Whether the valley rule found a window (else `averaged` falls back)."""
        return self.final is not None or self.fixed_window

    def averaged(self) -> WeightSum | None:
        """The window's weight sum so far: the valley's, the fixed window's, or (the metric
        never stopped improving) the last ``n_converge`` segments'. None if nothing was
        collected."""
        if self.final is not None:
            return self.final
        if self.fixed_window:
            return self.current
        segs = self.queue or ([self.current] if self.current is not None else [])
        if not segs:
            return None
        total = segs[0].copy()
        for s in segs[1:]:
            total.add(s)
        return total

    def state_dict(self) -> dict:
        state = lambda s: s.state() if s is not None else None  # noqa: E731
        return dict(phase=self.phase, best=self.best, current=state(self.current),
                    queue=[s.state() for s in self.queue],
                    pending=[s.state() for s in self.pending], final=state(self.final))

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.phase, self.best = state["phase"], float(state["best"])
        self.current = WeightSum.from_state(state["current"], device)
        self.final = WeightSum.from_state(state["final"], device)
        self.queue = [WeightSum.from_state(s, device) for s in state["queue"]]
        self.pending = [WeightSum.from_state(s, device) for s in state["pending"]]
