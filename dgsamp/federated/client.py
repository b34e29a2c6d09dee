"""A client's local training in one round, built from the ordinary config with mmengine's Runner.

Round r (1-based) of a federation with E local epochs trains epochs (r-1)·E ... r·E-1 of the
config's own schedule: the train loop starts at epoch (r-1)·E (so the sampler's shuffle and every
epoch-indexed hook see global epoch numbers) and the parameter schedulers are stepped to that
epoch first, so ``param_scheduler`` reads as it does in centralized training over
num_rounds·E epochs. The optimizer starts fresh each round (FedAvg's local SGD). With one client,
one round and one local epoch this is exactly one epoch of `tools/train.py` (tested).

Rules a strategy asks of the client, applied by `FederatedRoundHook`:
- FedProx: the gradient of (μ/2)·||w − w_global||² is added to every parameter's gradient.
- FedBN: norm layers (BatchNorm, GroupNorm, LayerNorm, InstanceNorm: affine parameters and
  running statistics) stay local: the client loads its own from the last round it trained and
  saves them after training; the server's copies are ignored.
Local state lives on the client's disk (``<client_dir>/local_r<round>.pth``), so a resumed
federation continues exactly and no state rides on Flower's per-node context.
"""

from __future__ import annotations

import copy
import glob
import os
import os.path as osp
import re
from dataclasses import dataclass

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from torch import nn

from ..engine.cost_hook import CostHook
from ..engine.runner_utils import unique_experiment_name, unwrap_model
from .report import ledger_payload
from .settings import FLSettings

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_LOCAL_FILE = re.compile(r"local_r(\d+)\.pth$")


def norm_state_keys(model: nn.Module) -> list[str]:
    """state_dict keys of every norm layer (affine parameters and running statistics)."""
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, NORM_TYPES):
            keys += [f"{name}.{k}" if name else k for k in module.state_dict()]
    return keys


def client_seed(seed: int, client: int, server_round: int) -> int:
    """The seed of client ``client`` in round ``server_round``: client 0 of round 1 has the
    config's own seed (the equality with centralized training rests on it)."""
    return int(seed) + 7919 * (server_round - 1) + 104729 * client


def client_config(cfg: Config, fl: FLSettings, client: int, server_round: int,
                  client_dir: str) -> Config:
    """The config one client trains one round with: its data share, the round's epochs, no
    validation or checkpoints (the server evaluates the global model), CostHook on."""
    c = copy.deepcopy(cfg)
    c.pop("fl", None)
    c.train_dataloader.dataset = dict(
        type="FederatedClientDataset", dataset=c.train_dataloader.dataset, client=client,
        clients=fl.clients, partition=fl.partition, alpha=fl.alpha, seed=fl.partition_seed)
    c.train_cfg = dict(c.train_cfg, max_epochs=server_round * fl.local_epochs)
    c.train_cfg.pop("val_interval", None)
    c.train_cfg.pop("val_begin", None)
    for key in ("val_dataloader", "val_cfg", "val_evaluator", "test_dataloader", "test_cfg",
                "test_evaluator"):
        c[key] = None
    c.default_hooks = dict(c.get("default_hooks") or {}, checkpoint=None)
    hooks = list(c.get("custom_hooks") or [])
    if not any(h.get("type") == "CostHook" for h in hooks):
        hooks.append(dict(type="CostHook"))
    if fl.gradsamp is not None and fl.gradsamp["mode"] == "client":
        gs = {k: v for k, v in fl.gradsamp.items() if k != "mode"}
        hooks = [h for h in hooks if h.get("type") != "GradSampHook"]
        hooks.append(dict(type="GradSampHook", **gs))
    c.custom_hooks = hooks
    c.work_dir = osp.join(client_dir, f"r{server_round}")
    c.experiment_name = unique_experiment_name(f"client{client}_round{server_round}")
    c.randomness = dict(c.get("randomness") or {},
                        seed=client_seed((c.get("randomness") or {}).get("seed") or 0, client,
                                         server_round))
    c.load_from, c.resume = None, False
    c.log_level = "WARNING"  # one log per client and round; the server logs the rounds
    # mmengine formats the config with yapf five times per Runner (log, visualizer, dump):
    # 0.65 s each, half of a small client's round. The dumps stay valid Python, unformatted.
    return Config(c.to_dict(), format_python_code=False)


