"""The ``fl = dict(...)`` section of a config, validated once, where it enters.

    fl = dict(num_rounds=20, local_epochs=1, clients='domains', fraction_train=1.0,
              strategy=dict(type='FedAvg'), gradsamp=dict(mode='server', every=4))

Keys (defaults in `FLSettings`): ``clients`` is ``'domains'`` (each training domain is one
client: federated DG, the held-out domains belong to no client) or an integer N (the training
domains' items split into N clients, ``partition='iid'`` or ``'dirichlet'`` with ``alpha``, by
label). ``strategy`` names a Flower strategy (``flwr.serverapp.strategy``) or ``'FedBN'``
(FedAvg on the server, norm layers kept local on the clients). ``gradsamp`` is None,
``dict(mode='server', every=4, warmup=2, ...)`` (skipped rounds contact no client) or
``dict(mode='client', every=4, ...)`` (GradSampHook on every client, inside a round).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PARTITIONS = ("iid", "dirichlet")
GRADSAMP_MODES = ("server", "client")
# GradSampler options accepted in fl.gradsamp next to mode/every/warmup/schedule
GRADSAMP_OPTIONS = ("distribution", "statistics", "tau", "history", "seed")
KNOWN_KEYS = ("num_rounds", "local_epochs", "clients", "partition", "alpha", "partition_seed",
              "fraction_train", "strategy", "gradsamp", "timeout")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"fl.{name}={value!r} must be an integer >= 1.")
    return value


@dataclass
class FLSettings:
    """Validated federated settings (see the module docstring)."""

    num_rounds: int = 20
    local_epochs: int = 1
    clients: str | int = "domains"
    partition: str = "iid"
    alpha: float = 0.5
    partition_seed: int = 0
    fraction_train: float = 1.0
    strategy: dict = field(default_factory=lambda: dict(type="FedAvg"))
    gradsamp: dict | None = None
    timeout: float = 3600.0

    @classmethod
    def from_cfg(cls, cfg) -> FLSettings:
        """Read ``cfg.fl``; every bad value raises here with what to write instead."""
        fl = cfg.get("fl")
        if fl is None:
            raise ValueError("The config has no `fl = dict(...)` section. Fix: add e.g. "
                             "fl = dict(num_rounds=20, local_epochs=1, clients='domains', "
                             "strategy=dict(type='FedAvg')) (see docs/federated.md).")
        fl = dict(fl)
        unknown = sorted(set(fl) - set(KNOWN_KEYS))
        if unknown:
            raise ValueError(f"fl has unknown keys {unknown}; the known ones are "
                             f"{list(KNOWN_KEYS)}.")
        seed = int((cfg.get("randomness") or {}).get("seed") or 0)
        fl.setdefault("partition_seed", seed)
        s = cls(**fl)
        s.num_rounds = _positive_int("num_rounds", s.num_rounds)
        s.local_epochs = _positive_int("local_epochs", s.local_epochs)
        if s.clients != "domains":
            s.clients = _positive_int("clients", s.clients) if not isinstance(s.clients, str) \
                else cls._bad_clients(s.clients)
        if s.partition not in PARTITIONS:
            raise ValueError(f"fl.partition={s.partition!r}: choose one of {PARTITIONS}.")
        if not (isinstance(s.alpha, (int, float)) and s.alpha > 0):
            raise ValueError(f"fl.alpha={s.alpha!r} (Dirichlet concentration) must be > 0.")
        if not (isinstance(s.fraction_train, (int, float)) and 0 < s.fraction_train <= 1):
            raise ValueError(f"fl.fraction_train={s.fraction_train!r} must be in (0, 1].")
        if isinstance(s.strategy, str):
            s.strategy = dict(type=s.strategy)
        s.strategy = dict(s.strategy)
        if "type" not in s.strategy:
            raise ValueError("fl.strategy needs a type, e.g. dict(type='FedAvg').")
        from .strategies import check_strategy_name

        check_strategy_name(s.strategy["type"])
        if s.gradsamp is not None:
            s.gradsamp = cls._check_gradsamp(dict(s.gradsamp), s, seed)
        return s

    @staticmethod
    def _bad_clients(value: str):
        raise ValueError(f"fl.clients={value!r}: use 'domains' (one client per training domain) "
                         "or an integer number of clients.")

    @staticmethod
    def _check_gradsamp(gs: dict, s: FLSettings, seed: int) -> dict:
        mode = gs.pop("mode", None)
        if mode not in GRADSAMP_MODES:
            raise ValueError(f"fl.gradsamp mode={mode!r}: choose one of {GRADSAMP_MODES} "
                             "('server': skipped rounds contact no client; 'client': "
                             "GradSampHook on every client).")
        schedule = gs.pop("schedule", None)
        every, warmup = gs.pop("every", None), gs.pop("warmup", 2)
        if schedule is None:
            schedule = dict(type="periodic", every=4 if every is None else every, warmup=warmup)
        elif every is not None:
            raise ValueError("fl.gradsamp: give either `every` or `schedule`, not both.")
        unknown = sorted(set(gs) - set(GRADSAMP_OPTIONS))
        if unknown:
            raise ValueError(f"fl.gradsamp has unknown keys {unknown}; besides mode, every, "
                             f"warmup and schedule it takes {list(GRADSAMP_OPTIONS)}.")
        gs.setdefault("seed", seed)
        if mode == "client" and s.local_epochs <= int(schedule.get("warmup", 2)):
            raise ValueError(
                f"fl.gradsamp mode='client' skips local epochs inside one round, after "
                f"`warmup` trained ones and never the round's last: local_epochs="
                f"{s.local_epochs} leaves none to skip. Fix: local_epochs >= warmup + 2, or "
                "mode='server' (skips whole rounds).")
        # build once here so that a bad schedule/distribution fails before any round runs
        from dgsamp.methods.gradsamp import GradSampler

        GradSampler(schedule=dict(schedule), **gs)
        return dict(mode=mode, schedule=schedule, **gs)

    @property
    def total_epochs(self) -> int:
        """Epochs of the config's schedule the federation walks through (rounds x local)."""
        return self.num_rounds * self.local_epochs
