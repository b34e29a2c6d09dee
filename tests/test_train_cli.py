"""tools/train.py as a front door: --methods, TensorBoard logs, the distributed backend, and
missing data named before the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import MAIN_CONFIG, ROOT, tiny_options
from mmengine.config import Config

from dgsamp.engine.config_check import check_data_paths
from dgsamp.engine.dist_backend import default_dist_backend, set_default_dist_backend

PUBLIC_CONFIGS = {  # config -> (a path its error must name, the conversion step it must name)
    "configs/det/cityscapes_to_foggy_faster_rcnn_r50_mean_teacher.py":
        ("data/cityscapes/", "dataset_converters/cityscapes.py"),
    "configs/det/sim10k_to_cityscapes_faster_rcnn_r50_mean_teacher.py":
        ("data/sim10k/VOC2012/", "dataset_converters/cityscapes.py"),
    "configs/seg/gta5_to_cityscapes_segformer_classmix.py": ("data/gta/", "labelTrainIds"),
    "configs/seg/cityscapes_to_acdc_segformer_classmix.py": ("data/acdc/", "labelTrainIds"),
    "configs/seg/gta5_dg_cityscapes_bdd_mapillary_segformer.py": ("data/bdd100k/", None),
}


def test_methods_list_prints_one_line_each(capsys):
    from tools.train import main

    assert main(["--methods", "list"]) == {}
    out = capsys.readouterr().out.splitlines()
    lines = {line.split()[0]: line for line in out[1:]}
    for name in ("gradsamp-every4", "ssprop-paper", "ssprop-warmup", "dither", "cost"):
        assert len(lines[name].split(None, 1)[1]) > 20, lines[name]


def test_unknown_method_names_the_known_ones(tmp_path):
    from tools.train import main

    with pytest.raises(SystemExit, match="Known: .*ssprop-paper"):
        main([str(MAIN_CONFIG), "--work-dir", str(tmp_path), "--methods", "gradsam"])
    with pytest.raises(SystemExit):  # argparse: a config or --methods list is needed
        main([])


def _event_scalars(work_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = list(work_dir.rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events.parent))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
def test_methods_train_and_tensorboard_holds_costs_and_method_scalars(tmp_path):
    # 4 epochs, GradSamp every 4 (epoch 2 skipped) with ssProp and CostHook, from the command
    # line alone (the --cfg-options "custom_hooks=[dict(...)]" route dies in mmengine's parser)
    from tools.train import main

    main([str(MAIN_CONFIG), *tiny_options(tmp_path, epochs=4),
          "--methods", "gradsamp", "ssprop-paper", "cost"])
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert cost["run"]["complete"]
    scalars = _event_scalars(tmp_path)
    cost_tags = [t for t in scalars if t.startswith("cost/")]
    assert len(cost_tags) >= 3, sorted(scalars)
    flops = scalars["cost/train_flops"]  # one point per epoch; the skipped one costs ~nothing
    assert len(flops) == 4 and flops[2] < 1e-3 * flops[3]
    assert scalars["gradsamp/skipped"] == [1.0]
    assert "sparse_keep" in scalars and {round(v, 6) for v in scalars["sparse_keep"]} == {0.2, 1.0}
    assert "grad_sparsity" in scalars
    assert "loss" in scalars and "acc/train_domains" in scalars and "acc/75" in scalars


def test_a_detection_config_builds_with_methods(tmp_path):
    from tools.train import build_config, parse_args

    det = ROOT / "configs/det/faster_rcnn_r18_shapes_source_only.py"
    cfg = build_config(parse_args([str(det), "--work-dir", str(tmp_path),
                                   "--methods", "gradsamp", "ssprop-paper", "cost"]))
    assert [h["type"] for h in cfg.custom_hooks] == ["GradSampHook", "SparseBackwardHook",
                                                     "CostHook"]
    assert cfg.default_scope == "mmdet"


def test_dist_backend_follows_the_machine():
    cfg = Config.fromfile(str(MAIN_CONFIG))
    assert "backend" not in cfg.env_cfg.get("dist_cfg", {})  # the runtime base leaves it out
    assert set_default_dist_backend(Config(cfg.to_dict()), cuda_available=False) == "gloo"
    assert set_default_dist_backend(Config(cfg.to_dict()), cuda_available=True) == "nccl"
    chosen = Config(dict(env_cfg=dict(dist_cfg=dict(backend="gloo", timeout=60))))
    assert set_default_dist_backend(chosen, cuda_available=True) == "gloo"  # the config wins
    assert chosen.env_cfg.dist_cfg.timeout == 60
    import torch

    assert default_dist_backend() == ("nccl" if torch.cuda.is_available() else "gloo")


def test_train_tool_sets_the_backend(tmp_path):
    import torch

    from tools.train import build_config, parse_args

    cfg = build_config(parse_args([str(MAIN_CONFIG), "--work-dir", str(tmp_path)]))
    assert cfg.env_cfg.dist_cfg.backend == ("nccl" if torch.cuda.is_available() else "gloo")


@pytest.mark.parametrize("config", list(PUBLIC_CONFIGS))
def test_public_configs_without_data_name_layout_and_conversion(config, tmp_path, monkeypatch):
    from tools.train import build_config, parse_args

    monkeypatch.chdir(tmp_path)  # no data/ here
    path, step = PUBLIC_CONFIGS[config]
    with pytest.raises(FileNotFoundError, match="The data this config reads is not there") as e:
        build_config(parse_args([str(ROOT / config), "--work-dir", str(tmp_path / "w")]))
    msg = str(e.value)
    assert f"{path!r} (folder not found)" in msg
    assert "Expected layout" in msg and "#   data/" in msg  # the config header's layout
    if step:
        assert step in msg


def test_partial_layout_names_the_missing_files_and_the_converter(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder in ("data/cityscapes/leftImg8bit/train", "data/cityscapes/leftImg8bit/val",
                   "data/foggy_cityscapes/leftImg8bit_foggy/train",
                   "data/foggy_cityscapes/annotations"):
        (tmp_path / folder).mkdir(parents=True)
    cfg = Config.fromfile(str(ROOT / "configs/det/"
                                     "cityscapes_to_foggy_faster_rcnn_r50_mean_teacher.py"))
    with pytest.raises(FileNotFoundError) as e:
        check_data_paths(cfg, splits=("train", "val"))
    msg = str(e.value)
    assert "instancesonly_filtered_gtFine_train.json' (file not found)" in msg
    assert "instancesonly_filtered_gtFine_val_foggy.json' (file not found)" in msg
    assert "leftImg8bit/train" not in msg.split("Expected layout")[0]  # present: not listed
    assert "mmdetection/tools/dataset_converters/cityscapes.py data/cityscapes" in msg


def test_generated_data_sets_are_not_checked():
    for config in (MAIN_CONFIG, ROOT / "configs/det/faster_rcnn_r18_shapes_source_only.py",
                   ROOT / "configs/seg/segformer_r18_shapes_source_only.py"):
        check_data_paths(Config.fromfile(str(config)))  # no data_root named: nothing to check
