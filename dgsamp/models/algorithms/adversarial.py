"""DANN and CDANN: domain-adversarial features, on DomainBed's schedule by default.

A discriminator predicts each item's domain from its features; the featurizer (the "generator")
is trained to make that hard. Two schedules, chosen by ``d_steps_per_g_step``:

- ``k >= 1`` (default 1, DomainBed's ``AbstractDANN.update``, facebookresearch/DomainBed
  domainbed/algorithms.py at b93c22a, lines 516-564): updates alternate. With the update
  counted first, update ``n`` (1, 2, ...) is a discriminator update when ``n % (1 + k) < k``
  (so with k = 1 the first update is a generator update): the discriminator (and CDANN's class
  embedding) minimises its loss on detached features; otherwise featurizer and classifier
  minimise ``loss_cls - lambda_d * loss_disc`` and the discriminator does not move.
- ``k = 0``: the simultaneous update of Ganin & Lempitsky (2015): one backward through a gradient
  reversal layer trains the discriminator to tell domains apart and, with the sign flipped and
  scaled by ``lambda_d``, the featurizer to confuse it.

The discriminator loss carries DomainBed's gradient penalty, ``grad_penalty`` times the mean
squared norm of the gradient of the summed cross-entropy with respect to the discriminator's
input (lines 540-544; default 0). DomainBed's optimizers are two Adams with betas (beta1 = 0.5,
0.9) (lines 503-514); the shipped configs and `apply_algorithm` build them with
`PerModuleOptimWrapperConstructor` (entries ``model`` and ``discriminator``; the discriminator's
``weight_decay`` is DomainBed's ``weight_decay_d``, default 0). A single optim_wrapper works too:
each update clears the gradients of the part it does not train, so the optimizer skips them.

The discriminator classifies the benchmark's domains (``num_domains`` outputs): in DG the
training domains, in DA the source domains *and* the unlabeled target domain, whose items only
enter through their features (their ``label`` is -1 and is never read).

CDANN (DomainBed's ``CDANN``, lines 574-578) adds an embedding of the class to the features
before the discriminator and weights each item's discriminator loss by the inverse frequency of
its class in the batch (``class_balance``, lines 532-536): w_i = 1 / (n_{y_i} K), summed, with
K = ``num_classes``. DomainBed's ``F.one_hot(all_y)`` sizes K by the largest label in the batch;
the two agree whenever that label is K - 1. The embedding starts as N(0, 1), DomainBed's
``nn.Embedding`` (line 498). For unlabeled target items (DA; DomainBed's CDANN uses no target
data) the class is the detached predicted class distribution (Long et al.'s CDAN
conditioning), and class counts are soft: n_c = sum_j p_jc, w_i = sum_c p_ic / (n_c K), which
is DomainBed's weight for one-hot p.

One difference stays: DomainBed's discriminator has one output per *training* domain (labels
are minibatch positions); this one has ``num_domains`` outputs indexed by domain, the held-out
domain's output never a target in DG, because in DA the target domain is one more class.
"""

from __future__ import annotations

import math
from contextlib import ExitStack

import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import nn

from ...engine.runner_utils import optim_wrappers
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
    """DomainBed's MLP (depth 3, width 256, ReLU, dropout) over features (+ class embedding).

    DomainBed's ``networks.MLP`` applies dropout before ReLU; for dropout's non-negative scaling
    the two orders give the same output.
    """

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
        self.class_embed = None
        if num_classes is not None:
            # a linear map of class probabilities: column c is class c's embedding, N(0, 1)
            self.class_embed = nn.Linear(num_classes, in_features, bias=False)
            nn.init.normal_(self.class_embed.weight, 0.0, 1.0)

    def condition(self, feats: torch.Tensor,
                  class_probs: torch.Tensor | None = None) -> torch.Tensor:
        """The discriminator's input: features, plus the class embedding when conditional."""
        if self.class_embed is None:
            return feats
        if class_probs is None:
            raise ValueError("a conditional discriminator needs class_probs.")
        return feats + self.class_embed(class_probs)

    def forward(self, feats: torch.Tensor, class_probs: torch.Tensor | None = None):
        return self.mlp(self.condition(feats, class_probs))


