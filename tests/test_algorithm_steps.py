"""One training step of every algorithm, pinned against its objective written from the formula.

The model is tiny so the objectives can be written out by hand: a 1x1 convolution (2 -> 2
channels) and global average pooling as featurizer (for 1x1 inputs: z = W x), a linear
classifier over 3 classes, 3 domains of 2 items, float64, one plain SGD step (lr 0.1). Each
test writes the algorithm's objective from its paper / DomainBed's `update` with explicit
tensor formulas (no dgsamp code), takes its gradient, and checks that the model's update is
theta - lr * gradient and that the logged loss is the objective's value. ERM's gradient is
derived by hand as well; IRM's penalty uses the closed form of d CE(s z, y) / ds at s = 1, the
discriminator's gradient penalty the closed form of d CE / d input of a linear layer. Random
draws (Mixup's and MixStyle's lambda and pairing) are fixed by patching the samplers.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
from timm.models import register_model
from torch import nn

import dgsamp  # noqa: F401  (registers the algorithms)

LR = 0.1
W_FEAT = [[1.0, -0.5], [0.5, 1.0]]
W_CLS = [[0.5, -1.0], [-0.3, 0.8], [0.2, 0.1]]
B_CLS = [0.1, 0.0, -0.1]
W_DISC = [[0.3, -0.2], [-0.1, 0.4], [0.2, 0.2]]
B_DISC = [0.0, 0.1, -0.1]
EMBED = [[0.5, -0.5, 1.0], [0.2, 0.3, -0.4]]  # column c: class c's embedding
X = torch.tensor([[1.0, 0.0], [0.5, -1.0], [-1.0, 2.0], [0.0, 1.0], [2.0, 0.5], [-0.5, -0.5]],
                 dtype=torch.float64)
Y = torch.tensor([0, 1, 2, 0, 1, 1])
DOM = torch.tensor([0, 0, 1, 1, 2, 2])
GROUPS = [torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])]


class TinyNet(nn.Module):
    """1x1 convolution, then the spatial mean: ``z = W x`` for 1x1 inputs."""

    def __init__(self, in_chans: int = 2, width: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, 1, bias=False)
        self.num_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


@register_model
def dgsamp_step_test_net(pretrained: bool = False, in_chans: int = 2, **_kwargs) -> TinyNet:
    return TinyNet(in_chans)


def build(alg: str, **kw) -> nn.Module:
    cfg = dict(type=alg, model_name="dgsamp_step_test_net", num_classes=3, in_chans=2, **kw)
    if alg in ("DANN", "CDANN", "GroupDRO"):
        cfg.setdefault("num_domains", 3)
    if alg in ("DANN", "CDANN"):
        cfg.setdefault("disc_depth", 1)  # a linear discriminator
    model = MODELS.build(cfg).double()
    values = {"featurizer.conv.weight": torch.tensor(W_FEAT)[:, :, None, None],
              "classifier.weight": W_CLS, "classifier.bias": B_CLS,
              "discriminator.mlp.0.weight": W_DISC, "discriminator.mlp.0.bias": B_DISC,
              "discriminator.class_embed.weight": EMBED}
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.as_tensor(values[name], dtype=torch.float64))
    return model


def batch(x: torch.Tensor = X, labels: torch.Tensor = Y) -> dict:
    inputs = x[:, :, None, None] if x.ndim == 2 else x
    return dict(inputs=inputs.clone(), data_samples=dict(label=labels.clone(),
                                                         domain=DOM.clone()))


def sgd(model: nn.Module) -> OptimWrapper:
    return OptimWrapper(torch.optim.SGD(model.parameters(), lr=LR))


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters as leaves for a formula (conv weight as a 2x2 matrix)."""
    out = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    return out


def feats(t: dict, x: torch.Tensor = X) -> torch.Tensor:
    return x @ t["featurizer.conv.weight"].view(2, 2).T


def logits_of(t: dict, z: torch.Tensor) -> torch.Tensor:
    return z @ t["classifier.weight"].T + t["classifier.bias"]


def ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-item cross-entropy, -log softmax(logits)[y], written out."""
    return torch.logsumexp(logits, dim=1) - logits.gather(1, y[:, None])[:, 0]


def step_matches(model: nn.Module, objective, data: dict, wrapper=None,
                 trained: tuple[str, ...] = ("",)) -> tuple[dict, float]:
    """Run one train_step; parameters named with a ``trained`` prefix must have moved by
    -lr * d objective / d theta, the others not at all. Returns (log, objective value)."""
    theta = params(model)
    value = objective(theta)
    grads = torch.autograd.grad(value, list(theta.values()), allow_unused=True)
    expected = {}
    for (name, t), g in zip(theta.items(), grads, strict=True):
        moves = g is not None and name.startswith(trained)
        expected[name] = t.detach() - LR * g if moves else t.detach()
    log = model.train_step(data, wrapper or sgd(model))
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[name], rtol=0, atol=1e-12,
                                   msg=lambda m, n=name: f"{n}: {m}")
    return log, float(value)


# -- ERM: the gradient by hand --------------------------------------------------------------------
def test_erm_step_is_the_hand_derived_gradient():
    model = build("ERM")
    wf, wc, b = (torch.tensor(v, dtype=torch.float64) for v in (W_FEAT, W_CLS, B_CLS))
    z = X @ wf.T
    p = torch.softmax(z @ wc.T + b, dim=1)
    g = (p - F.one_hot(Y, 3)) / len(Y)  # d mean-CE / d logits
    expected = {"classifier.weight": wc - LR * g.T @ z, "classifier.bias": b - LR * g.sum(0),
                "featurizer.conv.weight": (wf - LR * (g @ wc).T @ X)[:, :, None, None]}
    loss = -torch.log(p[torch.arange(6), Y]).mean()
    log = model.train_step(batch(), sgd(model))
    assert float(log["loss"]) == pytest.approx(float(loss.detach()), abs=1e-12)
    for name, p_ in model.named_parameters():
        torch.testing.assert_close(p_.detach(), expected[name], rtol=0, atol=1e-12)


# -- feature alignment --------------------------------------------------------------------------
def per_domain_risk(t: dict, z: torch.Tensor, y: torch.Tensor = Y) -> torch.Tensor:
    lg = logits_of(t, z)
    return torch.stack([ce(lg[g], y[g]).mean() for g in GROUPS])


def coral(a, b):
    """DomainBed's CORAL: means and (unbiased) covariances, squared differences averaged."""
    return (((a.mean(0) - b.mean(0)) ** 2).mean()
            + ((torch.cov(a.T) - torch.cov(b.T)) ** 2).mean())


def mmd(a, b, gammas=(0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)):
    """Biased MMD^2 with a sum of Gaussian kernels exp(-gamma |a_i - b_j|^2)."""
    def kernel(u, v):
        d = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        return sum(torch.exp(-g * d) for g in gammas)

    return kernel(a, a).mean() + kernel(b, b).mean() - 2 * kernel(a, b).mean()


@pytest.mark.parametrize(("alg", "distance"), [("CORAL", coral), ("MMD", mmd)])
def test_alignment_step(alg, distance):
    weight = 0.7  # DomainBed's AbstractMMD: mean risk + gamma * mean over domain pairs

    def objective(t):
        z = feats(t)
        pens = [distance(z[GROUPS[i]], z[GROUPS[j]])
                for i, j in itertools.combinations(range(3), 2)]
        return per_domain_risk(t, z).mean() + weight * sum(pens) / 3

    log, value = step_matches(build(alg, align_weight=weight), objective, batch())
    assert float(log["loss"]) == pytest.approx(value, abs=1e-10)


def mmd_unbiased(a, b, gammas=(0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)):
    """MMD²_u: within-domain kernel means over the pairs i != j only."""
    def kernel(u, v):
        d = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        return sum(torch.exp(-g * d) for g in gammas)

    def off_diagonal_mean(k):
        n = k.shape[0]
        return (k.sum() - torch.diagonal(k).sum()) / (n * (n - 1))

    return off_diagonal_mean(kernel(a, a)) + off_diagonal_mean(kernel(b, b)) - 2 * kernel(
        a, b).mean()


