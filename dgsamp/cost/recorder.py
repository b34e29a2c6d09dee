"""Training events in, ledger rows out: the bookkeeping between a training loop and the ledger.

`CostRecorder` is told what the loop does (a run starts, training starts at epoch/iteration
n, an epoch begins, a step begins and ends, a validation runs, a checkpoint is written,
iterations jump over a skipped window) and keeps the `CostLedger` up to date: it opens a
`RowDraft` per epoch (or per ``window`` iterations), arms the `StepProbe` for each step (count
FLOPs on the first ``flop_iters`` steps of a row, split every ``time_every``-th into phases),
closes rows with their wall time and meter deltas, and keeps the current `Segment`'s run and
train time and energy current. Any loop can drive it; `dgsamp.engine.cost_hook.CostHook`
translates mmengine's hook events.

Times are ``time.perf_counter``; meters are read through ``read`` (under DDP the caller sums
the ranks' readings there, and every rank makes the same calls).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from .energy import EnergyMeters
from .ledger import CostLedger, Row
from .probe import StepProbe
from .rows import RowContext, RowDraft, StepRecord

__all__ = ["CostRecorder"]

Reading = dict[str, float | None]


class CostRecorder:
    """Rows from training events.

    Args:
        ledger: where rows and segment figures go.
        meters: the energy meters (their sources, deltas and total rule).
        read: returns the meters' reading (summed over ranks under DDP).
        flop_iters, flop_interval, time_every: which steps are counted / split (`CostHook`).
        window: iterations per row for iteration-based loops; None: a row per epoch.
        keep: the current ssProp keep (asked on counted steps only), or None.
        on_row: called with each closed row (logging, writing the partial report).
        run_start: ``(perf_counter, reading)`` when the run (process) started; None: now.
    """

    def __init__(self, ledger: CostLedger, meters: EnergyMeters, read: Callable[[], Reading],
                 flop_iters: int, flop_interval: int | None, time_every: int,
                 window: int | None, keep: Callable[[], float | None] = lambda: None,
                 on_row: Callable[[Row], None] = lambda row: None,
                 run_start: tuple[float, Reading] | None = None):
        self.ledger, self.meters, self.read = ledger, meters, read
        self.flop_iters, self.flop_interval, self.time_every = flop_iters, flop_interval, time_every
        self.window, self.keep, self.on_row = window, keep, on_row
        self.draft: RowDraft | None = None
        self.training = False
        self._plain_steps: list[float] = []
        self._t_train1: float | None = None
        self._e_train1: Reading | None = None
        self._t_run0, self._e_run0 = run_start or (time.perf_counter(), read())

    # ------------------------------------------------------------------ run and training
    def start_training(self, epoch: int, iteration: int, ctx: RowContext,
                       probe: StepProbe) -> None:
        """Training starts (or resumes) at ``epoch`` / ``iteration``: a new segment."""
        self.ctx, self.probe, self.training = ctx, probe, True
        self.ledger.begin_segment(epoch, iteration)
        self._t_train0, self._e_train0 = time.perf_counter(), self.read()
        self._cursor = (self._t_train0, self._e_train0)  # where the next row starts
        self._next_iter, self._fresh, self._samples = iteration, False, None

    def end_training(self, epoch: int, iteration: int) -> None:
        if self.window:
            if iteration > self._next_iter:
                self.jump(epoch, iteration)
            if self.draft is not None and self.draft.steps:
                self.close_row(epoch, iteration)
        self._t_train1, self._e_train1 = time.perf_counter(), self.read()
        self.mark(self._t_train1, self._e_train1)
        self.training = False

    def end_run(self) -> None:
        self.mark(time.perf_counter(), self.read())

    def mark(self, t: float, e: Reading) -> None:
        """Bring the current segment's run/train time and energy up to (t, e)."""
        run = self.meters.delta(self._e_run0, e)
        train = self.meters.delta(self._e_train0, self._e_train1 or e)
        for d in (run, train):
            d["total"], src = self.meters.total(d)
        self.ledger.notes["energy_total_source"] = src
        self.ledger.current.update(run_s=t - self._t_run0, energy_j=run, energy_train_j=train,
                                   train_s=(self._t_train1 or t) - self._t_train0)

    # ------------------------------------------------------------------ rows
    def open_row(self, epoch: int, iteration: int) -> RowDraft:
        index = len(self.ledger.rows) + 1 if self.window else epoch + 1
        self.draft = RowDraft(index=index, iter_start=iteration)
        self._row_start = self._cursor
        return self.draft

    def close_row(self, epoch: int, end_iter: int, t_end: float | None = None) -> Row:
        draft = self.draft or self.open_row(epoch, end_iter)
        (t0, e0), e1 = self._row_start, self.read()
        t_end = time.perf_counter() if t_end is None else t_end
        fallback = statistics.median(self._plain_steps) if self._plain_steps else None
        row = self.ledger.add_row(draft.finish(self.ctx, end_iter, t_end - t0,
                                               self.meters.delta(e0, e1), fallback))
        self.draft, self._cursor = None, (t_end, e1)
        self.ledger.current.update(end_epoch=epoch if self.window else row.index,
                                   end_iter=end_iter)
        self.mark(t_end, e1)
        self.on_row(row)
        return row

    def jump(self, epoch: int, upto: int) -> None:
        """Iterations jumped to ``upto`` (a skipped window): close what ran, then a skipped
        row. The next step's data wait spans the jump, so it does not count as data."""
        t = time.perf_counter()
        if self.draft is not None and self.draft.steps:
            self.close_row(epoch, self._next_iter)
        self.open_row(epoch, self._next_iter)
        self.close_row(epoch, upto, t_end=t)
        self._next_iter, self._fresh = upto, True

    def begin_step(self, epoch: int, iteration: int, samples: int | None) -> None:
        if self.window and iteration > self._next_iter:
            self.jump(epoch, iteration)
        draft = self.draft or self.open_row(epoch, iteration)
        i, k = draft.steps, self.flop_interval
        count = i < self.flop_iters or bool(k and i % k == k - 1)
        self._samples = samples
        self.probe.arm(count, (not count) and (i - self.flop_iters) % self.time_every == 0,
                       samples)

    def end_step(self, epoch: int, iteration: int, data_s: float | None) -> None:
        """Step ``iteration`` ended; ``data_s``: its data wait (None: not measured)."""
        m = self.probe.take()
        if self._fresh and data_s is not None:
            data_s = 0.0
        self.draft.add_step(StepRecord(m.step_s, data_s, self._samples, m.optimizer_steps,
                                       m.flops, self.keep() if m.flops is not None else None,
                                       m.phases))
        if m.flops is None:
            self._plain_steps.append(m.step_s)
        self._next_iter, self._fresh = iteration + 1, False
        if self.window and (iteration + 1) % self.window == 0:
            self.close_row(epoch, iteration + 1)

    # ------------------------------------------------------------------ validation, checkpoints
    def begin_val(self) -> None:
        self._t_val0, self._e_val0 = time.perf_counter(), self.read()

    def end_val(self) -> None:
        """Validation time is the run's, not a row's; inside a row it is taken out of it."""
        t, e = time.perf_counter(), self.read()
        dt, de = t - self._t_val0, self.meters.delta(self._e_val0, e)
        self.ledger.current.val_s += dt
        if self.draft is not None:
            self.draft.add_val(dt, de)
            self._fresh = bool(self.window)  # the next data wait spans the validation
        else:
            if self.ledger.rows:
                self.ledger.rows[-1].time_s["val"] += dt
            self._cursor = (t, e)
        self.mark(t, e)

    def state_for_checkpoint(self, epoch: int, next_iter: int) -> dict[str, Any]:
        """The ledger's state for a checkpoint taken before iteration ``next_iter``. A row open
        in an iteration loop is closed first, so that a run resumed there misses nothing."""
        if self.window:
            if next_iter > self._next_iter:
                self.jump(epoch, next_iter)
            if self.draft is not None and self.draft.steps:
                self.close_row(epoch, self._next_iter)
        return self.ledger.state_dict()
