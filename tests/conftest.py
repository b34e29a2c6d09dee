"""Shared test helpers: a tiny, fast version of the main job's config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "2")

MAIN_CONFIG = ROOT / "configs" / "dg" / "erm_rotated_digits.py"


def tiny_options(work_dir: Path, epochs: int = 2, **extra) -> list[str]:
    """`--cfg-options` that shrink the main job to seconds: small images, few epochs."""
    opts = {
        "train_cfg.max_epochs": epochs,
        "train_cfg.val_interval": 1,
        "train_dataloader.dataset.image_size": 12,
        "val_dataloader.dataset.image_size": 12,
        "test_dataloader.dataset.image_size": 12,
        "train_dataloader.batch_size": 128,
        "default_hooks.logger.interval": 5,
        "param_scheduler": "[]",
        **extra,
    }
    return ["--work-dir", str(work_dir), "--cfg-options",
            *[f"{k}={v}" for k, v in opts.items()]]


@pytest.fixture
def main_config() -> str:
    return str(MAIN_CONFIG)


@pytest.fixture
def native_unbuilt(monkeypatch):
    """As on a machine where dgsamp's C++ extensions (dgsamp.methods.dither_native,
    dgsamp.methods.ssprop_native) cannot be built: every native path falls back, and the
    dither kernel's one warning per process is due again."""
    import importlib

    from dgsamp.methods import dither_native, ssprop_native

    for ext in (dither_native._EXTENSION, ssprop_native._EXTENSION):
        monkeypatch.setattr(ext, "state", {"error": "OSError: no C++ compiler"})
    monkeypatch.setattr(importlib.import_module("dgsamp.methods.dither"), "_NATIVE_WARNED", [])
