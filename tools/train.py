"""Train from an mm-style config: `python tools/train.py CONFIG [options]`.

The same command line as mmdetection's and mmsegmentation's tools/train.py, so their configs
(and dgsamp's) run as they are. At the end the final validation metrics are printed as a
per-domain table and written to `<work_dir>/results.json`.

`--methods NAME [NAME ...]` turns method presets (configs/_base_/methods/) on in any config,
an mmdet or mmseg one included: `--methods gradsamp ssprop-warmup cost`; `--methods list`
prints them. They are applied before `--cfg-options`, so an option can still change a preset's
value. The distributed backend is NCCL when CUDA is available and gloo otherwise, unless the
config sets `env_cfg.dist_cfg.backend`. Missing data folders or annotation files are reported
before the run starts, with the expected layout.
"""

from __future__ import annotations

import argparse
import logging
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch.distributed as dist  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import dgsamp  # noqa: E402, F401  (registers dgsamp's modules, checkpoint allow-list)
from dgsamp.engine import check_config, init_cpu_distributed  # noqa: E402
from dgsamp.engine.config_check import check_data_paths  # noqa: E402
from dgsamp.engine.dist_backend import set_default_dist_backend  # noqa: E402
from dgsamp.engine.presets import apply_methods, list_methods  # noqa: E402
from dgsamp.engine.runner_utils import unique_experiment_name  # noqa: E402
from dgsamp.evaluation.report import print_metrics, write_results  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a model with dgsamp")
    parser.add_argument("config", nargs="?", help="train config file path")
    parser.add_argument("--work-dir", help="where logs, checkpoints and results go")
    parser.add_argument("--amp", action="store_true", help="automatic mixed precision")
    parser.add_argument("--auto-scale-lr", action="store_true", help="scale lr by batch size")
    parser.add_argument("--resume", nargs="?", type=str, const="auto",
                        help="resume from CKPT, or from the latest checkpoint in the work dir")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction,
                        help="override config keys, e.g. model.model_name=resnet18")
    parser.add_argument("--methods", nargs="+", metavar="NAME",
                        help="method presets to turn on, in order (configs/_base_/methods/); "
                             "'--methods list' prints them")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"],
                        default="none", help="job launcher")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = parser.parse_args(argv)
    if args.config is None and args.methods != ["list"]:
        parser.error("the config is required (or --methods list to see the method presets)")
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


_RUNS_BUILT = [0]  # configs built by this process (a torchrun rank builds one: names agree)


def build_config(args: argparse.Namespace) -> Config:
    if not osp.isfile(args.config):
        raise SystemExit(f"Config file {args.config!r} does not exist. Fix: give the path of a "
                         f"config, e.g. configs/dg/erm_rotated_digits.py.")
    cfg = Config.fromfile(args.config)
    if args.methods:
        try:
            cfg = apply_methods(cfg, args.methods)
        except ValueError as e:
            raise SystemExit(f"--methods: {e}") from None
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir") is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("loss_scale", "dynamic")
    if args.auto_scale_lr:
        if "auto_scale_lr" not in cfg or "base_batch_size" not in cfg.auto_scale_lr:
            raise SystemExit("--auto-scale-lr needs `auto_scale_lr = dict(enable=False, "
                             "base_batch_size=N)` in the config.")
        cfg.auto_scale_lr.enable = True
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    _RUNS_BUILT[0] += 1
    if _RUNS_BUILT[0] > 1 and cfg.get("experiment_name") is None:
        # a second run in this process (tests, notebooks): mmengine's default name is the
        # config's plus a one-second timestamp, and a repeat would hand this run the first
        # one's logger and visualizer (its config.py and scalars landed in the first work dir)
        cfg.experiment_name = unique_experiment_name(
            osp.splitext(osp.basename(args.config))[0])
    check_config(cfg)
    check_data_paths(cfg, splits=("train", "val"))
    set_default_dist_backend(cfg)
    init_cpu_distributed(cfg)
    return cfg


def print_methods() -> None:
    methods = list_methods()
    width = max(map(len, methods))
    print("Method presets (configs/_base_/methods/), for --methods NAME [NAME ...]:")
    for name, description in methods.items():
        print(f"  {name:<{width}}  {description}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.methods == ["list"]:
        print_methods()
        return {}
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = {k[len("val/"):]: float(v.current())
               for k, v in runner.message_hub.log_scalars.items()
               if k.startswith("val/") and k not in ("val/time", "val/data_time")}
    if runner.rank == 0 and metrics:
        print_metrics(metrics, title=f"Final validation: {osp.basename(args.config)}")
        write_results(osp.join(cfg.work_dir, "results.json"), metrics, cfg)
    if dist.is_available() and dist.is_initialized():
        # an orderly shutdown: without it a rank can abort at exit ("terminate called without
        # an active exception") while gloo's threads are still running
        dist.barrier()
        dist.destroy_process_group()
    return metrics


if __name__ == "__main__":
    main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # a rank of a torchrun job, its work saved and its process group destroyed: leave
        # without C++ static destructors, where a rank still aborted now and then under load
        # ("terminate called without an active exception", SIGABRT, exit -6) and failed the job
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
