"""Energy meters: NVIDIA's total-energy counter, Intel/AMD RAPL, and a labelled estimate.

Each meter reads a cumulative counter in joules. A meter the machine does not have is
*unavailable* (``read()`` returns None and ``reason`` says why); it is never read as zero.

- `NvmlMeter`: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load) through
  nvidia-ml-py, for the GPU this process trains on (Volta and newer).
- `RaplMeter`: ``/sys/class/powercap/intel-rapl:N/energy_uj`` package counters (the whole
  socket, every process on it), with wrap-around handled. Usually root-only since 2020.
- `CpuTimeEstimate`: CPU time of this process and its reaped children × watts per busy core.
  An estimate, labelled ``estimate (cpu_time x TDP)``; used for the CPU when RAPL is absent.
"""

from __future__ import annotations

import glob
import os
import re
import time

__all__ = [
    "ESTIMATE_SOURCE",
    "CpuTimeEstimate",
    "EnergyMeter",
    "NvmlMeter",
    "RaplMeter",
    "default_meters",
]

ESTIMATE_SOURCE = "estimate (cpu_time x TDP)"
RAPL_ROOT = "/sys/class/powercap"


class EnergyMeter:
    """A cumulative energy counter. ``available`` False means: do not use, see ``reason``."""

    name = "meter"
    source = ""

    def __init__(self) -> None:
        self.available = False
        self.reason: str | None = "not initialised"

    def read(self) -> float | None:
        """Joules since an arbitrary origin, or None when unavailable."""
        return None

    def delta(self, a: float | None, b: float | None) -> float | None:
        if a is None or b is None:
            return None
        return b - a

    def describe(self) -> dict:
        return dict(name=self.name, available=self.available,
                    source=self.source if self.available else None,
                    unavailable=None if self.available else self.reason)


class NvmlMeter(EnergyMeter):
    """GPU energy from NVML's total-energy counter (millijoules, monotonic)."""

    name = "gpu_nvml"

    def __init__(self, device_index: int | None = None):
        super().__init__()
        self._nvml = None
        self._handle = None
        try:
            import torch
            if not torch.cuda.is_available():
                self.reason = "no CUDA device"
                return
        except Exception as e:  # pragma: no cover - torch is a dependency
            self.reason = f"torch.cuda unusable: {e}"
            return
        try:
            import pynvml  # nvidia-ml-py
        except ImportError:
            self.reason = "nvidia-ml-py (pynvml) not installed"
            return
        try:
            pynvml.nvmlInit()
            self._handle = self._find_handle(pynvml, torch, device_index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            name = pynvml.nvmlDeviceGetName(self._handle)
            name = name.decode() if isinstance(name, bytes) else name
        except Exception as e:
            self.reason = f"NVML energy counter not readable: {e}"
            return
        self._nvml = pynvml
        self.available, self.reason = True, None
        self.source = f"nvml total energy counter ({name})"

    @staticmethod
    def _find_handle(pynvml, torch, device_index):
        idx = torch.cuda.current_device() if device_index is None else device_index
        props = torch.cuda.get_device_properties(idx)
        # CUDA_VISIBLE_DEVICES renumbers devices; the PCI bus id names the same GPU in NVML.
        if all(hasattr(props, a) for a in ("pci_domain_id", "pci_bus_id", "pci_device_id")):
            bus = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
            try:
                return pynvml.nvmlDeviceGetHandleByPciBusId(bus.encode())
            except Exception:
                pass
        return pynvml.nvmlDeviceGetHandleByIndex(idx)

    def read(self) -> float | None:
        if not self.available:
            return None
        try:
            return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0
        except Exception as e:
            self.available, self.reason = False, f"NVML read failed: {e}"
            return None


class RaplMeter(EnergyMeter):
    """CPU package energy from RAPL powercap counters (sum over packages)."""

    name = "cpu_rapl"

    def __init__(self, root: str = RAPL_ROOT):
        super().__init__()
        zones = sorted(p for p in glob.glob(os.path.join(root, "intel-rapl:*"))
                       if re.fullmatch(r"intel-rapl:\d+", os.path.basename(p)))
        if not zones:
            self.reason = f"no RAPL package zones under {root}"
            return
        self._files: list[tuple[str, float]] = []
        errors = []
        for z in zones:
            f = os.path.join(z, "energy_uj")
            try:
                with open(f) as fh:
                    int(fh.read())
                with open(os.path.join(z, "max_energy_range_uj")) as fh:
                    wrap = float(fh.read())
            except (OSError, ValueError) as e:
                errors.append(f"{f}: {e.__class__.__name__}")
                continue
            self._files.append((f, wrap))
        if not self._files:
            self.reason = "RAPL counters not readable (" + "; ".join(errors) + ")"
            return
        self.available, self.reason = True, None
        self.source = (f"RAPL package counters ({len(self._files)} package(s); whole socket, "
                       "all processes)")
        self._last: list[float] | None = None
        self._acc = 0.0

    def read(self) -> float | None:
        """Accumulated joules; wrap-around is unwrapped against the previous read."""
        if not self.available:
            return None
        try:
            now = []
            for f, _ in self._files:
                with open(f) as fh:
                    now.append(float(fh.read()))
        except (OSError, ValueError) as e:
            self.available, self.reason = False, f"RAPL read failed: {e}"
            return None
        if self._last is not None:
            for (_, wrap), a, b in zip(self._files, self._last, now, strict=True):
                self._acc += (b - a) if b >= a else (b + wrap - a)
        self._last = now
        return self._acc / 1e6


class CpuTimeEstimate(EnergyMeter):
    """CPU time (this process + reaped children, all threads) × watts per busy core.

    ``watts_per_core``: a per-core share of the processor's TDP. The default 7 W is a server
    part's TDP over its cores (e.g. 270 W / 40 cores); set it for your machine.
    """

    name = "cpu_estimate"

    def __init__(self, watts_per_core: float = 7.0):
        super().__init__()
        self.watts_per_core = float(watts_per_core)
        self.available, self.reason = True, None
        self.source = ESTIMATE_SOURCE

    def cpu_seconds(self) -> float:
        t = os.times()
        return time.process_time() + t.children_user + t.children_system

    def read(self) -> float | None:
        return self.cpu_seconds() * self.watts_per_core

    def describe(self) -> dict:
        d = super().describe()
        d["detail"] = (f"{self.watts_per_core:g} W per busy core x CPU time of this process "
                       "and its reaped children")
        return d


def default_meters(watts_per_core: float = 7.0, rapl_root: str = RAPL_ROOT) -> dict:
    """The meters of this machine: GPU (NVML), CPU (RAPL) and the CPU estimate."""
    return dict(gpu_nvml=NvmlMeter(), cpu_rapl=RaplMeter(rapl_root),
                cpu_estimate=CpuTimeEstimate(watts_per_core))
