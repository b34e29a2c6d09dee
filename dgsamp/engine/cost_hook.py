"""CostHook: what every run cost (FLOPs, wall time per phase, energy), per epoch and in total.

Add ``dict(type='CostHook')`` to ``custom_hooks``. Per epoch (or per window of iterations in an
iteration-based loop) the costs go to the logger, the message hub (``cost/epoch``) and the
visualizer (``cost/*`` scalars); at the end of the run ``cost.json`` in the work dir holds
totals, per-epoch rows, the methods in use and the machine (schema in `dgsamp.cost.report`).

The hook only translates runner events for `dgsamp.cost`: a `StepProbe` on the model and optim
wrappers measures steps, a `CostRecorder` turns events into `CostLedger` rows, and the ledger
makes the report and travels in checkpoints, so that a resumed run's report covers the whole
run (docs/cost.md). The data wait is mmengine's ``IterTimerHook``'s (``train/data_time``);
energy comes from `EnergyMeters` (Zeus), one per DDP rank, summed over ranks.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import torch
from mmengine.dist import all_gather_object, get_local_rank, get_world_size, is_main_process
from mmengine.hooks import Hook, IterTimerHook
from mmengine.registry import HOOKS

from dgsamp.cost.energy import EnergyMeters, sum_over_ranks
from dgsamp.cost.flops import optimizer_flops_per_step, sampling_flops
from dgsamp.cost.ledger import CostLedger, Row
from dgsamp.cost.probe import StepProbe
from dgsamp.cost.recorder import CostRecorder
from dgsamp.cost.report import add_metrics, config_summary, machine_info, methods_from_cfg
from dgsamp.cost.rows import RowContext
from dgsamp.engine.runner_utils import optim_wrappers, unwrap_model
from dgsamp.methods.patch import sparse_stats

STATE_KEY = "dgsamp_cost_ledger"


def _batch_size(data_batch: Any) -> int | None:
    inputs = data_batch.get("inputs") if isinstance(data_batch, dict) else None
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0]) if inputs.dim() else None
    return len(inputs) if isinstance(inputs, (list, tuple)) else None


def _local_rank() -> int:
    """mmengine's local rank where it made a local group, else the launcher's LOCAL_RANK."""
    try:
        return get_local_rank()
    except RuntimeError:  # 'Local process group is not created' (torchrun without init_dist)
        return int(os.environ.get("LOCAL_RANK", 0))


def _plain(metrics: dict) -> dict[str, Any]:
    return {k: float(v) if isinstance(v, (int, float)) else v for k, v in metrics.items()}


def _own_time(fn):
    """Count the callback's duration as the hook's own overhead."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            self.ledger.current.hook_s += time.perf_counter() - t
    return wrapper


