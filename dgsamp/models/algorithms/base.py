"""What the DG/DA algorithms share: per-domain grouping, labelled masks, an update counter.

Every algorithm is a `DomainClassifier` (timm featurizer -> linear classifier) that overrides
`loss` (and `train_step` when it needs its own optimizers or optimizer resets). Batches are the
usual ``dict(inputs, data_samples=dict(label, domain))``; the ``domain`` field says which
minibatch an item belongs to, so the algorithms work with domain-balanced batches
(`DomainBalancedBatchSampler`, DomainBed's batching) and, less evenly, with mixed ones. Items
with ``label == -1`` are unlabeled target items (the DA setting): no classification loss reads
them; alignment algorithms treat the target as one more domain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper, OptimWrapperDict

from ...datasets.samplers import UNLABELED
from ...engine.runner_utils import optim_wrappers
from ..classifier import DomainClassifier


def domain_groups(domains: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """(domain index, item indices) for every domain in the batch, in domain order."""
    return [(int(d), (domains == d).nonzero(as_tuple=True)[0])
            for d in torch.unique(domains, sorted=True)]


def reset_optimizer_state(optim_wrapper: OptimWrapper | OptimWrapperDict) -> None:
    """Forget Adam's moments (DomainBed does this when IRM/VREx penalties switch on)."""
    for w in optim_wrappers(optim_wrapper):
        w.optimizer.state.clear()


class DGAlgorithm(DomainClassifier):
    """`DomainClassifier` plus the helpers algorithms need (see module docstring).

    ``update_count`` is a buffer, so penalty schedules survive checkpoint and resume.
    """

    def __init__(self, model_name: str, num_classes: int, in_chans: int = 3,
                 pretrained: str | None = None, model_kwargs: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(model_name, num_classes, in_chans=in_chans, pretrained=pretrained,
                         model_kwargs=model_kwargs, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.register_buffer("update_count", torch.zeros((), dtype=torch.long))

    def train_step(self, data, optim_wrapper):
        out = super().train_step(data, optim_wrapper)
        self.update_count += 1
        return out

    @staticmethod
    def labeled(labels: torch.Tensor) -> torch.Tensor:
        return labels != UNLABELED

    def classification_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the labelled items only (0 when a batch has none)."""
        mask = self.labeled(labels)
        if not bool(mask.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[mask], labels[mask])

    def loss(self, inputs: torch.Tensor, data_samples: dict) -> dict[str, torch.Tensor]:
        """ERM that ignores unlabeled items (what ERM means next to a target domain)."""
        return dict(loss_cls=self.classification_loss(self.logits(inputs),
                                                      data_samples["label"]))
