"""The per-run cost report (``cost.json``): numbers with their sources, rows, totals, machine.

Every number in the report is a *measure*: ``{"value": x, "source": "..."}``; an absent meter is
``{"value": None, "source": None, "unavailable": "why"}``, never a zero. Per-epoch rows keep
plain numbers and name their sources in the row's ``sources`` table (one entry per field).

Schema (``schema: "dgsamp.cost/1"``)::

    run       work_dir, loop ('epoch' | 'iter'), max_epochs / max_iters, world_size, complete
    machine   cpu model, cores, torch threads, gpu name, torch / cuda / mmengine / timm versions
    methods   the custom hooks in the config (type and arguments)
    config    model, optimizer, train loop, train batch size
    settings  the CostHook's own settings
    totals    flops {forward, backward, backward_effective, optimizer, sampling, train,
              train_effective}, time_s {run, train, data, forward, backward, optimizer, other,
              val}, energy_j {gpu, cpu_rapl, dram_rapl, cpu_estimate, total} (whole run),
              energy_train_j (sum of rows), epochs {trained, skipped}, iterations, samples
    epochs    one row per epoch (or per window of iterations in iteration-based loops)
    overhead  the hook's own cost: seconds and fraction of run time, and how it was measured
    metrics   last validation / test metrics seen (``val``, ``test``)
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Iterable
from typing import Any

import torch

__all__ = [
    "SCHEMA",
    "add_metrics",
    "config_summary",
    "machine_info",
    "measure",
    "methods_from_cfg",
    "sum_measure",
    "to_jsonable",
    "unavailable",
    "write_json",
]

SCHEMA = "dgsamp.cost/1"


def measure(value: float | int | None, source: str | None,
            reason: str | None = None) -> dict[str, Any]:
    """A number with its source; ``value=None`` makes it unavailable (``reason`` says why)."""
    if value is None:
        return unavailable(reason or "not measured")
    if isinstance(value, float) and not math.isfinite(value):
        return unavailable(reason or f"non-finite value {value}")
    return dict(value=value, source=source)


def unavailable(reason: str) -> dict[str, Any]:
    return dict(value=None, source=None, unavailable=reason)


def sum_measure(values: Iterable[float | int | None], source: str | None,
                reason: str = "not measured") -> dict[str, Any]:
    """Sum of per-row values; unavailable if any row lacked it (a partial sum would mislead)."""
    vals = list(values)
    if not vals:
        return measure(0, source)
    if any(v is None for v in vals):
        return unavailable(reason)
    return measure(sum(vals), source)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(mod: str) -> str | None:
    try:
        return __import__(mod).__version__
    except Exception:
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    gpu: dict[str, Any]
    if torch.cuda.is_available():
        idx = torch.cuda.current_device()
        gpu = dict(name=torch.cuda.get_device_name(idx), count=torch.cuda.device_count(),
                   memory_gib=round(torch.cuda.get_device_properties(idx).total_memory / 2**30, 1))
    else:
        gpu = dict(name=None, unavailable="no CUDA device")
    return dict(
        cpu_model=_cpu_model(), cpu_cores=os.cpu_count(),
        cpu_affinity=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        torch_threads=torch.get_num_threads(), gpu=gpu, platform=platform.platform(),
        python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
        mmengine=_version("mmengine"), timm=_version("timm"),
    )


def to_jsonable(obj: Any) -> Any:
    """Configs hold tuples, types and ConfigDicts; make them plain JSON."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, type):
        return obj.__name__
    if callable(obj):
        return getattr(obj, "__name__", repr(obj))
    return repr(obj)


def methods_from_cfg(cfg: Any) -> list[dict[str, Any]]:
    """The custom hooks of a config (methods and their settings), as plain dicts."""
    if cfg is None:
        return []
    hooks = cfg.get("custom_hooks") or []
    return [to_jsonable(dict(h)) if isinstance(h, dict) else dict(type=to_jsonable(h))
            for h in hooks]


def config_summary(cfg: Any) -> dict[str, Any]:
    """The settings that decide a run's cost, read from the config when present."""
    if cfg is None:
        return {}
    out: dict[str, Any] = {}
    model = cfg.get("model") or {}
    if isinstance(model, dict):
        out["model"] = {k: to_jsonable(model[k]) for k in ("type", "model_name", "num_classes")
                        if k in model}
    ow = cfg.get("optim_wrapper") or {}
    if isinstance(ow, dict):
        out["optim_wrapper"] = to_jsonable(ow)
    for key in ("train_cfg", "randomness"):
        if cfg.get(key) is not None:
            out[key] = to_jsonable(cfg.get(key))
    dl = cfg.get("train_dataloader") or {}
    if isinstance(dl, dict) and "batch_size" in dl:
        out["train_batch_size"] = dl["batch_size"]
        ds = dl.get("dataset") or {}
        if isinstance(ds, dict):
            out["train_dataset"] = to_jsonable(ds)
    return out


def add_metrics(path: str, key: str, metrics: dict[str, Any]) -> None:
    """Put ``metrics`` under ``metrics.<key>`` of an existing report (a test after training)."""
    with open(path) as fh:
        data = json.load(fh)
    data.setdefault("metrics", {})[key] = metrics
    write_json(path, data)


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write atomically: a reader (compare.py during a sweep) never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(to_jsonable(data), fh, indent=1)
    os.replace(tmp, path)
