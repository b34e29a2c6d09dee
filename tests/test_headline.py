"""tools/headline.py: every setting writes a config that mmengine loads and whose hooks build."""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.registry import HOOKS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import headline  # noqa: E402

import dgsamp.engine.cost_hook  # noqa: E402,F401  (registers the hooks the settings name)
import dgsamp.engine.gradsamp_hook  # noqa: E402,F401
from dgsamp.engine.sparse_backward_hook import SparseBackwardHook  # noqa: E402
from dgsamp.methods.keep_schedules import build_keep_schedule  # noqa: E402


@pytest.mark.parametrize("setting", list(headline.SETTINGS))
def test_setting_config_loads_and_hooks_build(setting, tmp_path):
    cfg_path = tmp_path / "cfg.py"
    hooks = headline.SETTINGS[setting] + [headline.COST]
    cfg_path.write_text(headline.config_text(hooks, epochs=30, seed=3))
    cfg = Config.fromfile(str(cfg_path))
    assert cfg.train_cfg.max_epochs == 30
    assert cfg.param_scheduler[0]["milestones"] == [22]
    assert cfg.randomness["seed"] == 3
    built = [HOOKS.build(dict(h)) for h in cfg.custom_hooks]
    assert [type(h).__name__ for h in built] == [h["type"] for h in hooks]


def test_val_interval_defaults_to_the_last_epoch_only():
    assert "val_interval=30)" in headline.config_text([], epochs=30, seed=0)
    assert "val_interval=1)" in headline.config_text([], epochs=30, seed=0, val_interval=1)


def _epoch_keeps(setting: str, epochs: int = 30) -> list[float]:
    (hook_cfg,) = headline.SETTINGS[setting]
    hook = SparseBackwardHook(**{k: v for k, v in hook_cfg.items() if k != "type"})
    sched = build_keep_schedule(hook.schedule_cfg, keep=hook.keep, total=epochs)
    return [sched(e) for e in range(epochs)]


def test_ssprop_schedules_match_their_description():
    paper = _epoch_keeps("ssprop")
    assert paper[:4] == [1.0, 0.2, 1.0, 0.2] and paper[-1] == 0.2
    assert sum(paper) / 30 == pytest.approx(0.6)  # 40% of the conv backward saved
    warm = _epoch_keeps("ssprop-warmup")
    assert warm[:6] == [1.0] * 6  # 5 warmup epochs, then the alternation starts dense
    assert warm[6:10] == [0.2, 1.0, 0.2, 1.0]
    assert sum(warm) / 30 == pytest.approx((5 + 13 + 12 * 0.2) / 30)


def test_jobs_run_side_by_side_in_order_and_failures_are_listed(tmp_path, monkeypatch, capsys):
    lock, active, peak, calls = threading.Lock(), [0], [0], []

    def fake_train(setting, seed, args):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            calls.append((setting, seed))
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        if setting == "dither":
            return None
        (tmp_path / f"{setting}_s{seed}").mkdir()
        return str(tmp_path / f"{setting}_s{seed}")

    compared = {}
    fake_compare = types.ModuleType("compare")
    fake_compare.main = lambda argv: compared.setdefault("argv", argv)
    monkeypatch.setattr(headline, "train_one", fake_train)
    monkeypatch.setitem(sys.modules, "compare", fake_compare)
    headline.main(["--work-root", str(tmp_path), "--seeds", "0", "1",
                   "--settings", "dense", "dither", "--jobs", "2"])
    assert sorted(calls) == [("dense", 0), ("dense", 1), ("dither", 0), ("dither", 1)]
    assert peak[0] == 2
    assert compared["argv"][:2] == [str(tmp_path / "dense_s0"), str(tmp_path / "dense_s1")]
    assert "failed runs (not in the table): dither seed 0, dither seed 1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        headline.main(["--work-root", str(tmp_path), "--jobs", "0"])