def test_unbiased_mmd_step_and_estimate():
    """model.unbiased=True: the step minimises the off-diagonal estimate, and for two samples of
    one distribution that estimate is ~0 on average while the biased one is not: its diagonal
    adds 2(7 - mean off-diagonal kernel)/n, up to 14/n."""
    weight = 0.7

    def objective(t):
        z = feats(t)
        pens = [mmd_unbiased(z[GROUPS[i]], z[GROUPS[j]])
                for i, j in itertools.combinations(range(3), 2)]
        return per_domain_risk(t, z).mean() + weight * sum(pens) / 3

    log, value = step_matches(build("MMD", align_weight=weight, unbiased=True), objective,
                              batch())
    assert float(log["loss"]) == pytest.approx(value, abs=1e-10)

    from dgsamp.models.algorithms import mmd_distance

    g = torch.Generator().manual_seed(0)
    n, draws = 6, 400
    pairs = [(torch.randn(n, 4, generator=g, dtype=torch.float64),
              torch.randn(n, 4, generator=g, dtype=torch.float64)) for _ in range(draws)]
    unbiased = torch.stack([mmd_distance(a, b, unbiased=True) for a, b in pairs])
    biased = torch.stack([mmd_distance(a, b) for a, b in pairs])
    assert abs(float(unbiased.mean())) < 4 * float(unbiased.std()) / draws ** 0.5
    assert float(biased.mean()) > 0.5 * 14 / n  # 1.5 here: the kernels' mean is ~2.5 of 7


# -- robust / invariant risks --------------------------------------------------------------------
def test_groupdro_step():
    eta = 0.5
    model = build("GroupDRO", eta=eta)
    risks = per_domain_risk(params(model), feats(params(model))).detach()
    q = torch.exp(eta * risks) / torch.exp(eta * risks).sum()  # q0 = 1, one EG step, normalised

    def objective(t):
        return (q * per_domain_risk(t, feats(t))).sum()

    log, value = step_matches(model, objective, batch())
    torch.testing.assert_close(model.q, q, rtol=0, atol=1e-12)
    assert float(log["loss"]) == pytest.approx(value, abs=1e-12)


