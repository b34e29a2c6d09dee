"""GradSamp on RotatedDigits: accuracy and cost against the dense run and the equal-cost baseline.

    python tools/benchmark_gradsamp.py [--test-domain 75] [--seeds 0 1 2] [--epochs 20]

Runs (each for every seed), from configs/dg/erm_rotated_digits.py with the held-out domain set:
- ``dense``: the config as it is (E epochs);
- ``gs_every4``: GradSamp, periodic every 4 (warmup 2), Gaussian, layerwise;
- ``gs_every4_ggd``: the same with the generalized-Gaussian sample;
- ``gs_every3``: GradSamp, periodic every 3;
- ``dense_equal_cost``: dense for as many epochs as ``gs_every4`` trains, its step-LR
  milestones scaled by the same factor (the baseline reviewers ask for: same training cost).

Per run: accuracy per domain (last validation), epochs trained and skipped, forward and
backward FLOPs (``FlopCounterMode`` on one real training step of the run's model, per sample,
times the samples the run trained), the optimizer's and GradSamp's own elementwise work
(estimates, labelled), wall time of training (validation excluded) and of the whole run.
Writes work_dirs/benchmarks/gradsamp.json and gradsamp.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time
import uuid

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.model import is_model_wrapper  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import dgsamp  # noqa: E402, F401  (registers dgsamp's modules)
from dgsamp.cost.flops import (  # noqa: E402
    StepFlopCounter,
    optimizer_flops_per_step,
    sampling_flops,
)
from dgsamp.engine.gradsamp_hook import GradSampHook  # noqa: E402, F401  (registers it)

TARGET_FLOP_SAVING = 24.0  # % fewer training FLOPs at every=4
TARGET_TIME_SAVING = 20.0  # % less training wall time at every=4
TARGET_ACC_GAP = 0.5       # test-domain accuracy points, mean of the seeds


class BenchHook(Hook):
    """Counts what a run really trained and times training apart from validation."""

    priority = "VERY_HIGH"

    def __init__(self):
        self.samples = 0
        self.steps = 0
        self.epochs_seen = 0
        self.val_s = 0.0
        self._t_val = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.steps += 1
        self.samples += int(data_batch["inputs"].shape[0])

    def after_train_epoch(self, runner):
        self.epochs_seen += 1

    def before_val_epoch(self, runner):
        self._t_val = time.perf_counter()

    def after_val_epoch(self, runner, metrics=None):
        self.val_s += time.perf_counter() - self._t_val


def step_flops_per_sample(runner) -> dict:
    """Forward/backward FLOPs of one real training step on a copy of the run's model."""
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    model = copy.deepcopy(model).train()
    batch = next(iter(runner.train_dataloader))
    data = model.data_preprocessor(batch, True)
    counter = StepFlopCounter(model)
    n = int(data["inputs"].shape[0])
    with counter.step(samples=n):
        losses = model(**data, mode="loss")
        loss = sum(v for k, v in losses.items() if "loss" in k)
        with counter.backward():
            loss.backward()
    r = counter.result
    return dict(forward=r.forward / n, backward=r.backward / n)


def build_cfg(base: Config, name: str, seed: int, epochs: int, test_domain: str,
              work_root: str, gradsamp: dict | None, equal_cost_epochs: int | None,
              image_size: int | None = None) -> Config:
    cfg = copy.deepcopy(base)
    cfg.work_dir = osp.join(work_root, f"{name}_seed{seed}")
    cfg.experiment_name = f"{name}_seed{seed}_{uuid.uuid4().hex[:6]}"
    cfg.randomness = dict(seed=seed, deterministic=False)
    for split in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if split in cfg:
            cfg[split].dataset.test_domains = [test_domain]
            if image_size:
                cfg[split].dataset.image_size = image_size
    run_epochs = equal_cost_epochs or epochs
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=run_epochs,
                         val_interval=run_epochs)
    scale = run_epochs / cfg_epochs(base)
    for sch in cfg.param_scheduler:  # the schedule's shape over the run, whatever its length
        if "milestones" in sch:
            sch.milestones = [max(1, round(m * scale)) for m in sch.milestones]
    cfg.default_hooks.checkpoint = None  # checkpoints cost the same everywhere: none at all
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=1000)
    cfg.log_level = "WARNING"
    cfg.custom_hooks = [dict(type="GradSampHook", seed=seed, **gradsamp)] if gradsamp else []
    return cfg


