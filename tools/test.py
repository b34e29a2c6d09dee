"""Evaluate a checkpoint: `python tools/test.py CONFIG CHECKPOINT [options]`.

Prints per-domain metrics and writes `<work_dir>/test_results.json`. ``--adabn`` evaluates each
domain with BatchNorm statistics of its own unlabeled images (`dgsamp.engine.AdaBNTestLoop`;
``--cfg-options test_cfg.images=96 test_cfg.adapt_split=train`` set its options).
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import dgsamp  # noqa: E402, F401
from dgsamp.engine import check_config  # noqa: E402
from dgsamp.evaluation.report import print_metrics, write_results  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Test a checkpoint with dgsamp")
    parser.add_argument("config")
    parser.add_argument("checkpoint")
    parser.add_argument("--work-dir")
    parser.add_argument("--adabn", action="store_true",
                        help="per-domain BatchNorm statistics (test_cfg.type=AdaBNTestLoop)")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f"Checkpoint {args.checkpoint!r} does not exist. Fix: pass the path of "
                         f"a .pth file written by tools/train.py (see its work dir).")
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.adabn:
        cfg.merge_from_dict({"test_cfg.type": "AdaBNTestLoop"})
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join(
        "./work_dirs", osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    check_config(cfg)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if runner.rank == 0:
        print_metrics(metrics, title=f"Test: {osp.basename(args.checkpoint)}")
        write_results(osp.join(cfg.work_dir, "test_results.json"), metrics, cfg)
    return metrics


if __name__ == "__main__":
    main()
