"""CostHook: what every run cost (FLOPs, wall time per phase, energy), per epoch and in total.

Add ``dict(type='CostHook')`` to ``custom_hooks``. Per epoch (or per window of iterations in an
iteration-based loop) the costs go to the logger, the message hub (``cost/epoch``) and the
visualizer (``cost/*`` scalars, so TensorBoard shows them); at the end of the run ``cost.json``
in the work dir holds totals, per-epoch rows, the methods in use and the machine (schema in
`dgsamp.cost.report`).

How it measures, cheaply (docs/cost.md has the details and the measured overhead):
- FLOPs: the first ``flop_iters`` steps of each epoch run under one ``FlopCounterMode``; the
  per-sample counts are scaled by the samples actually trained. A skipped epoch (GradSamp) runs
  no step and counts only its sampling work (an estimate, labelled).
- Time: every step's duration and data wait are measured; the split into forward (model
  forward hooks), backward (optim wrapper ``backward``) and optimizer (``step``/``zero_grad``)
  comes from every ``time_interval``-th step, with CUDA synchronized at the boundaries only there.
- Energy: meters read at epoch boundaries (`dgsamp.cost.energy`).
The wrappers are instance attributes put on the runner's model and optim wrapper for the
duration of training and taken off afterwards.
"""

from __future__ import annotations

import functools
import os
import re
import statistics
import time
from typing import Any

import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from dgsamp.cost.energy import default_meters
from dgsamp.cost.flops import StepFlopCounter, optimizer_flops_per_step, sampling_flops
from dgsamp.cost.report import (
    SCHEMA,
    config_summary,
    machine_info,
    measure,
    methods_from_cfg,
    sum_measure,
    unavailable,
    write_json,
)
from dgsamp.cost.timing import PhaseTimer, cuda_sync, scale_phases

FLOP_SOURCE = ("FlopCounterMode (torch.utils.flop_counter), {k} of {n} steps counted, "
               "scaled by samples")
TIME_SOURCE = "perf_counter"
_ROWS_STEPS = re.compile(r"(, \d+ of \d+ steps counted|, \d+ steps)")
PHASE_SOURCE = ("perf_counter on {k} of {n} steps (model forward hooks, optim wrapper backward / "
                "step+zero_grad{sync}), fractions applied to the measured step time")
EFFECTIVE_SOURCE = ("FlopCounterMode dense backward with each dithered module's count x its "
                    "grad_density (nnz/numel of the quantized output gradient)")


_MISSING = object()


def _batch_size(data_batch: Any) -> int | None:
    inputs = data_batch.get("inputs") if isinstance(data_batch, dict) else None
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0]) if inputs.dim() else None
    if isinstance(inputs, (list, tuple)):
        return len(inputs)
    return None


