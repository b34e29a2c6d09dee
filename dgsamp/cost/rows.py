"""From step measurements to a ledger `Row`: the arithmetic of one epoch (or window).

A `RowDraft` collects what each training step of the row measured (its duration, its data
wait, the FLOPs of counted steps, the phase split of timed steps, validation run inside the
row); `RowDraft.finish` turns that into a `Row`:

- FLOPs: the counted steps' per-sample counts scaled by the samples the row trained (by steps
  when a batch size is unknown), times the world size; the optimizer adds its per-step
  estimate for every step; a row without steps (GradSamp skipped it) counts its sampling.
- Time: the counted steps are replaced by the median uncounted step, their excess is the
  measuring overhead; the timed steps' phase fractions are applied to the step total.
- Energy: the row's meter delta less what its validations used.

Plain Python (`dgsamp.cost.ledger` holds the result).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from .flops import StepFlops
from .ledger import Row, Source
from .timing import scale_phases

__all__ = ["RowContext", "RowDraft", "StepRecord"]

FLOP_METHOD = "FlopCounterMode (torch.utils.flop_counter), scaled by {by}"
EFFECTIVE_SOURCE = ("FlopCounterMode dense backward with each dithered module's count x its "
                    "grad_density (nnz/numel of the quantized output gradient)")
PHASE_METHOD = ("perf_counter (model forward hooks, optim wrapper backward / step+zero_grad"
                "{sync}), fractions applied to the measured step time")
DATA_SOURCE = "mmengine IterTimerHook train/data_time (data loading and iteration hooks)"


@dataclass
class StepRecord:
    """One training step: its ``train_step`` seconds, the data wait before it (None: not
    measured), its batch size, and the FLOPs (counted steps) / phase split (timed steps)."""

    step_s: float
    data_s: float | None = None
    samples: int | None = None
    optimizer_steps: int = 0
    flops: StepFlops | None = None
    keep: float | None = None
    phases: dict[str, float] | None = None


@dataclass
class RowContext:
    """What every row of a run shares: world size, the optimizer and sampling estimates,
    whether CUDA steps were synchronized, and the energy meters' sources and total rule."""

    world_size: int
    optimizer_flops: int
    optimizer_source: str
    sampling_flops: int
    sampling_source: str
    cuda: bool
    energy_sources: dict[str, Source]
    energy_total: Callable[[dict[str, float | None]], tuple[float | None, str]]


