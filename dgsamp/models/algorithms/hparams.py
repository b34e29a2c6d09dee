"""Random hyper-parameter draws, DomainBed-style: draw 0 is the config's defaults, draw k > 0 is
a seeded sample from each algorithm's search space.

Each space maps a config key (as `--cfg-options` writes it) to a distribution. The seed of a
draw depends on (algorithm, draw index, trial seed) only, not on the held-out domain, so the
runs of one draw share hyper-parameters across held-out domains (leave-one-domain-out
selection compares them).

DomainBed's spaces are `domainbed/hparams_registry.py` (facebookresearch/DomainBed at b93c22a):
the adversarial one (lines 49-57, learning rates lines 235-243) is matched key by key below.
DomainBed's one ``beta1`` sets both DANN Adams' betas; here the discriminator's entry is tied
to the generator's (``("same", key)``).
"""

from __future__ import annotations

import hashlib

import numpy as np

# (kind, low, high): 'log10' draws 10**U(low, high); 'log2int' int(2**U(low, high));
# 'uniform' U(low, high); ('choice', values); ('same', key): the value drawn for key
COMMON = {
    "optim_wrapper.optimizer.lr": ("log10", -4.5, -2.5),
    "optim_wrapper.optimizer.weight_decay": ("choice", [0.0, 1e-6, 1e-5, 1e-4]),
    "train_dataloader.batch_size": ("log2int", 3, 7),
}
GEN_BETAS = "optim_wrapper.model.optimizer.betas"
ADVERSARIAL = {  # DomainBed's name in the comment
    "optim_wrapper.model.optimizer.lr": ("log10", -4.5, -2.5),  # lr_g
    "optim_wrapper.discriminator.optimizer.lr": ("log10", -4.5, -2.5),  # lr_d
    "optim_wrapper.discriminator.optimizer.weight_decay": ("log10", -6, -2),  # weight_decay_d
    GEN_BETAS: ("choice", [(0.0, 0.9), (0.5, 0.9)]),  # beta1
    "optim_wrapper.discriminator.optimizer.betas": ("same", GEN_BETAS),  # beta1
    "train_dataloader.batch_size": ("log2int", 3, 7),
    "model.lambda_d": ("log10", -2, 2),  # lambda
    "model.d_steps_per_g_step": ("log2int", 0, 3),  # d_steps_per_g_step
    "model.grad_penalty": ("log10", -2, 1),  # grad_penalty
    "model.disc_hidden": ("log2int", 6, 10),  # mlp_width
    "model.disc_depth": ("choice", [3, 4, 5]),  # mlp_depth
    "model.disc_dropout": ("choice", [0.0, 0.1, 0.5]),  # mlp_dropout
}
SPACES: dict[str, dict] = {
    "ERM": COMMON,
    "DomainClassifier": COMMON,
    "DANN": ADVERSARIAL,
    "CDANN": ADVERSARIAL,
    "CORAL": {**COMMON, "model.align_weight": ("log10", -1, 1)},
    "MMD": {**COMMON, "model.align_weight": ("log10", -1, 1)},
    "MixStyle": {**COMMON, "model.alpha": ("choice", [0.1, 0.2, 0.3]),
                 "model.p": ("uniform", 0.3, 0.7)},
    "IRM": {**COMMON, "model.penalty_weight": ("log10", -1, 5),
            "model.anneal_iters": ("log10int", 0, 4)},
    "VREx": {**COMMON, "model.penalty_weight": ("log10", -1, 5),
             "model.anneal_iters": ("log10int", 0, 4)},
    "GroupDRO": {**COMMON, "model.eta": ("log10", -3, -1)},
    "Mixup": {**COMMON, "model.alpha": ("log10", -1, 1)},  # DomainBed's mixup_alpha
}


def seed_hash(*args) -> int:
    """A stable 31-bit seed from any printable arguments (DomainBed's misc.seed_hash)."""
    return int(hashlib.md5(str(args).encode("utf-8")).hexdigest(), 16) % (2 ** 31)


def _draw(rng: np.random.RandomState, spec: tuple):
    kind = spec[0]
    if kind == "choice":
        values = spec[1]
        return values[rng.randint(len(values))]
    low, high = spec[1], spec[2]
    u = rng.uniform(low, high)
    if kind == "log10":
        return float(10 ** u)
    if kind == "log10int":
        return int(10 ** u)
    if kind == "log2int":
        return int(2 ** u)
    if kind == "uniform":
        return float(u)
    raise ValueError(f"unknown hyper-parameter distribution {kind!r}.")


def draw_hparams(algorithm: str, draw: int, trial_seed: int) -> dict:
    """Config overrides for draw ``draw`` of ``algorithm`` (empty for draw 0: the defaults)."""
    if algorithm not in SPACES:
        raise ValueError(f"No hyper-parameter space for {algorithm!r}; known: {sorted(SPACES)}."
                         f" Fix: add one to dgsamp.models.algorithms.hparams.SPACES.")
    if draw == 0:
        return {}
    rng = np.random.RandomState(seed_hash(algorithm, draw, trial_seed))
    space = SPACES[algorithm]
    values = {key: _draw(rng, spec) for key, spec in sorted(space.items())
              if spec[0] != "same"}
    values.update({key: values[spec[1]] for key, spec in space.items() if spec[0] == "same"})
    return dict(sorted(values.items()))
