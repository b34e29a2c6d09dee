"""DG/DA algorithms: configs, one update each, their mechanics, SWAD, and target labels unread."""

from __future__ import annotations

import glob
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, tiny_options
from mmengine.config import Config
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.registry import DATASETS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

import dgsamp  # noqa: F401
from dgsamp.datasets.benchmarks import RotatedDigits
from dgsamp.datasets.digits import rotated_digits
from dgsamp.datasets.multidomain import Domain
from dgsamp.engine import check_config
from dgsamp.engine.swad_hook import SWADHook
from dgsamp.models.algorithms import ALGORITHMS, apply_algorithm, grad_reverse

DIGITS = ("rotated_digits", "colored_digits")
ALG_STEMS = {"DANN": "dann", "CDANN": "cdann", "CORAL": "coral", "MMD": "mmd",
             "MixStyle": "mixstyle", "IRM": "irm", "VREx": "vrex", "GroupDRO": "groupdro",
             "Mixup": "mixup"}


def _batch(n_domains: int = 3, per: int = 8, size: int = 12, classes: int = 10,
           chans: int = 1, target: int | None = None) -> dict:
    g = torch.Generator().manual_seed(0)
    domains = torch.arange(n_domains).repeat_interleave(per)
    labels = torch.randint(0, classes, (n_domains * per,), generator=g)
    if target is not None:
        labels[domains == target] = -1
    return dict(inputs=torch.rand(n_domains * per, chans, size, size, generator=g),
                data_samples=dict(label=labels, domain=domains))


def _model(alg: str, **kw):
    cfg = dict(type=alg, model_name="digits_cnn", num_classes=10, in_chans=1, **kw)
    if alg in ("DANN", "CDANN", "GroupDRO"):
        cfg.setdefault("num_domains", 6)
    return MODELS.build(cfg)


# -- configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bench", DIGITS)
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_digits_configs_exist_check_and_match_apply_algorithm(alg, bench):
    stem = "erm" if alg == "ERM" else ALG_STEMS[alg]
    cfg = Config.fromfile(str(ROOT / f"configs/dg/{stem}_{bench}.py"))
    check_config(cfg)
    erm = Config.fromfile(str(ROOT / f"configs/dg/erm_{bench}.py"))
    n = 6 if bench == "rotated_digits" else 3
    expected = apply_algorithm(erm, alg, num_domains=n)
    assert cfg.model.type == expected.model.type == alg
    assert cfg.model.get("num_domains") == expected.model.get("num_domains")
    assert cfg.train_dataloader.batch_size == expected.train_dataloader.batch_size
    assert cfg.train_dataloader.get("batch_sampler") == expected.train_dataloader.get(
        "batch_sampler")
    assert cfg.optim_wrapper.to_dict() == expected.optim_wrapper.to_dict()


def test_da_configs_use_unlabeled_target():
    for path in glob.glob(str(ROOT / "configs/da/*.py")):
        cfg = Config.fromfile(path)
        check_config(cfg)
        ds = cfg.train_dataloader.dataset
        assert ds.type == "SourceTargetDataset" and ds.source.part == "train"
        assert cfg.train_dataloader.batch_sampler.type == "DomainBalancedBatchSampler"


# -- one update each ----------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_every_algorithm_updates_and_ignores_unlabeled_items(alg):
    torch.manual_seed(0)
    model = _model(alg)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = [p.detach().clone() for p in model.featurizer.parameters()]
    log = model.train_step(_batch(target=2), wrapper)
    assert torch.isfinite(log["loss"]), log
    after = list(model.featurizer.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    model.eval()
    out = model.val_step(dict(inputs=torch.rand(4, 1, 12, 12),
                              data_samples=dict(label=torch.zeros(4, dtype=torch.long),
                                                domain=torch.zeros(4, dtype=torch.long))))
    assert len(out) == 4 and 0 <= out[0]["pred_label"] < 10


def test_gradient_reversal_flips_and_scales():
    x = torch.ones(3, requires_grad=True)
    grad_reverse(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))