@dataclass
class RowDraft:
    """A row being measured. ``index``: the epoch (window) number from 1."""

    index: int
    iter_start: int
    steps: int = 0
    samples: int | None = 0
    data_s: float | None = 0.0
    optimizer_steps: int = 0
    counted: list[StepRecord] = field(default_factory=list)
    plain_step_s: list[float] = field(default_factory=list)
    timed: list[dict[str, float]] = field(default_factory=list)
    val: list[tuple[float, dict[str, float | None]]] = field(default_factory=list)

    def add_step(self, s: StepRecord) -> None:
        self.steps += 1
        self.samples = None if self.samples is None or s.samples is None else (
            self.samples + s.samples)
        self.data_s = None if self.data_s is None or s.data_s is None else self.data_s + s.data_s
        self.optimizer_steps += s.optimizer_steps
        if s.flops is not None:
            self.counted.append(s)
        else:
            self.plain_step_s.append(s.step_s)
        if s.phases is not None:
            self.timed.append(dict(s.phases, step=s.step_s))

    def add_val(self, seconds: float, energy: dict[str, float | None]) -> None:
        """A validation that ran inside this row: taken out of its time and energy."""
        self.val.append((seconds, energy))

    # ------------------------------------------------------------------ the arithmetic
    def _flops(self, ctx: RowContext, src: dict[str, Source]) -> dict[str, float | None]:
        n, fs, w = self.steps, [s.flops for s in self.counted], ctx.world_size
        ranks = f", x{w} ranks" if w > 1 else ""
        if n == 0:
            src["flops.sampling"] = Source(ctx.sampling_source)
            src["flops"] = Source("no training step ran (skipped epoch): "
                                  "forward/backward/optimizer 0")
            return dict(forward=0, backward=0, backward_effective=0, optimizer=0,
                        sampling=ctx.sampling_flops * w)
        flops: dict[str, float | None] = dict(sampling=0)
        counted_opt: float = 0
        if fs:
            if self.samples is not None and all(f.samples for f in fs):
                scale, by = self.samples / sum(f.samples for f in fs), "samples"
            else:
                scale, by = n / len(fs), "steps (batch size unknown)"
            flops["forward"] = sum(f.forward for f in fs) * scale * w
            flops["backward"] = sum(f.backward for f in fs) * scale * w
            flops["backward_effective"] = sum(f.backward_effective for f in fs) * scale * w
            counted_opt = sum(f.optimizer for f in fs) * scale * w
            src["flops"] = Source(FLOP_METHOD.format(by=by) + ranks,
                                  f"{len(fs)} of {n} steps counted")
            src["flops.backward_effective"] = Source(
                EFFECTIVE_SOURCE if any(f.densities for f in fs)
                else "equal to dense backward (no dithered layers)")
        else:
            flops.update(forward=None, backward=None, backward_effective=None)
            src["flops"] = Source(unavailable="no step counted (flop_iters=0)")
        flops["optimizer"] = counted_opt + ctx.optimizer_flops * self.optimizer_steps * w
        src["flops.optimizer"] = Source(
            ctx.optimizer_source + (" + FlopCounterMode counts" if counted_opt else ""),
            f"{self.optimizer_steps} steps")
        return flops

    def _time(self, ctx: RowContext, seconds: float, fallback_step_s: float | None,
              src: dict[str, Source]) -> dict[str, float | None]:
        n, counted = self.steps, [s.step_s for s in self.counted]
        val_s = sum(dt for dt, _ in self.val)
        plain = self.plain_step_s
        ref = statistics.median(plain) if plain else fallback_step_s
        overhead = sum(max(0.0, s - ref) for s in counted) if ref is not None else 0.0
        # Step time without the counting: counted steps are replaced by the median plain step.
        if plain:
            step_total = sum(plain) + statistics.median(plain) * len(counted)
        else:
            step_total = sum(counted) - overhead
        ph = scale_phases(self.timed, step_total, n) if n else dict(
            forward=0.0, backward=0.0, optimizer=0.0, other=0.0)
        epoch_s = seconds - val_s
        time_s: dict[str, float | None] = dict(epoch=epoch_s, data=self.data_s if n else 0.0,
                                               val=val_s)
        for p in ("forward", "backward", "optimizer"):
            time_s[p] = ph[p]
        known = [time_s[k] for k in ("data", "forward", "backward", "optimizer")]
        time_s["measuring_overhead"] = overhead
        time_s["other"] = (None if any(v is None for v in known)
                           else max(0.0, epoch_s - sum(known) - overhead))
        src["time_s.epoch"] = Source("perf_counter (validation excluded)")
        src["time_s.val"] = Source("perf_counter (validation inside or right after this row)")
        src["time_s.data"] = (Source(DATA_SOURCE) if self.data_s is not None else Source(
            unavailable="no IterTimerHook in default_hooks (it publishes train/data_time)"))
        if n:
            sync = ", CUDA synchronized" if ctx.cuda else ""
            src["time_s.phases"] = (Source(PHASE_METHOD.format(sync=sync),
                                           f"{len(self.timed)} of {n} steps timed")
                                    if self.timed else
                                    Source(unavailable="no timed step in this epoch"))
        else:
            src["time_s.phases"] = Source("no training step ran (skipped epoch): 0")
        src["time_s.measuring_overhead"] = Source(
            "perf_counter: FLOP-counted steps' excess over the median uncounted step")
        src["time_s.other"] = Source(
            "epoch minus data, phases and measuring overhead (hooks, sampling)")
        return time_s

    def _energy(self, ctx: RowContext, energy: dict[str, float | None],
                src: dict[str, Source]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for k, v in energy.items():
            for _, de in self.val:
                v = None if v is None or de.get(k) is None else v - de[k]
            out[k] = v
            src[f"energy_j.{k}"] = ctx.energy_sources.get(k, Source(unavailable="no such meter"))
        out["total"], total_src = ctx.energy_total(out)
        src["energy_j.total"] = Source(total_src)
        return out

    def finish(self, ctx: RowContext, iter_end: int, seconds: float,
               energy: dict[str, float | None], fallback_step_s: float | None = None) -> Row:
        """The row: ``seconds`` / ``energy`` are its wall time and meter deltas (validation
        inside it included; it is taken out here); ``fallback_step_s``: a median step of
        earlier rows, for a row whose steps were all counted."""
        src: dict[str, Source] = {}
        flops = self._flops(ctx, src)
        time_s = self._time(ctx, seconds, fallback_step_s, src)
        energy_j = self._energy(ctx, energy, src)
        densities = [d for s in self.counted for d in s.flops.densities.values()]
        keeps = [s.keep for s in self.counted if s.keep is not None]
        return Row(
            kind="skipped" if self.steps == 0 else "trained", index=self.index,
            iter_start=self.iter_start, iter_end=iter_end, steps=self.steps,
            samples=self.samples * ctx.world_size if self.samples is not None else None,
            flops=flops, time_s=time_s, energy_j=energy_j,
            sparsity=dict(ssprop_keep_mean=sum(keeps) / len(keeps) if keeps else None,
                          dither_grad_density_mean=(sum(densities) / len(densities)
                                                    if densities else None)),
            sources=src, counted_steps=len(self.counted))
