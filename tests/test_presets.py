"""Method presets (configs/_base_/methods/): listed, inherited, composed into any config."""

from __future__ import annotations

import pytest
from conftest import MAIN_CONFIG, ROOT
from mmengine.config import Config
from mmengine.registry import HOOKS, DefaultScope

import dgsamp  # noqa: F401  (registers the hooks)
from dgsamp.engine import check_config
from dgsamp.engine.presets import METHODS_DIR, apply_methods, list_methods, method_path

DET_MT = ROOT / "configs/det/faster_rcnn_r18_shapes_mean_teacher.py"


def test_every_preset_file_is_listed_with_a_description():
    methods = list_methods()
    files = sorted(p.stem.replace("_", "-") for p in (ROOT / "configs/_base_/methods").glob("*.py"))
    assert files and set(files) <= set(methods)
    for name in files:
        assert len(methods[name]) > 20, name  # a sentence, not a placeholder
        assert method_path(name) == method_path(name.replace("-", "_"))
    assert methods["gradsamp"] == "alias of gradsamp-every4"
    assert method_path("ssprop") == method_path("ssprop-paper")


def test_presets_compose_in_order_and_leave_the_input_alone():
    base = Config.fromfile(str(MAIN_CONFIG))
    cfg = apply_methods(base, ["gradsamp", "ssprop-paper", "cost"])
    types = [h["type"] for h in cfg.custom_hooks]
    assert types == ["GradSampHook", "SparseBackwardHook", "CostHook"]
    assert cfg.custom_hooks[1]["keep"] == 0.2
    assert "custom_hooks" not in base and cfg.train_cfg == base.train_cfg
    check_config(cfg)
    assert [type(HOOKS.build(dict(h))).__name__ for h in cfg.custom_hooks] == types
    assert apply_methods(cfg, ["cost"]).custom_hooks == cfg.custom_hooks  # not added twice


def test_one_line_inheritance_gives_the_same_hooks(tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text(f"_base_ = [{str(MAIN_CONFIG)!r}, "
                    f"{str(ROOT / 'configs/_base_/methods/ssprop_warmup.py')!r}]\n")
    inherited = Config.fromfile(str(path))
    composed = apply_methods(Config.fromfile(str(MAIN_CONFIG)), ["ssprop-warmup"])
    assert inherited.custom_hooks == composed.custom_hooks
    assert inherited.custom_hooks[0]["schedule"]["warmup"] == 5


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="Unknown method preset 'ssprob'") as err:
        apply_methods(Config.fromfile(str(MAIN_CONFIG)), ["ssprob"])
    assert "ssprop-paper" in str(err.value) and "cost" in str(err.value)
    with pytest.raises(TypeError, match="list of names"):
        apply_methods(Config(), "cost")


def test_two_settings_of_one_hook_are_refused():
    with pytest.raises(ValueError, match="SparseBackwardHook") as err:
        apply_methods(Config.fromfile(str(MAIN_CONFIG)), ["ssprop-paper", "dither"])
    assert "choose one" in str(err.value)


def test_loop_changes_merge_and_conflicts_raise(tmp_path):
    (tmp_path / "loop_a.py").write_text(
        "# a loop\ntrain_cfg = dict(type='GradSampEpochBasedTrainLoop')\n"
        "custom_imports = dict(imports=['dgsamp.engine.loops'])\n")
    (tmp_path / "loop_b.py").write_text(
        "# another loop\ntrain_cfg = dict(type='EpochBasedTrainLoop')\n")
    base = Config.fromfile(str(MAIN_CONFIG))
    cfg = apply_methods(base, ["loop-a"], methods_dir=str(tmp_path))
    assert cfg.train_cfg.type == "GradSampEpochBasedTrainLoop"
    assert cfg.train_cfg.max_epochs == base.train_cfg.max_epochs  # merged, not replaced
    assert cfg.custom_imports.imports == ["dgsamp", "dgsamp.engine.loops"]
    with pytest.raises(ValueError, match="both set train_cfg.type"):
        apply_methods(base, ["loop-a", "loop-b"], methods_dir=str(tmp_path))
    assert list_methods(str(tmp_path)) == {"loop-a": "a loop", "loop-b": "another loop"}


def test_a_detection_config_gets_methods_beside_its_own_hooks():
    cfg = apply_methods(Config.fromfile(str(DET_MT)), ["gradsamp", "ssprop-paper", "cost"])
    types = [h["type"] for h in cfg.custom_hooks]
    assert types == ["EMATeacherHook", "GradSampHook", "SparseBackwardHook", "CostHook"]
    check_config(cfg)  # registered in mmdet's scope (through the root registry), valid args
    with DefaultScope.overwrite_default_scope("mmdet"):
        assert [type(HOOKS.build(dict(h))).__name__ for h in cfg.custom_hooks] == types


def test_presets_folder_is_the_repository_one():
    assert METHODS_DIR == str(ROOT / "configs" / "_base_" / "methods")