def test_dann_discriminator_has_its_own_optimizer():
    model = _model("DANN")
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="PerModuleOptimWrapperConstructor", optim_wrapper_cfg=dict(
            model=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-3)),
            discriminator=dict(type="OptimWrapper",
                               optimizer=dict(type="Adam", lr=1e-2, betas=(0.5, 0.9))))))
    wrappers = constructor(model)
    assert isinstance(wrappers, OptimWrapperDict)
    disc_params = {id(p) for p in model.discriminator.parameters()}
    main_params = {id(p) for g in wrappers["model"].optimizer.param_groups for p in g["params"]}
    d_params = {id(p) for g in wrappers["discriminator"].optimizer.param_groups
                for p in g["params"]}
    assert d_params == disc_params and not (main_params & disc_params)
    assert main_params == {id(p) for p in model.parameters()} - disc_params
    assert wrappers["discriminator"].optimizer.param_groups[0]["betas"] == (0.5, 0.9)
    # DomainBed's alternation: update 1 trains featurizer + classifier, update 2 the discriminator
    for phase, moved, still in (("generator", model.featurizer, model.discriminator),
                                ("discriminator", model.discriminator, model.featurizer)):
        assert model.phase() == phase
        m0 = [p.detach().clone() for p in moved.parameters()]
        s0 = [p.detach().clone() for p in still.parameters()]
        log = model.train_step(_batch(), wrappers)
        assert ("loss_adv" in log) == (phase == "generator") != ("loss_disc" in log)
        assert any(not torch.equal(a, b) for a, b in zip(m0, moved.parameters(), strict=True))
        assert all(torch.equal(a, b) for a, b in zip(s0, still.parameters(), strict=True))
    assert int(model.update_count) == 2
    with pytest.raises(ValueError, match="names no sub-module"):
        OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
            type="PerModuleOptimWrapperConstructor", optim_wrapper_cfg=dict(
                model=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=1)),
                discrim=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=1)))))(model)


def test_dann_featurizer_gets_reversed_discriminator_gradient():
    # Only the discriminator loss: the featurizer's gradient must be -lambda_d times the one it
    # would get from minimizing that loss.
    torch.manual_seed(0)
    model = _model("DANN", lambda_d=0.5)
    batch = _batch()
    feats = model.extract_feat(batch["inputs"])
    plain = torch.autograd.grad(nn.functional.cross_entropy(
        model.discriminator(feats), batch["data_samples"]["domain"]), feats)[0]
    feats = model.extract_feat(batch["inputs"]).detach().requires_grad_()
    loss = nn.functional.cross_entropy(model.discriminator(grad_reverse(feats, 0.5)),
                                       batch["data_samples"]["domain"])
    (rev,) = torch.autograd.grad(loss, feats)
    assert torch.allclose(rev, -0.5 * plain, atol=1e-6)


def test_cdann_conditions_on_labels_and_predictions_for_unlabeled():
    torch.manual_seed(0)
    model = _model("CDANN")
    embed = model.discriminator.class_embed.weight  # DomainBed's nn.Embedding init: N(0, 1)
    assert embed.shape == (model.featurizer.num_features, 10)
    assert abs(float(embed.std()) - 1.0) < 0.05 and abs(float(embed.mean())) < 0.05
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    for key in ("loss_adv", "loss_disc"):  # a generator, then a discriminator update
        log = model.train_step(_batch(target=1), wrapper)
        assert torch.isfinite(log[key])


def test_dann_schedule_and_options_are_checked():
    model = _model("DANN", d_steps_per_g_step=3)
    phases = []
    for _ in range(8):
        phases.append(model.phase()[0])
        model.update_count += 1
    assert "".join(phases) == "ddgdddgd"  # DomainBed: count n is a D step iff n % 4 < 3
    assert _model("DANN", d_steps_per_g_step=0).phase() == "joint"
    assert _model("CDANN").class_balance and not _model("DANN").class_balance
    with pytest.raises(ValueError, match="d_steps_per_g_step"):
        _model("DANN", d_steps_per_g_step=1.5)


def test_irm_and_vrex_switch_penalty_on_and_reset_adam():
    for alg in ("IRM", "VREx"):
        model = _model(alg, penalty_weight=1000.0, anneal_iters=2)
        wrapper = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))
        model.train_step(_batch(), wrapper)
        assert model.current_weight() == 1.0 and len(wrapper.optimizer.state) > 0
        model.train_step(_batch(), wrapper)
        assert int(model.update_count) == 2 and len(wrapper.optimizer.state) == 0
        assert model.current_weight() == 1000.0


