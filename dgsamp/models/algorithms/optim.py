"""One optimizer per sub-module: `PerModuleOptimWrapperConstructor`.

mmengine builds an `OptimWrapperDict` only from a constructor that knows which parameters go
where; this one takes one entry per top-level sub-module of the model, and one catch-all::

    optim_wrapper = dict(
        constructor='PerModuleOptimWrapperConstructor',
        model=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3)),
        discriminator=dict(type='OptimWrapper',
                           optimizer=dict(type='Adam', lr=1e-3, betas=(0.5, 0.9))))

An entry whose name is a sub-module of the model (``discriminator``) optimizes that sub-module;
the entry named ``model`` optimizes every parameter no other entry claims (featurizer and
classifier). Each entry is built by mmengine's `DefaultOptimWrapperConstructor`, so
``paramwise_cfg`` inside an entry works as usual. Param schedulers in a list apply to every
entry (mmengine's rule for OptimWrapperDict).
"""

from __future__ import annotations

from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapperDict
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

REST = "model"


class _Group(nn.Module):
    """A parameter container for the catch-all entry (holds references, not copies)."""

    def __init__(self, children: dict[str, nn.Module]):
        super().__init__()
        for name, child in children.items():
            self.add_module(name, child)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class PerModuleOptimWrapperConstructor:
    """Build an `OptimWrapperDict` with one wrapper per named sub-module (module docstring)."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None):
        if paramwise_cfg is not None:
            raise ValueError("PerModuleOptimWrapperConstructor: put paramwise_cfg inside each "
                             "entry of optim_wrapper, not at its top level.")
        if REST not in optim_wrapper_cfg:
            raise ValueError(f"optim_wrapper needs an entry named {REST!r} for the parameters "
                             f"of the featurizer and classifier; got {list(optim_wrapper_cfg)}.")
        self.cfgs = dict(optim_wrapper_cfg)

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        module = getattr(model, "module", model)  # DDP wrappers
        children = dict(module.named_children())
        claimed = [n for n in self.cfgs if n != REST]
        for name in claimed:
            if name not in children:
                raise ValueError(f"optim_wrapper entry {name!r} names no sub-module of "
                                 f"{type(module).__name__} (its sub-modules: {list(children)}). "
                                 f"Fix: name a sub-module, or {REST!r} for everything else.")
        if any(True for _ in module.named_parameters(recurse=False)):
            raise ValueError(f"{type(module).__name__} has parameters outside sub-modules; "
                             f"PerModuleOptimWrapperConstructor cannot assign them.")
        wrappers = {}
        for name, cfg in self.cfgs.items():
            cfg = dict(cfg)
            paramwise = cfg.pop("paramwise_cfg", None)
            target = (_Group({n: c for n, c in children.items() if n not in claimed})
                      if name == REST else children[name])
            wrappers[name] = DefaultOptimWrapperConstructor(cfg, paramwise)(target)
        return OptimWrapperDict(**wrappers)
