"""GradSamp: skip whole epochs and replace their update by a sample fitted to recent updates.

Plain PyTorch (no mmengine). One `GradSampler` serves every granularity; the unit it counts
(``epoch`` below) is whatever the caller steps by:

- epochs or iteration windows of an mmengine run: `dgsamp.engine.gradsamp_hook.GradSampHook`
  (set-up, checkpoint state) with the skip-aware loops of `dgsamp.engine.loops` (which own the
  sampler: decide, sample, record);
- iterations: `dgsamp.engine.gradsamp_optim_wrapper.GradSampOptimWrapper` (the backward of a
  sampled iteration is not run);
- federated rounds ("server mode"): the server moves the global model by a sample fitted to the
  last global update, on an ``nn.Module`` or a list of tensors, without mmengine::

      sampler = GradSampler(schedule=dict(type='periodic', every=4, warmup=2), seed=0)
      for rnd in range(num_rounds):
          if sampler.should_skip(rnd, num_rounds):
              if sampler.step_skip(global_tensors, rnd)['status'] == 'applied':
                  continue                 # no client trains this round; tensors moved in place
          global_tensors = aggregate(...)  # e.g. FedAvg, written into the same tensors or new ones
          sampler.observe(global_tensors, rnd)
      state = sampler.state_dict()         # the server's checkpoint; load_state_dict resumes it

  ``global_tensors`` may be the model (its ``requires_grad`` parameters move) or a list of
  tensors such as ``[torch.from_numpy(a) for a in ndarrays]`` (moved in place, so the arrays
  move too): every floating-point tensor in it moves, integer ones (BatchNorm's
  ``num_batches_tracked``) never do. Tensors are named by position, so keep their order.

On a skipped epoch e the trainable parameters move by a sample ε instead of an epoch of SGD::

    d      = θ(e-1) − θ(e-2)                  # the last update, per tensor
    μ, σ   = mean(d), std(d)                  # per tensor
    θ(e)   = θ(e-1) + ε                       # ε_i ~ N(μ, σ²) ('layerwise', the default)

Options (defaults first, see docs of `GradSampler`): statistics 'layerwise' | 'elementwise'
(ε_i ~ N(d_i, (τσ)²)); distribution 'gaussian' | 'ggd' (generalized Gaussian, β fitted per
tensor by moment matching); history 'trained' (d is the update of the most recent *trained*
epoch) | 'any' (d is the most recent update of any kind, a sampled one included).

Why the state is what it is: the sampler keeps exactly two parameter-sized buffers (on CPU by
default, so the accelerator's memory is spared): ``prev``, θ at the end of the last epoch, and
``delta``, the last update d. Every random draw (random skip decisions and the noise) comes from
a ``torch.Generator`` reseeded from ``(seed, epoch, stream)``: decisions are idempotent, every
DDP rank draws the same numbers without any communication, and a resumed run draws what the
uninterrupted run would have drawn. `state_dict` holds everything, so resume is exact; it also
holds the settings, and `load_state_dict` refuses a state saved with other settings (resuming it
would not continue the saved run).

Why one file of ~500 lines: the fit (Gaussian/GGD moment matching and its samplers), the skip
schedules and the sampler are one algorithm that nothing else uses piecemeal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "GradSampler",
    "PeriodicSchedule",
    "RandomSchedule",
    "SkipSchedule",
    "TensorFit",
    "build_schedule",
    "fit_ggd_beta",
    "fit_update",
    "ggd_alpha",
    "ggd_rho",
    "sample_gamma",
    "sample_ggd",
    "trainable_parameters",
]

DISTRIBUTIONS = ("gaussian", "ggd")
STATISTICS = ("layerwise", "elementwise")
HISTORIES = ("trained", "any")
BETA_RANGE = (0.1, 10.0)

_STREAM_SCHEDULE = 1
_STREAM_NOISE = 2


# -- helpers ---------------------------------------------------------------------------------------
def trainable_parameters(model_or_params) -> dict[str, torch.Tensor]:
    """Name → tensor of what GradSamp may move.

    Accepts a module (its ``named_parameters``), a mapping name → tensor, or an iterable of
    tensors (named by position). A parameter moves when it has ``requires_grad`` (frozen ones
    and a module's buffers never do); a plain tensor (server mode: a global model as tensors)
    when it is floating point.
    """
    if isinstance(model_or_params, nn.Module):
        items = model_or_params.named_parameters()
    elif isinstance(model_or_params, Mapping):
        items = model_or_params.items()
    elif isinstance(model_or_params, Iterable):
        items = ((str(i), p) for i, p in enumerate(model_or_params))
    else:
        raise TypeError(f"Expected a module, a name->tensor mapping or tensors, got "
                        f"{type(model_or_params).__name__}.")
    return {name: p for name, p in items if _movable(p)}


def _movable(t: torch.Tensor) -> bool:
    if isinstance(t, nn.Parameter):
        return t.requires_grad
    return t.requires_grad or t.is_floating_point()


def _seed_for(seed: int, epoch: int, stream: int) -> int:
    """A generator seed from (seed, epoch, stream): identical on every rank and after resume."""
    x = (int(seed) * 0x9E3779B97F4A7C15 + int(epoch) * 0xBF58476D1CE4E5B9
         + stream * 0x94D049BB133111EB) % (2**64)
    x ^= x >> 31
    return x % (2**63 - 1)


def ggd_rho(beta: float) -> float:
    """ρ(β) = Γ(1/β)Γ(3/β)/Γ(2/β)², the GGD's E[(x−μ)²]/(E|x−μ|)² (2 at β=1, π/2 at β=2)."""
    return math.exp(math.lgamma(1.0 / beta) + math.lgamma(3.0 / beta) - 2 * math.lgamma(2.0 / beta))


def fit_ggd_beta(rho: float, lo: float = BETA_RANGE[0], hi: float = BETA_RANGE[1],
                 iters: int = 60) -> float:
    """Solve ρ(β) = rho for β by bisection in log β (ρ decreases monotonically in β).

    Values of rho outside [ρ(hi), ρ(lo)] clip to the range's ends; a non-finite rho gives 2.
    """
    if not math.isfinite(rho):
        return 2.0
    if rho >= ggd_rho(lo):
        return lo
    if rho <= ggd_rho(hi):
        return hi
    a, b = math.log(lo), math.log(hi)
    for _ in range(iters):
        m = 0.5 * (a + b)
        if ggd_rho(math.exp(m)) > rho:  # β too small: heavier tails than the data
            a = m
        else:
            b = m
    return math.exp(0.5 * (a + b))


def ggd_alpha(sigma: float, beta: float) -> float:
    """The GGD scale α giving standard deviation ``sigma``: α = σ·sqrt(Γ(1/β)/Γ(3/β))."""
    return sigma * math.exp(0.5 * (math.lgamma(1.0 / beta) - math.lgamma(3.0 / beta)))


def sample_gamma(shape: float, size: torch.Size | tuple, generator: torch.Generator,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Gamma(shape, 1) draws from an explicit generator (Marsaglia–Tsang, vectorized).

    torch's own gamma sampler takes no generator; this one does, so draws are reproducible and
    identical across DDP ranks. shape < 1 uses Gamma(shape+1)·U^(1/shape).
    """
    n = int(torch.Size(size).numel())
    boost = shape < 1.0
    a = shape + 1.0 if boost else shape
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=dtype)
    todo = torch.arange(n)
    while todo.numel():
        m = todo.numel()
        x = torch.randn(m, generator=generator, dtype=dtype)
        u = torch.rand(m, generator=generator, dtype=dtype)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * x * x + d - d * v
                        + d * torch.log(v.clamp_min(1e-300)))
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if boost:
        u = torch.rand(n, generator=generator, dtype=dtype)
        out = out * u.clamp_min(1e-300) ** (1.0 / shape)
    return out.view(tuple(size))


def sample_ggd(mu: torch.Tensor | float, alpha: float, beta: float, size: torch.Size | tuple,
               generator: torch.Generator) -> torch.Tensor:
    """μ + α·sign(u)·G^(1/β), G ~ Gamma(1/β, 1), sign ±1 equiprobable (float64, CPU)."""
    g = sample_gamma(1.0 / beta, size, generator)
    sign = torch.randint(0, 2, tuple(size), generator=generator, dtype=torch.float64) * 2 - 1
    return mu + alpha * sign * g ** (1.0 / beta)


@dataclass
class TensorFit:
    """One tensor's fit: mean, std and (for 'ggd') shape β of its last update."""

    mu: float
    sigma: float
    beta: float


def fit_update(d: torch.Tensor, distribution: str = "gaussian") -> TensorFit:
    """Fit μ, σ (population std) and, for 'ggd', β by moment matching to one tensor's update."""
    d = d.detach().to(torch.float64).flatten()
    mu = float(d.mean()) if d.numel() else 0.0
    c = d - mu
    sigma = float(c.pow(2).mean().sqrt()) if d.numel() else 0.0
    beta = 2.0
    if distribution == "ggd" and sigma > 0 and math.isfinite(sigma):
        abs_mean = float(c.abs().mean())
        rho = sigma * sigma / (abs_mean * abs_mean) if abs_mean > 0 else float("inf")
        beta = fit_ggd_beta(rho)
    return TensorFit(mu, sigma, beta)


# -- skip schedules -----------------------------------------------------------------------------
class SkipSchedule:
    """Which epochs to skip. Shared rules: never before ``warmup`` trained epochs exist (warmup
    ≥ 2, since a fit needs an update between two trained states), never the last epoch."""

    def __init__(self, warmup: int = 2):
        if int(warmup) != warmup or warmup < 2:
            raise ValueError(
                f"GradSamp schedule warmup={warmup!r} would allow a skip before two trained "
                "epochs exist (the fit needs the update between two trained epochs): use "
                "warmup >= 2.")
        self.warmup = int(warmup)

    def wants(self, epoch: int, seed: int) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def decide(self, epoch: int, max_epochs: int | None, num_trained: int, seed: int) -> bool:
        if num_trained < self.warmup:
            return False
        if max_epochs is not None and epoch >= max_epochs - 1:
            return False
        return self.wants(epoch, seed)

    def config(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def plan(self, max_epochs: int, seed: int = 0) -> list[int]:
        """The epochs a run of ``max_epochs`` skips when no sampled update is refused."""
        skipped, num_trained = [], 0
        for epoch in range(max_epochs):
            if self.decide(epoch, max_epochs, num_trained, seed):
                skipped.append(epoch)
            else:
                num_trained += 1
        return skipped


class PeriodicSchedule(SkipSchedule):
    """Skip one epoch in ``every``: the first right after warmup, then every ``every``-th.

    With every=4, warmup=2 (0-based epochs): 2, 6, 10, ... are skipped, so exactly a quarter of
    a run whose length is a multiple of 4 is skipped (the last epoch is never skipped).
    """

    def __init__(self, every: int = 4, warmup: int = 2):
        if int(every) != every or every < 2:
            raise ValueError(f"GradSamp periodic schedule: every={every!r} must be an integer "
                             ">= 2 (every=1 would skip every epoch and never train).")
        super().__init__(warmup)
        self.every = int(every)

    def wants(self, epoch: int, seed: int) -> bool:
        return epoch >= self.warmup and (epoch - self.warmup) % self.every == 0

    def config(self) -> dict:
        return dict(type="periodic", every=self.every, warmup=self.warmup)


class RandomSchedule(SkipSchedule):
    """Skip each epoch with probability ``p`` (after warmup, never the last one).

    The coin for epoch e comes from a generator seeded by (seed, e): the same on every rank,
    the same after resume, whatever was decided before.
    """

    def __init__(self, p: float = 0.25, warmup: int = 2):
        if not (isinstance(p, (int, float)) and 0.0 < float(p) < 1.0):
            raise ValueError(f"GradSamp random schedule: p={p!r} must be a probability in (0, 1).")
        super().__init__(warmup)
        self.p = float(p)

    def wants(self, epoch: int, seed: int) -> bool:
        g = torch.Generator().manual_seed(_seed_for(seed, epoch, _STREAM_SCHEDULE))
        return bool(torch.rand((), generator=g, dtype=torch.float64) < self.p)

    def config(self) -> dict:
        return dict(type="random", p=self.p, warmup=self.warmup)


SCHEDULES = {"periodic": PeriodicSchedule, "random": RandomSchedule}


def build_schedule(cfg: dict | SkipSchedule | None) -> SkipSchedule:
    """A schedule from ``dict(type='periodic'|'random', ...)`` (default: periodic every 4)."""
    if cfg is None:
        return PeriodicSchedule()
    if isinstance(cfg, SkipSchedule):
        return cfg
    cfg = dict(cfg)
    kind = cfg.pop("type", "periodic")
    if kind not in SCHEDULES:
        raise ValueError(f"GradSamp schedule type={kind!r}: choose one of {sorted(SCHEDULES)}.")
    try:
        return SCHEDULES[kind](**cfg)
    except TypeError as e:
        raise ValueError(f"GradSamp schedule {kind!r}: bad arguments {cfg}: {e}") from None


# -- the sampler --------------------------------------------------------------------------------
class GradSampler:
    """Snapshots, fit, sample and skip decisions of GradSamp, usable in any training loop::

        sampler = GradSampler(schedule=dict(type='periodic', every=4))
        for epoch in range(max_epochs):
            if sampler.should_skip(epoch, max_epochs):
                stats = sampler.step_skip(model, epoch)
                if stats['status'] == 'applied':
                    continue                      # no data, no forward, no backward
            train_one_epoch(model)
            sampler.observe(model, epoch)

    Args:
        schedule: ``dict(type='periodic', every=4, warmup=2)`` or ``dict(type='random', p,
            warmup=2)`` or a `SkipSchedule`.
        distribution: 'gaussian' or 'ggd' (generalized Gaussian, β fitted per tensor).
        statistics: 'layerwise' (ε_i ~ D(μ, τσ) per tensor) or 'elementwise' (ε_i ~ D(d_i, τσ):
            the last update extrapolated plus noise).
        tau: noise scale factor (1 = the fitted σ).
        history: 'trained' (d = the update of the last trained epoch) or 'any' (d = the last
            update, a sampled one included).
        seed: the seed every draw derives from; identical on every DDP rank.
        snapshot_device: where the two snapshots live ('cpu' spares accelerator memory).
    """

    def __init__(self, schedule: dict | SkipSchedule | None = None,
                 distribution: str = "gaussian", statistics: str = "layerwise",
                 tau: float = 1.0, history: str = "trained", seed: int = 0,
                 snapshot_device: str | torch.device = "cpu"):
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"GradSamp distribution={distribution!r}: choose one of "
                             f"{DISTRIBUTIONS}.")
        if statistics not in STATISTICS:
            raise ValueError(f"GradSamp statistics={statistics!r}: choose one of {STATISTICS}.")
        if history not in HISTORIES:
            raise ValueError(f"GradSamp history={history!r}: choose one of {HISTORIES}.")
        if not (math.isfinite(tau) and tau >= 0):
            raise ValueError(f"GradSamp tau={tau!r} must be a finite number >= 0.")
        self.schedule = build_schedule(schedule)
        self.distribution = distribution
        self.statistics = statistics
        self.tau = float(tau)
        self.history = history
        self.seed = int(seed)
        self.snapshot_device = torch.device(snapshot_device)
        self.generator = torch.Generator()
        self.generator.manual_seed(self.seed)
        self.prev: dict[str, torch.Tensor] | None = None   # θ at the end of the last epoch
        self.delta: dict[str, torch.Tensor] | None = None  # d, the last (trained) update
        self.trained_epochs: list[int] = []
        self.skipped_epochs: list[int] = []
        self.refused_epochs: list[int] = []

    # -- bookkeeping ------------------------------------------------------------------------------
    @property
    def num_trained(self) -> int:
        return len(self.trained_epochs)

    @property
    def ready(self) -> bool:
        """True once an update d exists to fit (two trained states seen)."""
        return self.delta is not None

    def _snapshot(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: p.detach().to(self.snapshot_device, copy=True) for n, p in params.items()}

    def observe(self, model_or_params, epoch: int | None = None) -> None:
        """Record θ after a *trained* epoch: d becomes this epoch's update θ(e) − θ(e−1)."""
        params = trainable_parameters(model_or_params)
        snap = self._snapshot(params)
        if self.prev is not None:
            self.delta = {n: snap[n] - self.prev[n] for n in snap if n in self.prev}
        self.prev = snap
        if epoch is None:
            epoch = (max(self.trained_epochs + self.skipped_epochs) + 1
                     if self.trained_epochs or self.skipped_epochs else 0)
        self.trained_epochs.append(int(epoch))

    def should_skip(self, epoch: int, max_epochs: int | None = None) -> bool:
        """Whether epoch ``epoch`` (0-based) of ``max_epochs`` is to be skipped.

        Idempotent and the same on every rank: it depends only on (epoch, seed, trained count).
        """
        if not self.ready:
            return False
        return self.schedule.decide(int(epoch), max_epochs, self.num_trained, self.seed)

    # -- the skip ----------------------------------------------------------------------------------
    def _draw(self, d: torch.Tensor, fit: TensorFit) -> torch.Tensor:
        """ε for one tensor (float64, CPU), from ``self.generator``."""
        scale = self.tau * fit.sigma
        centre: torch.Tensor | float = (d.detach().to("cpu", torch.float64)
                                        if self.statistics == "elementwise" else fit.mu)
        if self.distribution == "gaussian" or scale == 0 or not math.isfinite(scale):
            z = torch.randn(d.shape, generator=self.generator, dtype=torch.float64)
            return centre + scale * z
        return sample_ggd(centre, ggd_alpha(scale, fit.beta), fit.beta, d.shape, self.generator)

    @torch.no_grad()
    def step_skip(self, model_or_params, epoch: int | None = None) -> dict:
        """Replace epoch ``epoch``'s update by a sample: θ += ε for every trainable tensor.

        Returns statistics for logging: ``status`` ('applied' or 'refused'), the epoch, μ/σ/β
        summaries and a per-tensor table. A non-finite d or ε refuses the whole update (the
        parameters are left untouched) so the caller trains the epoch instead.
        """
        if not self.ready:
            raise RuntimeError("GradSamp step_skip before two trained epochs were observed.")
        params = trainable_parameters(model_or_params)
        if epoch is None:
            epoch = max(self.trained_epochs + self.skipped_epochs) + 1
        epoch = int(epoch)
        self.generator.manual_seed(_seed_for(self.seed, epoch, _STREAM_NOISE))
        names = [n for n in params if n in self.delta]
        fits: dict[str, TensorFit] = {}
        eps: dict[str, torch.Tensor] = {}
        finite = True
        for n in names:
            fit = fit_update(self.delta[n], self.distribution)
            fits[n] = fit
            e = self._draw(self.delta[n], fit)
            if not (math.isfinite(fit.mu) and math.isfinite(fit.sigma)
                    and bool(torch.isfinite(e).all())):
                finite = False
                break
            eps[n] = e
        reason = f"non-finite sampled update in {n!r}" if not finite else None
        if finite:
            for n in names:  # θ + ε must be finite in the parameters' own dtype too (fp16)
                p = params[n]
                if not bool(torch.isfinite(p + eps[n].to(device=p.device, dtype=p.dtype)).all()):
                    reason = f"non-finite updated parameters in {n!r} ({p.dtype})"
                    break
        stats = self._summary(epoch, fits)
        if reason is not None:
            stats["status"] = "refused"
            stats["reason"] = reason
            self.refused_epochs.append(epoch)
            return stats
        for n in names:
            p = params[n]
            p.add_(eps[n].to(device=p.device, dtype=p.dtype))
        snap = self._snapshot(params)
        if self.history == "any" and self.prev is not None:
            self.delta = {n: snap[n] - self.prev[n] for n in snap if n in self.prev}
        self.prev = snap
        self.skipped_epochs.append(epoch)
        stats["status"] = "applied"
        return stats

    @staticmethod
    def _summary(epoch: int, fits: dict[str, TensorFit]) -> dict:
        mus = [f.mu for f in fits.values()]
        sigmas = [f.sigma for f in fits.values()]
        betas = [f.beta for f in fits.values()]

        def mean(v):
            return sum(v) / len(v) if v else float("nan")

        return dict(
            epoch=epoch, num_tensors=len(fits),
            mu_mean=mean(mus), mu_abs_max=max((abs(m) for m in mus), default=float("nan")),
            sigma_mean=mean(sigmas), sigma_max=max(sigmas, default=float("nan")),
            beta_mean=mean(betas), beta_min=min(betas, default=float("nan")),
            beta_max=max(betas, default=float("nan")),
            per_tensor={n: (f.mu, f.sigma, f.beta) for n, f in fits.items()})

    # -- state -------------------------------------------------------------------------------------
    def config(self) -> dict:
        """The settings that decide what a run does (not where its snapshots live)."""
        return dict(schedule=self.schedule.config(), distribution=self.distribution,
                    statistics=self.statistics, tau=self.tau, history=self.history,
                    seed=self.seed)

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: snapshots, generator, epoch records, options."""
        return dict(
            prev=self.prev, delta=self.delta,
            generator=self.generator.get_state(),
            trained_epochs=list(self.trained_epochs), skipped_epochs=list(self.skipped_epochs),
            refused_epochs=list(self.refused_epochs), config=self.config())

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict` output; snapshots move to ``snapshot_device``.

        Raises ValueError when the state was saved with other settings: resuming it would not
        continue the saved run.
        """
        saved = state.get("config")
        if saved is not None and saved != self.config():
            current = self.config()
            keys = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
            raise ValueError(
                "GradSamp state was saved with "
                + ", ".join(f"{k}={saved.get(k)!r}" for k in keys) + " but this run has "
                + ", ".join(f"{k}={current.get(k)!r}" for k in keys) + ". Fix: resume with the "
                "saved settings, or load only the weights to start GradSamp afresh.")

        def to_dev(snap):
            if snap is None:
                return None
            return {n: t.to(self.snapshot_device) for n, t in snap.items()}

        self.prev = to_dev(state.get("prev"))
        self.delta = to_dev(state.get("delta"))
        if state.get("generator") is not None:
            self.generator.set_state(state["generator"].cpu())
        self.trained_epochs = [int(e) for e in state.get("trained_epochs", [])]
        self.skipped_epochs = [int(e) for e in state.get("skipped_epochs", [])]
        self.refused_epochs = [int(e) for e in state.get("refused_epochs", [])]
