"""GradSamp on RotatedDigits: accuracy and cost against the dense run and the equal-cost baseline.

    python tools/benchmark_gradsamp.py [--test-domain 75] [--seeds 0 1 2] [--epochs 20]

Runs (each for every seed), from configs/dg/erm_rotated_digits.py with the held-out domain set:
- ``dense``: the config as it is (E epochs);
- ``gs_every4``: GradSamp, periodic every 4 (warmup 2), Gaussian, layerwise;
- ``gs_every4_ggd``: the same with the generalized-Gaussian sample;
- ``gs_every3``: GradSamp, periodic every 3;
- ``dense_equal_cost``: dense for as many epochs as ``gs_every4``'s schedule trains (its own
  ``plan``), its step-LR milestones scaled by the same factor (the baseline reviewers ask for:
  same training cost).

Every run trains with `CostHook`; the report reads each run's ``cost.json``: accuracy (the last
validation), epochs trained and skipped, forward and backward FLOPs (FlopCounterMode, scaled by
the samples trained), the optimizer's and GradSamp's own elementwise work (estimates, labelled
there), and the training wall time with validation taken out. Means ± standard errors over the
seeds (`dgsamp.evaluation.stats.mean_se`). Writes <out-dir>/gradsamp.json and gradsamp.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import os.path as osp
import platform
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import dgsamp  # noqa: E402, F401  (registers dgsamp's modules, CostHook and GradSampHook)
from dgsamp.engine.runner_utils import unique_experiment_name  # noqa: E402
from dgsamp.evaluation.runs import load_json  # noqa: E402
from dgsamp.evaluation.stats import MeanSE, mean_se  # noqa: E402
from dgsamp.methods.gradsamp import build_schedule  # noqa: E402

TARGET_FLOP_SAVING = 24.0  # % fewer training FLOPs at every=4
TARGET_TIME_SAVING = 20.0  # % less training wall time at every=4
TARGET_ACC_GAP = 0.5       # test-domain accuracy points, mean of the seeds
TEST_KEY = "acc/test_domains"

EVERY4 = dict(type="periodic", every=4, warmup=2)
RUNS: dict[str, dict | str | None] = {
    "dense": None,
    "gs_every4": dict(schedule=EVERY4),
    "gs_every4_ggd": dict(schedule=EVERY4, distribution="ggd"),
    "gs_every3": dict(schedule=dict(type="periodic", every=3, warmup=2)),
    "dense_equal_cost": "equal_cost",
}


def build_cfg(base: Config, name: str, seed: int, epochs: int, run_epochs: int,
              test_domain: str, work_root: str, gradsamp: dict | None,
              image_size: int | None = None) -> Config:
    """The run's config: held-out domain, ``run_epochs`` epochs, the config's step-LR milestones
    scaled by ``run_epochs / epochs`` (the equal-cost run's shorter schedule), no checkpoints
    (they cost the same everywhere), CostHook (and GradSampHook)."""
    cfg = copy.deepcopy(base)
    cfg.work_dir = osp.join(work_root, f"{name}_seed{seed}")
    cfg.experiment_name = unique_experiment_name(f"{name}_seed{seed}")
    cfg.randomness = dict(seed=seed, deterministic=False)
    for split in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if split in cfg:
            cfg[split].dataset.test_domains = [test_domain]
            if image_size:
                cfg[split].dataset.image_size = image_size
    cfg.train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=run_epochs,
                         val_interval=run_epochs)
    scale = run_epochs / epochs
    for sch in cfg.param_scheduler:  # the schedule's shape over the run, whatever its length
        if "milestones" in sch:
            sch.milestones = [max(1, round(m * scale)) for m in sch.milestones]
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=1000)
    cfg.log_level = "WARNING"
    hooks = [dict(type="GradSampHook", seed=seed, **gradsamp)] if gradsamp else []
    cfg.custom_hooks = hooks + [dict(type="CostHook")]
    return cfg


def value(measure: dict | None) -> float | None:
    return None if measure is None else measure.get("value")


def run_summary(cost: dict) -> dict:
    """One run's numbers from its cost.json."""
    totals = cost["totals"]
    fl, ts = totals["flops"], totals["time_s"]
    train, val = value(ts["train"]), value(ts["val"]) or 0.0
    skipped = [r["epoch"] - 1 for r in cost["epochs"] if r["kind"] == "skipped"]
    fwd, bwd = value(fl["forward"]), value(fl["backward"])
    return dict(
        accuracy=cost["metrics"].get("val", {}), epochs=cost["run"]["max_epochs"],
        epochs_trained=totals["epochs"]["trained"], epochs_skipped=totals["epochs"]["skipped"],
        skipped=skipped, iterations=totals["iterations"], samples=totals["samples"],
        flops=dict(forward=fwd, backward=bwd,
                   forward_backward=None if fwd is None or bwd is None else fwd + bwd,
                   optimizer=value(fl["optimizer"]), gradsamp_sampling=value(fl["sampling"]),
                   total=value(fl["train"]),
                   sources={k: m.get("source") or m.get("unavailable") for k, m in fl.items()}),
        time_s=dict(train=None if train is None else train - val, validation=val,
                    total=value(ts["run"])))


def run_one(cfg: Config) -> dict:
    Runner.from_cfg(cfg).train()
    cost = load_json(osp.join(cfg.work_dir, "cost.json"))
    if cost is None or not cost["run"]["complete"]:
        raise RuntimeError(f"{cfg.work_dir}: no complete cost.json after training; see its log.")
    return run_summary(cost)


def _mean(runs: list[dict], get) -> float | None:
    return mean_se(get(r) for r in runs).mean


def _saving(x: float | None, ref: float | None) -> float | None:
    return None if x is None or not ref else 100.0 * (1 - x / ref)


def summarise(runs: dict[str, list[dict]]) -> dict[str, dict]:
    dense = runs["dense"]
    d_flops = _mean(dense, lambda r: r["flops"]["forward_backward"])
    d_time = _mean(dense, lambda r: r["time_s"]["train"])
    d_acc = _mean(dense, lambda r: r["accuracy"].get(TEST_KEY))
    out = {}
    for name, rs in runs.items():
        acc = mean_se(r["accuracy"].get(TEST_KEY) for r in rs)
        fb = _mean(rs, lambda r: r["flops"]["forward_backward"])
        tt = _mean(rs, lambda r: r["time_s"]["train"])
        out[name] = dict(
            test_acc_mean=acc.mean, test_acc_se=acc.se, n=acc.n,
            train_domains_acc_mean=_mean(rs, lambda r: r["accuracy"].get("acc/train_domains")),
            test_acc_minus_dense=None if acc.mean is None or d_acc is None else acc.mean - d_acc,
            epochs=rs[0]["epochs"], epochs_trained=rs[0]["epochs_trained"],
            epochs_skipped=rs[0]["epochs_skipped"],
            fwd_flops=_mean(rs, lambda r: r["flops"]["forward"]),
            bwd_flops=_mean(rs, lambda r: r["flops"]["backward"]),
            fwd_bwd_flops=fb, total_flops=_mean(rs, lambda r: r["flops"]["total"]),
            flop_saving_pct=_saving(fb, d_flops), train_time_s=tt,
            time_saving_pct=_saving(tt, d_time),
            per_domain={k: _mean(rs, lambda r, k=k: r["accuracy"].get(k))
                        for k in rs[0]["accuracy"]})
    return out


def verdicts(summary: dict[str, dict]) -> dict[str, object]:
    g = summary.get("gs_every4")
    if g is None:
        return {}
    out: dict[str, object] = dict(
        flop_saving_ok=g["flop_saving_pct"] >= TARGET_FLOP_SAVING,
        time_saving_ok=g["time_saving_pct"] >= TARGET_TIME_SAVING,
        accuracy_ok=g["test_acc_minus_dense"] >= -TARGET_ACC_GAP)
    eq = summary.get("dense_equal_cost")
    if eq is not None:
        diff = g["test_acc_mean"] - eq["test_acc_mean"]
        out["gs_every4_minus_equal_cost_acc"] = diff
        ses = [s for s in (g["test_acc_se"], eq["test_acc_se"]) if s is not None]
        if not ses:
            out["beats_equal_cost"] = "not measured (one seed: no standard error)"
        elif abs(diff) <= max(ses):
            out["beats_equal_cost"] = ("no clear difference (|diff| within the larger standard "
                                       f"error, {max(ses):.2f} points)")
        else:
            out["beats_equal_cost"] = "yes" if diff > 0 else (
                "no (the equal-cost dense run is better)")
    return out


def _pm(m: MeanSE) -> str:
    return f"{m.mean:.2f} ± {m.se:.2f}" if m.se is not None else f"{m.mean:.2f}"


def to_markdown(meta: dict, summary: dict[str, dict], verdict: dict) -> str:
    domains = [k for k in next(iter(summary.values()))["per_domain"]
               if k not in ("acc/train_domains", "acc/test_domains")]
    lines = [f"# GradSamp on RotatedDigits (held-out domain {meta['test_domain']})", "",
             f"{meta['model']}, {meta['image_size']}px, {meta['epochs']} epochs, "
             f"seeds {meta['seeds']}, device {meta['device']}, torch {meta['torch']}, "
             f"{meta['machine']}. Means ± standard errors over seeds, from each run's "
             "cost.json (CostHook): FLOPs = FlopCounterMode per-sample forward/backward × "
             "samples trained; time = training wall time, validation excluded.", "",
             f"Machine load at the end: {meta.get('load_average_at_end')} on "
             f"{meta.get('cpu_count')} CPUs; on a shared machine wall times are only as good "
             "as that load allows (compare dense with dense_equal_cost to judge).", "",
             "| run | epochs trained / skipped | test acc | Δ vs dense | train-dom acc "
             "| fwd GFLOPs | bwd GFLOPs | FLOP saving | train time s | time saving |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        acc = MeanSE(s["test_acc_mean"], s["test_acc_se"], s["n"])
        lines.append(
            f"| {name} | {s['epochs_trained']} / {s['epochs_skipped']} | {_pm(acc)} | "
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
        met = {True: "met", False: "NOT met"}
        lines += ["", "Targets at every=4 (gs_every4 vs dense): "
                  f">= {TARGET_FLOP_SAVING:.0f}% fewer FLOPs: {met[verdict['flop_saving_ok']]}; "
                  f">= {TARGET_TIME_SAVING:.0f}% less wall time: "
                  f"{met[verdict['time_saving_ok']]}; test accuracy within {TARGET_ACC_GAP} "
                  f"point of dense: {met[verdict['accuracy_ok']]}."]
        if "beats_equal_cost" in verdict:
            lines += ["", "Does GradSamp (every=4) beat the dense run with fewer epochs at the "
                      f"same cost? {verdict['beats_equal_cost']} (test accuracy difference "
                      f"{verdict['gs_every4_minus_equal_cost_acc']:+.2f} points)."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    base = Config.fromfile(args.config)
    epochs = args.epochs or int(base.train_cfg.max_epochs)
    equal_cost_epochs = epochs - len(build_schedule(EVERY4).plan(epochs))
    work_root = osp.join(args.out_dir, "gradsamp_runs")
    runs: dict[str, list[dict]] = {}
    for name in args.runs:
        spec = RUNS[name]
        for seed in args.seeds:
            gradsamp = spec if isinstance(spec, dict) else None
            run_epochs = equal_cost_epochs if spec == "equal_cost" else epochs
            cfg = build_cfg(base, name, seed, epochs, run_epochs, args.test_domain, work_root,
                            gradsamp, args.image_size)
            t = time.perf_counter()
            result = dict(run_one(cfg), seed=seed)
            if gradsamp:  # a sample refused as non-finite trains its epoch instead
                planned = build_schedule(gradsamp["schedule"]).plan(run_epochs, seed)
                result["refused"] = sorted(set(planned) - set(result["skipped"]))
            runs.setdefault(name, []).append(result)
            acc = result["accuracy"].get(TEST_KEY, float("nan"))
            print(f"[{name} seed {seed}] test acc {acc:.2f}, trained "
                  f"{result['epochs_trained']}/{result['epochs']} epochs, "
                  f"{time.perf_counter() - t:.1f}s", flush=True)
    summary = summarise(runs) if "dense" in runs else {}
    verdict = verdicts(summary)
    meta = dict(test_domain=args.test_domain, seeds=args.seeds, epochs=epochs,
                image_size=args.image_size or base.train_dataloader.dataset.get("image_size"),
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
        md = to_markdown(meta, summary, verdict)
        with open(osp.join(args.out_dir, "gradsamp.md"), "w") as f:
            f.write(md)
        print(md)
    return data


if __name__ == "__main__":
    main()
