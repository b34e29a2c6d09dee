"""GroupDRO (Sagawa et al. 2020): minimise a weighted risk whose weights chase the worst domain.

Each domain's weight q_d grows as exp(eta * risk_d) every step; the loss is the q-weighted mean
of the per-domain risks over the domains in the batch. q is a buffer (saved in checkpoints).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS

from .base import DGAlgorithm, domain_groups


@MODELS.register_module()
class GroupDRO(DGAlgorithm):
    """Args:
        num_domains: number of domains in the benchmark (size of q).
        eta: step size of the exponentiated-gradient update of q (DomainBed's groupdro_eta).
    """

    def __init__(self, model_name: str, num_classes: int, num_domains: int, eta: float = 1e-2,
                 in_chans: int = 3, pretrained: str | None = None,
                 model_kwargs: dict | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None):
        super().__init__(model_name, num_classes, in_chans=in_chans, pretrained=pretrained,
                         model_kwargs=model_kwargs, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.eta = eta
        self.register_buffer("q", torch.ones(num_domains))

    def loss(self, inputs: torch.Tensor, data_samples: dict) -> dict[str, torch.Tensor]:
        labels = data_samples["label"]
        mask = self.labeled(labels)
        logits = self.logits(inputs)
        ids, risks = [], []
        for d, idx in domain_groups(data_samples["domain"]):
            idx = idx[mask[idx]]
            if len(idx):
                ids.append(d)
                risks.append(F.cross_entropy(logits[idx], labels[idx]))
        if not risks:
            return dict(loss_cls=logits.sum() * 0.0)
        risk = torch.stack(risks)
        ids_t = torch.tensor(ids, device=self.q.device)
        if self.training:
            with torch.no_grad():
                q = self.q[ids_t] * torch.exp(self.eta * risk.detach())
                self.q[ids_t] = q / q.sum()
        weights = self.q[ids_t] / self.q[ids_t].sum()
        return dict(loss_cls=(weights * risk).sum(), worst_risk=risk.detach().max())
