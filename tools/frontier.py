"""Does a method beat simply training less? Dense training's accuracy-vs-cost frontier on
StyledGlyphs, every method against the dense run of *equal cost*:

    python tools/frontier.py --jobs 2                          # both backbones, 5 seeds
    python tools/frontier.py --backbones resnet --seeds 0 1 2  # one backbone, in pieces
    python tools/frontier.py --benchmark                       # ERM on every held-out domain
    python tools/frontier.py --report-only                     # tables and plots from the JSONs

Points: ``dense-25/50/75`` and ``dense`` train 25/50/75/100% of the backbone config's epochs
(its LR milestones scaled to the shorter length): the dense frontier. Each method setting trains
the full schedule with method presets (configs/_base_/methods/, `dgsamp.engine.presets`) turned
on through ``tools/train.py --methods``. Backbones: ``resnet`` (configs/dg/erm_styled_glyphs.py)
and ``vit`` (configs/dg/erm_styled_glyphs_vit.py), or ``NAME=CONFIG`` for any other config.

Every finished run leaves a small summary under ``--results-dir`` (default
docs/results/frontier/styled_glyphs_v<data version>/<backbone>/<test domain>/<setting>_s<seed>
.json: settings, per-domain accuracy, costs with their sources from CostHook's cost.json; the
data version is `glyphs.FORMAT_VERSION`, so a changed generator starts a new folder). A point
whose summary exists is never run again, so the study continues on another machine from the
committed files, and the reports are written from those files alone into ``--report-dir``
(default docs/results): ``frontier_<backbone>.md/.png``
(accuracy ± SE; paired Δ ± SE against the dense accuracy of the same seed interpolated
linearly on that seed's frontier at the method's training FLOPs; FLOPs, wall time, energy with
its source; above/on/below in words: |Δ| > 2 SE decides) and, with --benchmark,
``frontier_benchmark.md`` (in-domain vs held-out accuracy per held-out domain, seed SD).
Wall times of parallel runs (--jobs > 1) include their contention for the CPU.
One file of ~420 lines: planning, summaries, the equal-cost analysis and the reports are the
one study's parts, and nothing else uses them (the statistics and readers are the library's).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path[:0] = [ROOT, osp.join(ROOT, "tools")]  # dgsamp from the checkout; tools/compare.py

from compare import load_run  # noqa: E402  (the run-folder reader: cost.json + metrics)

from dgsamp.datasets.glyphs import FORMAT_VERSION  # noqa: E402
from dgsamp.engine.run_queue import Run, run_commands  # noqa: E402
from dgsamp.evaluation.stats import MeanSE, mean_se, paired_difference  # noqa: E402

BACKBONES = {"resnet": "configs/dg/erm_styled_glyphs.py",
             "vit": "configs/dg/erm_styled_glyphs_vit.py"}
DENSE = {"dense-25": 0.25, "dense-50": 0.5, "dense-75": 0.75, "dense": 1.0}
METHODS = {  # setting -> method presets, each on the full schedule
    "gradsamp-every4": ["gradsamp-every4"], "gradsamp-every3": ["gradsamp-every3"],
    "gradsamp-late": ["gradsamp-late"],
    "ssprop-paper": ["ssprop-paper"], "ssprop-warmup": ["ssprop-warmup"],
    "ssprop-only-weight": ["ssprop-only-weight"], "dither": ["dither"], "dither-s2": ["dither-s2"],
    "gradsamp+ssprop": ["gradsamp-every4", "ssprop-paper"],
    "gradsamp+ssprop-warmup": ["gradsamp-every4", "ssprop-warmup"],
}
SETTINGS = [*DENSE, *METHODS]
# a method's settings, among which the study picks one by training-domain accuracy (the DG
# protocol's training-domain validation; the held-out domain never chooses)
FAMILIES = {
    "gradsamp": ["gradsamp-every4", "gradsamp-every3", "gradsamp-late"],
    "ssprop": ["ssprop-paper", "ssprop-warmup", "ssprop-only-weight"],
    "dither": ["dither", "dither-s2"],
    "gradsamp+ssprop": ["gradsamp+ssprop", "gradsamp+ssprop-warmup"],
}
METRIC = "acc/test_domains"


# ---------------------------------------------------------------------------- running
def scaled_schedule(config: str, budget: float) -> tuple[int, list[dict]]:
    """Epochs and LR schedulers for ``budget`` of the config's schedule: epochs rounded (at
    least 1), every ``milestones`` entry scaled the same way (at least 1, below the end), and an
    epoch-based scheduler's ``begin``/``end`` too (a warmup keeps its share of the schedule)."""
    from mmengine.config import Config

    cfg = Config.fromfile(config)
    full = int(cfg.train_cfg.max_epochs)
    epochs = max(1, round(budget * full))
    schedulers = []
    for sched in cfg.get("param_scheduler") or []:
        sched = dict(sched)
        if "milestones" in sched:
            sched["milestones"] = sorted({min(max(1, round(m * epochs / full)), max(1, epochs - 1))
                                          for m in sched["milestones"]})
        if sched.get("by_epoch", True):  # mmengine's default unit: epochs
            if "end" in sched:
                sched["end"] = min(max(1, round(sched["end"] * epochs / full)), epochs)
            if "begin" in sched:
                last = sched.get("end", epochs) - 1
                sched["begin"] = min(round(sched["begin"] * epochs / full), last)
        schedulers.append(sched)
    return epochs, schedulers


