"""Inter-domain Mixup (DomainBed's Mixup; Xu et al. 2020, Yan et al. 2020).

Domains are paired at random (a random cycle over the domains in the batch); each pair's
minibatches are blended with one lambda ~ Beta(alpha, alpha) and the loss mixes both labels'
cross-entropies with the same lambda. All pairs go through the network in one forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS

from .base import DGAlgorithm, domain_groups


@MODELS.register_module()
class Mixup(DGAlgorithm):
    """Args:
        alpha: Beta distribution parameter (DomainBed's mixup_alpha, default 0.2).
    """

    def __init__(self, model_name: str, num_classes: int, alpha: float = 0.2,
                 in_chans: int = 3, pretrained: str | None = None,
                 model_kwargs: dict | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None):
        super().__init__(model_name, num_classes, in_chans=in_chans, pretrained=pretrained,
                         model_kwargs=model_kwargs, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.alpha = alpha

    def loss(self, inputs: torch.Tensor, data_samples: dict) -> dict[str, torch.Tensor]:
        labels = data_samples["label"]
        mask = self.labeled(labels)
        groups = [idx[mask[idx]] for _, idx in domain_groups(data_samples["domain"])]
        groups = [g for g in groups if len(g)]
        if not groups:
            return dict(loss_cls=self.logits(inputs).sum() * 0.0)
        perm = torch.randperm(len(groups)).tolist()
        beta = torch.distributions.Beta(torch.tensor(float(self.alpha)),
                                        torch.tensor(float(self.alpha)))
        xs, yi, yj, lams = [], [], [], []
        for k in range(len(perm)):
            gi, gj = groups[perm[k]], groups[perm[(k + 1) % len(perm)]]
            n = min(len(gi), len(gj))
            gi, gj = gi[:n], gj[:n]
            lam = float(beta.sample())
            xs.append(lam * inputs[gi] + (1 - lam) * inputs[gj])
            yi.append(labels[gi])
            yj.append(labels[gj])
            lams.append(torch.full((n,), lam, dtype=inputs.dtype, device=inputs.device))
        logits = self.logits(torch.cat(xs))
        lam_t, y1, y2 = torch.cat(lams), torch.cat(yi), torch.cat(yj)
        per_item = (lam_t * F.cross_entropy(logits, y1, reduction="none")
                    + (1 - lam_t) * F.cross_entropy(logits, y2, reduction="none"))
        # mean over each pair's items, averaged over pairs (DomainBed's objective / n_domains)
        sizes = [len(y) for y in yi]
        per_pair = torch.stack([c.mean() for c in per_item.split(sizes)])
        return dict(loss_cls=per_pair.mean())