@HOOKS.register_module()
class CostHook(Hook):
    """Measure and report a run's training cost.

    Args:
        flop_iters: steps at the start of each epoch (window) counted with FlopCounterMode.
        flop_interval: also count every n-th step (for per-iteration schedules); None: off.
        time_interval: every n-th step is split into phases; None: 1 on CPU, 10 with CUDA (a
            timed CUDA step synchronizes the device).
        window: iterations per row in iteration-based loops; None: the loop's ``val_interval``
            when that gives at least two rows, else a tenth of ``max_iters``.
        cpu_watts_per_core: watts per busy core for the CPU energy estimate (used when RAPL is
            unreadable).
        rapl_root: powercap folder (tests point it elsewhere).
        file_name: report name in ``runner.work_dir``.
    """

    priority = "VERY_HIGH"

    def __init__(self, flop_iters: int = 2, flop_interval: int | None = None,
                 time_interval: int | None = None, window: int | None = None,
                 cpu_watts_per_core: float = 7.0, rapl_root: str = "/sys/class/powercap",
                 file_name: str = "cost.json"):
        if flop_iters < 0:
            raise ValueError(f"flop_iters must be >= 0, got {flop_iters}")
        self.flop_iters = int(flop_iters)
        self.flop_interval = flop_interval
        self.time_interval = time_interval
        self.window = window
        self.cpu_watts_per_core = float(cpu_watts_per_core)
        self.rapl_root = rapl_root
        self.file_name = file_name
        self.metrics: dict[str, Any] = {}
        self.rows: list[dict[str, Any]] = []
        self._trained = False

    # ------------------------------------------------------------------ set-up and tear-down
    def settings(self) -> dict[str, Any]:
        return dict(flop_iters=self.flop_iters, flop_interval=self.flop_interval,
                    time_interval=self._time_interval, window=self._window,
                    cpu_watts_per_core=self.cpu_watts_per_core)

    def before_run(self, runner) -> None:
        self._t_run0 = time.perf_counter()
        self.meters = default_meters(self.cpu_watts_per_core, self.rapl_root)
        self._e_run0 = self._read_meters()

    def before_train(self, runner) -> None:
        if not hasattr(self, "meters"):  # before_run not called (a custom loop)
            self.before_run(runner)
        self._trained = True
        self.rows = []
        self._cuda = torch.cuda.is_available()
        self._time_interval = self.time_interval or (10 if self._cuda else 1)
        self._world = get_world_size()
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self._model = model
        self._counter = StepFlopCounter(model)
        self._timer = PhaseTimer(sync=self._cuda)
        loop = runner.train_loop
        self._by_iter = not hasattr(loop, "max_epochs") or "Iter" in type(loop).__name__
        self._window = None
        if self._by_iter:
            self._window = self.window or self._default_window(loop)
        self._opt_step_flops, self._opt_source = optimizer_flops_per_step(
            self._first_optimizer(runner), model)
        self._sampling_flops, self._sampling_source = sampling_flops(model)
        self._val_s = 0.0
        self._own_s = 0.0
        self._overhead_s = 0.0
        self._all_iter_s: list[float] = []
        self._n_flop_total = 0
        self._install(runner)
        self._t_train0 = time.perf_counter()
        self._e_train0 = self._read_meters()
        self._row = None
        self._cursor, self._e_cursor = self._t_train0, self._e_train0
        self._last_iter_end = time.perf_counter()
        self._next_iter = runner.iter

    @staticmethod
    def _default_window(loop) -> int:
        gs = getattr(loop, "gradsamp", None)  # rows line up with GradSamp's windows
        if getattr(gs, "window", None):
            return int(gs.window)
        max_iters = int(getattr(loop, "max_iters", 0) or 0)
        val = int(getattr(loop, "val_interval", 0) or 0)
        if val and max_iters and val * 2 <= max_iters:
            return val
        return max(1, max_iters // 10)

    @staticmethod
    def _optim_wrappers(runner) -> list:
        ow = runner.optim_wrapper
        inner = getattr(ow, "optim_wrappers", None)
        return list(inner.values()) if isinstance(inner, dict) else [ow]

    def _first_optimizer(self, runner):
        for ow in self._optim_wrappers(runner):
            if getattr(ow, "optimizer", None) is not None:
                return ow.optimizer
        return None

    def _install(self, runner) -> None:
        """Wrap train_step, backward, step and zero_grad; hook the model's forward."""
        timer, counter, hook = self._timer, self._counter, self
        model = runner.model
        orig_train_step = model.train_step

        def train_step(*args, **kwargs):
            timer.begin(hook._time_now)
            if hook._time_now and timer.sync:
                cuda_sync()
            t0 = time.perf_counter()
            try:
                if hook._flop_now:
                    with counter.step(samples=hook._bs):
                        return orig_train_step(*args, **kwargs)
                return orig_train_step(*args, **kwargs)
            finally:
                if hook._time_now and timer.sync:
                    cuda_sync()
                hook._step_s = time.perf_counter() - t0
                hook._phases = dict(timer.current, step=hook._step_s)
                timer.begin(False)

        self._wrapped = []
        self._put(model, "train_step", train_step)

        for ow in self._optim_wrappers(runner):
            orig_backward, orig_step, orig_zero = ow.backward, ow.step, ow.zero_grad

            def backward(*args, _orig=orig_backward, **kwargs):
                with timer.phase("backward"), counter.backward():
                    return _orig(*args, **kwargs)

            def step(*args, _orig=orig_step, **kwargs):
                hook._row_opt_steps += 1
                with timer.phase("optimizer"), counter.optimizer():
                    return _orig(*args, **kwargs)

            def zero_grad(*args, _orig=orig_zero, **kwargs):
                with timer.phase("optimizer"):
                    return _orig(*args, **kwargs)

            for name, fn in (("backward", backward), ("step", step), ("zero_grad", zero_grad)):
                self._put(ow, name, fn)

        self._handles = [
            self._model.register_forward_pre_hook(lambda *_: timer.start("forward")),
            self._model.register_forward_hook(lambda *_: timer.stop("forward")),
        ]
        self._flop_now = self._time_now = False
        self._bs = None
        self._row_opt_steps = 0

    def _put(self, obj, name: str, fn) -> None:
        """Set ``obj.name = fn`` for the run, remembering what to put back. Attributes of the
        original (mmengine's parameter schedulers mark ``step`` with ``_with_counter``) are
        copied so that code inspecting them sees no change."""
        orig = getattr(obj, name)
        functools.update_wrapper(fn, orig, assigned=(), updated=())
        try:
            fn.__dict__.update(getattr(orig, "__dict__", {}))
        except (AttributeError, TypeError):
            pass
        own = vars(obj).get(name, _MISSING)
        setattr(obj, name, fn)
        self._wrapped.append((obj, name, own))

    def _uninstall(self) -> None:
        for obj, name, own in reversed(getattr(self, "_wrapped", [])):
            if own is _MISSING:
                vars(obj).pop(name, None)
            else:
                setattr(obj, name, own)
        self._wrapped = []
        for h in getattr(self, "_handles", []):
            h.remove()
        self._handles = []

    def _read_meters(self) -> dict[str, float | None]:
        return {k: m.read() for k, m in self.meters.items()}

    # ------------------------------------------------------------------ rows
    def _open_row(self, runner) -> None:
        """A row starts where the last one (or the validation after it) ended, so that work
        between epochs (GradSamp's sampled update runs before ``before_train_epoch``) is in it."""
        self._row = dict(
            index=len(self.rows), epoch=runner.epoch, iter_start=runner.iter, t0=self._cursor,
            e0=self._e_cursor, iters=0, samples=0, samples_known=True, data_s=0.0,
            flop_steps=[], flop_iter_s=[], flop_step_s=[], plain_iter_s=[], plain_step_s=[],
            timed=[], val=[],
        )
        self._row_opt_steps = 0

    def before_train_epoch(self, runner) -> None:
        if self._by_iter:
            return
        t = time.perf_counter()
        self._open_row(runner)
        self._last_iter_end = time.perf_counter()
        self._own_s += self._last_iter_end - t

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        t = time.perf_counter()
        if self._by_iter and runner.iter > self._next_iter:
            # Iterations jumped (a skipped window): close what ran, then a skipped row.
            if self._row is not None and self._row["iters"]:
                self._close_row(runner, end_iter=self._next_iter)
            if self._row is None:
                self._open_row(runner)
            self._row["iter_start"] = self._next_iter
            self._close_row(runner, end_iter=runner.iter, t_end=t)
            self._last_iter_end = t
        if self._row is None:
            self._open_row(runner)
        row = self._row
        row["data_s"] += t - self._last_iter_end
        i = row["iters"]
        self._flop_now = i < self.flop_iters or bool(
            self.flop_interval and i % self.flop_interval == self.flop_interval - 1)
        self._time_now = (not self._flop_now) and (i - self.flop_iters) % self._time_interval == 0
        self._bs = _batch_size(data_batch)
        self._t_iter0 = time.perf_counter()
        self._step_s = 0.0
        self._phases = {}
        self._own_s += self._t_iter0 - t

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        t = time.perf_counter()
        row = self._row
        iter_s = t - self._t_iter0
        row["iters"] += 1
        if self._bs is None:
            row["samples_known"] = False
        else:
            row["samples"] += self._bs
        if self._flop_now and self._counter.result is not None:
            res = self._counter.result
            self._counter.result = None
            row["flop_steps"].append(dict(
                forward=res.forward, backward=res.backward, eff=res.backward_effective,
                optimizer=res.optimizer, samples=res.samples, densities=res.densities,
                keep=self._keep_mean()))
            row["flop_iter_s"].append(iter_s)
            row["flop_step_s"].append(self._step_s)
            self._n_flop_total += 1
        else:
            row["plain_iter_s"].append(iter_s)
            row["plain_step_s"].append(self._step_s)
            self._all_iter_s.append(iter_s)
        if self._time_now and self._phases:
            row["timed"].append(self._phases)
        self._flop_now = self._time_now = False
        self._next_iter = runner.iter + 1
        if self._by_iter and (runner.iter + 1) % self._window == 0:
            self._close_row(runner, end_iter=runner.iter + 1)
        self._last_iter_end = time.perf_counter()
        self._own_s += self._last_iter_end - t

    def after_train_epoch(self, runner) -> None:
        if not self._by_iter:
            self._close_row(runner, end_iter=runner.iter)

    def after_train(self, runner) -> None:
        if self._by_iter and self._row is not None and self._row["iters"]:
            self._close_row(runner, end_iter=runner.iter)
        self._uninstall()
        self._t_train1 = time.perf_counter()
        self._e_train1 = self._read_meters()

    def _keep_mean(self) -> float | None:
        keeps = [float(m.keep) for m in self._model.modules()
                 if hasattr(m, "keep") and not hasattr(m, "grad_density")
                 and isinstance(m.keep, (int, float))]
        return sum(keeps) / len(keeps) if keeps else None

    def _close_row(self, runner, end_iter: int, t_end: float | None = None) -> None:
        t = time.perf_counter()
        row = self._row
        if row is None:
            self._open_row(runner)
            row = self._row
        t_end = t if t_end is None else t_end
        e1 = self._read_meters()
        out = self._summarise(row, end_iter, t_end, e1, runner)
        self.rows.append(out)
        self._row = None
        self._cursor, self._e_cursor = t_end, e1
        self._own_s += time.perf_counter() - t
        self._publish(runner, out)

    def _summarise(self, row, end_iter, t_end, e1, runner) -> dict[str, Any]:
        n, fs = row["iters"], row["flop_steps"]
        skipped = n == 0
        src: dict[str, str] = {}
        flops: dict[str, float | None] = {}
        w = self._world
        if skipped:
            flops.update(forward=0, backward=0, backward_effective=0, optimizer=0,
                         sampling=self._sampling_flops * w)
            src["flops.sampling"] = self._sampling_source
            src["flops"] = "no training step ran (skipped epoch): forward/backward/optimizer 0"
        else:
            flops["sampling"] = 0
            if fs:
                per_sample = row["samples_known"] and all(s["samples"] for s in fs)
                if per_sample:
                    denom = sum(s["samples"] for s in fs)
                    scale = row["samples"] / denom
                else:
                    scale = n / len(fs)
                flops["forward"] = sum(s["forward"] for s in fs) * scale * w
                flops["backward"] = sum(s["backward"] for s in fs) * scale * w
                flops["backward_effective"] = sum(s["eff"] for s in fs) * scale * w
                counted_opt = sum(s["optimizer"] for s in fs) * scale * w
                src["flops"] = FLOP_SOURCE.format(k=len(fs), n=n) + (
                    f", x{w} ranks" if w > 1 else "")
                src["flops.backward_effective"] = (
                    EFFECTIVE_SOURCE if any(s["densities"] for s in fs)
                    else "equal to dense backward (no dithered layers)")
            else:
                flops.update(forward=None, backward=None, backward_effective=None)
                counted_opt = 0
                src["flops"] = "unavailable: no step counted (flop_iters=0)"
            flops["optimizer"] = counted_opt + self._opt_step_flops * self._row_opt_steps * w
            src["flops.optimizer"] = (self._opt_source + f", {self._row_opt_steps} steps"
                                      + (" + FlopCounterMode counts" if counted_opt else ""))
        parts = [flops.get(k) for k in ("forward", "backward", "optimizer", "sampling")]
        flops["train"] = None if any(p is None for p in parts) else sum(parts)
        eparts = [flops.get(k) for k in ("forward", "backward_effective", "optimizer", "sampling")]
        flops["train_effective"] = None if any(p is None for p in eparts) else sum(eparts)

        # -- time (validation that ran inside the row is not the row's)
        val_s = sum(dt for dt, _ in row["val"])
        epoch_s = t_end - row["t0"] - val_s
        plain = row["plain_iter_s"]
        ref = statistics.median(plain) if plain else (
            statistics.median(self._all_iter_s) if self._all_iter_s else None)
        overhead = sum(max(0.0, s - ref) for s in row["flop_iter_s"]) if ref is not None else 0.0
        self._overhead_s += overhead
        # Step time without the counting: counted steps are replaced by the median plain step.
        if row["plain_step_s"]:
            step_total = (sum(row["plain_step_s"])
                          + statistics.median(row["plain_step_s"]) * len(row["flop_step_s"]))
        else:
            step_total = sum(row["flop_step_s"]) - overhead
        ph = scale_phases(row["timed"], step_total, n) if n else dict(
            forward=0.0, backward=0.0, optimizer=0.0, other=0.0)
        time_s: dict[str, float | None] = dict(epoch=epoch_s, data=row["data_s"] if n else 0.0,
                                               val=val_s)
        for p in ("forward", "backward", "optimizer"):
            time_s[p] = ph[p]
        known = [time_s[k] for k in ("data", "forward", "backward", "optimizer")]
        time_s["measuring_overhead"] = overhead
        time_s["other"] = (None if any(v is None for v in known)
                           else max(0.0, epoch_s - sum(known) - overhead))
        src["time_s.epoch"] = TIME_SOURCE + " (validation excluded)"
        src["time_s.val"] = "perf_counter (validation inside or right after this row)"
        src["time_s.data"] = "perf_counter between steps (data loading and iteration hooks)"
        if n:
            src["time_s.phases"] = (PHASE_SOURCE.format(
                k=len(row["timed"]), n=n, sync=", CUDA synchronized" if self._cuda else "")
                if row["timed"] else "unavailable: no timed step in this epoch")
        else:
            src["time_s.phases"] = "no training step ran (skipped epoch): 0"
        src["time_s.measuring_overhead"] = (
            "perf_counter: FLOP-counted steps' excess over the median uncounted step")
        src["time_s.other"] = "epoch minus data, phases and measuring overhead (hooks, sampling)"

        energy: dict[str, float | None] = {}
        for k, m in self.meters.items():
            energy[k] = m.delta(row["e0"].get(k), e1.get(k))
            for _, de in row["val"]:
                energy[k] = None if energy[k] is None or de.get(k) is None else energy[k] - de[k]
            src[f"energy_j.{k}"] = m.source if m.available else f"unavailable: {m.reason}"
        energy["total"], src["energy_j.total"] = self._energy_total(energy)

        densities = [d for s in fs for d in s["densities"].values()]
        keeps = [s["keep"] for s in fs if s["keep"] is not None]
        return dict(
            epoch=row["epoch"] + 1 if not self._by_iter else row["index"] + 1,
            kind="skipped" if skipped else "trained",
            iter_start=row["iter_start"], iter_end=end_iter, iterations=n,
            samples=row["samples"] * w if row["samples_known"] else None,
            flops=flops, time_s=time_s, energy_j=energy,
            sparsity=dict(ssprop_keep_mean=sum(keeps) / len(keeps) if keeps else None,
                          dither_grad_density_mean=(sum(densities) / len(densities)
                                                    if densities else None)),
            sources=src,
        )

    def _energy_total(self, energy: dict) -> tuple[float | None, str]:
        gpu, rapl, est = (self.meters[k] for k in ("gpu_nvml", "cpu_rapl", "cpu_estimate"))
        parts, names = [], []
        if gpu.available and energy.get("gpu_nvml") is not None:
            parts.append(energy["gpu_nvml"])
            names.append("gpu_nvml")
        cpu = "cpu_rapl" if rapl.available and energy.get("cpu_rapl") is not None else (
            "cpu_estimate" if energy.get("cpu_estimate") is not None else None)
        if cpu:
            parts.append(energy[cpu])
            names.append(cpu)
        if not parts:
            return None, "unavailable: no energy meter"
        note = "" if (gpu.available or not self._cuda) else " (GPU energy unavailable: partial)"
        return sum(parts), "sum of " + " + ".join(names) + note

    # ------------------------------------------------------------------ output
    def _publish(self, runner, row: dict) -> None:
        t = time.perf_counter()
        runner.message_hub.update_info("cost/epoch", row)
        scalars = {f"cost/{k}_flops": v for k, v in row["flops"].items() if v is not None}
        scalars.update({f"cost/{k}_s": v for k, v in row["time_s"].items() if v is not None})
        scalars.update({f"cost/energy_{k}_j": v for k, v in row["energy_j"].items()
                        if v is not None})
        step = row["epoch"] if not self._by_iter else row["iter_end"]
        try:
            runner.visualizer.add_scalars(scalars, step=step)
        except Exception as e:  # a backend failure must not stop training
            runner.logger.warning(f"CostHook: visualizer.add_scalars failed: {e}")
        f, ts, e = row["flops"], row["time_s"], row["energy_j"]
        gf = "n/a" if f["train"] is None else f"{f['train'] / 1e9:.3g}"
        ge = "" if f["train_effective"] in (None, f["train"]) else (
            f" (effective {f['train_effective'] / 1e9:.3g})")
        en = "unavailable" if e["total"] is None else f"{e['total']:.4g} J"
        unit = "window" if self._by_iter else "epoch"
        runner.logger.info(
            f"cost {unit} {row['epoch']} [{row['kind']}]: {gf} GFLOP{ge}, {ts['epoch']:.2f} s "
            f"(data {self._fmt(ts['data'])}, fwd {self._fmt(ts['forward'])}, "
            f"bwd {self._fmt(ts['backward'])}, opt {self._fmt(ts['optimizer'])}), energy {en}")
        if is_main_process():
            self._write(runner, complete=False)
        self._own_s += time.perf_counter() - t

    @staticmethod
    def _fmt(v) -> str:
        return "n/a" if v is None else f"{v:.2f}s"

    def before_val_epoch(self, runner) -> None:
        if hasattr(self, "meters"):
            self._t_val0, self._e_val0 = time.perf_counter(), self._read_meters()

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        if hasattr(self, "_t_val0") and self._trained and hasattr(self, "_cursor"):
            t, e = time.perf_counter(), self._read_meters()
            dt = t - self._t_val0
            de = {k: m.delta(self._e_val0.get(k), e.get(k)) for k, m in self.meters.items()}
            self._val_s += dt
            if self._row is not None:
                # validation inside a row (a skipped iteration window): taken out of its time
                self._row["val"].append((dt, de))
            else:
                if self.rows:
                    r = self.rows[-1]
                    r["time_s"]["val"] = r["time_s"].get("val", 0.0) + dt
                self._cursor, self._e_cursor = t, e
            self._last_iter_end = max(self._last_iter_end, t)
        if metrics:
            self.metrics["val"] = {k: float(v) if isinstance(v, (int, float)) else v
                                   for k, v in metrics.items()}
            self.metrics["val_epoch"] = runner.epoch
            self.metrics["val_iter"] = runner.iter

    def after_test_epoch(self, runner, metrics: dict | None = None) -> None:
        if not metrics:
            return
        self.metrics["test"] = {k: float(v) if isinstance(v, (int, float)) else v
                                for k, v in metrics.items()}
        path = os.path.join(runner.work_dir, self.file_name)
        if not self._trained and is_main_process() and os.path.exists(path):
            # a test after a finished training run: add the metrics to its report
            import json
            with open(path) as fh:
                data = json.load(fh)
            data.setdefault("metrics", {})["test"] = self.metrics["test"]
            write_json(path, data)

    def after_run(self, runner) -> None:
        if self._trained and is_main_process():
            self._write(runner, complete=True)
            runner.logger.info(f"cost report: {os.path.join(runner.work_dir, self.file_name)}")
        self._uninstall()

    # ------------------------------------------------------------------ report
    def report(self, runner, complete: bool) -> dict[str, Any]:
        now = time.perf_counter()
        run_s = now - self._t_run0
        rows = self.rows
        done = hasattr(self, "_t_train1")
        train_s = (self._t_train1 if done else now) - self._t_train0
        e_end = self._read_meters()
        e_train_end = self._e_train1 if done else e_end

        def fsum(key):
            srcs = []
            for r in rows:
                if not r["flops"].get(key):
                    continue  # rows with 0 of it (e.g. sampling in trained epochs) add nothing
                s = r["sources"].get(f"flops.{key}", r["sources"].get("flops", ""))
                s = _ROWS_STEPS.sub("", s)
                if s not in srcs:
                    srcs.append(s)
            return sum_measure((r["flops"][key] for r in rows),
                               "sum over epochs of: " + ("; ".join(srcs) or "0"),
                               f"{key} not counted in some epochs")

        def tsum(key, source):
            return sum_measure((r["time_s"].get(key) for r in rows), source,
                               f"{key} not measured in some epochs")

        totals: dict[str, Any] = dict(
            flops={k: fsum(k) for k in ("forward", "backward", "backward_effective", "optimizer",
                                        "sampling", "train", "train_effective")},
            time_s=dict(
                run=measure(run_s, "perf_counter, before_run to report"),
                train=measure(train_s, "perf_counter, before_train to after_train"),
                data=tsum("data", "sum of epoch rows (perf_counter between steps)"),
                forward=tsum("forward", "sum of epoch rows (sampled phase split)"),
                backward=tsum("backward", "sum of epoch rows (sampled phase split)"),
                optimizer=tsum("optimizer", "sum of epoch rows (sampled phase split)"),
                other=tsum("other", "sum of epoch rows"),
                val=measure(self._val_s, "perf_counter, before_val_epoch to after_val_epoch"),
            ),
            energy_j=self._energy_measures(self._e_run0, e_end, "whole run"),
            energy_train_j=self._energy_measures(self._e_train0, e_train_end, "training"),
            epochs=dict(trained=sum(r["kind"] == "trained" for r in rows),
                        skipped=sum(r["kind"] == "skipped" for r in rows)),
            iterations=sum(r["iterations"] for r in rows),
            samples=(None if any(r["samples"] is None for r in rows)
                     else sum(r["samples"] for r in rows)),
        )
        own = self._own_s + self._overhead_s
        overhead = dict(
            seconds=measure(own, "perf_counter: FLOP-counted steps' excess over the median "
                            "step + time inside the hook's own callbacks"),
            fraction_of_run=measure(own / run_s if run_s > 0 else None,
                                    "overhead seconds / run seconds"),
            flop_counted_steps=self._n_flop_total,
            note="A/B measurement (runs with and without CostHook): docs/cost.md",
        )
        loop = runner.train_loop
        run = dict(work_dir=runner.work_dir, loop="iter" if self._by_iter else "epoch",
                   max_epochs=getattr(loop, "max_epochs", None),
                   max_iters=getattr(loop, "max_iters", None), world_size=self._world,
                   timestamp=getattr(runner, "timestamp", None), seed=getattr(runner, "seed", None),
                   experiment=getattr(runner, "experiment_name", None), complete=complete)
        return dict(schema=SCHEMA, run=run, machine=machine_info(),
                    methods=self._methods(runner),
                    config=config_summary(getattr(runner, "cfg", None)),
                    settings=self.settings(), energy_meters={
                        k: m.describe() for k, m in self.meters.items()},
                    totals=totals, epochs=rows, overhead=overhead, metrics=self.metrics)

    @staticmethod
    def _methods(runner) -> list[dict[str, Any]]:
        """The config's custom hooks; for a runner built without a config, the hooks it holds
        that are not mmengine's own (by class name only: their arguments are not known)."""
        methods = methods_from_cfg(getattr(runner, "cfg", None))
        if methods:
            return methods
        return [dict(type=type(h).__name__, note="from runner.hooks (no config)")
                for h in runner.hooks if not type(h).__module__.startswith("mmengine.")]

    def _energy_measures(self, a: dict, b: dict, what: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        deltas = {}
        for k, m in self.meters.items():
            v = m.delta(a.get(k), b.get(k))
            deltas[k] = v
            out[k] = measure(v, f"{m.source}, {what}") if m.available and v is not None else (
                unavailable(m.reason or "meter failed"))
        total, src = self._energy_total(deltas)
        out["total"] = measure(total, src) if total is not None else unavailable(src)
        return out

    def _write(self, runner, complete: bool) -> None:
        os.makedirs(runner.work_dir, exist_ok=True)
        write_json(os.path.join(runner.work_dir, self.file_name), self.report(runner, complete))