def config_text(config: str, budget: float, seed: int, test_domain: str) -> str:
    epochs, schedulers = scaled_schedule(config, budget)
    data = f"dict(dataset=dict(test_domains=[{test_domain!r}]))"
    return "\n".join([
        f"_base_ = [{osp.abspath(config)!r}]",
        f"train_cfg = dict(max_epochs={epochs}, val_interval={epochs})",
        f"param_scheduler = {schedulers!r}",
        f"randomness = dict(seed={seed}, deterministic=False)",
        f"default_hooks = dict(checkpoint=dict(interval={epochs}))",
        f"train_dataloader = {data}", f"val_dataloader = {data}", f"test_dataloader = {data}", "",
    ])


def summary_path(results_dir: str, backbone: str, test_domain: str, setting: str,
                 seed: int) -> str:
    return osp.join(results_dir, backbone, test_domain, f"{setting}_s{seed}.json")


def summarize(work_dir: str, point: dict, out: str) -> bool:
    """Write the run's summary JSON if its cost.json is complete; True when written."""
    run = load_run(work_dir, METRIC)
    if run is None or METRIC not in run["metrics"]:
        return False
    totals = run["cost"].get("totals", {})
    summary = dict(
        point, accuracy={k: v for k, v in run["metrics"].items() if k.startswith("acc/")},
        metrics_source=run["metrics_source"],
        flops_train=totals["flops"]["train"],
        flops_train_effective=totals["flops"].get("train_effective"),
        time_train_s=totals["time_s"]["train"], time_run_s=totals["time_s"]["run"],
        energy_train_j=(totals.get("energy_train_j") or {}).get("total"),
        epochs_trained=totals.get("epochs"), machine=run["cost"].get("machine"),
        methods_in_cost_json=run["cost"].get("methods"))
    os.makedirs(osp.dirname(out), exist_ok=True)
    with open(out + ".tmp", "w") as fh:
        json.dump(summary, fh, indent=1, sort_keys=True)
    os.replace(out + ".tmp", out)
    return True