class FederatedRoundHook(Hook):
    """Put the global model in, start the loop at the round's first epoch, apply FedProx/FedBN.

    Runs before every other hook's ``before_train`` (CostHook and GradSampHook snapshot the
    model there, and must see the global weights).
    """

    priority = "HIGHEST"

    def __init__(self, global_state: dict[str, torch.Tensor], start_epoch: int,
                 proximal_mu: float = 0.0, local_keys: dict[str, torch.Tensor] | None = None):
        self.global_state = global_state
        self.start_epoch = int(start_epoch)
        self.proximal_mu = float(proximal_mu)
        self.local_state = local_keys or {}
        self._handles: list = []

    def before_train(self, runner) -> None:
        model = unwrap_model(runner.model)
        state = dict(self.global_state, **self.local_state)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"The global model does not fit the client's model: missing "
                             f"{missing[:5]}, unexpected {unexpected[:5]} (same config on "
                             "server and clients?).")
        loop = runner.train_loop
        steps_per_epoch = len(loop.dataloader)
        loop._epoch, loop._iter = self.start_epoch, self.start_epoch * steps_per_epoch
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        for s in schedulers:  # walk the config's schedule to the round's first epoch
            for _ in range(self.start_epoch if s.by_epoch else loop._iter):
                s.step()
        if self.proximal_mu > 0:
            for p in model.parameters():
                if p.requires_grad:
                    anchor = p.detach().clone()
                    self._handles.append(p.register_hook(
                        lambda g, p=p, a=anchor: g + self.proximal_mu * (p.detach() - a)))

    def after_train(self, runner) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@dataclass
class LocalResult:
    """What a client sends back: its weights, its sample count, what the round cost it (its
    CostHook ledger as plain types, `dgsamp.federated.report.ledger_payload`)."""

    state: dict[str, torch.Tensor]
    num_examples: int
    cost: dict


def latest_local_state(client_dir: str, before_round: int) -> dict[str, torch.Tensor]:
    """The client's kept-local tensors (FedBN) from the latest round before ``before_round``."""
    best, path = 0, None
    for f in glob.glob(osp.join(client_dir, "local_r*.pth")):
        m = _LOCAL_FILE.search(f)
        if m and best < int(m.group(1)) < before_round:
            best, path = int(m.group(1)), f
    return torch.load(path, map_location="cpu") if path else {}


def train_client(cfg: Config, fl: FLSettings, client: int, server_round: int,
                 global_state: dict[str, torch.Tensor], client_dir: str,
                 proximal_mu: float = 0.0, keep_norm_local: bool = False) -> LocalResult:
    """Train one client for one round from the global weights (see the module docstring)."""
    from mmengine.runner import Runner

    ccfg = client_config(cfg, fl, client, server_round, client_dir)
    runner = Runner.from_cfg(ccfg)
    model = unwrap_model(runner.model)
    local_keys = norm_state_keys(model) if keep_norm_local else []
    local = latest_local_state(client_dir, server_round) if local_keys else {}
    runner.register_hook(FederatedRoundHook(global_state, (server_round - 1) * fl.local_epochs,
                                            proximal_mu, local))
    runner.train()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if local_keys:
        os.makedirs(client_dir, exist_ok=True)
        torch.save({k: state[k] for k in local_keys},
                   osp.join(client_dir, f"local_r{server_round}.pth"))
    cost_hook = next(h for h in runner.hooks if isinstance(h, CostHook))
    return LocalResult(state, len(runner.train_dataloader.dataset),
                       ledger_payload(cost_hook.ledger))