def irm_grad_at_one(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/ds mean CE(s z, y) at s = 1 = mean_i (E_softmax(z_i)[z_i] - z_i[y_i])."""
    return ((torch.softmax(z, 1) * z).sum(1) - z.gather(1, y[:, None])[:, 0]).mean()


@pytest.mark.parametrize("rescale", [False, True])
def test_irm_step(rescale):
    lam = 10.0  # anneal_iters=0: the penalty weight is lambda from the first update

    def objective(t):
        lg = logits_of(t, feats(t))
        pens = [irm_grad_at_one(lg[g][::2], Y[g][::2]) * irm_grad_at_one(lg[g][1::2], Y[g][1::2])
                for g in GROUPS]
        loss = per_domain_risk(t, feats(t)).mean() + lam * torch.stack(pens).mean()
        return loss / lam if rescale else loss  # DomainBed: no division; IRM authors: / lambda

    model = build("IRM", penalty_weight=lam, anneal_iters=0, rescale_after_anneal=rescale)
    log, value = step_matches(model, objective, batch())
    assert float(log["loss"]) == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("rescale", [False, True])
def test_vrex_step(rescale):
    lam = 10.0

    def objective(t):
        r = per_domain_risk(t, feats(t))
        loss = r.mean() + lam * ((r - r.mean()) ** 2).mean()
        return loss / lam if rescale else loss

    model = build("VREx", penalty_weight=lam, anneal_iters=0, rescale_after_anneal=rescale)
    log, value = step_matches(model, objective, batch())
    assert float(log["loss"]) == pytest.approx(value, abs=1e-12)


def test_penalty_weight_is_one_before_the_switch():
    def objective(t):
        r = per_domain_risk(t, feats(t))
        return r.mean() + ((r - r.mean()) ** 2).mean()

    step_matches(build("VREx", penalty_weight=10.0, anneal_iters=1), objective, batch())


# -- data mixing (random draws patched) ----------------------------------------------------------
@pytest.fixture
def fixed_draws(monkeypatch):
    """Beta samples come from ``draws['lam']`` in order; randperm(n) is ``draws['perm'](n)``."""
    draws = {"lam": iter([]), "perm": torch.arange}

    def sample(self, sample_shape=()):
        lam = torch.as_tensor(next(draws["lam"]), dtype=torch.float64)
        return lam.expand(torch.Size(sample_shape)).clone()

    monkeypatch.setattr(torch.distributions.Beta, "sample", sample)
    monkeypatch.setattr(torch, "randperm", lambda n, *a, **k: draws["perm"](n))
    return draws


def test_mixup_step(fixed_draws):
    lams = [0.3, 0.6, 0.9]
    fixed_draws["lam"] = iter(lams)  # identity permutation: pairs (0, 1), (1, 2), (2, 0)

    def objective(t):
        total = 0.0
        for k, (i, j) in enumerate([(0, 1), (1, 2), (2, 0)]):
            gi, gj, lam = GROUPS[i], GROUPS[j], lams[k]
            lg = logits_of(t, feats(t, lam * X[gi] + (1 - lam) * X[gj]))
            total = total + lam * ce(lg, Y[gi]).mean() + (1 - lam) * ce(lg, Y[gj]).mean()
        return total / 3  # DomainBed: objective / len(minibatches)

    log, value = step_matches(build("Mixup", alpha=0.2), objective, batch())
    assert float(log["loss"]) == pytest.approx(value, abs=1e-12)


@pytest.mark.filterwarnings("ignore:MixStyle after layer")  # tiny maps on purpose
def test_mixstyle_step(fixed_draws):
    lam = torch.tensor([0.2, 0.5, 0.7, 0.9, 0.4, 0.6], dtype=torch.float64)
    perm = torch.tensor([1, 0, 3, 2, 5, 4])
    fixed_draws["lam"] = iter([lam[:, None, None, None]])
    fixed_draws["perm"] = lambda n: perm
    x = torch.tensor([[[1.0, 0.0], [0.5, -1.0]], [[-1.0, 2.0], [0.0, 1.0]],
                      [[2.0, 0.5], [-0.5, -0.5]], [[0.3, 0.2], [1.0, -2.0]],
                      [[-0.7, 0.4], [0.9, 0.1]], [[1.5, -1.0], [0.2, 0.6]]],
                     dtype=torch.float64)  # (item, channel, 2 positions)

    def objective(t):
        h = torch.einsum("oc,bcs->bos", t["featurizer.conv.weight"].view(2, 2), x)
        mu = h.mean(2, keepdim=True).detach()
        sig = (((h - mu) ** 2).sum(2, keepdim=True) / (2 - 1) + 1e-6).sqrt().detach()
        lm = lam[:, None, None]
        mixed = ((h - mu) / sig * (lm * sig + (1 - lm) * sig[perm])
                 + lm * mu + (1 - lm) * mu[perm])
        return ce(logits_of(t, mixed.mean(2)), Y).mean()

    model = build("MixStyle", layers=["conv"], p=1.0, alpha=0.1)
    log, value = step_matches(model, objective, batch(x[..., None]))
    assert float(log["loss"]) == pytest.approx(value, abs=1e-12)


# -- domain-adversarial ---------------------------------------------------------------------------
def disc_terms(t: dict, d_in: torch.Tensor, gp: float,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Discriminator loss (mean, or weights-weighted sum) + gp * mean |d sum CE / d input|^2,
    the input gradient of a linear discriminator in closed form: A^T (softmax - onehot)."""
    a = t["discriminator.mlp.0.weight"]
    d_logits = d_in @ a.T + t["discriminator.mlp.0.bias"]
    per_item = ce(d_logits, DOM)
    loss = per_item.mean() if weights is None else (weights * per_item).sum()
    input_grad = (torch.softmax(d_logits, 1) - F.one_hot(DOM, 3)) @ a
    return loss + gp * (input_grad ** 2).sum(1).mean()


DISC = ("discriminator.",)
GEN = ("featurizer.", "classifier.")


def test_dann_alternates_generator_and_discriminator_steps():
    lam, gp = 0.7, 0.5
    model = build("DANN", lambda_d=lam, grad_penalty=gp, d_steps_per_g_step=1)
    wrappers = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="PerModuleOptimWrapperConstructor", optim_wrapper_cfg=dict(
            model=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=LR)),
            discriminator=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=LR)))))(model)

    def generator(t):  # update 1 (DomainBed: 1 % 2 = 1, not < 1)
        z = feats(t)
        return ce(logits_of(t, z), Y).mean() - lam * disc_terms(t, z, gp)

    log, value = step_matches(model, generator, batch(), wrappers, trained=GEN)
    assert float(log["loss"]) == pytest.approx(value, abs=1e-12)

    def discriminator(t):  # update 2 (2 % 2 = 0 < 1): features as they are now, detached
        return disc_terms(t, feats(t).detach(), gp)

    log, value = step_matches(model, discriminator, batch(), wrappers, trained=DISC)
    assert float(log["loss"]) == pytest.approx(value, abs=1e-12)
    assert int(model.update_count) == 2


