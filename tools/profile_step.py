"""Where a sparse train step's time goes: torch.profiler's per-op self time, dense beside a variant.

    OMP_NUM_THREADS=1 python tools/profile_step.py resnet18 --res 224 --batch 4 \
        --variant ssprop0.2 [--steps 3] [--out PREFIX]

Issue 14 asks to "profile where the remaining time goes" of ssProp's whole step (index_select
copies, the score reduction, the dW scatter, memory formats). The models, variants and train
step are ``tools/benchmark_sparse.py``'s (``step_variants``: ``ssprop0.2``, ``dither``, ...),
so the profile explains that benchmark's step ratios. Each model is warmed up, timed (median
of ``--steps``, interleaved with the other), then profiled over ``--steps`` steps; ops are
listed by self CPU time per step, largest first (the larger of the two), with the difference
(variant − dense) so that what the method saves and what it adds read off one table. Writes
``<out>.json`` and ``<out>.md`` (default ``work_dirs/benchmarks/profile_<model>_<variant>``).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # benchmark_sparse, beside this file
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from benchmark_sparse import _make_model, step_variants  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from dgsamp.cost.report import machine_info  # noqa: E402
from dgsamp.methods.patch import patch  # noqa: E402


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def _self_ms_per_op(model, x, y, steps: int) -> dict[str, float]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            _step(model, x, y)
    return {e.key: e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="a timm model of benchmark_sparse's steps, e.g. resnet18")
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--variant", default="ssprop0.2", help="a step variant of benchmark_sparse")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--channels-last", action="store_true",
                   help="models and input in channels-last memory format (oneDNN's layout)")
    p.add_argument("--rows", type=int, default=16, help="ops listed")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    variants = step_variants(args.model)
    if args.variant not in variants or variants[args.variant] is None:
        raise SystemExit(f"--variant must be one of {[v for v, c in variants.items() if c]}, "
                         f"got {args.variant!r}")
    out = args.out or f"work_dirs/benchmarks/profile_{args.model}_{args.variant}"
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.res, args.res)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch,))
    dense = _make_model(args.model, args.res, "cpu").to(memory_format=fmt)
    method = _make_model(args.model, args.res, "cpu").to(memory_format=fmt)
    name, opts = variants[args.variant]
    patch(method, name, **opts)
    times: dict[str, list[float]] = {"dense": [], args.variant: []}
    for m in (dense, method):
        _step(m, x, y)
        _step(m, x, y)
    for _ in range(args.steps):  # interleaved: machine noise hits both alike
        for key, m in (("dense", dense), (args.variant, method)):
            t = time.perf_counter()
            _step(m, x, y)
            times[key].append(time.perf_counter() - t)
    ops = {"dense": _self_ms_per_op(dense, x, y, args.steps),
           args.variant: _self_ms_per_op(method, x, y, args.steps)}
    step_ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    names = set(ops["dense"]) | set(ops[args.variant])
    table = sorted(({"op": n, "dense_ms": ops["dense"].get(n, 0.0),
                     "variant_ms": ops[args.variant].get(n, 0.0)} for n in names),
                   key=lambda r: -max(r["dense_ms"], r["variant_ms"]))
    result = {"meta": {**machine_info(), "threads": torch.get_num_threads(),
                       "model": args.model, "res": args.res, "batch": args.batch,
                       "variant": args.variant, "steps": args.steps,
                       "channels_last": args.channels_last},
              "step_ms": step_ms, "speedup": step_ms["dense"] / step_ms[args.variant],
              "profiled_total_ms": {k: sum(v.values()) for k, v in ops.items()},
              "ops": table}
    os.makedirs(osp.dirname(out) or ".", exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    layout = ", channels-last" if args.channels_last else ""
    lines = [f"# {args.model} {args.res} px, batch {args.batch}{layout}: dense vs "
             f"{args.variant}", "",
             f"Step (median of {args.steps}, interleaved): dense {step_ms['dense']:.1f} ms, "
             f"{args.variant} {step_ms[args.variant]:.1f} ms, "
             f"{result['speedup']:.2f}x. Profiled self CPU per step: dense "
             f"{result['profiled_total_ms']['dense']:.1f} ms, {args.variant} "
             f"{result['profiled_total_ms'][args.variant]:.1f} ms "
             f"({torch.get_num_threads()} thread(s)).", "",
             f"| op | dense ms/step | {args.variant} ms/step | difference |", "|---|---|---|---|"]
    for r in table[:args.rows]:
        lines.append(f"| `{r['op']}` | {r['dense_ms']:.2f} | {r['variant_ms']:.2f} | "
                     f"{r['variant_ms'] - r['dense_ms']:+.2f} |")
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
