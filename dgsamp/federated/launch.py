"""Load an FL config and run it in Flower's simulation engine (what tools/train_fl.py calls).

The simulation engine (Ray) runs every client as a virtual SuperNode on this machine, each
with ``client_cpus`` cores; the ServerApp runs in this process. The deployment engine runs the
same apps (`dgsamp.federated.app`) in separate processes: docs/federated.md.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction

from .settings import FLSettings


def parse_cfg_options(options: list[str]) -> dict:
    """``['k=v', ...]`` as mmengine's ``--cfg-options`` parses it (DictAction)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(["--cfg-options", *options]).cfg_options


def load_config(path: str, work_dir: str | None = None, cfg_options: dict | None = None
                ) -> Config:
    """The config at ``path`` with overrides (``--cfg-options``' dict), its work dir set,
    ``fl`` validated."""
    from dgsamp.engine import check_config

    if not osp.isfile(path):
        raise SystemExit(f"Config file {path!r} does not exist. Fix: give the path of a "
                         "config, e.g. configs/fl/fedavg_rotated_digits.py.")
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(path))[0])
    cfg.work_dir = osp.abspath(cfg.work_dir)  # clients may run in other working directories
    check_config(cfg)
    FLSettings.from_cfg(cfg)
    return cfg


def simulate(cfg: Config, resume: bool = False, client_cpus: int = 1) -> None:
    """Run the federation of ``cfg`` in Flower's simulation engine, one virtual SuperNode per
    client; results land in ``cfg.work_dir`` (rounds, checkpoints, cost.json, results.json)."""
    from flwr.simulation import run_simulation

    from .app import client_app, make_server_app
    from .partition import num_clients_of
    from .server import training_view

    fl = FLSettings.from_cfg(cfg)
    num_clients = num_clients_of(fl.clients, training_view(cfg))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    run_simulation(
        server_app=make_server_app(cfg, resume), client_app=client_app,
        num_supernodes=num_clients,
        backend_config={"client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0},
                        "init_args": {"num_cpus": max(cpus, client_cpus)}})