@HOOKS.register_module()
class CostHook(Hook):
    """Measure and report a run's training cost.

    Args:
        flop_iters: steps at the start of each epoch (window) counted with FlopCounterMode.
        flop_interval: also count every n-th step (for per-iteration schedules); None: off.
        time_interval: every n-th step is split into phases; None: 1 on CPU, 10 with CUDA (a
            timed CUDA step synchronizes the device).
        window: iterations per row in iteration-based loops; None: the loop's ``window``
            (GradSamp's), else its ``val_interval`` when that gives at least two rows, else a
            tenth of ``max_iters``.
        cpu_watts_per_core: watts per busy core for the CPU estimate (used where Zeus finds no
            RAPL meter).
        grid_gco2_per_kwh: grid carbon intensity; when given, ``totals.co2e_g`` is derived.
        file_name: report name in ``runner.work_dir``.
    """

    priority = "VERY_HIGH"

    def __init__(self, flop_iters: int = 2, flop_interval: int | None = None,
                 time_interval: int | None = None, window: int | None = None,
                 cpu_watts_per_core: float = 7.0, grid_gco2_per_kwh: float | None = None,
                 file_name: str = "cost.json"):
        for name, v, low in (("flop_iters", flop_iters, 0), ("flop_interval", flop_interval, 1),
                             ("time_interval", time_interval, 1), ("window", window, 1)):
            if v is not None and (int(v) != v or v < low):
                raise ValueError(f"CostHook {name}={v!r} must be an integer >= {low}.")
        if grid_gco2_per_kwh is not None and not grid_gco2_per_kwh >= 0:
            raise ValueError(f"CostHook grid_gco2_per_kwh={grid_gco2_per_kwh!r} must be a "
                             "grid intensity in gCO2/kWh (>= 0), e.g. 400.")
        self.flop_iters, self.flop_interval = int(flop_iters), flop_interval
        self.time_interval, self.window = time_interval, window
        self.cpu_watts_per_core, self.grid = float(cpu_watts_per_core), grid_gco2_per_kwh
        self.file_name = file_name
        self.ledger = CostLedger()
        self.recorder: CostRecorder | None = None
        self._loaded: dict | None = None

    def _read(self) -> dict[str, float | None]:
        """This process's meters summed over ranks (every rank calls it at the same points)."""
        return sum_over_ranks(all_gather_object(self.meters.read()))

    @property
    def _training(self) -> bool:
        return self.recorder is not None and self.recorder.training

    # ------------------------------------------------------------------ set-up and tear-down
    def before_run(self, runner) -> None:
        self._world = get_world_size()
        self.meters = EnergyMeters(self.cpu_watts_per_core, meter_cpu=_local_rank() == 0,
                                   world_size=self._world)
        self._t_run0, self._e_run0 = time.perf_counter(), self._read()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(STATE_KEY, {})  # {}: saved without cost state

    def before_train(self, runner) -> None:
        if not hasattr(self, "meters"):  # before_run not called (a custom loop)
            self.before_run(runner)
        model, loop = unwrap_model(runner.model), runner.train_loop
        cuda = torch.cuda.is_available()
        by_iter = not hasattr(loop, "max_epochs") or "Iter" in type(loop).__name__
        window = (self.window or self._default_window(loop)) if by_iter else None
        time_every = self.time_interval or (10 if cuda else 1)
        self.ledger = CostLedger(
            run=dict(work_dir=runner.work_dir, loop="iter" if by_iter else "epoch",
                     max_epochs=getattr(loop, "max_epochs", None),
                     max_iters=getattr(loop, "max_iters", None), world_size=self._world,
                     timestamp=getattr(runner, "timestamp", None),
                     seed=getattr(runner, "seed", None),
                     experiment=getattr(runner, "experiment_name", None)),
            machine=machine_info(), methods=self._methods(runner),
            config=config_summary(getattr(runner, "cfg", None)),
            settings=dict(flop_iters=self.flop_iters, flop_interval=self.flop_interval,
                          time_interval=time_every, window=window,
                          cpu_watts_per_core=self.cpu_watts_per_core, grid_gco2_per_kwh=self.grid),
            energy_meters=self.meters.describe())
        if self._loaded is not None and (runner.iter > 0 or runner.epoch > 0):
            # resumed (load_from leaves both at 0; a loop started later without a checkpoint,
            # as a federated round, is a run of its own)
            if self._loaded:
                self.ledger.load_state_dict(self._loaded)
            else:
                self.ledger.add_unrecorded(0, 0, runner.epoch, runner.iter, "resumed from a "
                                           "checkpoint saved without cost ledger state")
        self._loaded = None
        rec = self.recorder = CostRecorder(
            self.ledger, self.meters, self._read, self.flop_iters, self.flop_interval,
            time_every, window, keep=lambda: sparse_stats(model)["keep"],
            on_row=functools.partial(self._publish, runner),
            run_start=(self._t_run0, self._e_run0))
        opt = next((ow.optimizer for ow in optim_wrappers(runner.optim_wrapper)
                    if getattr(ow, "optimizer", None) is not None), None)
        ctx = RowContext(self._world, *optimizer_flops_per_step(opt, model),
                         *sampling_flops(model), cuda, self.meters.sources(), self.meters.total)
        probe = StepProbe(model, sync=cuda)
        probe.install(runner.model, optim_wrappers(runner.optim_wrapper))
        self._hub_data = any(isinstance(h, IterTimerHook) for h in runner.hooks)
        rec.start_training(runner.epoch, runner.iter, ctx, probe)

    @staticmethod
    def _default_window(loop) -> int:
        window = getattr(loop, "window", None)  # rows line up with GradSamp's windows
        if window:
            return int(window)
        max_iters = int(getattr(loop, "max_iters", 0) or 0)
        val = int(getattr(loop, "val_interval", 0) or 0)
        if val and max_iters and val * 2 <= max_iters:
            return val
        return max(1, max_iters // 10)

    @staticmethod
    def _methods(runner) -> list[dict[str, Any]]:
        """The config's custom hooks; for a runner built without a config, the hooks it holds
        that are not mmengine's own (by class name only: their arguments are not known)."""
        return methods_from_cfg(getattr(runner, "cfg", None)) or [
            dict(type=type(h).__name__, note="from runner.hooks (no config)")
            for h in runner.hooks if not type(h).__module__.startswith("mmengine.")]

    # ------------------------------------------------------------------ training events
    @_own_time
    def before_train_epoch(self, runner) -> None:
        if not self.recorder.window:
            self.recorder.open_row(runner.epoch, runner.iter)

    @_own_time
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.recorder.begin_step(runner.epoch, runner.iter, _batch_size(data_batch))

    @_own_time
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        data = float(runner.message_hub.get_scalar("train/data_time").current()) if (
            self._hub_data) else None
        self.recorder.end_step(runner.epoch, runner.iter, data)

    @_own_time
    def after_train_epoch(self, runner) -> None:
        if not self.recorder.window:
            self.recorder.close_row(runner.epoch, runner.iter)

    def after_train(self, runner) -> None:
        self.recorder.end_training(runner.epoch, runner.iter)
        self.recorder.probe.uninstall()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._training:  # mmengine saves before it counts the iteration: runner.iter + 1
            next_iter = runner.iter + 1 if self.recorder.window else runner.iter
            checkpoint[STATE_KEY] = self.recorder.state_for_checkpoint(runner.epoch, next_iter)

    def before_val_epoch(self, runner) -> None:
        if self._training:
            self.recorder.begin_val()

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        if self._training:
            self.recorder.end_val()
        if metrics:
            self.ledger.metrics["val"] = _plain(metrics)
            self.ledger.metrics.update(val_epoch=runner.epoch, val_iter=runner.iter)

    def after_test_epoch(self, runner, metrics: dict | None = None) -> None:
        if not metrics:
            return
        test = self.ledger.metrics["test"] = _plain(metrics)
        path = os.path.join(runner.work_dir, self.file_name)
        if self.recorder is None and is_main_process() and os.path.exists(path):
            add_metrics(path, "test", test)  # a test after a finished training run

    def after_run(self, runner) -> None:
        if self.recorder is None:
            return
        self.recorder.end_run()
        if is_main_process():
            self._write(runner, complete=True)
            runner.logger.info(f"cost report: {os.path.join(runner.work_dir, self.file_name)}")

    # ------------------------------------------------------------------ output
    def _publish(self, runner, row: Row) -> None:
        runner.message_hub.update_info("cost/epoch", row.to_json())
        try:
            runner.visualizer.add_scalars(row.scalars(), step=row.iter_end
                                          if self.recorder.window else row.index)
        except Exception as e:  # a backend failure must not stop training
            runner.logger.warning(f"CostHook: visualizer.add_scalars failed: {e}")
        unit = "window" if self.recorder.window else "epoch"
        runner.logger.info(f"cost {unit} {row.index} {row.summary()}")
        if is_main_process():
            self._write(runner, complete=False)

    def _write(self, runner, complete: bool) -> None:
        os.makedirs(runner.work_dir, exist_ok=True)
        self.ledger.write(os.path.join(runner.work_dir, self.file_name), complete)