def test_groupdro_upweights_the_worst_domain():
    model = _model("GroupDRO", eta=1.0)
    batch = _batch(n_domains=2)
    # make domain 1 hard: its labels are noise the model cannot fit in one step
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.arange(10.0))  # predicts class 9 for everything
    batch["data_samples"]["label"][:8] = 9
    model.loss(batch["inputs"], batch["data_samples"])
    assert model.q[1] > model.q[0]


def test_mixstyle_hooks_cnns_and_refuses_token_models():
    model = _model("MixStyle", p=1.0)
    assert model.layers == ["features.2", "features.5", "features.8"]
    x = torch.rand(6, 1, 12, 12)
    model.eval()
    a = model.logits(x)
    assert torch.equal(a, model.logits(x))  # identity in eval
    model.train()
    torch.manual_seed(1)
    assert not torch.allclose(a, model.logits(x))
    res = MODELS.build(dict(type="MixStyle", model_name="resnet18", num_classes=3, in_chans=3))
    assert res.layers == ["layer1", "layer2", "layer3"]
    with pytest.raises(ValueError, match="token model"):
        MODELS.build(dict(type="MixStyle", model_name="vit_tiny_patch16_224", num_classes=3,
                          model_kwargs=dict(img_size=32)))
    with pytest.raises(ValueError, match="is not a module"):
        _model("MixStyle", layers=["features.99"])