def test_dann_simultaneous_update_through_gradient_reversal():
    lam, gp = 0.7, 0.5
    model = build("DANN", lambda_d=lam, grad_penalty=gp, d_steps_per_g_step=0)
    theta = params(model)
    z = feats(theta)
    cls, disc = ce(logits_of(theta, z), Y).mean(), disc_terms(theta, z, gp)
    # discriminator descends disc; featurizer descends cls - lam * disc; classifier cls
    grads = {}
    for name, obj in (("discriminator", disc), ("featurizer", cls - lam * disc),
                      ("classifier", cls)):
        names = [n for n in theta if n.startswith(name)]
        grads.update(zip(names, torch.autograd.grad(obj, [theta[n] for n in names],
                                                    retain_graph=True), strict=True))
    log = model.train_step(batch(), sgd(model))
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), theta[name].detach() - LR * grads[name],
                                   rtol=0, atol=1e-12)
    assert float(log["loss"]) == pytest.approx(float(cls + disc), abs=1e-12)


def class_balance(probs: torch.Tensor) -> torch.Tensor:
    """w_i = sum_c p_ic / (n_c K): DomainBed's 1 / (count(y_i) K) for one-hot p."""
    return (probs / (probs.sum(0) * probs.shape[1])).sum(1)


def test_cdann_class_balanced_and_conditioned_steps():
    lam = 0.7
    model = build("CDANN", lambda_d=lam)
    onehot = F.one_hot(Y, 3).double()
    # counts 2, 3, 1: the three items of class 1 weigh 1/9 each, class 2's one item 1/3
    weights = class_balance(onehot)
    assert torch.allclose(weights, torch.tensor([1 / 6, 1 / 9, 1 / 3, 1 / 6, 1 / 9, 1 / 9],
                                                dtype=torch.float64))

    def embedded(t, z, probs=onehot):
        return z + probs @ t["discriminator.class_embed.weight"].T

    def generator(t):
        z = feats(t)
        return ce(logits_of(t, z), Y).mean() - lam * disc_terms(t, embedded(t, z), 0.0, weights)

    step_matches(model, generator, batch(), trained=GEN)

    def discriminator(t):
        return disc_terms(t, embedded(t, feats(t).detach()), 0.0, weights)

    step_matches(model, discriminator, batch(), trained=DISC)


def test_cdann_unlabeled_items_condition_on_predicted_classes():
    model = build("CDANN")
    model.update_count.fill_(1)  # the coming update (2) is a discriminator update
    labels = Y.clone()
    labels[5] = -1  # a target item (DA): its class is the predicted distribution

    def discriminator(t):
        z = feats(t).detach()
        probs = F.one_hot(labels.clamp(min=0), 3).double()
        probs[5] = torch.softmax(logits_of(t, z)[5], 0).detach()
        d_in = z + probs @ t["discriminator.class_embed.weight"].T
        return disc_terms(t, d_in, 0.0, class_balance(probs))

    step_matches(model, discriminator, batch(labels=labels), trained=DISC)
