"""SparseBackwardHook in a real mmengine Runner (toy conv model and data defined here).

Checked: layers are patched during training and restored after it; the keep fraction follows the
schedule per epoch (interleave: dense first) and per iteration; keep and measured sparsity reach
the message hub and the log; dither records densities; it runs together with GradSampHook; bad
arguments fail at construction.
"""

from __future__ import annotations

import glob
import json
import uuid

import pytest
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from dgsamp.engine.gradsamp_hook import GradSampHook
from dgsamp.engine.sparse_backward_hook import SparseBackwardHook
from dgsamp.methods import patched_modules

N, BATCH = 12, 4  # 3 iterations per epoch


class ToyImages(Dataset):
    def __init__(self, n: int = N, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % 3
        self.x = torch.randn(n, 3, 8, 8, generator=g) + self.y[:, None, None, None].float()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], labels=self.y[i])


class ToyConvNet(BaseModel):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, padding=1, groups=4), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, 3)

    def forward(self, inputs, labels=None, mode="tensor"):
        logits = self.head(self.backbone(inputs))
        if mode == "loss":
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


class Probe(Hook):
    """Records, per iteration, the patched layers and their keep/density after the backward."""

    priority = "LOW"

    def __init__(self):
        self.rows = []
        self.options = []
        self.classes_after = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model
        mods = patched_modules(model)
        hub = runner.message_hub
        self.options = [m.sparse_options for m in mods.values()]
        self.rows.append(dict(
            epoch=runner.epoch, iter=runner.iter, names=sorted(mods),
            keep={n: getattr(m, "keep", None) for n, m in mods.items()},
            density={n: m.grad_density for n, m in mods.items() if hasattr(m, "grad_density")},
            hub_keep=hub.get_scalar("train/sparse_keep").current()
            if "train/sparse_keep" in hub.log_scalars else None,
            hub_sparsity=hub.get_scalar("train/grad_sparsity").current()
            if "train/grad_sparsity" in hub.log_scalars else None))

    def after_train(self, runner):
        self.classes_after = {n: type(m) for n, m in runner.model.named_modules()}


def _run(tmp_path, hook: dict, *, max_epochs=2, max_iters=None, extra_hooks=()):
    torch.manual_seed(0)
    probe = Probe()
    by_epoch = max_iters is None
    train_cfg = (dict(by_epoch=True, max_epochs=max_epochs) if by_epoch
                 else dict(by_epoch=False, max_iters=max_iters))
    runner = Runner(
        model=ToyConvNet(), work_dir=str(tmp_path),
        experiment_name=f"sb_{uuid.uuid4().hex[:8]}",
        train_dataloader=dict(
            dataset=ToyImages(),
            sampler=dict(type="DefaultSampler" if by_epoch else "InfiniteSampler", shuffle=True),
            batch_size=BATCH, num_workers=0, collate_fn=dict(type="default_collate")),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05)),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=1), checkpoint=None),
        log_processor=dict(by_epoch=by_epoch),
        custom_hooks=[dict(type="SparseBackwardHook", **hook), *extra_hooks, probe],
        randomness=dict(seed=0), default_scope=None)
    runner.train()
    return runner, probe


def _log_lines(tmp_path):
    files = glob.glob(str(tmp_path / "**" / "vis_data" / "*.json"), recursive=True)
    files = [f for f in files if not f.endswith("scalars.json")] or files
    lines = []
    for f in files:
        with open(f) as fh:
            lines += [json.loads(line) for line in fh if line.strip()]
    return lines


def test_ssprop_interleave_by_epoch(tmp_path):
    runner, probe = _run(tmp_path, dict(method="ssprop", keep=0.25, include=["backbone"],
                                        schedule=dict(type="constant", interleave=True)))
    assert [r["iter"] for r in probe.rows] == [0, 1, 2, 3, 4, 5]
    for r in probe.rows:
        assert r["names"] == ["backbone.0", "backbone.2"]
    keeps = [r["keep"]["backbone.0"] for r in probe.rows]
    assert keeps == [1.0] * 3 + [0.25] * 3  # first epoch dense
    assert [r["hub_keep"] for r in probe.rows] == keeps
    assert [r["hub_sparsity"] for r in probe.rows][3:] == [0.75] * 3
    assert probe.rows[0]["hub_sparsity"] == 0.0
    # restored after training: plain classes, no extra attributes
    assert probe.classes_after["backbone.0"] is nn.Conv2d
    assert patched_modules(runner.model) == {}
    assert not hasattr(runner.model.backbone[0], "keep")
    logs = _log_lines(tmp_path)
    assert any("sparse_keep" in row for row in logs)
    assert any(row.get("grad_sparsity") == 0.75 for row in logs)


