"""Energy meters: GPU, CPU-package and DRAM energy through Zeus, and a labelled CPU estimate.

Measurement is Zeus's (`zeus.monitor.ZeusMonitor`: NVIDIA GPUs through NVML's total-energy
counter, AMD GPUs through amdsmi, CPU packages and DRAM through RAPL). `EnergyMeters` reads the
monitor as cumulative joules: each read ends the running measurement window and begins the
next at once (windows are laps), so a row of the cost ledger is the sum of the laps between its
boundaries. What Zeus finds no meter for is *unavailable* (``None`` with the reason Zeus gave),
never 0.

- ``gpu``: the GPU this process trains on (``torch.cuda.current_device()``), one monitor per DDP
  rank, summed over ranks by the caller (`sum_over_ranks`).
- ``cpu_rapl`` / ``dram_rapl``: RAPL packages (the whole socket, every process on it; usually
  root-only on Linux). Under DDP only a node's local rank 0 meters them: a socket counts once.
- ``cpu_estimate``: CPU time of this process and its reaped children x watts per busy core,
  labelled ``estimate (cpu_time x TDP)``; the total uses it only where RAPL is unavailable.

Plain Python; the mmengine side is `dgsamp.engine.cost_hook.CostHook`.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Protocol

from .ledger import Source

__all__ = [
    "ESTIMATE_SOURCE",
    "METERS",
    "CpuTimeEstimate",
    "EnergyMeters",
    "MeterInfo",
    "co2e_grams",
    "sum_over_ranks",
]

ESTIMATE_SOURCE = "estimate (cpu_time x TDP)"
METERS = ("gpu", "cpu_rapl", "dram_rapl", "cpu_estimate")
_ZEUS = ("gpu", "cpu_rapl", "dram_rapl")  # the meters read through ZeusMonitor
_WINDOW = "dgsamp.cost"
_JOULES_PER_KWH = 3.6e6


@dataclass
class MeterInfo:
    """What one meter is: its source when available, else why it is not."""

    name: str
    available: bool
    source: str | None = None
    reason: str | None = None
    detail: str | None = None
    elsewhere: bool = False  # another rank reads it (this one adds nothing to the sum)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = dict(name=self.name, available=self.available,
                                 source=self.source if self.available else None,
                                 unavailable=None if self.available else self.reason)
        if self.detail:
            d["detail"] = self.detail
        return d

    def label(self) -> str:
        return self.source if self.available else f"unavailable: {self.reason}"


class Monitor(Protocol):
    """The part of `zeus.monitor.ZeusMonitor` used here (tests pass a fake)."""

    gpu_indices: list[int]
    cpu_indices: list[int]

    def begin_window(self, key: str, sync_execution: bool = True) -> None: ...
    def end_window(self, key: str, sync_execution: bool = True) -> Any: ...


class CpuTimeEstimate:
    """CPU time (this process + reaped children, all threads) x watts per busy core.

    ``watts_per_core``: a per-core share of the processor's TDP. The default 7 W is a server
    part's TDP over its cores (e.g. 270 W / 40 cores); set it for your machine.
    """

    name = "cpu_estimate"
    source = ESTIMATE_SOURCE

    def __init__(self, watts_per_core: float = 7.0):
        if not watts_per_core > 0:
            raise ValueError(f"cpu_watts_per_core must be > 0 W, got {watts_per_core!r}.")
        self.watts_per_core = float(watts_per_core)

    @staticmethod
    def cpu_seconds() -> float:
        t = os.times()
        return time.process_time() + t.children_user + t.children_system

    def read(self) -> float:
        return self.cpu_seconds() * self.watts_per_core

    def info(self) -> MeterInfo:
        return MeterInfo(self.name, True, self.source, detail=(
            f"{self.watts_per_core:g} W per busy core x CPU time of this process and its "
            "reaped children"))


def _zeus_monitor(gpu_index: int | None, meter_cpu: bool) -> tuple[Monitor | None, dict]:
    """A ZeusMonitor for this process's GPU (and the CPU packages when ``meter_cpu``), and a
    `MeterInfo` per Zeus meter saying what it measures or why it cannot."""
    info = {n: MeterInfo(n, False) for n in ("gpu", "cpu_rapl", "dram_rapl")}
    try:
        from zeus.device import get_cpus, get_gpus
        from zeus.device.cpu.common import ZeusCPUInitError, ZeusCPUNoPermissionError
        from zeus.device.gpu.common import ZeusGPUInitError
        from zeus.monitor import ZeusMonitor
    except ImportError as e:
        for m in info.values():
            m.reason = f"zeus not importable ({e}); install it: pip install zeus"
        return None, info
    gpu_indices: list[int] = []
    if gpu_index is None:
        info["gpu"].reason = "no CUDA device"
    else:
        try:
            gpus = get_gpus()
            if gpu_index >= len(gpus):
                raise ZeusGPUInitError(f"Zeus sees {len(gpus)} GPU(s), not index {gpu_index}")
            how = ("total energy counter" if gpus.supports_get_total_energy_consumption(gpu_index)
                   else "power samples integrated by Zeus's PowerMonitor")
            info["gpu"] = MeterInfo("gpu", True, f"zeus ZeusMonitor: {gpus.get_name(gpu_index)} "
                                    f"(GPU {gpu_index}, {how})")
            gpu_indices = [gpu_index]
        except ZeusGPUInitError as e:
            info["gpu"].reason = f"zeus found no GPU meter: {e}"
    cpu_indices: list[int] = []
    if not meter_cpu:
        for n in ("cpu_rapl", "dram_rapl"):
            info[n].reason = "metered by this node's local rank 0 (one socket counted once)"
            info[n].elsewhere = True
    else:
        try:
            cpus = get_cpus()
            cpu_indices = list(range(len(cpus)))
            scope = f"{len(cpus)} package(s); whole socket, all processes"
            info["cpu_rapl"] = MeterInfo("cpu_rapl", True,
                                         f"zeus ZeusMonitor: RAPL package ({scope})")
            if cpu_indices and all(cpus.supports_get_dram_energy_consumption(i)
                                   for i in cpu_indices):
                info["dram_rapl"] = MeterInfo("dram_rapl", True,
                                              f"zeus ZeusMonitor: RAPL DRAM ({scope})")
            else:
                info["dram_rapl"].reason = "zeus: RAPL has no DRAM zone on this CPU"
        except ZeusCPUNoPermissionError as e:
            for n in ("cpu_rapl", "dram_rapl"):
                info[n].reason = f"zeus: RAPL not readable (usually root-only): {e}"
        except ZeusCPUInitError as e:
            for n in ("cpu_rapl", "dram_rapl"):
                info[n].reason = f"zeus found no CPU meter: {e}"
    if not gpu_indices and not cpu_indices:
        return None, info
    return ZeusMonitor(gpu_indices=gpu_indices, cpu_indices=cpu_indices), info


class EnergyMeters:
    """This process's meters, read together as cumulative joules per meter (`METERS`).

    Args:
        watts_per_core: for the CPU-time estimate.
        gpu_index: the CUDA device to meter; ``None``: the current one when CUDA is available.
        meter_cpu: meter the RAPL packages (False on all but a node's local rank 0).
        zeus: ``(monitor, info)``: a ZeusMonitor-like object (or None) and a `MeterInfo` for
            ``gpu``, ``cpu_rapl``, ``dram_rapl`` (tests pass a fake); None: built from what Zeus
            finds.
        world_size: ranks whose readings the caller sums (it labels the sources).
    """

    def __init__(self, watts_per_core: float = 7.0, gpu_index: int | None = None,
                 meter_cpu: bool = True, zeus: tuple[Monitor | None, dict] | None = None,
                 world_size: int = 1):
        if gpu_index is None:
            import torch
            gpu_index = torch.cuda.current_device() if torch.cuda.is_available() else None
        self.cuda = gpu_index is not None
        self.estimate = CpuTimeEstimate(watts_per_core)
        self.monitor, self.info = zeus if zeus is not None else _zeus_monitor(gpu_index, meter_cpu)
        self.info["cpu_estimate"] = self.estimate.info()
        if world_size > 1:
            for m, how in (("gpu", "each rank its own GPU"),
                           ("cpu_rapl", "each node's socket once"),
                           ("dram_rapl", "each node's socket once"), ("cpu_estimate", "all ranks")):
                if self.info[m].available:
                    self.info[m].source += f", summed over {world_size} ranks ({how})"
        self._acc = {m: 0.0 for m in _ZEUS}
        if self.monitor is not None:
            self.monitor.begin_window(_WINDOW)

    def read(self) -> dict[str, float | None]:
        """Joules since the meters were built, per meter this process owns (None: failed)."""
        out: dict[str, float | None] = {}
        if self.monitor is not None:
            try:
                with warnings.catch_warnings():
                    # A lap shorter than the counter's update period reads 0; the next lap
                    # gets that energy, so the cumulative sum is right and the warning moot.
                    warnings.filterwarnings("ignore", message=".*measured as zero.*")
                    lap = self.monitor.end_window(_WINDOW)
                self.monitor.begin_window(_WINDOW, sync_execution=False)
                self._acc["gpu"] += sum((lap.gpu_energy or {}).values())
                self._acc["cpu_rapl"] += sum((lap.cpu_energy or {}).values())
                self._acc["dram_rapl"] += sum((lap.dram_energy or {}).values())
            except Exception as e:  # a failing meter must not stop training
                for m in _ZEUS:
                    if self.info[m].available:
                        self.info[m].available, self.info[m].reason = False, f"zeus read: {e}"
                self.monitor = None
        for m in _ZEUS:
            if self.info[m].available:
                out[m] = self._acc[m]
            elif not self.info[m].elsewhere:
                out[m] = None  # absent here: the sum over ranks stays unavailable
        out["cpu_estimate"] = self.estimate.read()
        return out

    def describe(self) -> dict[str, dict[str, Any]]:
        return {m: self.info[m].describe() for m in METERS}

    def sources(self) -> dict[str, Source]:
        """Each meter's source for ledger rows (why not, where it is unavailable)."""
        return {m: Source(i.source) if i.available else Source(unavailable=i.reason)
                for m, i in self.info.items()}

    def delta(self, a: dict[str, float | None],
              b: dict[str, float | None]) -> dict[str, float | None]:
        """Joules per meter between readings ``a`` and ``b`` (None where either lacks one)."""
        return {m: None if a.get(m) is None or v is None else v - a[m] for m, v in b.items()}

    def total(self, energy: dict[str, float | None]) -> tuple[float | None, str]:
        """GPU + CPU (RAPL when measured, else the estimate) + DRAM, and the source saying so."""
        names = [m for m in ("gpu",) if self.info["gpu"].available and energy.get(m) is not None]
        rapl = self.info["cpu_rapl"].available and energy.get("cpu_rapl") is not None
        cpu = "cpu_rapl" if rapl else (
            "cpu_estimate" if energy.get("cpu_estimate") is not None else None)
        names += [cpu] if cpu else []
        if rapl and self.info["dram_rapl"].available and energy.get("dram_rapl") is not None:
            names.append("dram_rapl")
        if not names:
            return None, "unavailable: no energy meter"
        note = " (GPU energy unavailable: partial)" if self.cuda and "gpu" not in names else ""
        return sum(energy[n] for n in names), "sum of " + " + ".join(names) + note


def sum_over_ranks(readings: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Sum per meter over ranks' readings; a rank that lacks a meter (not its to read) adds
    nothing, one that has it but read None makes the sum None."""
    out: dict[str, float | None] = {}
    for m in METERS:
        vals = [r[m] for r in readings if m in r]
        if vals:
            out[m] = None if any(v is None for v in vals) else sum(vals)
    return out


def co2e_grams(energy_j: float | None, grid_gco2_per_kwh: float) -> float | None:
    """CO2-equivalent of ``energy_j`` at a grid intensity given in gCO2/kWh (derived)."""
    return None if energy_j is None else energy_j / _JOULES_PER_KWH * grid_gco2_per_kwh
