"""GradSamp method (plain PyTorch): fits, samples, schedules, refusal, state, frozen params."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dgsamp.methods.gradsamp import (
    GradSampler,
    PeriodicSchedule,
    RandomSchedule,
    build_schedule,
    fit_ggd_beta,
    fit_update,
    ggd_rho,
    sample_gamma,
    sample_ggd,
    trainable_parameters,
)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def _train_step(model: nn.Module, scale: float = 0.01) -> None:
    """A stand-in for a trained epoch: a deterministic update of every trainable tensor."""
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            if p.requires_grad:
                p.add_(scale * (i + 1) + 0.001 * torch.arange(p.numel()).view_as(p))


# -- distributions ---------------------------------------------------------------------------------
def test_rho_known_values():
    assert ggd_rho(1.0) == pytest.approx(2.0)
    assert ggd_rho(2.0) == pytest.approx(math.pi / 2)
    for b in (0.3, 0.8, 1.0, 1.5, 2.0, 5.0):
        assert fit_ggd_beta(ggd_rho(b)) == pytest.approx(b, rel=1e-6)


@pytest.mark.parametrize("beta", [0.8, 1.0, 1.5, 2.0])
def test_ggd_fit_recovers_beta(beta):
    g = torch.Generator().manual_seed(int(beta * 100))
    x = sample_ggd(0.5, 0.3, beta, (200_000,), g)
    fit = fit_update(x, "ggd")
    assert abs(fit.beta - beta) < 0.05
    assert fit.mu == pytest.approx(0.5, abs=0.01)


def test_gamma_sampler_moments():
    g = torch.Generator().manual_seed(0)
    for shape in (0.4, 1.0, 2.5):
        x = sample_gamma(shape, (100_000,), g)
        assert (x > 0).all()
        assert float(x.mean()) == pytest.approx(shape, rel=0.03)
        assert float(x.var()) == pytest.approx(shape, rel=0.06)


def test_gaussian_layerwise_statistics():
    """The sampled update per tensor has the mean and std of the last update."""
    model = _net()
    s = GradSampler(schedule=dict(type="periodic", every=2), seed=3)
    s.observe(model, 0)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.add_(0.2 + 0.05 * torch.randn(p.shape, generator=g))
    s.observe(model, 1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = s.step_skip(model, 2)
    assert stats["status"] == "applied"
    w = dict(model.named_parameters())["0.weight"]  # 128 elements
    eps = (w.detach() - before["0.weight"]).double()
    mu, sigma, beta = stats["per_tensor"]["0.weight"]
    assert beta == 2.0
    assert mu == pytest.approx(0.2, abs=0.02) and sigma == pytest.approx(0.05, rel=0.2)
    assert float(eps.mean()) == pytest.approx(mu, abs=4 * sigma / math.sqrt(eps.numel()))
    assert float(eps.std()) == pytest.approx(sigma, rel=0.25)


def test_elementwise_centres_on_last_update():
    model = _net()
    s = GradSampler(statistics="elementwise", tau=0.0)
    s.observe(model, 0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train_step(model)
    d = {n: p.detach() - before[n] for n, p in model.named_parameters()}
    s.observe(model, 1)
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    s.step_skip(model, 2)  # tau=0: exact extrapolation of the last update
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach() - after[n], d[n])


def test_ggd_skip_reports_beta():
    model = _net()
    s = GradSampler(distribution="ggd")
    s.observe(model, 0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(sample_ggd(0.0, 0.1, 1.0, p.shape, g).float())
    s.observe(model, 1)
    stats = s.step_skip(model, 2)
    assert stats["status"] == "applied"
    big = stats["per_tensor"]["0.weight"][2]  # 128 Laplace draws: β near 1
    assert 0.6 < big < 1.6
    assert all(math.isfinite(p.abs().sum().item()) for p in model.parameters())


# -- schedules -----------------------------------------------------------------------------------
def _decisions(schedule, epochs, seed=0):
    s = GradSampler(schedule=schedule, seed=seed)
    s.delta = {}  # pretend a fit exists; only the schedule is under test
    out = []
    for e in range(epochs):
        skip = s.should_skip(e, epochs)
        out.append(skip)
        if not skip:
            s.trained_epochs.append(e)
    return out


def test_periodic_schedule():
    d = _decisions(dict(type="periodic", every=4, warmup=2), 12)
    assert [e for e, k in enumerate(d) if k] == [2, 6, 10]
    d = _decisions(dict(type="periodic", every=4, warmup=2), 11)  # 10 is the last: trained
    assert [e for e, k in enumerate(d) if k] == [2, 6]
    d = _decisions(dict(type="periodic", every=3, warmup=4), 12)
    assert [e for e, k in enumerate(d) if k] == [4, 7, 10]


def test_random_schedule_seeded_and_warmup():
    a = _decisions(dict(type="random", p=0.5, warmup=3), 40, seed=7)
    b = _decisions(dict(type="random", p=0.5, warmup=3), 40, seed=7)
    c = _decisions(dict(type="random", p=0.5, warmup=3), 40, seed=8)
    assert a == b and a != c
    assert not any(a[:3]) and not a[-1]
    assert 8 < sum(a) < 30


def test_no_skip_before_two_trained_epochs():
    s = GradSampler(schedule=dict(type="periodic", every=2, warmup=2))
    model = _net()
    assert not s.should_skip(2, 10)  # nothing observed
    s.observe(model, 0)
    assert not s.should_skip(2, 10)  # one snapshot, no update yet
    _train_step(model)
    s.observe(model, 1)
    assert s.should_skip(2, 10)
    with pytest.raises(RuntimeError):
        GradSampler().step_skip(model, 0)


@pytest.mark.parametrize("cfg, match", [
    (dict(type="periodic", every=1), "every"),
    (dict(type="periodic", every=0), "every"),
    (dict(type="periodic", every=4, warmup=1), "two trained"),
    (dict(type="random", p=0.0), "probability"),
    (dict(type="random", p=1.0), "probability"),
    (dict(type="random", p=1.5), "probability"),
    (dict(type="random", p=0.3, warmup=0), "two trained"),
    (dict(type="sometimes"), "type"),
    (dict(type="periodic", k=3), "bad arguments"),
])
def test_bad_schedules_rejected(cfg, match):
    with pytest.raises(ValueError, match=match):
        GradSampler(schedule=cfg)


def test_bad_options_rejected():
    for kw in (dict(distribution="cauchy"), dict(statistics="global"), dict(history="all"),
               dict(tau=-1.0)):
        with pytest.raises(ValueError):
            GradSampler(**kw)
    assert isinstance(build_schedule(None), PeriodicSchedule)
    assert isinstance(build_schedule(RandomSchedule(0.2)), RandomSchedule)


# -- refusal, frozen params, history -------------------------------------------------------------
def test_nonfinite_update_refused():
    model = _net()
    s = GradSampler()
    s.observe(model, 0)
    _train_step(model)
    with torch.no_grad():
        model[3].weight[0, 0] = float("nan")
    s.observe(model, 1)
    before = [p.detach().clone() for p in model.parameters()]
    stats = s.step_skip(model, 2)
    assert stats["status"] == "refused" and "non-finite" in stats["reason"]
    for p, q in zip(model.parameters(), before, strict=True):
        torch.testing.assert_close(p.detach(), q, equal_nan=True)
    assert s.skipped_epochs == [] and s.refused_epochs == [2]


def test_huge_update_overflowing_dtype_refused():
    model = _net().half()
    s = GradSampler(statistics="elementwise")
    s.observe(model, 0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(60000.0)
    s.observe(model, 1)
    stats = s.step_skip(model, 2)
    assert stats["status"] == "refused"


def test_frozen_params_and_buffers_untouched():
    model = _net()
    model[0].weight.requires_grad_(False)
    assert "0.weight" not in trainable_parameters(model)
    s = GradSampler()
    s.observe(model, 0)
    _train_step(model)
    model[1].running_mean.add_(1.0)
    s.observe(model, 1)
    frozen = model[0].weight.detach().clone()
    rm = model[1].running_mean.clone()
    moving = model[3].weight.detach().clone()
    assert s.step_skip(model, 2)["status"] == "applied"
    assert torch.equal(model[0].weight, frozen)
    assert torch.equal(model[1].running_mean, rm)
    assert not torch.equal(model[3].weight, moving)
    assert all(t.device.type == "cpu" for t in s.prev.values())


def test_history_trained_vs_any():
    """'trained': d after a skip is still the last trained update; 'any': it is the sample."""
    for history in ("trained", "any"):
        model = _net()
        s = GradSampler(history=history, schedule=dict(type="periodic", every=2))
        s.observe(model, 0)
        _train_step(model)
        s.observe(model, 1)
        d_trained = {n: t.clone() for n, t in s.delta.items()}
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        s.step_skip(model, 2)
        eps = {n: p.detach() - before[n] for n, p in model.named_parameters()}
        for n in d_trained:
            want = d_trained[n] if history == "trained" else eps[n]
            torch.testing.assert_close(s.delta[n], want)


def test_plain_parameter_lists_and_generator_determinism():
    """Same seed and epoch: the same sample, whatever happened to the sampler before."""
    outs = []
    for extra_draws in (0, 5):
        model = _net()
        params = list(model.parameters())
        s = GradSampler(seed=11)
        s.observe(params, 0)
        _train_step(model)
        s.observe(params, 1)
        for _ in range(extra_draws):
            torch.randn(3, generator=s.generator)
        s.step_skip(params, 2)
        outs.append([p.detach().clone() for p in params])
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)


# -- state -------------------------------------------------------------------------------------
def _run(sampler_factory, epochs, model, save_at=None):
    """A toy training loop with GradSamp; optionally round-trips the state at ``save_at``."""
    s = sampler_factory()
    e = 0
    while e < epochs:
        if s.should_skip(e, epochs) and s.step_skip(model, e)["status"] == "applied":
            pass
        else:
            _train_step(model, 0.01 * (1 + e % 3))
            s.observe(model, e)
        e += 1
        if save_at == e:
            state = s.state_dict()
            s = sampler_factory()
            s.load_state_dict(state)
    return s


@pytest.mark.parametrize("cfg", [
    dict(distribution="gaussian", schedule=dict(type="periodic", every=3)),
    dict(distribution="ggd", statistics="elementwise", schedule=dict(type="random", p=0.4),
         history="any"),
])
def test_state_dict_round_trip_is_exact(cfg):
    ref_model = _net()
    ref = _run(lambda: GradSampler(seed=5, **cfg), 12, ref_model)
    assert ref.skipped_epochs, "the schedule must skip something for this test to mean anything"
    for save_at in sorted({ref.skipped_epochs[0] + 1, 4, 7}):
        model = _net()
        s = _run(lambda: GradSampler(seed=5, **cfg), 12, model, save_at=save_at)
        assert s.skipped_epochs == ref.skipped_epochs
        assert s.trained_epochs == ref.trained_epochs
        for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
            assert torch.equal(p, q)


def test_state_with_other_settings_refused():
    s = GradSampler(seed=5, schedule=dict(type="periodic", every=3))
    state = s.state_dict()
    GradSampler(seed=5, schedule=dict(type="periodic", every=3)).load_state_dict(state)
    with pytest.raises(ValueError, match=r"saved with schedule=.*'every': 3.* but this run has "
                                         r"schedule=.*'every': 4"):
        GradSampler(seed=5, schedule=dict(type="periodic", every=4)).load_state_dict(state)
    with pytest.raises(ValueError, match="tau=1.0 but this run has tau=0.5"):
        GradSampler(seed=5, tau=0.5, schedule=dict(type="periodic", every=3)).load_state_dict(
            state)


def test_plan_follows_decide():
    """`plan` is what a run does when no sample is refused (the toy loop above)."""
    for cfg, epochs in ((dict(type="periodic", every=4, warmup=2), 20),
                        (dict(type="periodic", every=3, warmup=4), 12),
                        (dict(type="random", p=0.5, warmup=3), 40)):
        model = _net()
        ran = _run(lambda cfg=cfg: GradSampler(seed=7, schedule=cfg), epochs, model)
        assert build_schedule(cfg).plan(epochs, seed=7) == ran.skipped_epochs
    assert PeriodicSchedule(every=4, warmup=2).plan(20) == [2, 6, 10, 14, 18]


def test_server_mode_on_plain_tensors():
    """Federated server mode: a global model as plain tensors (e.g. from numpy arrays) moves in
    place (the arrays with it); the integer counter (num_batches_tracked) does not."""
    model = _net()
    arrays = [v.detach().numpy().copy() for v in model.state_dict().values()]
    tensors = [torch.from_numpy(a) for a in arrays]  # share memory with the arrays
    counter = next(i for i, t in enumerate(tensors) if not t.is_floating_point())
    s = GradSampler(seed=3)
    s.observe(tensors, 0)
    with torch.no_grad():
        for t in tensors:
            if t.is_floating_point():
                t.add_(0.01 * torch.arange(t.numel(), dtype=t.dtype).view_as(t))
    s.observe(tensors, 1)
    before = [a.copy() for a in arrays]
    assert s.step_skip(tensors, 2)["status"] == "applied"
    assert np.array_equal(arrays[counter], before[counter])
    moved = [i for i, (a, b) in enumerate(zip(arrays, before, strict=True))
             if not np.array_equal(a, b)]
    assert moved == [i for i in range(len(arrays)) if i != counter]