def test_ssprop_cosine_by_iteration(tmp_path):
    _, probe = _run(tmp_path, dict(method="ssprop", keep=0.2, by_epoch=False,
                                   schedule=dict(type="cosine")), max_iters=5)
    keeps = [r["keep"]["head"] for r in probe.rows]
    assert keeps[0] == pytest.approx(1.0) and keeps[-1] == pytest.approx(0.2)
    assert all(a > b for a, b in zip(keeps, keeps[1:], strict=False))
    assert probe.rows[0]["names"] == ["backbone.0", "backbone.2", "head"]


def test_ssprop_interleave_on_an_iteration_loop_steps_per_window(tmp_path):
    """An iteration-based loop (mmdet/mmseg) never advances the epoch: by_epoch=True schedules
    step per window of iterations, or the interleaved paper setting would stay dense."""
    _, probe = _run(tmp_path, dict(method="ssprop", keep=0.25, include=["backbone"], window=2,
                                   schedule=dict(type="constant", interleave=True)),
                    max_iters=6)
    keeps = [r["keep"]["backbone.0"] for r in probe.rows]
    assert keeps == [1.0, 1.0, 0.25, 0.25, 1.0, 1.0]


def test_window_must_be_a_positive_int():
    with pytest.raises(ValueError, match="window must be a positive int"):
        SparseBackwardHook(method="ssprop", keep=0.5, window=0)


def test_dither_records_density_and_sparsity(tmp_path):
    _, probe = _run(tmp_path, dict(method="dither", scale=8.0, exclude="head",
                                   schedule=dict(type="constant", warmup=1)))
    assert probe.rows[0]["names"] == ["backbone.0", "backbone.2"]
    assert all(d == 1.0 for d in probe.rows[0]["density"].values())  # warmup epoch: dense
    assert probe.rows[0]["hub_sparsity"] == 0.0
    for r in probe.rows[3:]:
        assert all(0.0 < d < 0.3 for d in r["density"].values())
        assert r["hub_sparsity"] > 0.7


def test_dither_fast_preset_trains_with_the_native_quantizer(tmp_path):
    """configs/_base_/methods/dither_fast.py: its options reach every dithered layer, and the
    native quantizer with Philox noise gives the same ~90% zeros in a real Runner."""
    from mmengine.config import Config

    from dgsamp.engine.presets import method_path

    hook = dict(Config.fromfile(method_path("dither-fast")).custom_hooks[0])
    hook.pop("type")
    _, probe = _run(tmp_path, dict(hook, exclude="head"))
    for r in probe.rows[1:]:
        assert all(0.0 < d < 0.3 for d in r["density"].values())
    assert {(o.noise, o.quantizer) for o in probe.options} == {("philox", "native")}


def test_together_with_gradsamp(tmp_path):
    gs = dict(type="GradSampHook", schedule=dict(type="periodic", every=2, warmup=2), seed=0)
    runner, probe = _run(tmp_path, dict(method="ssprop", keep=0.5), max_epochs=4,
                         extra_hooks=[gs])
    epochs_trained = sorted({r["epoch"] for r in probe.rows})
    assert len(epochs_trained) < 4  # GradSamp skipped at least one epoch
    gs_hook = next(h for h in runner.hooks if isinstance(h, GradSampHook))
    assert gs_hook.sampler.skipped_epochs
    assert all(r["keep"]["head"] == 0.5 for r in probe.rows)
    assert patched_modules(runner.model) == {}
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())


@pytest.mark.parametrize("kw,match", [
    (dict(method="ssprop", keep=0), "keep"),
    (dict(method="dither", scale=-1), "scale"),
    (dict(method="ssprop", scale=3), "takes keep"),
    (dict(method="sparse"), "method"),
    (dict(method="ssprop", schedule=dict(type="cosin")), "unknown keep schedule"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        SparseBackwardHook(**kw)


def test_registered_in_root_hooks():
    from mmengine.registry import HOOKS

    assert HOOKS.get("SparseBackwardHook") is SparseBackwardHook