def cfg_epochs(cfg: Config) -> int:
    return int(cfg.train_cfg.max_epochs)


def run_one(cfg: Config) -> dict:
    bench = BenchHook()
    runner = Runner.from_cfg(cfg)
    runner.register_hook(bench)
    per_sample = step_flops_per_sample(runner)
    t0 = time.perf_counter()
    runner.train()
    total_s = time.perf_counter() - t0
    metrics = {k[len("val/"):]: float(v.current())
               for k, v in runner.message_hub.log_scalars.items()
               if k.startswith("val/acc/")}
    gs = [h for h in runner.hooks if isinstance(h, GradSampHook)]
    sampler = gs[0].sampler if gs else None
    skipped = list(sampler.skipped_epochs) if sampler else []
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    opt_per_step, opt_src = optimizer_flops_per_step(runner.optim_wrapper.optimizer, model)
    samp_per_skip, samp_src = sampling_flops(model)
    fwd = per_sample["forward"] * bench.samples
    bwd = per_sample["backward"] * bench.samples
    opt = opt_per_step * bench.steps
    samp = samp_per_skip * len(skipped)
    return dict(
        accuracy=metrics,
        epochs=cfg_epochs(cfg), epochs_trained=bench.epochs_seen - len(skipped),
        epochs_skipped=len(skipped), skipped=skipped,
        refused=list(sampler.refused_epochs) if sampler else [],
        steps=bench.steps, samples=bench.samples,
        flops=dict(forward=fwd, backward=bwd, forward_backward=fwd + bwd, optimizer=opt,
                   gradsamp_sampling=samp, total=fwd + bwd + opt + samp,
                   per_sample=per_sample, optimizer_source=opt_src,
                   gradsamp_sampling_source=samp_src),
        time_s=dict(train=total_s - bench.val_s, validation=bench.val_s, total=total_s))


def mean_std(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: dict[str, list[dict]], test_key: str) -> dict[str, dict]:
    out = {}
    dense = runs["dense"]
    d_flops = statistics.fmean(r["flops"]["forward_backward"] for r in dense)
    d_time = statistics.fmean(r["time_s"]["train"] for r in dense)
    d_acc = statistics.fmean(r["accuracy"].get(test_key, float("nan")) for r in dense)
    for name, rs in runs.items():
        acc = mean_std([r["accuracy"].get(test_key, float("nan")) for r in rs])
        train_acc = mean_std([r["accuracy"].get("acc/train_domains", float("nan")) for r in rs])
        fb = statistics.fmean(r["flops"]["forward_backward"] for r in rs)
        tt = statistics.fmean(r["time_s"]["train"] for r in rs)
        out[name] = dict(
            test_acc_mean=acc[0], test_acc_std=acc[1], train_domains_acc_mean=train_acc[0],
            test_acc_minus_dense=acc[0] - d_acc,
            epochs=rs[0]["epochs"], epochs_trained=rs[0]["epochs_trained"],
            epochs_skipped=rs[0]["epochs_skipped"],
            fwd_flops=statistics.fmean(r["flops"]["forward"] for r in rs),
            bwd_flops=statistics.fmean(r["flops"]["backward"] for r in rs),
            fwd_bwd_flops=fb, total_flops=statistics.fmean(r["flops"]["total"] for r in rs),
            flop_saving_pct=100.0 * (1 - fb / d_flops),
            train_time_s=tt, time_saving_pct=100.0 * (1 - tt / d_time),
            per_domain={k: statistics.fmean(r["accuracy"][k] for r in rs)
                        for k in rs[0]["accuracy"]})
    return out