def plan_runs(args) -> list[Run]:
    runs = []
    for backbone, config in args.backbones.items():
        for test_domain in args.test_domains:
            for seed in args.seeds:
                for setting in args.settings:
                    out = summary_path(args.results_dir, backbone, test_domain, setting, seed)
                    if osp.isfile(out):
                        continue  # finished (here or on another machine): never run again
                    name = f"{backbone}/{test_domain}/{setting}_s{seed}"
                    work_dir = osp.join(args.work_root, name)
                    cfg_path = osp.join(work_dir, "config.py")
                    os.makedirs(work_dir, exist_ok=True)
                    budget = DENSE.get(setting, 1.0)
                    with open(cfg_path, "w") as fh:
                        fh.write(config_text(config, budget, seed, test_domain))
                    methods = METHODS.get(setting, [])
                    point = dict(backbone=backbone, config=osp.relpath(config, ROOT),
                                 data_version=FORMAT_VERSION,
                                 test_domain=test_domain, setting=setting, seed=seed,
                                 budget=budget, methods=methods,
                                 epochs=scaled_schedule(config, budget)[0])
                    runs.append(Run(
                        name=name, log=osp.join(work_dir, "train_stdout.log"), cwd=ROOT,
                        command=[sys.executable, osp.join(ROOT, "tools", "train.py"), cfg_path,
                                 "--work-dir", work_dir, "--methods", *methods, "cost"],
                        done=lambda w=work_dir, p=point, o=out: summarize(w, p, o)))
    return runs


# ---------------------------------------------------------------------------- analysis
def load_summaries(results_dir: str, backbone: str, test_domain: str) -> dict[str, dict]:
    """setting -> {seed: summary} for one backbone and held-out domain."""
    folder = osp.join(results_dir, backbone, test_domain)
    out: dict[str, dict] = {}
    for name in sorted(os.listdir(folder)) if osp.isdir(folder) else []:
        if name.endswith(".json"):
            with open(osp.join(folder, name)) as fh:
                s = json.load(fh)
            out.setdefault(s["setting"], {})[s["seed"]] = s
    return out


def interpolate(x: float, points: list[tuple[float, float]]) -> tuple[float, bool]:
    """Piecewise-linear y at ``x`` through ``points`` (x, y); outside their range the nearest
    end's y, and True to say so (a frontier is not extrapolated)."""
    pts = sorted(points)
    if x <= pts[0][0] or x >= pts[-1][0]:
        return (pts[0][1] if x <= pts[0][0] else pts[-1][1]), not pts[0][0] <= x <= pts[-1][0]
    for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False):
        if x0 <= x <= x1:
            return (y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)), False
    raise AssertionError("unreachable")


#: the cost axis: FlopCounterMode's training FLOPs as counted (dithered layers dense), or with
#: each dithered layer's backward scaled by its measured density of δ̃ (what the native sparse
#: products of linear and conv layers execute; dgsamp/cost/flops.py)
FLOPS_MEASURES = {"counted": "flops_train", "effective": "flops_train_effective"}


def _flops(s: dict, measure: str = "counted") -> float | None:
    return (s.get(FLOPS_MEASURES[measure]) or {}).get("value")


def equal_cost_dense(runs: dict[int, dict], frontier: dict[str, dict], measure: str = "counted"
                     ) -> tuple[dict[int, float], bool]:
    """Per seed: the dense accuracy of that seed's frontier at the run's training FLOPs."""
    out, clamped = {}, False
    for seed, s in runs.items():
        pts = [(_flops(f[seed], measure), f[seed]["accuracy"][METRIC]) for f in frontier.values()
               if seed in f and _flops(f[seed], measure) is not None]
        if len(pts) >= 2 and _flops(s, measure) is not None:
            out[seed], c = interpolate(_flops(s, measure), pts)
            clamped |= c
    return out, clamped


MIN_SEEDS = 3  # an SE from two differences is itself too noisy to decide on


def verdict(delta: MeanSE) -> str:
    if delta.mean is None or delta.se is None or delta.n < MIN_SEEDS:
        return f"undecided (fewer than {MIN_SEEDS} paired seeds)"
    if abs(delta.mean) <= 2 * delta.se:
        return "on the frontier (|Δ| ≤ 2 SE)"
    return "above the frontier" if delta.mean > 0 else "below the frontier"


def fmt(ms: MeanSE, digits: int = 2, scale: float = 1.0) -> str:
    if ms.mean is None:
        return "n/a"
    se = "n/a" if ms.se is None else f"{ms.se * scale:.{digits}f}"
    return f"{ms.mean * scale:.{digits}f} ± {se}"


