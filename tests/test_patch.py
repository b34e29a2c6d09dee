"""Patching: selection, state_dict/forward invariance, reversibility, errors and warnings."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from dgsamp.methods import (
    patch,
    patched_modules,
    set_sparsity,
    sparse_backward,
    sparse_stats,
    unpatch,
)
from dgsamp.methods.dither import DitherConv2d, DitherLinear
from dgsamp.methods.ssprop import SsPropConv2d, SsPropLinear


class MyConv(nn.Conv2d):
    """A subclass with the stock forward: patchable."""


class CustomConv(nn.Conv2d):
    """A subclass with its own forward: must be skipped."""

    def forward(self, x):
        return nn.functional.conv2d(x, self.weight, self.bias, self.stride, 1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            MyConv(8, 8, 3, padding=1, groups=2, padding_mode="reflect"),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),
        )
        self.neck = nn.Conv2d(8, 16, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 4 * 4, 10))

    def forward(self, x):
        return self.head(self.neck(self.backbone(x)))


def _net():
    torch.manual_seed(0)
    return Net()


def test_state_dict_forward_and_unpatch():
    m = _net()
    ref = _net()
    keys = list(m.state_dict().keys())
    x = torch.randn(2, 3, 4, 4)
    y_ref = ref(x)
    names = patch(m, "ssprop", keep=0.5)
    assert set(names) == {"backbone.0", "backbone.3", "backbone.4", "neck", "head.1"}
    assert list(m.state_dict().keys()) == keys
    assert isinstance(m.backbone[0], SsPropConv2d) and isinstance(m.head[1], SsPropLinear)
    assert isinstance(m.backbone[3], MyConv)  # still an instance of its own class
    torch.testing.assert_close(m(x), y_ref, atol=0, rtol=0)
    # checkpoints load both ways
    m.load_state_dict(ref.state_dict())
    ref.load_state_dict(m.state_dict())
    m(x).sum().backward()
    assert m.backbone[0].weight.grad is not None
    assert sparse_stats(m)["kept_fraction"] == pytest.approx(0.5, abs=0.1)
    assert set(unpatch(m)) == set(names)
    assert type(m.backbone[0]) is nn.Conv2d and type(m.backbone[3]) is MyConv
    assert not hasattr(m.backbone[0], "keep") and not hasattr(m.backbone[0], "_sparse_orig_class")
    assert patched_modules(m) == {}
    torch.testing.assert_close(m(x), y_ref, atol=0, rtol=0)


def test_dither_patch_forward_identical_and_density():
    m = _net()
    x = torch.randn(2, 3, 4, 4)
    y_ref = m(x)
    patch(m, "dither", scale=8.0)
    assert isinstance(m.neck, DitherConv2d) and isinstance(m.head[1], DitherLinear)
    torch.testing.assert_close(m(x), y_ref, atol=0, rtol=0)
    m(x).pow(2).sum().backward()
    for mod in patched_modules(m).values():
        assert isinstance(mod.grad_density, float) and mod.grad_density < 0.5
        assert not hasattr(mod, "keep")  # cost accounting tells the methods apart this way
    st = sparse_stats(m)
    assert st["dither_layers"] == 5 and st["grad_sparsity"] > 0.5
    unpatch(m)
    assert not hasattr(m.neck, "grad_density")


def test_include_exclude_patterns():
    m = _net()
    assert patch(m, "ssprop", keep=0.3, include="backbone", exclude=["backbone.4"]) == [
        "backbone.0", "backbone.3"]
    unpatch(m)
    assert patch(m, "ssprop", keep=0.3, include=["re:^(neck|head)"]) == ["neck", "head.1"]
    unpatch(m)
    assert patch(m, "ssprop", keep=0.3, include="*.[03]", types="Conv2d") == [
        "backbone.0", "backbone.3"]
    unpatch(m)
    assert patch(m, "dither", types=["linear"]) == ["head.1"]
    unpatch(m)


def test_include_no_match_lists_names():
    m = _net()
    with pytest.raises(ValueError, match=r"matches no module.*'backbone\.0'.*'head\.1'"):
        patch(m, "ssprop", keep=0.5, include=["encoder"])
    big = nn.Sequential(*[nn.Linear(2, 2) for _ in range(100)])
    with pytest.raises(ValueError, match=r"more\)") as e:
        patch(big, "ssprop", keep=0.5, include="nothing*")
    assert len(str(e.value)) < 1000
    assert patched_modules(m) == {}


def test_unsupported_types_one_warning():
    m = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ConvTranspose2d(4, 4, 3), nn.Conv3d(4, 4, 1),
                      CustomConv(4, 4, 3), nn.Conv2d(4, 4, 3), nn.Linear(4, 4),
                      nn.MultiheadAttention(4, 2))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        names = patch(m, "ssprop", keep=0.5)
    ours = [w for w in rec if "cannot handle" in str(w.message)]
    assert len(ours) == 1
    msg = str(ours[0].message)
    for t in ("Conv1d", "ConvTranspose2d", "Conv3d", "CustomConv", "6.out_proj"):
        assert t in msg
    assert names == ["4", "5"]


@pytest.mark.parametrize("kw,match", [
    (dict(method="ssprop", keep=0.0), "keep"),
    (dict(method="ssprop", keep=1.5), "keep"),
    (dict(method="dither", scale=0.0), "scale"),
    (dict(method="dither", scale=-2), "scale"),
    (dict(method="dither", keep=0.5), "dither takes scale"),
    (dict(method="ssprop", scale=8.0), "ssprop takes keep"),
    (dict(method="sparse"), "method must be one of"),
    (dict(method="ssprop", keep=0.5, select="best"), "select"),
    (dict(method="ssprop", keep=0.5, bogus=1), "bad option"),
    (dict(method="ssprop", keep=0.5, types=["Conv3d"]), "unsupported layer type"),
    (dict(method="ssprop", keep=0.5, include="re:("), "regular expression"),
])
def test_bad_inputs(kw, match):
    m = _net()
    with pytest.raises(ValueError, match=match):
        patch(m, **kw)
    assert patched_modules(m) == {}


def test_no_layer_selected():
    with pytest.raises(ValueError, match="no Conv2d/Linear"):
        patch(nn.Sequential(nn.ReLU()), "ssprop", keep=0.5)


def test_context_manager_and_set_sparsity():
    m = _net()
    x = torch.randn(2, 3, 4, 4)
    with sparse_backward(m, method="ssprop", keep=0.5) as names:
        assert len(names) == 5
        assert set_sparsity(m, keep=0.25) == 5
        assert all(mod.keep == 0.25 for mod in patched_modules(m).values())
        m(x).sum().backward()
        assert sparse_stats(m)["keep"] == 0.25
        with pytest.raises(ValueError, match="keep"):
            set_sparsity(m, keep=2)
    assert patched_modules(m) == {}
    with pytest.raises(RuntimeError):
        with sparse_backward(m, method="dither", scale=4):
            raise RuntimeError("boom")
    assert patched_modules(m) == {}


def test_patched_keep1_gradients_equal_dense():
    m, ref = _net().double(), _net().double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    patch(m, "ssprop", keep=1.0)
    m(x).pow(2).sum().backward()
    ref(x).pow(2).sum().backward()
    for (n, a), (_, b) in zip(m.named_parameters(), ref.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=0, msg=n)


def test_repatch_other_method_rejected():
    m = _net()
    patch(m, "ssprop", keep=0.5)
    with pytest.raises(ValueError, match="already patched"):
        patch(m, "dither")
    patch(m, "ssprop", keep=0.2)  # same method: settings update
    assert m.neck.keep == 0.2
    unpatch(m)


def test_pattern_matches_nested_module_names():
    # mmdet's semi-supervised wrappers nest the detector: 'backbone' must find
    # 'student.backbone' and 'teacher.backbone' as an mmdet user would expect.
    from dgsamp.methods import patch, unpatch

    det = nn.Module()
    det.backbone = nn.Sequential(nn.Conv2d(3, 4, 3))
    det.head = nn.Conv2d(4, 2, 1)
    wrapper = nn.Module()
    wrapper.student, wrapper.teacher = det, copy.deepcopy(det)
    names = patch(wrapper, "ssprop", keep=0.5, include=["backbone"])
    assert sorted(names) == ["student.backbone.0", "teacher.backbone.0"]
    unpatch(wrapper)


class TimmStyleNet(nn.Module):
    """timm's convention: ``get_classifier()`` names the prediction layer."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten())
        self.fc = nn.Linear(8, 10)

    def get_classifier(self):
        return self.fc

    def forward(self, x):
        return self.fc(self.features(x))