def verdicts(summary: dict[str, dict]) -> dict[str, object]:
    g = summary.get("gs_every4")
    if g is None:
        return {}
    out: dict[str, object] = dict(
        flop_saving_ok=g["flop_saving_pct"] >= TARGET_FLOP_SAVING,
        time_saving_ok=g["time_saving_pct"] >= TARGET_TIME_SAVING,
        accuracy_ok=abs(g["test_acc_minus_dense"]) <= TARGET_ACC_GAP
        or g["test_acc_minus_dense"] > 0)
    eq = summary.get("dense_equal_cost")
    if eq is not None:
        diff = g["test_acc_mean"] - eq["test_acc_mean"]
        out["gs_every4_minus_equal_cost_acc"] = diff
        spread = max(g["test_acc_std"], eq["test_acc_std"])
        if diff > spread:
            out["beats_equal_cost"] = "yes"
        elif diff < -spread:
            out["beats_equal_cost"] = "no (the equal-cost dense run is better)"
        else:
            out["beats_equal_cost"] = ("no clear difference (|diff| within the larger seed "
                                       f"std, {spread:.2f} points)")
    return out


def to_markdown(meta: dict, summary: dict[str, dict], verdict: dict, test_key: str) -> str:
    domains = [k for k in next(iter(summary.values()))["per_domain"]
               if k not in ("acc/train_domains", "acc/test_domains")]
    lines = [f"# GradSamp on RotatedDigits (held-out domain {meta['test_domain']})", "",
             f"{meta['model']}, {meta['image_size']}px, {meta['epochs']} epochs, "
             f"seeds {meta['seeds']}, "
             f"device {meta['device']}, torch {meta['torch']}, {meta['machine']}. "
             "Means over seeds; FLOPs = FlopCounterMode per-sample forward/backward of one real "
             "step × samples trained. Time = training wall time, validation excluded.", "",
             f"Machine load at the end: {meta.get('load_average_at_end')} on "
             f"{meta.get('cpu_count')} CPUs; on a shared machine wall times are only as good "
             "as that load allows (compare dense with dense_equal_cost to judge).", "",
             "| run | epochs trained / skipped | test acc (± std) | Δ vs dense | train-dom acc "
             "| fwd GFLOPs | bwd GFLOPs | FLOP saving | train time s | time saving |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {s['epochs_trained']} / {s['epochs_skipped']} | "
            f"{s['test_acc_mean']:.2f} ± {s['test_acc_std']:.2f} | "
            f"{s['test_acc_minus_dense']:+.2f} | {s['train_domains_acc_mean']:.2f} | "
            f"{s['fwd_flops'] / 1e9:.2f} | {s['bwd_flops'] / 1e9:.2f} | "
            f"{s['flop_saving_pct']:.1f}% | {s['train_time_s']:.1f} | "
            f"{s['time_saving_pct']:.1f}% |")
    lines += ["", "Per-domain accuracy (mean over seeds):", "",
              "| run | " + " | ".join(d.split("/", 1)[1] for d in domains) + " |",
              "|---|" + "---|" * len(domains)]
    for name, s in summary.items():
        lines.append(f"| {name} | " + " | ".join(f"{s['per_domain'][d]:.2f}" for d in domains)
                     + " |")
    if verdict:
        lines += ["", "Targets at every=4 (gs_every4 vs dense): "
                  f">= {TARGET_FLOP_SAVING:.0f}% fewer FLOPs: "
                  f"{'met' if verdict['flop_saving_ok'] else 'NOT met'}; "
                  f">= {TARGET_TIME_SAVING:.0f}% less wall time: "
                  f"{'met' if verdict['time_saving_ok'] else 'NOT met'}; "
                  f"test accuracy within {TARGET_ACC_GAP} point of dense: "
                  f"{'met' if verdict['accuracy_ok'] else 'NOT met'}."]
        if "beats_equal_cost" in verdict:
            lines += ["", "Does GradSamp (every=4) beat the dense run with fewer epochs at the "
                      f"same cost? {verdict['beats_equal_cost']} (test accuracy difference "
                      f"{verdict['gs_every4_minus_equal_cost_acc']:+.2f} points)."]
    return "\n".join(lines) + "\n"


