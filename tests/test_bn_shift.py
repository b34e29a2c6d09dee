"""tools/bn_shift.py: the three BatchNorm settings on a real (tiny) StyledGlyphs run."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

CONFIG = str(ROOT / "configs" / "dg" / "erm_styled_glyphs.py")


def _tiny_run(work_dir, *extra):
    from tools.train import main

    opts = {"train_dataloader.dataset.images_per_domain": 40,
            "val_dataloader.dataset.images_per_domain": 40,
            "test_dataloader.dataset.images_per_domain": 40,
            "train_dataloader.batch_size": 16, "train_cfg.max_epochs": 1,
            "train_cfg.val_interval": 1, "default_hooks.checkpoint.interval": 1,
            "param_scheduler": "[]"}
    main([CONFIG, "--work-dir", str(work_dir), "--cfg-options",
          *(f"{k}={v}" for k, v in opts.items()), *extra])


def test_as_trained_reproduces_the_run_and_adabn_is_measured(tmp_path):
    from tools.bn_shift import SETTINGS, main

    _tiny_run(tmp_path / "run")
    out = main([str(tmp_path / "run"), "--out", str(tmp_path / "bn.json")])
    (run,) = out["runs"]
    reported = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    assert run["test_domain"] == "sketch"
    assert run["accuracy"][SETTINGS[0]] == pytest.approx(reported["acc/sketch"], abs=1e-6)
    assert all(0.0 <= run["accuracy"][s] <= 100.0 for s in SETTINGS)
    saved = json.loads((tmp_path / "bn.json").read_text())
    assert saved["summary"][SETTINGS[2]]["n"] == 1 and saved["summary"][SETTINGS[2]]["sd"] is None


def test_a_dir_without_checkpoint_is_named(tmp_path):
    from tools.bn_shift import checkpoint_of

    with pytest.raises(SystemExit, match="no checkpoint"):
        checkpoint_of(str(tmp_path))