def _measure_ms(runs: dict[int, dict], key: str) -> tuple[MeanSE, str]:
    """Mean ± SE of a cost measure over seeds, with its source (or why it is unavailable)."""
    ms = [r.get(key) or {} for r in runs.values()]
    sources = sorted({m.get("source") or f"unavailable: {m.get('unavailable')}" for m in ms})
    return mean_se(m.get("value") for m in ms), "; ".join(sources)


def frontier_rows(summaries: dict[str, dict], measure: str = "counted") -> list[dict]:
    """One row per setting: accuracy, costs and the paired Δ against equal-cost dense, with
    FLOPs ``measure`` ('counted' or 'effective', :data:`FLOPS_MEASURES`) as the cost."""
    frontier = {k: v for k, v in summaries.items() if k in DENSE}
    dense_flops = mean_se(_flops(s, measure) for s in summaries.get("dense", {}).values())
    rows = []
    for setting in [s for s in SETTINGS if s in summaries]:
        runs = summaries[setting]
        acc = {seed: s["accuracy"][METRIC] for seed, s in runs.items()}
        row = dict(setting=setting, n=len(runs), acc=mean_se(acc.values()),
                   acc_train=mean_se(s["accuracy"].get("acc/train_domains")
                                     for s in runs.values()),
                   flops=mean_se(_flops(s, measure) for s in runs.values()),
                   time=mean_se(s["time_train_s"].get("value") for s in runs.values()))
        row["energy"], row["energy_source"] = _measure_ms(runs, "energy_train_j")
        row["flops_pct"] = (100 * row["flops"].mean / dense_flops.mean
                            if row["flops"].mean and dense_flops.mean else None)
        if setting not in DENSE:
            equal, row["clamped"] = equal_cost_dense(runs, frontier, measure)
            row["delta"] = paired_difference(acc, equal)
            row["verdict"] = verdict(row["delta"])
        rows.append(row)
    return rows


def select_by_training_domains(rows: list[dict]) -> list[tuple[str, dict, list[str]]]:
    """Per method family with a finished setting: (family, the row of the setting with the
    highest mean training-domain accuracy, the settings it was chosen among)."""
    by_setting = {r["setting"]: r for r in rows}
    chosen = []
    for family, settings in FAMILIES.items():
        candidates = [by_setting[s] for s in settings
                      if s in by_setting and by_setting[s]["acc_train"].mean is not None]
        if candidates:
            best = max(candidates, key=lambda r: r["acc_train"].mean)
            chosen.append((family, best, [r["setting"] for r in candidates]))
    return chosen


