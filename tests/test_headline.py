"""tools/headline.py: every setting's presets compose into a config whose hooks build."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import HOOKS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import headline  # noqa: E402

import dgsamp  # noqa: E402,F401  (registers the hooks the presets name)
from dgsamp.engine.presets import apply_methods  # noqa: E402
from dgsamp.engine.run_queue import Run  # noqa: E402
from dgsamp.engine.sparse_backward_hook import SparseBackwardHook  # noqa: E402
from dgsamp.methods.keep_schedules import build_keep_schedule  # noqa: E402

# The hooks each setting ran with before the settings became presets (the headline tables in
# docs/results were measured with these): the presets must give exactly the same.
GRADSAMP = dict(type="GradSampHook", schedule=dict(type="periodic", every=4))
SSPROP = dict(type="SparseBackwardHook", method="ssprop", keep=0.2,
              schedule=dict(type="constant", interleave=True))
EXPECTED_HOOKS = {
    "dense": [],
    "gradsamp": [GRADSAMP],
    "ssprop": [SSPROP],
    "ssprop-weight": [dict(SSPROP, only_weight=True)],
    "ssprop-iter": [dict(SSPROP, by_epoch=False)],
    "ssprop-warmup": [dict(SSPROP, schedule=dict(SSPROP["schedule"], warmup=5))],
    "dither": [dict(type="SparseBackwardHook", method="dither")],
    "gradsamp+ssprop": [GRADSAMP, SSPROP],
}


def _setting_config(setting: str, tmp_path, epochs: int = 30, seed: int = 3) -> Config:
    cfg_path = tmp_path / "cfg.py"
    cfg_path.write_text(headline.config_text(epochs=epochs, seed=seed))
    return apply_methods(Config.fromfile(str(cfg_path)),
                         [*headline.SETTINGS[setting], headline.COST])


@pytest.mark.parametrize("setting", list(headline.SETTINGS))
def test_setting_config_loads_and_hooks_build(setting, tmp_path):
    cfg = _setting_config(setting, tmp_path)
    assert cfg.train_cfg.max_epochs == 30
    assert cfg.param_scheduler[0]["milestones"] == [22]
    assert cfg.randomness["seed"] == 3
    assert cfg.custom_hooks == EXPECTED_HOOKS[setting] + [dict(type="CostHook")]
    built = [HOOKS.build(dict(h)) for h in cfg.custom_hooks]
    assert [type(h).__name__ for h in built] == [h["type"] for h in cfg.custom_hooks]


def test_each_run_turns_its_presets_on_from_the_command_line(tmp_path):
    args = argparse.Namespace(work_root=str(tmp_path), epochs=4, config=headline.CONFIG,
                              val_interval=None)
    run = headline.make_run("gradsamp+ssprop", 1, args)
    i = run.command.index("--methods")
    assert run.command[i + 1:] == ["gradsamp-every4", "ssprop-paper", "cost"]
    assert run.log == str(tmp_path / "gradsamp+ssprop_s1" / "train_stdout.log")
    assert not run.done()  # no cost.json yet


def test_val_interval_defaults_to_the_last_epoch_only():
    assert "val_interval=30)" in headline.config_text(epochs=30, seed=0)
    assert "val_interval=1)" in headline.config_text(epochs=30, seed=0, val_interval=1)


def _epoch_keeps(setting: str, tmp_path, epochs: int = 30) -> list[float]:
    (hook_cfg, _cost) = _setting_config(setting, tmp_path).custom_hooks
    hook = SparseBackwardHook(**{k: v for k, v in hook_cfg.items() if k != "type"})
    sched = build_keep_schedule(hook.schedule_cfg, keep=hook.keep, total=epochs)
    return [sched(e) for e in range(epochs)]


def test_ssprop_schedules_match_their_description(tmp_path):
    paper = _epoch_keeps("ssprop", tmp_path)
    assert paper[:4] == [1.0, 0.2, 1.0, 0.2] and paper[-1] == 0.2
    assert sum(paper) / 30 == pytest.approx(0.6)  # 40% of the conv backward saved
    warm = _epoch_keeps("ssprop-warmup", tmp_path)
    assert warm[:6] == [1.0] * 6  # 5 warmup epochs, then the alternation starts dense
    assert warm[6:10] == [0.2, 1.0, 0.2, 1.0]
    assert sum(warm) / 30 == pytest.approx((5 + 13 + 12 * 0.2) / 30)


def test_runs_go_through_the_queue_finished_ones_skipped_failures_listed(tmp_path, monkeypatch,
                                                                         capsys):
    (tmp_path / "dense_s0").mkdir()
    (tmp_path / "dense_s0" / "cost.json").write_text('{"run": {"complete": true}}')
    made = []

    def fake_run(setting, seed, args):  # dither fails; the rest write a complete cost.json
        made.append((setting, seed))
        work_dir = tmp_path / headline.run_dir_name(setting, seed)
        cost = str(work_dir / "cost.json")
        code = ("import sys; sys.exit(1)" if setting == "dither" else
                f"import json, os; os.makedirs({str(work_dir)!r}, exist_ok=True); "
                f"json.dump(dict(run=dict(complete=True)), open({cost!r}, 'w'))")
        return Run(f"{setting} seed {seed}", [sys.executable, "-c", code],
                   str(work_dir / "train_stdout.log"), done=lambda: headline.is_done(str(work_dir)))

    compared = {}
    fake_compare = types.ModuleType("compare")
    fake_compare.main = lambda argv: compared.setdefault("argv", argv)
    monkeypatch.setattr(headline, "make_run", fake_run)
    monkeypatch.setitem(sys.modules, "compare", fake_compare)
    headline.main(["--work-root", str(tmp_path), "--seeds", "0", "1",
                   "--settings", "dense", "dither", "--jobs", "2"])
    assert made == [("dither", 0), ("dense", 1), ("dither", 1)]  # dense seed 0 was done
    assert compared["argv"][:2] == [str(tmp_path / "dense_s0"), str(tmp_path / "dense_s1")]
    assert "--baseline" == compared["argv"][2]
    out = capsys.readouterr()
    assert "failed runs (not in the table): dither seed 0, dither seed 1" in out.out
    assert f"dither seed 0: see {tmp_path / 'dither_s0' / 'train_stdout.log'}" in out.err
    with pytest.raises(SystemExit):
        headline.main(["--work-root", str(tmp_path), "--jobs", "0"])
