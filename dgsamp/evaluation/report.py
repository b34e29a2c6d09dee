"""Print and save the metrics of one run (per-domain accuracy, AP, mIoU ...)."""

from __future__ import annotations

import json
import os
import os.path as osp

from mmengine.config import Config


def print_metrics(metrics: dict[str, float], title: str = "Results") -> None:
    """A rich table of metric name -> value (plain text when not on a terminal)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.2f}" if isinstance(value, float) else str(value))
    Console(width=100).print(table)


def write_results(path: str, metrics: dict[str, float], cfg: Config | None = None) -> None:
    """Write metrics (and where they came from) as JSON; atomic so sweeps never read halves."""
    os.makedirs(osp.dirname(path) or ".", exist_ok=True)
    payload = dict(metrics=metrics)
    if cfg is not None:
        payload["config"] = cfg.filename
        payload["work_dir"] = cfg.work_dir
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