@MODELS.register_module()
class DANN(DGAlgorithm):
    """Domain-adversarial training (see module docstring).

    Args:
        num_domains: number of domains in the benchmark (discriminator outputs).
        lambda_d: weight of the adversarial term on the featurizer (DomainBed's ``lambda``).
        d_steps_per_g_step: discriminator updates per generator update (DomainBed's, default
            1); 0 for the simultaneous gradient-reversal update.
        grad_penalty: weight of the discriminator's input-gradient penalty (DomainBed's).
        class_balance: weight the discriminator loss by inverse class frequency (default: True
            for CDANN, False for DANN, as in DomainBed).
        grl_warmup_iters: ramp ``lambda_d`` up with Ganin's 2/(1+exp(-10p))-1 over this many
            updates (0: constant, DomainBed's).
        disc_hidden, disc_depth, disc_dropout: the discriminator MLP (DomainBed's mlp_width,
            mlp_depth, mlp_dropout).
    """

    conditional = False

    def __init__(self, model_name: str, num_classes: int, num_domains: int,
                 lambda_d: float = 1.0, d_steps_per_g_step: int = 1, grad_penalty: float = 0.0,
                 class_balance: bool | None = None, grl_warmup_iters: int = 0,
                 disc_hidden: int = 256, disc_depth: int = 3, disc_dropout: float = 0.0,
                 in_chans: int = 3, pretrained: str | None = None,
                 model_kwargs: dict | None = None, data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None):
        super().__init__(model_name, num_classes, in_chans=in_chans, pretrained=pretrained,
                         model_kwargs=model_kwargs, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if int(d_steps_per_g_step) != d_steps_per_g_step or d_steps_per_g_step < 0:
            raise ValueError(f"d_steps_per_g_step={d_steps_per_g_step!r}: give an integer >= 1 "
                             f"(DomainBed's alternating updates) or 0 (simultaneous updates "
                             f"through gradient reversal).")
        self.num_domains, self.lambda_d = num_domains, lambda_d
        self.d_steps_per_g_step, self.grad_penalty = int(d_steps_per_g_step), grad_penalty
        self.class_balance = self.conditional if class_balance is None else bool(class_balance)
        self.grl_warmup_iters = grl_warmup_iters
        self.discriminator = DomainDiscriminator(
            self.featurizer.num_features, num_domains, disc_hidden, disc_depth, disc_dropout,
            num_classes if self.conditional else None)

    def adversarial_weight(self) -> float:
        """``lambda_d``, ramped up over ``grl_warmup_iters`` updates when that is > 0."""
        if self.grl_warmup_iters <= 0:
            return self.lambda_d
        p = min(1.0, float(self.update_count) / self.grl_warmup_iters)
        return self.lambda_d * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)

    def phase(self) -> str:
        """What the coming update trains: 'joint', 'discriminator' or 'generator'."""
        k = self.d_steps_per_g_step
        if k == 0:
            return "joint"
        # DomainBed counts the update first, then tests count % (1 + k) < k
        return "discriminator" if (int(self.update_count) + 1) % (1 + k) < k else "generator"

    def class_probs(self, logits: torch.Tensor | None, labels: torch.Tensor,
                    dtype: torch.dtype) -> torch.Tensor:
        """One-hot labels; the detached predicted distribution for unlabeled items."""
        mask = self.labeled(labels)
        onehot = F.one_hot(labels.clamp(min=0), self.num_classes).to(dtype)
        if bool(mask.all()):
            return onehot
        return torch.where(mask[:, None], onehot, logits.detach().softmax(dim=1).to(dtype))

    def discriminator_loss(self, feats: torch.Tensor, probs: torch.Tensor | None,
                           domains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss incl. gradient penalty, accuracy) of the discriminator on ``feats``."""
        if self.grad_penalty > 0 and not feats.requires_grad:  # detached (discriminator update)
            feats = feats.requires_grad_()  # the penalty differentiates w.r.t. the input
        disc_input = self.discriminator.condition(feats, probs)
        d_logits = self.discriminator.mlp(disc_input)
        per_item = F.cross_entropy(d_logits, domains, reduction="none")
        if self.class_balance:
            counts = probs.sum(0)
            weights = (probs / (counts.clamp_min(1e-12) * self.num_classes)).sum(1)
            loss = (weights.to(per_item.dtype) * per_item).sum()
        else:
            loss = per_item.mean()
        if self.grad_penalty > 0:
            (input_grad,) = torch.autograd.grad(per_item.sum(), [disc_input], create_graph=True)
            loss = loss + self.grad_penalty * input_grad.pow(2).sum(1).mean(0)
        return loss, (d_logits.argmax(1) == domains).float().mean().detach()

    def loss(self, inputs: torch.Tensor, data_samples: dict) -> dict[str, torch.Tensor]:
        """The losses of the coming update (`phase`); their sum is what it minimises."""
        labels, domains = data_samples["label"], data_samples["domain"]
        if int(domains.max()) >= self.num_domains:
            raise ValueError(f"domain index {int(domains.max())} >= num_domains="
                             f"{self.num_domains}. Fix: set model.num_domains to the number of "
                             f"domains in the benchmark.")
        phase = self.phase()
        feats = self.extract_feat(inputs)
        logits = None
        if phase != "discriminator":
            logits = self.classifier(feats)
        elif self.conditional and not bool(self.labeled(labels).all()):
            with torch.no_grad():
                logits = self.classifier(feats)
        probs = self.class_probs(logits, labels, feats.dtype) if self.conditional else None
        disc_feats = dict(joint=lambda: grad_reverse(feats, self.adversarial_weight()),
                          discriminator=feats.detach, generator=lambda: feats)[phase]()
        loss_disc, disc_acc = self.discriminator_loss(disc_feats, probs, domains)
        if phase == "discriminator":
            return dict(loss_disc=loss_disc, disc_acc=disc_acc)
        loss_cls = self.classification_loss(logits, labels)
        if phase == "joint":
            return dict(loss_cls=loss_cls, loss_disc=loss_disc, disc_acc=disc_acc)
        return dict(loss_cls=loss_cls, loss_adv=-self.adversarial_weight() * loss_disc,
                    disc_acc=disc_acc)

    def train_step(self, data, optim_wrapper):
        """One backward; each optimizer that holds a trained parameter steps.

        A generator update clears the discriminator's gradients first, so its optimizer (or the
        shared one) leaves it alone; a discriminator update sees detached features, so the
        featurizer and classifier get no gradient at all.
        """
        phase = self.phase()
        wrappers = optim_wrappers(optim_wrapper)
        with ExitStack() as stack:
            for w in wrappers:
                stack.enter_context(w.optim_context(self))
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode="loss")
        parsed, log_vars = self.parse_losses(losses)
        wrappers[0].backward(parsed)  # counts the step for wrappers[0]
        for w in wrappers[1:]:
            w._inner_count += 1  # the same backward served them (no public counter setter)
        if phase == "generator":
            for p in self.discriminator.parameters():
                p.grad = None
        for w in wrappers:
            if w.should_update():
                if any(p.grad is not None for g in w.optimizer.param_groups
                       for p in g["params"]):
                    w.step()
                w.zero_grad()
        self.update_count += 1
        return log_vars


@MODELS.register_module()
class CDANN(DANN):
    """Class-conditional DANN with a class-balanced discriminator loss (module docstring)."""

    conditional = True
