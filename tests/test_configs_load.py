"""Every shipped config (not the `_base_` fragments) parses with mmengine, its bases included: a
moved or merged base file cannot leave a config behind that only fails when someone runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config

ROOT = Path(__file__).resolve().parents[1]
# not configs: the `_base_` fragments and the Flower App package (Python entry points)
CONFIGS = sorted(p for p in (ROOT / "configs").rglob("*.py")
                 if "_base_" not in p.parts and "flower_app" not in p.parts)


def test_there_are_configs():
    assert len(CONFIGS) > 50


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_parses(path):
    cfg = Config.fromfile(str(path))
    assert "model" in cfg or "fl" in cfg, f"{path} defines no model"
