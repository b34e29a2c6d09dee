"""The foundation: registration, the installed stack, the main job, resume, bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, tiny_options


def test_custom_imports_registers_everything_in_a_fresh_process():
    # A config's custom_imports=['dgsamp'] is all it takes; mmdet's and mmseg's child
    # registries find dgsamp's classes through their parents.
    code = """
from mmengine.config import Config
from mmengine.utils import import_modules_from_strings
cfg = Config(dict(custom_imports=dict(imports=['dgsamp'], allow_failed_imports=False)))
import_modules_from_strings(**cfg.custom_imports)
from mmengine.registry import DATASETS, METRICS, MODELS
assert MODELS.get('ERM') is not None and MODELS.get('DomainClassifier') is not None
assert DATASETS.get('RotatedDigits') is not None and DATASETS.get('PACS') is not None
assert METRICS.get('DomainAccuracy') is not None
from mmdet.registry import METRICS as DET_METRICS, MODELS as DET_MODELS
from mmseg.registry import MODELS as SEG_MODELS
assert DET_MODELS.get('ERM') is MODELS.get('ERM')
assert SEG_MODELS.get('ERM') is MODELS.get('ERM')
assert DET_METRICS.get('DomainAccuracy') is METRICS.get('DomainAccuracy')
assert DET_MODELS.get('TimmBackbone') is not None and SEG_MODELS.get('TimmBackbone') is not None
assert DET_METRICS.get('DomainMetric') is not None
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_stack_ops_run_on_cpu():
    import torchvision
    from mmcv.ops import nms, roi_align

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 2]
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2] and dets.shape == (2, 5)
    feat = torch.arange(16.0).view(1, 1, 4, 4)
    rois = torch.tensor([[0, 0, 0, 4, 4]], dtype=torch.float)
    pooled = roi_align(feat, rois, (2, 2), 1.0, 2, "avg", True)
    assert pooled.shape == (1, 1, 2, 2) and torch.isfinite(pooled).all()
    import mmdet.models  # noqa: F401
    import mmseg.models  # noqa: F401


def test_tiny_training_run_reports_every_domain(tmp_path, main_config):
    from tools.train import main

    metrics = main([main_config, *tiny_options(tmp_path)])
    for domain in ("0", "15", "30", "45", "60", "75"):
        assert 0.0 <= metrics[f"acc/{domain}"] <= 100.0
    assert metrics["acc/train_domains"] > 10.0  # better than chance after two epochs
    assert (tmp_path / "results.json").is_file()
    assert (tmp_path / "epoch_2.pth").is_file()


def _weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu")["state_dict"]  # weights_only=True, the default


def test_resume_matches_uninterrupted_run(tmp_path, main_config):
    from tools.train import main

    main([main_config, *tiny_options(tmp_path / "full", epochs=3)])
    main([main_config, *tiny_options(tmp_path / "cut", epochs=2)])
    main([main_config, *tiny_options(tmp_path / "cut", epochs=3), "--resume"])
    full, resumed = _weights(tmp_path / "full/epoch_3.pth"), _weights(tmp_path / "cut/epoch_3.pth")
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


def test_test_tool_evaluates_a_checkpoint(tmp_path, main_config):
    from tools.test import main as test_main
    from tools.train import main

    main([main_config, *tiny_options(tmp_path, epochs=1)])
    metrics = test_main([main_config, str(tmp_path / "epoch_1.pth"), "--work-dir", str(tmp_path),
                         "--cfg-options", "test_dataloader.dataset.image_size=12"])
    assert "acc/75" in metrics and (tmp_path / "test_results.json").is_file()


@pytest.mark.parametrize("option, expected", [
    ("model.model_name=resnet1800", "Unknown timm model name 'resnet1800'"),
    ("model.model_nme=resnet18", "Did you mean 'model_name'?"),
    ("train_dataloder.batch_size=8", "did you mean 'train_dataloader'?"),
    ("train_dataloader.dataset.imgae_size=8", "Did you mean 'image_size'?"),
])
def test_bad_config_names_problem_and_fix(tmp_path, main_config, option, expected):
    from tools.train import main

    with pytest.raises(ValueError, match="Fix") as err:
        main([main_config, "--work-dir", str(tmp_path), "--cfg-options", option])
    assert expected in str(err.value)


def test_missing_data_root_names_expected_layout(tmp_path):
    from dgsamp.datasets import PACS

    with pytest.raises(FileNotFoundError, match="Expected layout") as err:
        PACS(data_root=str(tmp_path / "PACS"), test_domains=["sketch"])
    assert "art_painting" in str(err.value) and str(tmp_path / "PACS") in str(err.value)


def test_pretrained_never_downloads(tmp_path):
    from dgsamp.models import create_timm_model

    with pytest.raises(ValueError, match="dgsamp never does"):
        create_timm_model("resnet18", pretrained=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_timm_model("resnet18", pretrained=str(tmp_path / "missing.pth"))


def test_foreign_pickle_still_refused(tmp_path):
    # The allow-list covers mmengine's own classes only; weights_only stays on for the rest.
    import pickle

    import dgsamp  # noqa: F401

    path = tmp_path / "evil.pth"
    torch.save({"x": subprocess.Popen}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


@pytest.mark.slow
def test_dist_train_two_cpu_processes_with_gradsamp(tmp_path, main_config):
    # tools/dist_train.sh on a CPU-only machine: gloo, CPU DDP wrapper, GradSamp skipping.
    config = tmp_path / "gradsamp.py"
    config.write_text(f"_base_ = [{main_config!r}]\n"
                      "custom_hooks = [dict(type='GradSampHook', "
                      "schedule=dict(type='periodic', every=2, warmup=2))]\n")
    opts = tiny_options(tmp_path, epochs=4)  # epoch 3 skipped (never the last one)
    env = {**os.environ, "PYTHON": sys.executable, "PORT": "29533"}
    out = subprocess.run(["bash", str(ROOT / "tools/dist_train.sh"), str(config), "2", *opts,
                          "--methods", "cost"],  # train.py options pass through
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert (tmp_path / "epoch_4.pth").is_file()
    assert "skipped" in log.lower()
    assert (tmp_path / "cost.json").is_file()  # --methods cost reached tools/train.py
    assert "dist_cfg=dict(backend='gloo')" in log  # chosen for a CPU-only machine
