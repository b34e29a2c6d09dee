"""Training under shift end to end through tools/train.py on the embedded shapes benchmark:
source-only det/seg, mean-teacher det (Faster R-CNN, RetinaNet) and ClassMix seg, dgsamp's
GradSamp/SparseBackward/Cost hooks on these models and on inherited mmdet/mmseg configs,
per-domain metrics, and target labels never read (poisoned targets give identical runs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("clean", "fog", "dark", "texture")
TARGETS = ("fog", "dark", "texture")


# ------------------------------------------------------------------ fast unit tests
def test_demo_summary_means_over_seeds_and_aligns_long_names(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    from demo_dense_summary import main as summary

    for method, vals in (("source_only", [10.0, 20.0]), ("source_only+adabn", [30.0, 34.0])):
        for k, v in enumerate(vals):
            d = tmp_path / method / f"seed{k}"
            d.mkdir(parents=True)
            (d / "results.json").write_text(json.dumps(
                {"metrics": {"mIoU/fog": v, "mIoU/test_domains": v, "aAcc/fog": 1.0}}))
    summary(str(tmp_path), "mIoU")
    lines = capsys.readouterr().out.splitlines()
    rows = {ln.split()[0]: ln for ln in lines[2:4]}
    assert "15.00 ± 7.07 (n=2)" in rows["source_only"]
    assert "32.00 ± 2.83 (n=2)" in rows["source_only+adabn"]
    # columns line up whatever the method name's length
    assert rows["source_only"].index("(n=2)") == rows["source_only+adabn"].index("(n=2)")


class _TS(nn.Module):
    def __init__(self, burn_in_iters: int = 0):
        super().__init__()
        self.burn_in_iters = burn_in_iters
        self.student = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
        self.teacher = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))


class _Runner:
    def __init__(self, model, it):
        self.model, self.iter = model, it


def test_ema_teacher_hook_burn_in_then_average():
    from dgsamp.engine.ema_teacher_hook import EMATeacherHook

    m = _TS(burn_in_iters=2)  # the burn-in is the model's; the hook reads it from there
    hook = EMATeacherHook(momentum=0.25)
    hook.before_train(_Runner(m, 0))
    assert torch.equal(m.teacher[0].weight, m.student[0].weight)
    for it in range(2):  # burn-in: teacher follows the student exactly
        with torch.no_grad():
            m.student[0].weight.add_(1.0)
            m.student[1].running_mean.add_(1.0)
        hook.after_train_iter(_Runner(m, it), it)
        assert torch.equal(m.teacher[0].weight, m.student[0].weight)
        assert torch.equal(m.teacher[1].running_mean, m.student[1].running_mean)
    before = m.teacher[0].weight.clone()
    with torch.no_grad():
        m.student[0].weight.add_(4.0)
    hook.after_train_iter(_Runner(m, 2), 2)
    torch.testing.assert_close(m.teacher[0].weight, 0.75 * before + 0.25 * m.student[0].weight)
    with pytest.raises(ValueError):
        EMATeacherHook(momentum=0.0)
    with pytest.raises(ValueError, match="model.burn_in_iters"):
        EMATeacherHook(burn_in_iters=2)
    with pytest.raises(TypeError, match="teacher"):
        hook.before_train(_Runner(nn.Linear(1, 1), 0))


def _tiny_segmentor():
    return dict(
        type="EncoderDecoder",
        backbone=dict(type="TimmBackbone", model_name="resnet18", out_indices=(1, 2)),
        decode_head=dict(type="SegformerHead", in_channels=[64, 128], in_index=[0, 1],
                         channels=16, num_classes=4, norm_cfg=dict(type="BN"),
                         align_corners=False,
                         loss_decode=dict(type="CrossEntropyLoss", loss_weight=1.0)),
        train_cfg=dict(), test_cfg=dict(mode="whole"))


def _pseudo_sample(scores):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    s = DetDataSample()
    n = len(scores)
    s.gt_instances = InstanceData(bboxes=torch.tensor([[0.0, 0.0, 8.0, 8.0]] * n).reshape(n, 4),
                                  labels=torch.zeros(n, dtype=torch.long),
                                  scores=torch.tensor(scores, dtype=torch.float))
    return s


@pytest.mark.parametrize("skip, expected_images", [(True, [1, 3]), (False, [0, 1, 2, 3])])
def test_det_mean_teacher_skips_images_without_pseudo_boxes(skip, expected_images):
    """An unlabeled image with no pseudo-box above the threshold is left out of the student's
    loss (it would otherwise train as pure background); with none left, weight 0."""
    from mmengine.config import ConfigDict

    from dgsamp.detseg.det_mean_teacher import MeanTeacherDetector

    seen = {}

    class Student(nn.Module):
        def loss(self, inputs, samples):
            seen["images"] = inputs[:, 0, 0, 0].long().tolist()
            seen["boxes"] = [len(s.gt_instances) for s in samples]
            return dict(loss_cls=inputs.sum() * 0 + 1.0)

    mt = MeanTeacherDetector.__new__(MeanTeacherDetector)
    nn.Module.__init__(mt)
    mt.student = Student()
    mt.semi_train_cfg = ConfigDict(cls_pseudo_thr=0.5, unsup_weight=2.0, skip_empty_pseudo=skip)
    inputs = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 4, 4).contiguous()
    samples = [_pseudo_sample([0.2]), _pseudo_sample([0.9, 0.1]), _pseudo_sample([]),
               _pseudo_sample([0.6])]
    losses = mt.loss_by_pseudo_instances(inputs, samples)
    assert seen["images"] == expected_images
    assert float(losses["unsup_loss_cls"]) == 2.0
    empty = [_pseudo_sample([0.1]), _pseudo_sample([])]
    losses = mt.loss_by_pseudo_instances(inputs[:2], empty)
    assert seen["images"] == [0, 1] and float(losses["unsup_loss_cls"]) == 0.0


def test_frozen_bn_stats_keeps_running_statistics():
    from dgsamp.methods.bn_stats import frozen_bn_stats

    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.BatchNorm2d(4, momentum=None))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    x = torch.randn(6, 3, 5, 5) * 3 + 2
    with frozen_bn_stats(net):
        y = net(x)
    after = {k: v for k, v in net.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.momentum for m in net.modules() if isinstance(m, nn.BatchNorm2d)] == [0.1, None]
    # still normalized with the batch's own statistics (train mode), unlike eval mode
    assert abs(float(y.mean())) < 1e-5
    net(x)  # outside the block the statistics move again
    assert not torch.equal(before["1.running_mean"], net.state_dict()["1.running_mean"])


def test_reestimate_bn_stats_is_the_exact_mean_of_the_batches():
    from dgsamp.methods.bn_stats import reestimate_bn_stats

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    net = nn.Sequential(conv, nn.BatchNorm2d(4, momentum=0.3), nn.Dropout(0.5))
    net.eval()
    batches = [torch.randn(5, 3, 4, 4) * 2 + 1 for _ in range(3)]
    assert reestimate_bn_stats(net, batches) == 15
    per_batch = [conv(b).detach().transpose(0, 1).reshape(4, -1) for b in batches]
    bn = net[1]
    torch.testing.assert_close(bn.running_mean, torch.cat(per_batch, 1).mean(1), rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(bn.running_var, torch.stack([f.var(1) for f in per_batch]).mean(0),
                               rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.3 and not bn.training and not net[2].training
    with pytest.raises(ValueError, match="no BatchNorm"):
        reestimate_bn_stats(nn.Linear(2, 2), [torch.randn(1, 2)])


def test_classmix_loss_uses_only_source_labels_and_weights_pseudo_labels():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules

    import dgsamp.models.backbones  # noqa: F401  (registers TimmBackbone)
    from dgsamp.detseg.seg_mean_teacher import ClassMixMeanTeacher

    register_all_modules(init_default_scope=True)
    torch.manual_seed(0)
    model = ClassMixMeanTeacher(
        _tiny_segmentor(), data_preprocessor=dict(
            type="MultiBranchSegDataPreProcessor", mean=[0, 0, 0], std=[255, 255, 255],
            size=(32, 32)), pseudo_threshold=0.0)

    def branch(labeled):
        samples = []
        for _ in range(2):
            s = SegDataSample(metainfo=dict(img_shape=(32, 32), ori_shape=(32, 32)))
            if labeled:
                s.gt_sem_seg = PixelData(data=torch.randint(0, 4, (1, 32, 32)))
            samples.append(s)
        return dict(inputs=[torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
                            for _ in range(2)], data_samples=samples)

    data = model.data_preprocessor(dict(source=branch(True), target=branch(False)), True)
    assert all("gt_sem_seg" not in s for s in data["target"]["data_samples"])
    losses = model(**data, mode="loss")
    assert {"src.decode.loss_ce", "mix.loss_ce", "mix.pseudo_quality"} <= set(losses)
    assert float(losses["mix.pseudo_quality"]) == 1.0  # threshold 0: every pixel confident
    losses["mix.loss_ce"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert any(p.grad is not None for p in model.student.parameters())
    model.burn_in_iters = 10**9
    assert "mix.loss_ce" not in model(**data, mode="loss")


# ------------------------------------------------------------------ end to end (tools/train.py)
@pytest.fixture(scope="module")
def shapes_cache(tmp_path_factory):
    """The default shapes benchmark (what the configs use), generated once per module."""
    from dgsamp.datasets.shapes import generate_shapes

    cache = tmp_path_factory.mktemp("cache")
    generate_shapes(cache / "shapes")
    return cache


def _val_opts(n: int = 4) -> list[str]:
    return [f"val_dataloader.dataset.datasets.{i}.indices={n}" for i in range(len(DOMAINS))]


def train(config: str | Path, work_dir: Path, cache: Path, iters: int = 4,
          extra: tuple[str, ...] = ()) -> dict:
    opts = [f"train_cfg.max_iters={iters}", f"train_cfg.val_interval={iters}",
            "default_hooks.logger.interval=1", *_val_opts(), *extra]
    env = dict(os.environ, DGSAMP_DATA_CACHE=str(cache), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "tools/train.py", str(config), "--work-dir",
                           str(work_dir), "--cfg-options", *opts], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads((work_dir / "results.json").read_text())["metrics"]


def _assert_per_domain(metrics: dict, names: tuple[str, ...]) -> None:
    for d in DOMAINS:
        for n in names:
            assert f"{n}/{d}" in metrics, sorted(metrics)
    for n in names:
        assert f"{n}/train_domains" in metrics and f"{n}/test_domains" in metrics


@pytest.mark.slow
@pytest.mark.parametrize("config", ["configs/det/faster_rcnn_r18_shapes_source_only.py",
                                    "configs/det/retinanet_r18_shapes_source_only.py"])
def test_det_source_only_per_domain_ap(config, shapes_cache, tmp_path):
    metrics = train(config, tmp_path, shapes_cache)
    _assert_per_domain(metrics, ("AP", "AP50"))


@pytest.mark.slow
def test_seg_source_only_per_domain_miou(shapes_cache, tmp_path):
    metrics = train("configs/seg/segformer_r18_shapes_source_only.py", tmp_path, shapes_cache)
    _assert_per_domain(metrics, ("mIoU",))


MT_DET_OPTS = ("model.burn_in_iters=2", "model.semi_train_cfg.cls_pseudo_thr=0.05")
MT_SEG_OPTS = ("model.burn_in_iters=2", "model.pseudo_threshold=0.5")


@pytest.mark.slow
@pytest.mark.parametrize("config", ["configs/det/faster_rcnn_r18_shapes_mean_teacher.py",
                                    "configs/det/retinanet_r18_shapes_mean_teacher.py"])
def test_det_mean_teacher_runs(config, shapes_cache, tmp_path):
    metrics = train(config, tmp_path, shapes_cache, extra=MT_DET_OPTS)
    _assert_per_domain(metrics, ("AP", "AP50"))
    log = next(tmp_path.rglob("*.log")).read_text()
    assert "unsup_loss" in log  # the pseudo-label branch ran after the burn-in


@pytest.mark.slow
def test_seg_classmix_runs(shapes_cache, tmp_path):
    metrics = train("configs/seg/segformer_r18_shapes_classmix.py", tmp_path, shapes_cache,
                    extra=MT_SEG_OPTS)
    _assert_per_domain(metrics, ("mIoU",))
    assert "mix.loss_ce" in next(tmp_path.rglob("*.log")).read_text()


def _poisoned_copy(cache: Path, dst: Path) -> Path:
    """Copy of the cache whose target-domain *training* labels are garbage or gone."""
    shutil.copytree(cache, dst)
    (root,) = list((dst / "shapes").iterdir())
    for i, style in enumerate(TARGETS):
        ann = root / style / "train.json"
        if i == 0:
            ann.unlink()
            shutil.rmtree(root / style / "train" / "labels")
        else:
            ann.write_text("{poison")
            for png in (root / style / "train" / "labels").glob("*.png"):
                png.write_bytes(b"poison")
    return dst


def _final_state(work_dir: Path) -> dict:
    ckpt = sorted(work_dir.glob("iter_*.pth"))[-1]
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("config,opts", [
    ("configs/det/faster_rcnn_r18_shapes_mean_teacher.py", MT_DET_OPTS),
    ("configs/seg/segformer_r18_shapes_classmix.py", MT_SEG_OPTS)])
def test_target_labels_never_read(config, opts, shapes_cache, tmp_path):
    poisoned = _poisoned_copy(shapes_cache, tmp_path / "poisoned")
    clean_metrics = train(config, tmp_path / "a", shapes_cache, extra=opts)
    poison_metrics = train(config, tmp_path / "b", poisoned, extra=opts)
    assert clean_metrics == poison_metrics
    a, b = _final_state(tmp_path / "a"), _final_state(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


HOOKS = """
custom_hooks = [
    {extra}
    dict(type='CostHook'),
    dict(type='SparseBackwardHook', method='ssprop', keep=0.5, include=['backbone'],
         by_epoch=False),
    dict(type='GradSampHook', schedule=dict(type='periodic', every=2, warmup=2), window=2),
]
"""


@pytest.mark.slow
@pytest.mark.parametrize("config,extra,opts", [
    ("configs/det/faster_rcnn_r18_shapes_source_only.py", "", ()),
    ("configs/seg/segformer_r18_shapes_source_only.py", "", ()),
    ("configs/det/retinanet_r18_shapes_mean_teacher.py",
     "dict(type='EMATeacherHook', momentum=0.01),", MT_DET_OPTS),
    ("configs/seg/segformer_r18_shapes_classmix.py",
     "dict(type='EMATeacherHook', momentum=0.01),", MT_SEG_OPTS),
])
def test_dgsamp_hooks_on_dense_models(config, extra, opts, shapes_cache, tmp_path):
    cfg = tmp_path / "with_hooks.py"
    cfg.write_text(f"_base_ = '{ROOT / config}'\n" + HOOKS.format(extra=extra))
    metrics = train(cfg, tmp_path / "work", shapes_cache, iters=8, extra=opts)
    assert metrics
    _check_hook_outputs(tmp_path / "work")


def _check_hook_outputs(work_dir: Path) -> None:
    cost = json.loads((work_dir / "cost.json").read_text())
    kinds = [r["kind"] for r in cost["epochs"]]
    assert "skipped" in kinds and "trained" in kinds, kinds  # GradSamp skipped a window
    assert cost["totals"]["flops"]["forward"]["value"] > 0
    log = next(work_dir.rglob("*.log")).read_text()
    assert "sparse_keep" in log


@pytest.mark.slow
@pytest.mark.parametrize("config", ["configs/det/faster_rcnn_mmdet_base_shapes.py",
                                    "configs/seg/segformer_mmseg_base_shapes.py"])
def test_inherited_mmdet_mmseg_configs_with_dgsamp_hooks(config, shapes_cache, tmp_path):
    text = (ROOT / config).read_text()
    assert "_base_ = 'mmdet::" in text or "_base_ = 'mmseg::" in text
    metrics = train(config, tmp_path, shapes_cache, iters=8,
                    extra=("custom_hooks.2.window=2",))
    assert metrics
    _check_hook_outputs(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("config,opts,metric", [
    ("configs/det/faster_rcnn_r18_shapes_source_only.py", (), "AP50"),
    # a ClassMix teacher has no preprocessor of its own; its pipeline loads and checks labels
    ("configs/seg/segformer_r18_shapes_classmix.py", MT_SEG_OPTS, "mIoU")])
def test_adabn_test_loop_per_domain(config, opts, metric, shapes_cache, tmp_path):
    """tools/test.py --adabn (AdaBNTestLoop): each domain evaluated with BN statistics of its
    own unlabeled images, per-domain and group metrics in its test_results.json."""
    train(config, tmp_path / "train", shapes_cache, extra=opts)
    ckpt = next((tmp_path / "train").glob("iter_*.pth"))
    opts = [f"test_dataloader.dataset.datasets.{i}.indices=4" for i in range(len(DOMAINS))]
    env = dict(os.environ, DGSAMP_DATA_CACHE=str(shapes_cache), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "tools/test.py", config, str(ckpt), "--adabn",
                           "--work-dir", str(tmp_path / "adabn"), "--cfg-options",
                           "test_cfg.images=8", *opts],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    metrics = json.loads((tmp_path / "adabn" / "test_results.json").read_text())["metrics"]
    _assert_per_domain(metrics, (metric,))
    logs = "".join(p.read_text() for p in (tmp_path / "adabn").rglob("*.log"))
    assert logs.count("statistics from 8 unlabeled images") == len(DOMAINS)