def test_mixstyle_warns_once_on_maps_too_small_to_keep_their_content():
    import warnings

    tiny = dict(type="MixStyle", model_name="resnet10t", num_classes=3, in_chans=3, p=1.0,
                model_kwargs=dict(channels=(8, 8, 8, 8), stem_width=8))
    x = torch.rand(4, 3, 32, 32)  # layer3's maps: 2x2
    model = MODELS.build(tiny).train()
    with pytest.warns(UserWarning, match="'layer3' mixes the statistics of 2x2"):
        model.logits(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.logits(x)  # once per layer
        MODELS.build({**tiny, "layers": ["layer1", "layer2"]}).train().logits(x)  # 8x8, 4x4


def test_domain_index_beyond_num_domains_is_an_error():
    model = _model("DANN", num_domains=2)
    with pytest.raises(ValueError, match="num_domains"):
        model.loss(**_batch(n_domains=3))


# -- the DA setting: target labels never read -----------------------------------------------------
class RaisingLabels:
    """Labels that have a length and raise when any is read."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        raise AssertionError("a target label was read")


@DATASETS.register_module()
class PoisonedTargetDigits(RotatedDigits):
    """RotatedDigits whose test domains' labels raise on access or are shuffled."""

    _poison = "raise"
    _test = ("75",)

    @staticmethod
    def make_domains(seed: int = 0, image_size: int = 28, cache_dir=None):
        domains = rotated_digits(seed=seed, image_size=image_size, cache_dir=cache_dir)
        out = []
        for d in domains:
            if d.name in PoisonedTargetDigits._test:
                labels = (RaisingLabels(len(d)) if PoisonedTargetDigits._poison == "raise"
                          else d.labels[torch.randperm(len(d))])
                d = Domain(d.name, d.images, labels)
            out.append(d)
        return out


def _da_run(tmp_path, poison: str | None) -> dict[str, torch.Tensor]:
    from tools.train import main

    PoisonedTargetDigits._poison = poison or "none"
    source_type = "PoisonedTargetDigits" if poison else "RotatedDigits"
    opts = tiny_options(tmp_path, epochs=1)
    opts = [o.replace("train_dataloader.dataset.image_size",
                      "train_dataloader.dataset.source.image_size") for o in opts
            if not o.startswith("train_dataloader.batch_size")]
    opts += [f"train_dataloader.dataset.source.type={source_type}"]
    main([str(ROOT / "configs/da/dann_rotated_digits.py"), *opts])
    return torch.load(tmp_path / "epoch_1.pth", map_location="cpu")["state_dict"]


def test_da_target_labels_are_never_read(tmp_path):
    from dgsamp.datasets import SourceTargetDataset

    PoisonedTargetDigits._poison = "raise"
    ds = SourceTargetDataset(dict(type="PoisonedTargetDigits", test_domains=["75"],
                                  part="train", image_size=12))
    target_items = [ds[i] for i in range(len(ds.source), len(ds))]
    assert {it["data_samples"]["label"] for it in target_items} == {-1}
    assert {it["data_samples"]["domain"] for it in target_items} == {5}
    with pytest.raises(AssertionError, match="target label was read"):
        ds.target[0]  # the poison works: a labelled read would have failed
    # training with poisoned target labels (raising / shuffled) gives the same weights
    clean = _da_run(tmp_path / "clean", None)
    raising = _da_run(tmp_path / "raise", "raise")
    shuffled = _da_run(tmp_path / "shuffled", "shuffle")
    for k in clean:
        assert torch.equal(clean[k], raising[k]) and torch.equal(clean[k], shuffled[k]), k


# -- SWAD ---------------------------------------------------------------------------------------
def _fake_runner(model: nn.Module, work_dir, test_domains=("75",)):
    saved = []
    runner = SimpleNamespace(
        model=model, iter=0, work_dir=str(work_dir), val_loop=None, train_dataloader=[],
        val_dataloader=SimpleNamespace(dataset=SimpleNamespace(
            metainfo=dict(test_domains=list(test_domains)))),
        save_checkpoint=lambda *a, **k: saved.append(a))
    return runner, saved


def _step(runner, hook, value: float):
    with torch.no_grad():
        runner.model.weight.fill_(value)
    hook.after_train_iter(runner, 0)
    runner.iter += 1


def test_swad_fixed_window_is_the_mean_of_the_snapshots(tmp_path):
    model = nn.Linear(2, 1, bias=False)
    runner, saved = _fake_runner(model, tmp_path)
    hook = SWADHook(begin_iter=3)
    for v in [10.0, 20.0, 1.0, 2.0, 6.0]:  # iterations 1..5; the window holds 3..5
        _step(runner, hook, v)
    hook.after_train(runner)
    assert torch.allclose(model.weight, torch.full_like(model.weight, 3.0))
    assert saved and saved[0][1] == "swad.pth"


def test_swad_valley_window_opens_extends_and_closes(tmp_path):
    model = nn.Linear(1, 1, bias=False)
    runner, _ = _fake_runner(model, tmp_path)
    hook = SWADHook(n_converge=2, n_tolerance=2, tolerance=1.0)
    # (weight during the segment, validation score after it)
    for w, score in [(0, 50), (1, 80), (2, 79), (3, 79.5), (4, 60), (5, 79.8), (6, 10), (7, 10),
                     (8, 99)]:
        _step(runner, hook, float(w))
        hook.after_val_epoch(runner, {"acc/train_domains": score})
    # opens with segments 1, 2 (80 then 79); 3 joins; 4 waits then joins with 5; 6 and 7 wait
    # and close the window; 8 comes too late
    assert hook.phase == "done"
    hook.after_train(runner)
    assert torch.allclose(model.weight, torch.tensor([[3.0]]))  # mean of 1..5
    with pytest.raises(ValueError, match="test-domain"):
        SWADHook(metric="acc/test_domains")
    hook = SWADHook(metric="acc/75")
    _step(runner, hook, 1.0)
    with pytest.raises(ValueError, match="test domain"):
        hook.after_val_epoch(runner, {"acc/75": 1.0})


def test_swad_state_survives_a_checkpoint(tmp_path):
    model = nn.Linear(1, 1, bias=False)
    runner, _ = _fake_runner(model, tmp_path)
    a = SWADHook(n_converge=2)
    for w, s in [(1, 80), (2, 70), (3, 75)]:
        _step(runner, a, float(w))
        a.after_val_epoch(runner, {"acc/train_domains": s})
    _step(runner, a, 4.0)
    ckpt: dict = {}
    a.before_save_checkpoint(runner, ckpt)
    b = SWADHook(n_converge=2)
    b.after_load_checkpoint(runner, ckpt)
    for h in (a, b):
        h.after_val_epoch(runner, {"acc/train_domains": 79.5})
    assert a.phase == b.phase == "averaging"
    assert a.averaged().count == b.averaged().count == 4
    assert torch.equal(a.averaged().sums["weight"], b.averaged().sums["weight"])


@pytest.mark.slow
def test_swad_hook_in_a_real_run(tmp_path, main_config):
    from tools.train import main

    cfg = tmp_path / "swad.py"
    cfg.write_text(f"_base_ = [{main_config!r}]\n"
                   f"custom_hooks = [dict(type='SWADHook', n_converge=2)]\n")
    metrics = main([str(cfg), *tiny_options(tmp_path, epochs=3)])
    assert (tmp_path / "swad.pth").is_file() and "acc/75" in metrics
