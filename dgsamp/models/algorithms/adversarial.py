"""DANN and CDANN: domain-adversarial features through a gradient reversal layer.

A discriminator predicts each item's domain from its features; the gradient reversal layer
(Ganin & Lempitsky 2015) passes the discriminator's gradient back to the featurizer with its
sign flipped and scaled by ``lambda_d``, so one backward pass trains the discriminator to tell
domains apart and the featurizer to make them indistinguishable. DomainBed alternates two
optimizers instead; here both objectives come from the same backward and each part keeps its
own optimizer when the config asks for one (`PerModuleOptimWrapperConstructor` with a
``discriminator`` entry; DomainBed's discriminator uses Adam with beta1=0.5). With a plain
single optim_wrapper everything shares one optimizer.

The discriminator classifies the benchmark's domains (``num_domains`` outputs): in DG the
training domains, in DA the source domains *and* the unlabeled target domain, whose items only
enter through their features (their ``label`` is -1 and is never read).

CDANN conditions the discriminator on the class: features + an embedding of the class, where
the class is the label for labelled items and the (detached) predicted class distribution for
unlabeled target items (Long et al.'s CDAN conditioning; DomainBed's CDANN uses labels only).
"""

from __future__ import annotations

import math
from contextlib import ExitStack

import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapperDict
from mmengine.registry import MODELS
from torch import nn

from .base import DGAlgorithm


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient comes back multiplied by ``-scale``."""
    return _ReverseGrad.apply(x, scale)


class DomainDiscriminator(nn.Module):
    """DomainBed's MLP (depth 3, width 256, ReLU, dropout) over features (+ class embedding)."""

    def __init__(self, in_features: int, num_domains: int, hidden: int = 256, depth: int = 3,
                 dropout: float = 0.0, num_classes: int | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth - 1):
            layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_domains))
        self.mlp = nn.Sequential(*layers)
        self.class_embed = (nn.Linear(num_classes, in_features, bias=False)
                            if num_classes is not None else None)

    def forward(self, feats: torch.Tensor, class_probs: torch.Tensor | None = None):
        if self.class_embed is not None:
            if class_probs is None:
                raise ValueError("a conditional discriminator needs class_probs.")
            feats = feats + self.class_embed(class_probs)
        return self.mlp(feats)


@MODELS.register_module()
class DANN(DGAlgorithm):
    """Domain-adversarial training (see module docstring).

    Args:
        num_domains: number of domains in the benchmark (discriminator outputs).
        lambda_d: weight of the reversed discriminator gradient on the featurizer.
        grl_warmup_iters: ramp ``lambda_d`` up with Ganin's 2/(1+exp(-10p))-1 over this many
            updates (0: constant).
        disc_hidden, disc_depth, disc_dropout: the discriminator MLP.
    """

    conditional = False

    def __init__(self, model_name: str, num_classes: int, num_domains: int,
                 lambda_d: float = 1.0, grl_warmup_iters: int = 0, disc_hidden: int = 256,
                 disc_depth: int = 3, disc_dropout: float = 0.0, in_chans: int = 3,
                 pretrained: str | None = None, model_kwargs: dict | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(model_name, num_classes, in_chans=in_chans, pretrained=pretrained,
                         model_kwargs=model_kwargs, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.num_domains, self.lambda_d = num_domains, lambda_d
        self.grl_warmup_iters = grl_warmup_iters
        self.discriminator = DomainDiscriminator(
            self.featurizer.num_features, num_domains, disc_hidden, disc_depth, disc_dropout,
            num_classes if self.conditional else None)

    def grl_scale(self) -> float:
        if self.grl_warmup_iters <= 0:
            return self.lambda_d
        p = min(1.0, float(self.update_count) / self.grl_warmup_iters)
        return self.lambda_d * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)

    def loss(self, inputs: torch.Tensor, data_samples: dict) -> dict[str, torch.Tensor]:
        labels, domains = data_samples["label"], data_samples["domain"]
        if int(domains.max()) >= self.num_domains:
            raise ValueError(f"domain index {int(domains.max())} >= num_domains="
                             f"{self.num_domains}. Fix: set model.num_domains to the number of "
                             f"domains in the benchmark.")
        feats = self.extract_feat(inputs)
        logits = self.classifier(feats)
        probs = None
        if self.conditional:
            mask = self.labeled(labels)
            onehot = F.one_hot(labels.clamp(min=0), self.num_classes).to(feats.dtype)
            predicted = logits.detach().softmax(dim=1)
            probs = torch.where(mask[:, None], onehot, predicted)
        d_logits = self.discriminator(grad_reverse(feats, self.grl_scale()), probs)
        loss_disc = F.cross_entropy(d_logits, domains)
        disc_acc = (d_logits.argmax(1) == domains).float().mean().detach()
        return dict(loss_cls=self.classification_loss(logits, labels), loss_disc=loss_disc,
                    disc_acc=disc_acc)

    def train_step(self, data, optim_wrapper):
        """One backward, then every optimizer of an `OptimWrapperDict` steps."""
        if not isinstance(optim_wrapper, OptimWrapperDict):
            return super().train_step(data, optim_wrapper)
        wrappers = list(optim_wrapper.values())
        with ExitStack() as stack:
            for w in wrappers:
                stack.enter_context(w.optim_context(self))
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode="loss")
        parsed, log_vars = self.parse_losses(losses)
        wrappers[0].backward(parsed)  # counts the step for wrappers[0]
        for w in wrappers[1:]:
            w._inner_count += 1  # the same backward served them (no public counter setter)
        for w in wrappers:
            if w.should_update():
                w.step()
                w.zero_grad()
        self.update_count += 1
        return log_vars


@MODELS.register_module()
class CDANN(DANN):
    """Class-conditional DANN (see module docstring)."""

    conditional = True
