"""FLOPs of real training steps, forward and backward apart, from ``torch.utils.flop_counter``.

`StepFlopCounter` runs one ``FlopCounterMode`` over a whole training step and reads its counts at
the boundaries of the backward (and optimizer) calls, so that what ran inside ``backward`` is the
backward count and the rest of the step is the forward count. One counter must span both
passes: ``FlopCounterMode`` attributes backward FLOPs to modules through hooks it puts on the
forward's tensors, so a counter opened only for the backward would see everything as "Global".

Counts are the formulas' dense, shape-based numbers. Sliced kernels (ssProp) really run smaller
shapes, so they are counted smaller. Dithered layers are counted dense (under the counter they
run torch's dense kernels); the *effective* backward count, ``dense backward of the module ×
grad_density`` (nnz/numel of δ̃), stands beside it: the arithmetic of dgsamp's native sparse
products, which dithered linear layers and convs (groups 1, ≥ 16 input channels) run on CPU
outside the counter; for the other dithered layers (depthwise, stems, off CPU) it is what a
sparse kernel would have to do, not what ran. Neither counts the quantizer.

Plain PyTorch: no mmengine here (the hook in `dgsamp.engine.cost_hook` drives it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "GRADSAMP_OPS_PER_PARAM",
    "OPTIMIZER_OPS_PER_PARAM",
    "StepFlops",
    "StepFlopCounter",
    "count_step_flops",
    "module_flop_names",
    "optimizer_flops_per_step",
    "sampling_flops",
]

# Elementwise operations per trainable parameter of one optimizer step (update rule, weight
# decay and state updates counted from the PyTorch reference implementations). An estimate:
# FlopCounterMode has no formulas for elementwise/foreach ops, so it reports 0 for them.
OPTIMIZER_OPS_PER_PARAM = {
    "SGD": 4,        # weight decay (2), momentum buffer (2)... the update itself folded in
    "Adam": 12,      # two moment updates (6), bias corrections, sqrt, div, add (6)
    "AdamW": 13,     # Adam plus decoupled decay
    "RMSprop": 8,
    "Adagrad": 6,
}
DEFAULT_OPTIMIZER_OPS = 8

# GradSamp's work on a skipped epoch, per trainable parameter: difference of two snapshots (1),
# mean (1), standard deviation (3: subtract, square, sum), a normal draw (2: draw, scale+shift),
# the add into the parameter (1), the snapshot copy (1), about 10 in all.
GRADSAMP_OPS_PER_PARAM = 10


@dataclass
class StepFlops:
    """FLOPs of one counted training step.

    forward: everything in the step outside backward and optimizer calls (model forward, loss).
    backward: dense count inside ``backward`` calls (sliced kernels counted at their real shape).
    backward_effective: backward with each dithered module's count scaled by its grad density.
    optimizer: counted inside optimizer-step calls (0 for the usual elementwise optimizers).
    samples: batch size of the step, when known (counts are scaled per sample).
    modules_backward: dense backward FLOPs per module name (FlopCounterMode's names).
    densities: grad density used for each dithered module.
    """

    forward: int = 0
    backward: int = 0
    backward_effective: float = 0.0
    optimizer: int = 0
    samples: int | None = None
    modules_backward: dict[str, int] = field(default_factory=dict)
    densities: dict[str, float] = field(default_factory=dict)


def _totals(counts: dict[str, dict]) -> dict[str, int]:
    return {name: int(sum(ops.values())) for name, ops in counts.items()}


def module_flop_names(root: nn.Module) -> dict[nn.Module, str]:
    """The names ``FlopCounterMode`` (its ModuleTracker) gives ``root``'s submodules.

    The root is named after its class and children are ``parent.child``, for example
    ``DomainClassifier.featurizer.features.0``. Computed here rather than read from the
    tracker's private table.
    """
    base = type(root).__name__
    return {m: (base if not n else f"{base}.{n}") for n, m in root.named_modules()}


def dithered_modules(root: nn.Module) -> dict[str, nn.Module]:
    """Modules that report a grad density (dithered backprop layers), by FlopCounterMode name."""
    names = module_flop_names(root)
    return {names[m]: m for m in root.modules() if hasattr(m, "grad_density")}


class StepFlopCounter:
    """Count one training step: forward, backward and optimizer apart.

    Usage (plain PyTorch)::

        counter = StepFlopCounter(model)
        with counter.step():
            loss = model(x).sum()                    # counted as forward
            with counter.backward():
                loss.backward()                      # counted as backward
            with counter.optimizer():
                opt.step()
        counter.result                               # StepFlops

    `dgsamp.engine.cost_hook.CostHook` enters these contexts by wrapping the runner's
    ``train_step`` and the optim wrapper's ``backward``/``step``.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.mode: FlopCounterMode | None = None
        self.result: StepFlops | None = None
        self._bwd: dict[str, int] = {}
        self._opt = 0

    @property
    def active(self) -> bool:
        return self.mode is not None

    def _snapshot(self) -> dict[str, int]:
        assert self.mode is not None
        return _totals(self.mode.get_flop_counts())

    @contextlib.contextmanager
    def step(self, samples: int | None = None) -> Iterator[StepFlopCounter]:
        self._bwd, self._opt = {}, 0
        self.mode = FlopCounterMode(display=False)
        try:
            with self.mode:
                yield self
            total = self._snapshot()
        finally:
            mode, self.mode = self.mode, None
            del mode
        bwd_global = self._bwd.get("Global", 0)
        fwd = total.get("Global", 0) - bwd_global - self._opt
        dense_bwd = {k: v for k, v in self._bwd.items() if k != "Global" and v}
        effective = float(bwd_global)
        densities: dict[str, float] = {}
        for name, mod in dithered_modules(self.model).items():
            density = getattr(mod, "grad_density", None)
            if density is None or name not in dense_bwd:
                continue
            density = float(density)
            densities[name] = density
            effective -= dense_bwd[name] * (1.0 - density)
        self.result = StepFlops(forward=int(fwd), backward=int(bwd_global),
                                backward_effective=effective, optimizer=int(self._opt),
                                samples=samples, modules_backward=dense_bwd,
                                densities=densities)

    @contextlib.contextmanager
    def backward(self) -> Iterator[None]:
        if self.mode is None:
            yield
            return
        before = self._snapshot()
        try:
            yield
        finally:
            after = self._snapshot()
            for k, v in after.items():
                self._bwd[k] = self._bwd.get(k, 0) + v - before.get(k, 0)

    @contextlib.contextmanager
    def optimizer(self) -> Iterator[None]:
        if self.mode is None:
            yield
            return
        before = self._snapshot().get("Global", 0)
        try:
            yield
        finally:
            self._opt += self._snapshot().get("Global", 0) - before


def count_step_flops(model: nn.Module, inputs: torch.Tensor, loss_fn=None,
                     optimizer: torch.optim.Optimizer | None = None) -> StepFlops:
    """Count one plain-PyTorch step ``loss_fn(model(inputs)).backward(); optimizer.step()``.

    ``loss_fn`` defaults to ``sum``. Handy in tests and notebooks; training runs use CostHook.
    """
    counter = StepFlopCounter(model)
    with counter.step(samples=int(inputs.shape[0])):
        out = model(inputs)
        loss = loss_fn(out) if loss_fn is not None else out.sum()
        with counter.backward():
            loss.backward()
        if optimizer is not None:
            with counter.optimizer():
                optimizer.step()
    assert counter.result is not None
    return counter.result


def trainable_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def optimizer_flops_per_step(optimizer: torch.optim.Optimizer | None,
                             model: nn.Module) -> tuple[int, str]:
    """Estimated elementwise FLOPs of one optimizer step, and the label saying so."""
    if optimizer is None:
        n, name = trainable_params(model), "unknown optimizer"
    else:
        n = sum(p.numel() for g in optimizer.param_groups for p in g["params"]
                if getattr(p, "requires_grad", True))
        name = type(optimizer).__name__
    k = OPTIMIZER_OPS_PER_PARAM.get(name, DEFAULT_OPTIMIZER_OPS)
    return k * n, f"estimate ({k} elementwise ops per parameter per {name} step)"


def sampling_flops(model: nn.Module) -> tuple[int, str]:
    """Estimated FLOPs of GradSamp's sampled update on a skipped epoch, and its label."""
    n = trainable_params(model)
    return (GRADSAMP_OPS_PER_PARAM * n,
            f"estimate ({GRADSAMP_OPS_PER_PARAM} elementwise ops per trainable parameter: "
            "snapshot difference, mean, std, normal draw, add)")
