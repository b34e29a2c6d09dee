"""Federated training from an mm-style config with an ``fl`` section, in Flower's simulation engine.

    python tools/train_fl.py CONFIG [--work-dir DIR] [--cfg-options k=v ...] [--resume]

Every client is a virtual SuperNode (Ray) on this machine; per round the global model is
evaluated on every domain, a checkpoint is written and ``cost.json`` updated; at the end
``results.json`` holds the final per-domain accuracy (tools/compare.py reads both). The same
apps run under Flower's deployment engine: docs/federated.md.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.config import DictAction  # noqa: E402

import dgsamp  # noqa: E402, F401  (registers dgsamp's modules)
from dgsamp.federated.launch import load_config, simulate  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Federated training with dgsamp on Flower")
    parser.add_argument("config", help="config file with an `fl = dict(...)` section")
    parser.add_argument("--work-dir", help="where rounds, checkpoints and results go")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config keys, e.g. fl.num_rounds=5")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last round checkpoint in the work dir")
    parser.add_argument("--client-cpus", type=int, default=1,
                        help="CPU cores each simulated client reserves (Ray)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args.config, args.work_dir, args.cfg_options)
    simulate(cfg, resume=args.resume, client_cpus=args.client_cpus)


if __name__ == "__main__":
    main()
