"""Flower's ServerApp and ClientApp for dgsamp, for the simulation and the deployment engine.

- `client_app`: a module-level `flwr.clientapp.ClientApp`. Each train message carries the
  global model (ArrayRecord ``arrays``) and the run's config (ConfigRecord ``config``: the mm
  config's text, the round, FedProx's ``proximal-mu``); the client trains its share
  (`dgsamp.federated.client.train_client`) and replies with its weights, ``num-examples`` and
  its CostHook numbers. Which share: the SuperNode's ``partition-id`` (node config; the
  simulation engine sets it, a deployed SuperNode gets ``--node-config "partition-id=0"``).
- `make_server_app(cfg)`: a ServerApp running `run_federation` with a config in hand
  (tools/train_fl.py); `server_app` (module level) reads the config path from the run config
  (``flwr run`` with ``config``, ``work-dir``, ``cfg-options``, ``resume`` keys).
"""

from __future__ import annotations

import json
import os.path as osp
import shlex

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from mmengine.config import Config

from .client import train_client
from .server import run_federation
from .settings import FLSettings

client_app = ClientApp()


def client_index(node_config, cfg: Config, fl: FLSettings) -> int:
    """This SuperNode's client index (its ``partition-id``), checked against ``fl.clients``."""
    if "partition-id" not in node_config:
        raise ValueError("This SuperNode has no partition-id. Fix: start it with "
                         "--node-config \"partition-id=K num-partitions=N\" (K: its client "
                         "index, N: the number of clients of the config's fl.clients).")
    client = int(node_config["partition-id"])
    if "num-partitions" in node_config:
        from .partition import client_count_error, num_clients_of
        from .server import training_view

        view = training_view(cfg)
        num = num_clients_of(fl.clients, view)
        if int(node_config["num-partitions"]) != num:
            raise ValueError(f"num-partitions={node_config['num-partitions']} but "
                             + client_count_error(int(node_config["num-partitions"]) - 1, num,
                                                  fl.clients, view))
    return client


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training (see the module docstring)."""
    config = msg.content["config"]
    cfg = Config.fromstring(str(config["dgsamp-config"]), ".py")
    fl = FLSettings.from_cfg(cfg)
    client = client_index(context.node_config, cfg, fl)
    work_dir = str(context.node_config.get("work-dir", config["work-dir"]))
    result = train_client(
        cfg, fl, client, int(config["server-round"]), msg.content["arrays"].to_torch_state_dict(),
        osp.join(work_dir, "clients", f"c{client}"),
        proximal_mu=float(config.get("proximal-mu", 0.0)),
        keep_norm_local=bool(config["keep-norm-local"]))
    summary = dict(client=client, ledger=result.cost)
    return Message(RecordDict({
        "arrays": ArrayRecord(result.state),
        "metrics": MetricRecord({"num-examples": result.num_examples}),
        "cost": ConfigRecord({"client": client, "summary": json.dumps(summary)}),
    }), reply_to=msg)


def make_server_app(cfg: Config | None = None, resume: bool = False) -> ServerApp:
    """A ServerApp for ``cfg``; without one it reads the run config (deployment engine)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_cfg, again = cfg, resume
        if run_cfg is None:
            run_cfg, again = config_from_run_config(context.run_config)
        run_federation(grid, run_cfg, resume=again)

    return app


def config_from_run_config(run_config) -> tuple[Config, bool]:
    """(config, resume) from ``flwr run``'s run config keys config / work-dir / cfg-options."""
    from .launch import load_config, parse_cfg_options

    if "config" not in run_config:
        raise ValueError("The run config has no `config` (the dgsamp config file). Fix: "
                         "flwr run APP_DIR FEDERATION --run-config \"config='configs/fl/"
                         "fedavg_rotated_digits.py'\".")
    options = shlex.split(str(run_config.get("cfg-options", "")))
    cfg = load_config(str(run_config["config"]), run_config.get("work-dir") or None,
                      parse_cfg_options(options) if options else None)
    return cfg, bool(run_config.get("resume", False))


server_app = make_server_app()