RUNS = {
    "dense": None,
    "gs_every4": dict(schedule=dict(type="periodic", every=4, warmup=2)),
    "gs_every4_ggd": dict(schedule=dict(type="periodic", every=4, warmup=2),
                          distribution="ggd"),
    "gs_every3": dict(schedule=dict(type="periodic", every=3, warmup=2)),
    "dense_equal_cost": "equal_cost",
}


def trained_epochs(epochs: int, every: int, warmup: int = 2) -> int:
    """Epochs a periodic schedule trains: it skips warmup, warmup+every, ... but never the last."""
    skipped = sum(1 for e in range(warmup, epochs - 1) if (e - warmup) % every == 0)
    return epochs - skipped


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/dg/erm_rotated_digits.py")
    ap.add_argument("--test-domain", default="75")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's")
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    ap.add_argument("--out-dir", default="work_dirs/benchmarks")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--image-size", type=int, default=None,
                    help="override the config's image size (12 = the digits' native padded "
                         "size: about 5x cheaper than 28 on CPU)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = Config.fromfile(args.config)
    epochs = args.epochs or cfg_epochs(base)
    base.train_cfg.max_epochs = epochs
    work_root = osp.join(args.out_dir, "gradsamp_runs")
    runs: dict[str, list[dict]] = {}
    for name in args.runs:
        spec = RUNS[name]
        for seed in args.seeds:
            eq = trained_epochs(epochs, 4) if spec == "equal_cost" else None
            gs = spec if isinstance(spec, dict) else None
            cfg = build_cfg(base, name, seed, epochs, args.test_domain, work_root, gs, eq,
                            args.image_size)
            t = time.perf_counter()
            result = run_one(cfg)
            result["seed"] = seed
            runs.setdefault(name, []).append(result)
            acc = result["accuracy"].get("acc/test_domains", float("nan"))
            print(f"[{name} seed {seed}] test acc {acc:.2f}, trained "
                  f"{result['epochs_trained']}/{result['epochs']} epochs, "
                  f"{time.perf_counter() - t:.1f}s", flush=True)
    test_key = "acc/test_domains"
    summary = summarise(runs, test_key) if "dense" in runs else {}
    verdict = verdicts(summary)
    image_size = args.image_size or base.train_dataloader.dataset.get("image_size")
    meta = dict(test_domain=args.test_domain, seeds=args.seeds, epochs=epochs,
                image_size=image_size,
                config=args.config, model=base.model.get("model_name", str(base.model.type)),
                device="cuda" if torch.cuda.is_available() else "cpu",
                torch=torch.__version__, machine=platform.processor() or platform.machine(),
                threads=torch.get_num_threads(), cpu_count=os.cpu_count(),
                load_average_at_end=os.getloadavg() if hasattr(os, "getloadavg") else None,
                targets=dict(flop_saving_pct=TARGET_FLOP_SAVING,
                             time_saving_pct=TARGET_TIME_SAVING, acc_gap=TARGET_ACC_GAP))
    os.makedirs(args.out_dir, exist_ok=True)
    data = dict(meta=meta, summary=summary, verdict=verdict, runs=runs)
    with open(osp.join(args.out_dir, "gradsamp.json"), "w") as f:
        json.dump(data, f, indent=2, default=float)
    if summary:
        md = to_markdown(meta, summary, verdict, test_key)
        with open(osp.join(args.out_dir, "gradsamp.md"), "w") as f:
            f.write(md)
        print(md)
    return data


if __name__ == "__main__":
    main()
