"""Compare runs by what they cost and what they scored: `python tools/compare.py RUN_DIR ...`.

Reads each run's ``cost.json`` (written by CostHook) and its final metrics (``metrics`` in
cost.json, else ``results.json`` from tools/train.py, else the last line of mmengine's
``<timestamp>/vis_data/scalars.json`` that has the metric), groups seeds of one setting (run-dir
name without a trailing ``_s<seed>`` / ``_seed<seed>``, or ``--group REGEX``'s first group), and
prints a markdown table with mean ± standard error and savings relative to ``--baseline``. Where a
setting and the baseline share seeds, the table also gives the paired accuracy difference over
those seeds (seed by seed, then mean ± SE; ``dgsamp.evaluation.stats``, whose SE is n/a for
one value): runs of one seed share their initialisation and data
order, so the paired SE is the fair one for "within N points" (often much smaller).
Plots (PNG, matplotlib Agg) go to ``--out``: accuracy vs training FLOPs, accuracy vs wall time,
accuracy vs energy, per-domain accuracy bars. ``--curve METRIC`` adds the mean of METRIC at every
validation step, per setting (learning curves, from scalars.json).

    python tools/compare.py work_dirs/headline/* --baseline dense --out work_dirs/headline/cmp
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import re
import statistics
import sys
from collections import OrderedDict

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from dgsamp.evaluation.runs import load_json, scalar_records  # noqa: E402
from dgsamp.evaluation.stats import MeanSE, mean_se, paired_difference  # noqa: E402

SEED_SUFFIX = re.compile(r"[_-](?:s|seed)(\d+)$")
GROUPS = ("train_domains", "test_domains")  # <metric>/<group>: means over domains, not domains


def _scalar_records(run_dir: str, metric: str) -> list[dict]:
    """The records of mmengine's scalars.json holding ``metric``, in order (validation records
    carry ``step``: the epoch, or the iteration of an iteration-based run)."""
    return [rec for rec in scalar_records(run_dir) if metric in rec]


def load_run(run_dir: str, metric: str) -> dict | None:
    """One run: its cost report, its metrics and where the metrics came from."""
    cost = load_json(osp.join(run_dir, "cost.json"))
    if cost is None:
        print(f"[compare] {run_dir}: no cost.json, left out", file=sys.stderr)
        return None
    if not (cost.get("run") or {}).get("complete", True):
        print(f"[compare] {run_dir}: cost.json incomplete (run still going or crashed), left out",
              file=sys.stderr)
        return None
    metrics, msrc = None, None
    m = cost.get("metrics") or {}
    for key in ("test", "val"):
        if m.get(key) and metric in m[key]:
            metrics, msrc = m[key], f"cost.json metrics.{key}"
            break
    if metrics is None:
        res = load_json(osp.join(run_dir, "results.json"))
        if res and metric in (res.get("metrics") or {}):
            metrics, msrc = res["metrics"], "results.json"
    if metrics is None:
        recs = _scalar_records(run_dir, metric)
        if recs:
            metrics, msrc = recs[-1], "scalars.json"
    return dict(dir=run_dir, name=osp.basename(osp.normpath(run_dir)), cost=cost,
                metrics=metrics or {}, metrics_source=msrc)


def group_name(name: str, pattern: str | None) -> str:
    if pattern:
        m = re.search(pattern, name)
        if m:
            return m.group(1) if m.groups() else m.group(0)
        return name
    return SEED_SUFFIX.sub("", name)


def _value(d: dict, *path):
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    if isinstance(d, dict):
        return d.get("value")
    return d


def run_numbers(run: dict, metric: str) -> dict:
    c = run["cost"]
    t = c.get("totals", {})
    energy = t.get("energy_train_j", {}).get("total", {})
    return OrderedDict(
        acc=run["metrics"].get(metric),
        acc_train=run["metrics"].get(f"{metric.partition('/')[0]}/train_domains"),
        flops=_value(t, "flops", "train"),
        flops_eff=_value(t, "flops", "train_effective"),
        time=_value(t, "time_s", "train"),
        energy=energy.get("value"),
        energy_source=energy.get("source") or energy.get("unavailable"),
        skipped=(t.get("epochs") or {}).get("skipped"),
        epochs=len(c.get("epochs") or []),
        overhead=_value(c, "overhead", "fraction_of_run"),
    )


def summarise(runs: list[dict], metric: str, pattern: str | None) -> OrderedDict:
    groups: OrderedDict[str, list[dict]] = OrderedDict()
    for r in runs:
        groups.setdefault(group_name(r["name"], pattern), []).append(r)
    out = OrderedDict()
    for g, rs in groups.items():
        nums = [run_numbers(r, metric) for r in rs]
        s = dict(runs=rs, n=len(rs))
        for k in ("acc", "acc_train", "flops", "flops_eff", "time", "energy", "skipped",
                  "overhead"):
            s[k] = mean_se([n[k] for n in nums])
        srcs = {n["energy_source"] for n in nums}
        s["energy_source"] = "; ".join(sorted(x for x in srcs if x))
        domains: dict[str, list] = {}
        name = metric.partition("/")[0]  # the metric's per-domain keys: <name>/<domain>
        for r in rs:
            for k, v in r["metrics"].items():
                head, _, domain = k.partition("/")
                if head == name and domain not in GROUPS and isinstance(v, (int, float)):
                    domains.setdefault(domain, []).append(v)
        s["domains"] = {d: mean_se(v) for d, v in domains.items() if len(v) == len(rs)}
        out[g] = s
    return out


def seed_of(name: str) -> int | None:
    m = SEED_SUFFIX.search(name)
    return int(m.group(1)) if m else None


def paired_delta(runs: list[dict], base_runs: list[dict], metric: str) -> MeanSE:
    """Mean ± SE over shared seeds of (run − baseline run of the same seed); n shared seeds."""
    def by_seed(rs: list[dict]) -> dict:
        return {k: r["metrics"].get(metric) for r in rs
                if (k := seed_of(r["name"])) is not None}

    return paired_difference(by_seed(runs), by_seed(base_runs))


def _fmt(ms: MeanSE, scale=1.0, digits=3, unit=""):
    m, se, _ = ms
    if m is None:
        return "n/a"
    if se:
        return f"{m / scale:.{digits}g} ± {se / scale:.2g}{unit}"
    return f"{m / scale:.{digits}g}{unit}"


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def markdown_table(summary: OrderedDict, baseline: str | None, metric: str) -> str:
    base = summary.get(baseline) if baseline else None
    head = ["setting", "n", f"{metric} (%)", "train-domain acc (%)", "train GFLOPs",
            "effective GFLOPs", "train time (s)", "energy (J)", "skipped epochs"]
    if base:
        head += ["Δacc (pt)", "paired Δacc ± SE (pt, seeds)", "FLOPs vs base", "time vs base",
                 "energy vs base"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g, s in summary.items():
        row = [g, str(s["n"]), _fmt(s["acc"], digits=4), _fmt(s["acc_train"], digits=4),
               _fmt(s["flops"], 1e9), _fmt(s["flops_eff"], 1e9), _fmt(s["time"]),
               _fmt(s["energy"]), _fmt(s["skipped"])]
        if base:
            d = (None if s["acc"][0] is None or base["acc"][0] is None
                 else s["acc"][0] - base["acc"][0])
            row.append("n/a" if d is None else f"{d:+.2f}")
            pm, pse, pn = paired_delta(s["runs"], base["runs"], metric)
            pse = "n/a" if pse is None else f"{pse:.2f}"  # one shared seed: SE not measured
            row.append("n/a" if pm is None else f"{pm:+.2f} ± {pse} ({pn})")
            for k in ("flops", "time", "energy"):
                r = _ratio(s[k][0], base[k][0])
                row.append("n/a" if r is None else f"{100 * r:.1f}% ({100 * (1 - r):+.1f}% saved)")
        lines.append("| " + " | ".join(row) + " |")
    srcs = sorted({s["energy_source"] for s in summary.values() if s["energy_source"]})
    notes = [f"Energy source: {x}" for x in srcs]
    if base is None and baseline:
        notes.append(f"Baseline {baseline!r} not found among: {', '.join(summary)}")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def curve_table(summary: OrderedDict, metric: str) -> str:
    """Mean of ``metric`` at every logged validation step, one column per setting (n = runs
    that logged that step); from scalars.json, so it needs runs validated more than once."""
    per: OrderedDict[str, dict[int, list[float]]] = OrderedDict()
    for g, s in summary.items():
        steps: dict[int, list[float]] = {}
        for r in s["runs"]:
            for rec in _scalar_records(r["dir"], metric):
                if "step" in rec:
                    steps.setdefault(int(rec["step"]), []).append(float(rec[metric]))
        per[g] = steps
    all_steps = sorted({k for steps in per.values() for k in steps})
    lines = [f"| step | {' | '.join(per)} |", "|" + "---|" * (len(per) + 1)]
    for k in all_steps:
        cells = [f"{statistics.fmean(v):.1f} (n={len(v)})" if (v := per[g].get(k)) else "n/a"
                 for g in per]
        lines.append(f"| {k} | {' | '.join(cells)} |")
    return "\n".join([f"{metric}, mean over runs at each validation step", ""] + lines)


def plots(summary: OrderedDict, out: str, metric: str, baseline: str | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    written = []
    for key, label, scale, fname in (("flops", "training FLOPs (GFLOP)", 1e9, "acc_vs_flops.png"),
                                     ("time", "training wall time (s)", 1.0, "acc_vs_time.png"),
                                     ("energy", "training energy (J)", 1.0, "acc_vs_energy.png")):
        pts = [(g, s) for g, s in summary.items() if s[key][0] is not None
               and s["acc"][0] is not None]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for g, s in pts:
            ax.errorbar(s[key][0] / scale, s["acc"][0], xerr=(s[key][1] or 0) / scale,
                        yerr=s["acc"][1] or 0, fmt="o" if g != baseline else "s", capsize=3,
                        label=g)
            ax.annotate(g, (s[key][0] / scale, s["acc"][0]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel(f"{metric} (%)")
        if key == "energy":
            srcs = {s["energy_source"] for _, s in pts}
            ax.set_title("energy source: " + "; ".join(sorted(srcs))[:90], fontsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = osp.join(out, fname)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    domains = sorted({d for s in summary.values() for d in s["domains"]},
                     key=lambda d: (not d.lstrip("-").isdigit(),
                                    int(d) if d.lstrip("-").isdigit() else 0, d))
    if domains:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(domains) * max(1, len(summary)) / 3),
                                        4.5))
        width = 0.8 / max(1, len(summary))
        for i, (g, s) in enumerate(summary.items()):
            xs = [j + i * width for j in range(len(domains))]
            ys = [s["domains"].get(d, (None, None))[0] or 0 for d in domains]
            es = [s["domains"].get(d, (None, None))[1] or 0 for d in domains]
            ax.bar(xs, ys, width, yerr=es, capsize=2, label=g)
        held = set()
        for s in summary.values():
            for r in s["runs"]:
                ds = ((r["cost"].get("config") or {}).get("train_dataset") or {})
                held |= {str(d) for d in ds.get("test_domains") or []}
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(domains))],
                      [f"{d}\n(held out)" if d in held else d for d in domains])
        ax.set_xlabel("domain")
        ax.set_ylabel("accuracy (%)")
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = osp.join(out, "per_domain_accuracy.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> OrderedDict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dirs", nargs="+", help="work dirs with a cost.json")
    p.add_argument("--baseline", help="group name (or run dir name) savings are relative to")
    p.add_argument("--group", help="regex on the run-dir name; its first group names the setting")
    p.add_argument("--metric", default="acc/test_domains", help="accuracy key to compare")
    p.add_argument("--out", help="folder for compare.md and the PNG plots")
    p.add_argument("--curve", metavar="METRIC",
                   help="also print METRIC at every validation step, mean per setting "
                        "(e.g. acc/train_domains; to --out as curve.md)")
    args = p.parse_args(argv)
    runs = [r for d in args.run_dirs if osp.isdir(d)
            for r in [load_run(d, args.metric)] if r is not None]
    if not runs:
        raise SystemExit("No run with a cost.json among the given dirs.")
    summary = summarise(runs, args.metric, args.group)
    baseline = args.baseline
    if baseline and baseline not in summary:
        baseline = next((group_name(r["name"], args.group) for r in runs
                         if r["name"] == baseline or r["dir"] == baseline), baseline)
    table = markdown_table(summary, baseline, args.metric)
    print(table)
    curve = curve_table(summary, args.curve) if args.curve else None
    if curve:
        print("\n" + curve)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(osp.join(args.out, "compare.md"), "w") as fh:
            fh.write(table + "\n")
        if curve:
            with open(osp.join(args.out, "curve.md"), "w") as fh:
                fh.write(curve + "\n")
        for path in plots(summary, args.out, args.metric, baseline):
            print(f"[compare] wrote {path}")
    return summary


if __name__ == "__main__":
    main()
