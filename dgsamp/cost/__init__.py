"""Training cost: FLOPs (forward / backward apart, effective counts for dithered layers), wall
time per phase, energy through Zeus, and the cost ledger behind the per-run report
(``cost.json``).

Plain PyTorch; the mmengine side is `dgsamp.engine.cost_hook.CostHook`.
"""

from .energy import (
    ESTIMATE_SOURCE,
    METERS,
    CpuTimeEstimate,
    EnergyMeters,
    MeterInfo,
    co2e_grams,
    sum_over_ranks,
)
from .flops import (
    StepFlopCounter,
    StepFlops,
    count_step_flops,
    optimizer_flops_per_step,
    sampling_flops,
)
from .ledger import ROW_FLOPS, CostLedger, Row, Segment, Source
from .memory import LiveTensorBytes, memory_source, peak_bytes
from .probe import StepMeasurement, StepProbe
from .recorder import CostRecorder
from .report import SCHEMA, machine_info, measure, unavailable, write_json
from .rows import RowContext, RowDraft, StepRecord
from .timing import PhaseTimer, cuda_sync, scale_phases

__all__ = [
    "ESTIMATE_SOURCE",
    "METERS",
    "ROW_FLOPS",
    "SCHEMA",
    "CostLedger",
    "CostRecorder",
    "CpuTimeEstimate",
    "EnergyMeters",
    "MeterInfo",
    "PhaseTimer",
    "Row",
    "RowContext",
    "RowDraft",
    "Segment",
    "Source",
    "StepFlopCounter",
    "StepFlops",
    "StepMeasurement",
    "StepProbe",
    "StepRecord",
    "co2e_grams",
    "count_step_flops",
    "cuda_sync",
    "machine_info",
    "measure",
    "optimizer_flops_per_step",
    "sampling_flops",
    "scale_phases",
    "sum_over_ranks",
    "unavailable",
    "write_json",
]
__all__ += ["LiveTensorBytes", "memory_source", "peak_bytes"]
