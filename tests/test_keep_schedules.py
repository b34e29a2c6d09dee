"""Keep-fraction schedules: formulas of methods.md §2, modifiers, validation."""

from __future__ import annotations

import math

import pytest

from dgsamp.methods.keep_schedules import (
    BarKeep,
    ConstantKeep,
    CosineKeep,
    LinearKeep,
    build_keep_schedule,
)


def test_constant():
    s = build_keep_schedule(dict(type="constant", keep=0.2))
    assert [s(e) for e in range(3)] == [0.2, 0.2, 0.2]
    assert build_keep_schedule(None, keep=0.3)(7) == 0.3
    assert build_keep_schedule(0.4)(0) == 0.4


def test_linear():
    s = LinearKeep(total=5, p_min=0.2, p_max=1.0)
    assert [round(s(e), 6) for e in range(6)] == [1.0, 0.8, 0.6, 0.4, 0.2, 0.2]


def test_cosine():
    s = CosineKeep(total=5, p_min=0.2, p_max=1.0)
    for e in range(5):
        exp = 0.2 + 0.5 * 0.8 * (1 + math.cos(math.pi * e / 4))
        assert s(e) == pytest.approx(exp)
    assert s(0) == pytest.approx(1.0) and s(4) == pytest.approx(0.2)


def test_bar():
    s = BarKeep(total=4, p_min=0.2, p_max=0.9)
    assert [s(e) for e in range(4)] == [0.9, 0.9, 0.2, 0.2]


def test_interleave_first_dense_and_paper_mean():
    s = build_keep_schedule(dict(type="constant", interleave=True), keep=0.2)
    assert [s(e) for e in range(4)] == [1.0, 0.2, 1.0, 0.2]
    assert s.mean_keep(10) == pytest.approx(0.6)  # the paper's "40% fewer computations"
    s2 = build_keep_schedule(dict(type="interleave", keep=0.5, interleave_every=2))
    assert [s2(e) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 1.0, 1.0]


def test_warmup():
    s = build_keep_schedule(dict(type="linear", p_min=0.2, total=5, warmup=2))
    assert s(0) == s(1) == 1.0
    assert s(2) == pytest.approx(0.6)
    s = build_keep_schedule(dict(type="constant", keep=0.2, warmup=1, interleave=True))
    assert [s(e) for e in range(5)] == [1.0, 1.0, 0.2, 1.0, 0.2]
    s = build_keep_schedule(dict(type="warmup", steps=2, schedule=dict(type="constant",
                                                                       keep=0.3)))
    assert [s(e) for e in range(3)] == [1.0, 1.0, 0.3]


def test_by_iteration_period():
    s = build_keep_schedule(dict(type="linear", p_min=0.5, period=3))
    assert [s(i) for i in range(7)] == pytest.approx([1.0, 0.75, 0.5, 1.0, 0.75, 0.5, 1.0])


def test_hook_defaults_fill_in():
    s = build_keep_schedule(dict(type="cosine"), keep=0.2, total=3)
    assert s(0) == pytest.approx(1.0) and s(2) == pytest.approx(0.2)


@pytest.mark.parametrize("cfg,match", [
    (dict(type="constant", keep=0.0), "keep"),
    (dict(type="constant", keep=1.2), "keep"),
    (dict(type="linear", p_min=-0.1, total=3), "keep"),
    (dict(type="linear", p_min=0.2), "total"),
    (dict(type="linear", p_min=0.2, total=0), "total"),
    (dict(type="constant"), "keep"),
    (dict(type="bogus"), "unknown keep schedule"),
    (dict(type="constant", keep=0.2, warmup=-1), "warmup"),
    (dict(type="constant", keep=0.2, foo=1), "unexpected"),
    ("cosine", "schedule must be"),
])
def test_bad_configs(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_keep_schedule(cfg)


def test_bad_step():
    with pytest.raises(ValueError, match="step"):
        ConstantKeep(0.5)(-1)


def test_run_length_is_filled_in_once_the_run_knows_it():
    from dgsamp.methods.keep_schedules import RUN_LENGTH

    cfg = dict(type="cosine", warmup=1, interleave=True)
    deferred = build_keep_schedule(cfg, keep=0.2, total=RUN_LENGTH)
    with pytest.raises(ValueError, match="with_total"):
        deferred(2)  # a sparse step asks the ramp
    bound = deferred.with_total(6)
    direct = build_keep_schedule(cfg, keep=0.2, total=6)
    assert [bound(e) for e in range(8)] == [direct(e) for e in range(8)]
    explicit = build_keep_schedule(dict(type="linear", total=3), keep=0.5, total=RUN_LENGTH)
    assert explicit.with_total(100)(2) == 0.5  # a total in the config wins


def _toy():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))


def test_scheduled_sparse_backward_patches_at_the_start_keep_and_steps():
    from dgsamp.methods import patched_modules
    from dgsamp.methods.keep_schedules import ScheduledSparseBackward

    sb = ScheduledSparseBackward("ssprop", keep=0.25, schedule=dict(type="constant",
                                                                  interleave=True))
    model = _toy()
    assert sb.attach(model, total=4, step=1) == ["0", "2"]  # resumed at epoch 1: sparse
    mods = list(patched_modules(model).values())
    assert [m.keep for m in mods] == [0.25, 0.25]
    assert mods[0].sparse_options is mods[1].sparse_options  # one frozen object, shared
    sb.step(2)
    assert [m.keep for m in mods] == [1.0, 1.0] and sb.current_keep == 1.0
    assert mods[0].sparse_options is mods[1].sparse_options
    assert sb.scalars() == {"train/sparse_keep": 1.0, "train/grad_sparsity": 0.0}
    sb.detach()
    assert patched_modules(model) == {}


def test_scheduled_dither_has_its_own_on_off():
    import torch

    from dgsamp.methods import patched_modules
    from dgsamp.methods.keep_schedules import ScheduledSparseBackward

    sb = ScheduledSparseBackward("dither", scale=4.0, schedule=dict(type="constant", warmup=1))
    model = _toy()
    sb.attach(model, total=3, step=0)
    mods = list(patched_modules(model).values())
    assert not any(m.enabled for m in mods) and not any(hasattr(m, "keep") for m in mods)
    sb.step(1)
    assert all(m.enabled and m.scale == 4.0 for m in mods)
    model(torch.randn(2, 3, 9, 9)).sum().backward()
    st = sb.scalars()
    assert st["train/dither_active"] == 1.0 and st["train/dither_scale"] == 4.0
    assert 0.0 < st["train/grad_density"] < 0.5
    sb.detach()


@pytest.mark.parametrize("kw,match", [
    (dict(method="dither", keep=0.5), "ssprop knob"),
    (dict(method="ssprop", keep=0.5, grouped="never"), "grouped"),
    (dict(method="ssprop", schedule=dict(type="linear", p_min=2.0)), "keep"),
])
def test_scheduled_sparse_backward_validates_at_construction(kw, match):
    from dgsamp.methods.keep_schedules import ScheduledSparseBackward

    with pytest.raises(ValueError, match=match):
        ScheduledSparseBackward(**kw)
