"""Turn an ERM config into another algorithm's: `apply_algorithm(cfg, 'DANN', num_domains)`.

The per-algorithm configs under configs/dg/ spell these settings out; this function is the same
knowledge in code, for `tools/sweep.py --algorithms` over any benchmark config (tests check the
two agree). What changes from ERM:

- ``model.type``, plus ``model.num_domains`` for DANN, CDANN and GroupDRO;
- every algorithm but ERM and MixStyle gets one minibatch per domain per step
  (`DomainBalancedBatchSampler`); the per-domain batch size keeps the total batch near ERM's;
- DANN and CDANN get a second optimizer for the discriminator
  (`PerModuleOptimWrapperConstructor`); with Adam, both Adams get DomainBed's betas
  (beta1 = 0.5, 0.9) (`AbstractDANN`, domainbed/algorithms.py lines 502-514).
"""

from __future__ import annotations

import copy

from mmengine.config import Config

from .hparams import SPACES

NEEDS_DOMAINS = ("DANN", "CDANN", "GroupDRO")
MIXED_BATCHES = ("ERM", "DomainClassifier", "MixStyle")
ADVERSARIAL = ("DANN", "CDANN")
DANN_BETAS = (0.5, 0.9)


def apply_algorithm(cfg: Config, algorithm: str, num_domains: int,
                    num_train_domains: int | None = None) -> Config:
    """Make ``cfg`` (an ERM config) train ``algorithm``; returns it (changed in place).

    Args:
        num_domains: domains in the benchmark (discriminator outputs, GroupDRO's q).
        num_train_domains: domains in one step's batch (default num_domains - 1); sets the
            per-domain batch size to ERM's batch size divided by it.
    """
    if algorithm not in SPACES:
        raise ValueError(f"Unknown algorithm {algorithm!r}; known: {sorted(SPACES)}.")
    cfg.model.type = algorithm
    if algorithm in NEEDS_DOMAINS:
        cfg.model.num_domains = num_domains
    if algorithm not in MIXED_BATCHES:
        n = num_train_domains or max(1, num_domains - 1)
        loader = cfg.train_dataloader
        loader.batch_size = max(1, round(loader.batch_size / n))
        loader.batch_sampler = dict(type="DomainBalancedBatchSampler")
    if algorithm in ADVERSARIAL and cfg.optim_wrapper.get("constructor") is None:
        base = copy.deepcopy(cfg.optim_wrapper.to_dict()
                             if hasattr(cfg.optim_wrapper, "to_dict") else cfg.optim_wrapper)
        if base.get("optimizer", {}).get("type") == "Adam":
            base["optimizer"]["betas"] = DANN_BETAS
        cfg.optim_wrapper = dict(constructor="PerModuleOptimWrapperConstructor", model=base,
                                 discriminator=copy.deepcopy(base))
    return cfg
