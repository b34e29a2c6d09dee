"""Reproduce the headline comparison on the embedded data, table and plots included:

    python tools/headline.py                       # 8 settings x 3 seeds, 8 epochs each
    python tools/headline.py --epochs 4 --seeds 0  # a quick look
    python tools/headline.py --overhead 3          # also: CostHook's overhead, A/B, 3 repeats
    python tools/headline.py --jobs 2              # two runs at a time
    python tools/headline.py --val-interval 1 --curve acc/train_domains   # learning curves

Settings (RotatedDigits, domain 75 held out, `configs/dg/erm_rotated_digits.py`, DigitsCNN):
dense; GradSamp (periodic, every 4); ssProp (keep 0.2, interleaved with dense epochs) as in the
paper (input gradient truncated too), with ``only_weight=True``, interleaved by iteration, and
after 5 dense warmup epochs; dithered backprop; GradSamp + ssProp. Each setting is a list of
method presets (``configs/_base_/methods/``, see ``SETTINGS``). Each run trains through
``tools/train.py CONFIG --methods PRESET... cost`` with a generated config
(``<work-root>/configs/<setting>_s<seed>.py``) that inherits the DG config and sets the epochs,
the LR milestone at 3/4 of them, and the seed; its output goes to
``<work-root>/<setting>_s<seed>/train_stdout.log``. A progress bar with an ETA runs over the
runs; failed ones are listed at the end with their logs. Finished runs (a complete cost.json)
are not run again unless ``--force``. At the end tools/compare.py writes
``<work-root>/compare/compare.md`` and the PNG plots, savings relative to the dense runs.

``--overhead N`` trains the dense setting N times with and without CostHook, alternating, in this
process, times ``runner.train()`` and writes ``<work-root>/overhead.json`` (and the A/B numbers
into the CostHook runs' cost.json under ``overhead.ab``).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path[:0] = [ROOT, osp.join(ROOT, "tools")]  # dgsamp from the checkout; tools/compare.py

from dgsamp.engine.presets import apply_methods  # noqa: E402
from dgsamp.engine.run_queue import Run, run_commands  # noqa: E402
from dgsamp.engine.runner_utils import unique_experiment_name  # noqa: E402

CONFIG = osp.join(ROOT, "configs", "dg", "erm_rotated_digits.py")
# setting -> method presets (configs/_base_/methods/), composed by tools/train.py --methods;
# every run also gets the `cost` preset (CostHook).
SETTINGS = {
    "dense": [],
    "gradsamp": ["gradsamp-every4"],
    "ssprop": ["ssprop-paper"],
    "ssprop-weight": ["ssprop-only-weight"],
    "ssprop-iter": ["ssprop-iter"],
    "ssprop-warmup": ["ssprop-warmup"],
    "dither": ["dither"],
    "gradsamp+ssprop": ["gradsamp-every4", "ssprop-paper"],
}
COST = "cost"


def config_text(epochs: int, seed: int, base: str = CONFIG,
                val_interval: int | None = None) -> str:
    """The run's config apart from its methods: epochs, LR milestone at 3/4, seed.

    ``val_interval``: default, only after the last epoch. Validating more often does not
    change the training (measured: runs validated every epoch end on the same accuracies)."""
    milestone = max(1, round(0.75 * epochs))
    return "\n".join([
        f"_base_ = [{base!r}]",
        f"train_cfg = dict(max_epochs={epochs}, val_interval={val_interval or epochs})",
        f"param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[{milestone}], "
        "gamma=0.1)]",
        f"randomness = dict(seed={seed}, deterministic=False)",
        f"default_hooks = dict(checkpoint=dict(interval={epochs}))",
        "",
    ])


def run_dir_name(setting: str, seed: int) -> str:
    return f"{setting}_s{seed}"


def is_done(work_dir: str) -> bool:
    try:
        with open(osp.join(work_dir, "cost.json")) as fh:
            return bool(json.load(fh)["run"]["complete"])
    except (OSError, ValueError, KeyError):
        return False


def make_run(setting: str, seed: int, args) -> Run:
    """The tools/train.py run of one setting and seed (its config written to disk)."""
    work_dir = osp.join(args.work_root, run_dir_name(setting, seed))
    cfg_dir = osp.join(args.work_root, "configs")
    os.makedirs(cfg_dir, exist_ok=True)
    cfg = osp.join(cfg_dir, f"{run_dir_name(setting, seed).replace('+', '_')}.py")
    with open(cfg, "w") as fh:
        fh.write(config_text(args.epochs, seed, args.config, args.val_interval))
    cmd = [sys.executable, osp.join(ROOT, "tools", "train.py"), cfg, "--work-dir", work_dir,
           "--methods", *SETTINGS[setting], COST]
    return Run(f"{setting} seed {seed}", cmd, osp.join(work_dir, "train_stdout.log"), cwd=ROOT,
               done=lambda: is_done(work_dir))


def measure_overhead(args) -> dict:
    """Dense training with and without CostHook, alternating, timed around runner.train()."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    import dgsamp  # noqa: F401  (registers CostHook)

    out_root = osp.join(args.work_root, "overhead")
    times: dict[str, list[float]] = {"without": [], "with": []}
    cost_files = []
    for rep in range(args.overhead):
        for mode in ("without", "with"):
            cfg_path = osp.join(out_root, f"{mode}_{rep}.py")
            os.makedirs(out_root, exist_ok=True)
            with open(cfg_path, "w") as fh:
                fh.write(config_text(args.overhead_epochs, 0, args.config))
            cfg = apply_methods(Config.fromfile(cfg_path), [COST] if mode == "with" else [])
            cfg.work_dir = osp.join(out_root, f"{mode}_{rep}")
            cfg.experiment_name = unique_experiment_name(f"overhead_{mode}_{rep}")
            cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
            cfg.default_hooks.checkpoint = None
            runner = Runner.from_cfg(cfg)
            t0 = time.perf_counter()
            runner.train()
            times[mode].append(time.perf_counter() - t0)
            print(f"[overhead] {mode} CostHook, repeat {rep}: {times[mode][-1]:.2f} s", flush=True)
            if mode == "with":
                cost_files.append(osp.join(cfg.work_dir, "cost.json"))
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = [w / wo - 1 for w, wo in zip(times["with"], times["without"], strict=True)]
    result = dict(
        epochs=args.overhead_epochs, repeats=args.overhead, train_s=times,
        median_s=med, overhead_fraction_median_ratio=med["with"] / med["without"] - 1,
        overhead_fraction_paired=paired,
        source="perf_counter around runner.train(), dense setting, alternating runs",
    )
    for f in cost_files:
        with open(f) as fh:
            data = json.load(fh)
        data["overhead"]["ab"] = result
        with open(f, "w") as fh:
            json.dump(data, fh, indent=1)
    with open(osp.join(args.work_root, "overhead.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"[overhead] median train time without {med['without']:.2f} s, with "
          f"{med['with']:.2f} s: {100 * result['overhead_fraction_median_ratio']:+.2f}% "
          f"(paired: {', '.join(f'{100 * p:+.1f}%' for p in paired)})")
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="dgsamp headline comparison (embedded data)")
    p.add_argument("--work-root", default=osp.join(ROOT, "work_dirs", "headline"))
    p.add_argument("--config", default=CONFIG)
    p.add_argument("--epochs", type=int, default=8,
                   help="epochs per run (8: GradSamp skips epochs 3 and 7, 1-based)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--force", action="store_true", help="run again even if finished")
    p.add_argument("--overhead", type=int, default=0,
                   help="also measure CostHook's overhead with N alternating A/B repeats")
    p.add_argument("--overhead-epochs", type=int, default=3)
    p.add_argument("--no-train", action="store_true", help="only compare existing runs")
    p.add_argument("--val-interval", type=int, default=None,
                   help="validate every N epochs (default: after the last one); with 1, "
                        "--curve METRIC prints learning curves")
    p.add_argument("--curve", metavar="METRIC",
                   help="passed to tools/compare.py: METRIC per validation step, per setting")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time (each one a tools/train.py process; wall times of "
                        "parallel runs include their contention)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    args.work_root = osp.abspath(args.work_root)
    os.makedirs(args.work_root, exist_ok=True)
    if args.overhead:
        measure_overhead(args)
    jobs = [(setting, seed) for seed in args.seeds for setting in args.settings]
    dirs = [osp.join(args.work_root, run_dir_name(*job)) for job in jobs]
    failed: list[str] = []
    if not args.no_train:
        todo = [job for job, d in zip(jobs, dirs, strict=True) if args.force or not is_done(d)]
        if len(todo) < len(jobs):
            print(f"[headline] {len(jobs) - len(todo)} of {len(jobs)} runs finished already "
                  f"(a complete cost.json; --force runs them again)")
        results = run_commands([make_run(*job, args) for job in todo], jobs=args.jobs,
                               title="headline")
        failed = [r.run.name for r in results if not r.ok]
        bad = {osp.dirname(r.run.log) for r in results if not r.ok}
        dirs = [d for d in dirs if d not in bad]
    from compare import main as compare  # tools/compare.py, next to this file

    compare([d for d in dirs if osp.isdir(d)]
            + ["--baseline", "dense", "--out", osp.join(args.work_root, "compare")]
            + (["--curve", args.curve] if args.curve else []))
    if failed:
        print(f"[headline] failed runs (not in the table): {', '.join(failed)}")


if __name__ == "__main__":
    main()