def test_output_layers_stay_dense_by_default():
    from dgsamp.methods import output_layers

    m = TimmStyleNet()
    assert output_layers(m) == ["fc"]
    assert patch(m, "ssprop", keep=0.2) == ["features.0"]
    x = torch.randn(4, 3, 6, 6)
    m(x).sum().backward()
    # the head got a full (dense) gradient: all 10 class rows, not k = 2 of them
    assert int((m.fc.weight.grad.abs().sum(1) > 0).sum()) == 10
    unpatch(m)
    assert patch(m, "dither", dense_output=False) == ["features.0", "fc"]
    unpatch(m)
    with pytest.raises(ValueError, match="dense_output=False"):
        patch(m, "ssprop", keep=0.5, include="fc")


def test_mm_prediction_layers_found_by_name():
    from dgsamp.methods import output_layers

    head = nn.Module()
    head.convs = nn.Conv2d(4, 4, 3)
    head.conv_seg = nn.Conv2d(4, 3, 1)
    roi = nn.Module()
    roi.fc_cls, roi.fc_reg, roi.shared_fc = nn.Linear(4, 3), nn.Linear(4, 8), nn.Linear(4, 4)
    seg = nn.Module()
    seg.decode_head, seg.roi_head = head, roi
    assert output_layers(seg) == ["decode_head.conv_seg", "roi_head.fc_cls", "roi_head.fc_reg"]
    assert patch(seg, "ssprop", keep=0.5) == ["decode_head.convs", "roi_head.shared_fc"]