def write_frontier_report(rows: list[dict], backbone: str, test_domain: str, config: str,
                          source: str, out_md: str, measure: str = "counted") -> None:
    effective = measure == "effective"
    lines = [f"# Frontier: {backbone} on StyledGlyphs, '{test_domain}' held out"
             + (", at effective FLOPs" if effective else ""),
             "", "Written by `python tools/frontier.py --report-only"
             + (" --flops effective" if effective else "") + "` from "
             f"{source}/{backbone}/{test_domain}/*.json (config `{config}`). "
             + ("FLOPs: FlopCounterMode's training FLOPs with each dithered layer's backward "
                "scaled by its measured density of δ̃ (`flops_train_effective`): what the native "
                "sparse products run for linear layers and convs with groups 1 and ≥ 16 input "
                "channels; a dithered stem or depthwise conv runs dense, so for those this "
                "under-counts. Other methods' counts are unchanged. " if effective else "")
             +
             "n = seeds per cell. Δ: paired (same seed) difference to the dense accuracy "
             "interpolated on that seed's frontier at the method's training FLOPs "
             "(† = cost outside the frontier's range, compared with its nearest end). "
             "Wall times on a shared 2-core CPU: noisy.", "",
             "| setting | n | test acc | train-domain acc | FLOPs (% dense) | Δ vs equal-cost "
             "dense | verdict | train time (s) | energy (J) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pct = f"{r['flops_pct']:.1f}%" if r["flops_pct"] is not None else "n/a"
        delta = (f"{fmt(r['delta'])}{' †' if r['clamped'] else ''} (n={r['delta'].n})"
                 if "delta" in r else "—")
        lines.append(f"| {r['setting']} | {r['n']} | {fmt(r['acc'])} | {fmt(r['acc_train'])} | "
                     f"{fmt(r['flops'], 3, 1e-12)} T ({pct}) | {delta} | "
                     f"{r.get('verdict', '(the frontier)')} | {fmt(r['time'], 0)} | "
                     f"{fmt(r['energy'], 0)} |")
    sources = sorted({r["energy_source"] for r in rows})
    estimate = any("estimate" in src for src in sources)
    lines += ["", f"Energy source: {'; '.join(sources)}"
              + (" (an estimate from CPU time, not a meter reading: no RAPL/NVML meter on this "
                 "machine)." if estimate else "."), "", "In words:"]
    lines += [f"- {r['setting']} is {r['verdict']} ({backbone}): Δ = {fmt(r['delta'])} points "
              f"at {r['flops_pct']:.0f}% of dense's FLOPs, n = {r['delta'].n}."
              for r in rows if "delta" in r and r["flops_pct"] is not None]
    if not any("delta" in r for r in rows):
        lines.append("- no method run has finished yet: nothing to place against the frontier.")
    chosen = select_by_training_domains(rows)
    if chosen:
        lines += ["", "## Each method at the setting training-domain validation chooses", "",
                  "Per method, the setting with the highest mean training-domain accuracy "
                  "(the training domains' 20% held-out parts) among those run; the held-out "
                  "domain takes no part in the choice.", "",
                  "| method | chosen among | chosen | train-domain acc | Δ vs equal-cost dense "
                  "| verdict |", "|---|---|---|---|---|---|"]
        lines += [f"| {family} | {', '.join(among)} | {r['setting']} | {fmt(r['acc_train'])} | "
                  f"{fmt(r['delta'])} (n={r['delta'].n}) | {r['verdict']} |"
                  for family, r, among in chosen]
    with open(out_md, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def plot_frontier(rows: list[dict], title: str, out_png: str,
                  xlabel: str = "training FLOPs (10^12, FlopCounterMode)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    dense = sorted((r for r in rows if r["setting"] in DENSE and r["flops"].mean),
                   key=lambda r: r["flops"].mean)
    if dense:
        ax.errorbar([r["flops"].mean / 1e12 for r in dense], [r["acc"].mean for r in dense],
                    yerr=[r["acc"].se or 0 for r in dense], color="k", marker="o",
                    label="dense at 25/50/75/100% of the epochs", capsize=3)
    for r in rows:
        if r["setting"] not in DENSE and r["flops"].mean:
            ax.errorbar(r["flops"].mean / 1e12, r["acc"].mean, yerr=r["acc"].se or 0,
                        marker="s", linestyle="none", capsize=3, label=f"{r['setting']} "
                        f"(n={r['n']})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out accuracy (%), mean ± SE over seeds")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def write_benchmark_report(results_dir: str, backbone: str, out_md: str) -> None:
    """ERM (dense, full schedule) per held-out domain: in-domain vs held-out, seed SD."""
    lines = [f"# StyledGlyphs: ERM ({backbone}) per held-out domain", "",
             "Written by `python tools/frontier.py --benchmark --report-only` from "
             f"{osp.relpath(results_dir, ROOT)}/{backbone}/<domain>/dense_s*.json. "
             "In-domain: the training domains' 20% held-out parts; held-out: the whole test "
             "domain. SE(5-seed diff): √2·SD/√5, the SE of an unpaired 5-seed difference "
             "(a paired one of positively correlated runs is smaller; measured ones are in "
             "frontier_<backbone>.md).", "",
             "| held-out domain | n seeds | in-domain acc | held-out acc | gap | held-out SD "
             "over seeds | SE(5-seed diff) |", "|---|---|---|---|---|---|---|"]
    for domain in sorted(os.listdir(osp.join(results_dir, backbone))):
        runs = load_summaries(results_dir, backbone, domain).get("dense", {})
        if not runs:
            continue
        test = [s["accuracy"][METRIC] for s in runs.values()]
        train = [s["accuracy"]["acc/train_domains"] for s in runs.values()]
        gap = mean_se(a - b for a, b in zip(train, test, strict=True))
        sd = mean_se(test).sd
        se5 = f"{sd * (2 / 5) ** 0.5:.2f}" if sd is not None else "n/a"
        lines.append(f"| {domain} | {len(runs)} | {fmt(mean_se(train))} | {fmt(mean_se(test))} | "
                     f"{fmt(gap)} | {'n/a' if sd is None else f'{sd:.2f}'} | {se5} |")
    with open(out_md, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def report(args) -> None:
    docs = args.report_dir
    os.makedirs(docs, exist_ok=True)
    for backbone, config in args.backbones.items():
        if args.benchmark:
            write_benchmark_report(args.results_dir, backbone,
                                   osp.join(docs, f"frontier_benchmark_{backbone}.md"))
        for domain in args.test_domains if not args.benchmark else []:
            rows = frontier_rows(load_summaries(args.results_dir, backbone, domain), args.flops)
            if not rows:
                continue
            stem = osp.join(docs, f"frontier_{backbone}" + ("" if domain == "sketch"
                                                            else f"_{domain}")
                            + ("_effective" if args.flops == "effective" else ""))
            write_frontier_report(rows, backbone, domain, osp.relpath(config, ROOT),
                                  osp.relpath(args.results_dir, ROOT), stem + ".md", args.flops)
            title = f"StyledGlyphs, {backbone}, '{domain}' held out" + (
                ", effective FLOPs" if args.flops == "effective" else "")
            plot_frontier(rows, title, stem + ".png", *(
                ["effective training FLOPs (10^12, FlopCounterMode, dithered backward x "
                 "density)"] if args.flops == "effective" else []))
            print(f"[frontier] wrote {stem}.md and .png")


def parse_backbones(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        name, _, config = v.partition("=")
        config = config or BACKBONES.get(name)
        if config is None:
            raise SystemExit(f"--backbones: unknown {name!r}; use {sorted(BACKBONES)} or "
                             f"NAME=CONFIG.")
        if not osp.isfile(osp.join(ROOT, config)) and not osp.isfile(config):
            raise SystemExit(f"--backbones {name}: config {config!r} does not exist.")
        out[name] = osp.join(ROOT, config) if not osp.isabs(config) else config
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", default=list(BACKBONES),
                   help=f"{sorted(BACKBONES)} or NAME=CONFIG")
    p.add_argument("--settings", nargs="+", default=SETTINGS, choices=SETTINGS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--test-domains", nargs="+", default=["sketch"])
    p.add_argument("--benchmark", action="store_true",
                   help="the benchmark's own figures: dense ERM with each domain held out")
    p.add_argument("--jobs", type=int, default=1, help="trainings at a time")
    p.add_argument("--work-root", default=osp.join(ROOT, "work_dirs", "frontier"))
    p.add_argument("--results-dir", default=osp.join(ROOT, "docs", "results", "frontier",
                                                     f"styled_glyphs_v{FORMAT_VERSION}"))
    p.add_argument("--report-dir", default=osp.join(ROOT, "docs", "results"))
    p.add_argument("--report-only", action="store_true", help="no training, only reports")
    p.add_argument("--flops", choices=list(FLOPS_MEASURES), default="counted",
                   help="cost axis: FLOPs as counted (dithered layers dense) or effective "
                        "(dithered backward x density); reports get an _effective suffix")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    args.backbones = parse_backbones(args.backbones)
    if args.benchmark:
        args.settings, args.test_domains = ["dense"], ["photo", "painting", "cartoon", "sketch"]
    if not args.report_only:
        runs = plan_runs(args)
        print(f"[frontier] {len(runs)} runs to do (finished ones are skipped)", flush=True)
        run_commands(runs, jobs=args.jobs, title="frontier")
    report(args)


if __name__ == "__main__":
    main()
