"""IRM and V-REx: penalties that ask the per-domain risks to agree (DomainBed's versions).

Both switch their penalty on after ``anneal_iters`` updates (weight 1 before, ``penalty_weight``
after) and reset Adam's moments at the switch, because the loss scale jumps. Counting goes by
the ``update_count`` buffer, so resume keeps the schedule.

After the switch DomainBed minimises ``risk + penalty_weight * penalty`` as it is
(facebookresearch/DomainBed domainbed/algorithms.py at b93c22a: IRM line 618, VREx line 772);
that is the default here. The IRM authors' code (facebookresearch/InvariantRiskMinimization,
code/colored_mnist/main.py at 6aad47e, "Rescale the entire loss") divides that loss by
``penalty_weight`` once it exceeds 1; ``rescale_after_anneal=True`` gives their variant, for
VREx the same rescaling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS

from .base import DGAlgorithm, domain_groups, reset_optimizer_state


class _Penalized(DGAlgorithm):
    def __init__(self, model_name: str, num_classes: int, penalty_weight: float = 1e2,
                 anneal_iters: int = 500, rescale_after_anneal: bool = False,
                 in_chans: int = 3, pretrained: str | None = None,
                 model_kwargs: dict | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None):
        super().__init__(model_name, num_classes, in_chans=in_chans, pretrained=pretrained,
                         model_kwargs=model_kwargs, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.penalty_weight, self.anneal_iters = penalty_weight, anneal_iters
        self.rescale_after_anneal = rescale_after_anneal

    def current_weight(self) -> float:
        return self.penalty_weight if int(self.update_count) >= self.anneal_iters else 1.0

    def penalty(self, logits: torch.Tensor, labels: torch.Tensor,
                groups: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean risk, penalty) over the domain groups."""
        raise NotImplementedError

    def loss(self, inputs: torch.Tensor, data_samples: dict) -> dict[str, torch.Tensor]:
        labels = data_samples["label"]
        mask = self.labeled(labels)
        logits = self.logits(inputs)
        groups = [idx[mask[idx]] for _, idx in domain_groups(data_samples["domain"])]
        groups = [g for g in groups if len(g)]
        risk, penalty = self.penalty(logits, labels, groups)
        weight = self.current_weight()
        total = risk + weight * penalty
        if self.rescale_after_anneal and weight > 1.0:
            total = total / weight  # the IRM/REx authors' variant (module docstring)
        return dict(loss=total, risk=risk.detach(), penalty=penalty.detach())

    def train_step(self, data, optim_wrapper):
        out = super().train_step(data, optim_wrapper)
        if int(self.update_count) == self.anneal_iters:
            reset_optimizer_state(optim_wrapper)
        return out


@MODELS.register_module()
class IRM(_Penalized):
    """Invariant Risk Minimization, IRMv1 penalty (Arjovsky et al. 2019).

    Args:
        penalty_weight: lambda after annealing (DomainBed's irm_lambda, default 100).
        anneal_iters: updates with weight 1 first (DomainBed's irm_penalty_anneal_iters).
        rescale_after_anneal: divide the loss by the weight after the switch (the IRM
            authors' code; DomainBed does not, the default).
    """

    @staticmethod
    def _irm_penalty(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scale = torch.ones((), dtype=logits.dtype, device=logits.device, requires_grad=True)
        loss_1 = F.cross_entropy(logits[::2] * scale, y[::2])
        loss_2 = F.cross_entropy(logits[1::2] * scale, y[1::2])
        g1 = torch.autograd.grad(loss_1, [scale], create_graph=True)[0]
        g2 = torch.autograd.grad(loss_2, [scale], create_graph=True)[0]
        return (g1 * g2).sum()

    def penalty(self, logits, labels, groups):
        zero = logits.sum() * 0.0
        if not groups:
            return zero, zero
        risks = [F.cross_entropy(logits[g], labels[g]) for g in groups]
        pens = [self._irm_penalty(logits[g], labels[g]) if len(g) > 1 else zero for g in groups]
        return torch.stack(risks).mean(), torch.stack(pens).mean()


@MODELS.register_module()
class VREx(_Penalized):
    """Risk Extrapolation, variance penalty (Krueger et al. 2021).

    Args:
        penalty_weight: lambda after annealing (DomainBed's vrex_lambda, default 10).
        anneal_iters: updates with weight 1 first (DomainBed's vrex_penalty_anneal_iters).
        rescale_after_anneal: divide the loss by the weight after the switch (the IRM
            authors' rescaling; DomainBed does not, the default).
    """

    def __init__(self, model_name: str, num_classes: int, penalty_weight: float = 1e1,
                 anneal_iters: int = 500, rescale_after_anneal: bool = False,
                 in_chans: int = 3, pretrained: str | None = None,
                 model_kwargs: dict | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None):
        super().__init__(model_name, num_classes, penalty_weight=penalty_weight,
                         anneal_iters=anneal_iters, rescale_after_anneal=rescale_after_anneal,
                         in_chans=in_chans, pretrained=pretrained,
                         model_kwargs=model_kwargs, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)

    def penalty(self, logits, labels, groups):
        zero = logits.sum() * 0.0
        if not groups:
            return zero, zero
        risks = torch.stack([F.cross_entropy(logits[g], labels[g]) for g in groups])
        mean = risks.mean()
        return mean, ((risks - mean) ** 2).mean()
