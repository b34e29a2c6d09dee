"""tools/bn_shift.py: the three BatchNorm settings on real (tiny) StyledGlyphs runs."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ROOT

CONFIG = str(ROOT / "configs" / "dg" / "erm_styled_glyphs.py")


def _tiny_run(work_dir, **extra):
    from tools.train import main

    opts = {"train_dataloader.dataset.images_per_domain": 40,
            "val_dataloader.dataset.images_per_domain": 40,
            "test_dataloader.dataset.images_per_domain": 40,
            "train_dataloader.batch_size": 16, "train_cfg.max_epochs": 2,
            "train_cfg.val_interval": 2, "default_hooks.checkpoint.interval": 2,
            "param_scheduler": "[]", **extra}
    main([CONFIG, "--work-dir", str(work_dir), "--cfg-options",
          *(f"{k}={v}" for k, v in opts.items())])


@pytest.fixture(scope="module")
def bn_run(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("bn") / "run"
    _tiny_run(work_dir)
    return work_dir


@torch.no_grad()
def _adabn_by_hand(work_dir) -> float:
    """AdaBN computed independently: each BatchNorm normalises with the statistics of the
    whole test domain as one batch (momentum 1), then the model is evaluated."""
    from mmengine.registry import DATASETS, MODELS

    from dgsamp.evaluation.model_selection import run_config
    from tools.bn_shift import _images, checkpoint_of

    cfg = run_config(str(work_dir))
    model = MODELS.build(cfg.model)
    model.load_state_dict(torch.load(checkpoint_of(str(work_dir)), weights_only=False)
                          ["state_dict"])
    data = DATASETS.build(cfg.val_dataloader.dataset)
    x, y = _images(data, data.metainfo["domains"].index("sketch"))
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum, m.training = 1.0, True
    model(x, mode="tensor")
    model.eval()
    return 100.0 * float((model(x, mode="tensor").argmax(-1) == y).float().mean())


def test_as_trained_reproduces_the_run_and_adabn_is_the_test_domain_statistics(bn_run, tmp_path):
    from tools.bn_shift import SETTINGS, main

    out = main([str(bn_run), "--batch-size", "1000", "--out", str(tmp_path / "bn.json")])
    (run,) = out["runs"]
    reported = json.loads((bn_run / "results.json").read_text())["metrics"]
    assert run["test_domain"] == "sketch"
    assert run["accuracy"][SETTINGS[0]] == pytest.approx(reported["acc/sketch"], abs=1e-6)
    assert run["accuracy"][SETTINGS[2]] == pytest.approx(_adabn_by_hand(bn_run), abs=1e-6)
    saved = json.loads((tmp_path / "bn.json").read_text())
    assert saved["summary"][SETTINGS[2]]["n"] == 1 and saved["summary"][SETTINGS[2]]["sd"] is None


def test_a_checkpoint_that_is_not_the_reported_model_is_refused(bn_run, tmp_path):
    import shutil

    from tools.bn_shift import bn_shift

    copy = tmp_path / "copy"
    shutil.copytree(bn_run, copy)
    results = json.loads((copy / "results.json").read_text())
    results["metrics"]["acc/sketch"] += 7.5
    (copy / "results.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit, match="not the model the run reported"):
        bn_shift(str(copy))


def test_a_model_without_batchnorm_has_only_the_first_setting(tmp_path, capsys):
    from tools.bn_shift import SETTINGS, main

    _tiny_run(tmp_path / "gn", **{"model.model_kwargs.norm_layer": "groupnorm1"})
    out = main([str(tmp_path / "gn")])
    accuracy = out["runs"][0]["accuracy"]
    assert accuracy[SETTINGS[0]] is not None
    assert accuracy[SETTINGS[1]] is None and accuracy[SETTINGS[2]] is None
    assert out["summary"][SETTINGS[2]]["mean"] is None
    assert "unavailable" in capsys.readouterr().out


def test_a_dir_without_checkpoint_is_named(tmp_path):
    from tools.bn_shift import checkpoint_of

    with pytest.raises(SystemExit, match="no checkpoint"):
        checkpoint_of(str(tmp_path))
