"""Training cost: FLOPs (forward / backward apart, effective counts for dithered layers), wall
time per phase, energy from the machine's meters, and the per-run report (``cost.json``).

Plain PyTorch; the mmengine side is `dgsamp.engine.cost_hook.CostHook`.
"""

from .energy import (
    ESTIMATE_SOURCE,
    CpuTimeEstimate,
    EnergyMeter,
    NvmlMeter,
    RaplMeter,
    default_meters,
)
from .flops import (
    StepFlopCounter,
    StepFlops,
    count_step_flops,
    optimizer_flops_per_step,
    sampling_flops,
)
from .report import SCHEMA, machine_info, measure, unavailable, write_json
from .timing import PhaseTimer, cuda_sync, scale_phases

__all__ = [
    "ESTIMATE_SOURCE",
    "SCHEMA",
    "CpuTimeEstimate",
    "EnergyMeter",
    "NvmlMeter",
    "PhaseTimer",
    "RaplMeter",
    "StepFlopCounter",
    "StepFlops",
    "count_step_flops",
    "cuda_sync",
    "default_meters",
    "machine_info",
    "measure",
    "optimizer_flops_per_step",
    "sampling_flops",
    "scale_phases",
    "unavailable",
    "write_json",
]