def test_dgsamp_classifier_head_stays_dense():
    import dgsamp.models  # noqa: F401  (registers digits_cnn with timm)
    from dgsamp.models.classifier import DomainClassifier

    m = DomainClassifier("digits_cnn", num_classes=10, in_chans=1)
    names = patch(m, "ssprop", keep=0.2)
    assert "classifier" not in names and len(names) == 4  # the four convs
    unpatch(m)


def test_patch_takes_a_validated_options_object():
    from dgsamp.methods.dither import DitherOptions
    from dgsamp.methods.patch import layer_options
    from dgsamp.methods.ssprop import SsPropOptions

    opts = layer_options("ssprop", keep=0.3, select="random")
    assert opts == SsPropOptions(keep=0.3, select="random")
    m = _net()
    patch(m, opts)
    assert all(mod.sparse_options is opts for mod in patched_modules(m).values())
    with pytest.raises(ValueError, match="holds every setting"):
        patch(m, opts, keep=0.2)
    unpatch(m)
    patch(m, DitherOptions(scale=2.0, enabled=False))
    assert set_sparsity(m, keep=0.5) == 0  # keep is ssProp's; dither has its own on/off
    assert set_sparsity(m, dither=True, scale=3.0) == 5
    assert all(mod.enabled and mod.scale == 3.0 for mod in patched_modules(m).values())
    unpatch(m)
