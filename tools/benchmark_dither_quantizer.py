"""What the dither quantizer itself costs: alone per layer shape, and inside whole train steps.

    OMP_NUM_THREADS=1 python tools/benchmark_dither_quantizer.py [--quick] [--out PREFIX]

Issue 14 asks that quantizing δ cost at most 5% of a dense step. Two measurements, for each
quantizer setting (``eager``/``fresh``, ``eager``/``pool``, ``compiled``/``pool``,
``native``/``fresh``, ``native``/``pool``, ``native``/``philox`` = the default since
2026-12-07):

- *alone*: ``torch.utils.benchmark.Timer`` on the quantizer (``dgsamp.methods.dither._dither``,
  what the backward hook calls) for ResNet/ViT output-gradient shapes, in µs and ns per element,
  beside a ``clone`` of the same tensor (one read, one write: the floor any quantizer pays);
- *in the step*: timm models patched with dither (hook path), the wall time spent inside the
  quantizer summed over one train step (``time.perf_counter`` around each call), as a share of
  the dense step's median time measured in the same process. This is the number the 5% target
  is about; it includes the cache misses the quantizer suffers in a real backward, which the
  *alone* numbers (hot caches) do not.

Writes ``<out>.json`` and ``<out>.md`` (default ``work_dirs/benchmarks/dither_quantizer``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import os.path as osp
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.benchmark import Timer  # noqa: E402

from dgsamp.cost.report import machine_info  # noqa: E402
from dgsamp.methods.patch import patch  # noqa: E402

dither_mod = importlib.import_module("dgsamp.methods.dither")  # the module, not the function

# every setting names its noise: the default changed from 'fresh' to 'philox' on 2026-12-07
SETTINGS = {"eager_fresh": {"noise": "fresh", "quantizer": "eager"},
            "eager_pool": {"noise": "pool", "quantizer": "eager"},
            "compiled_pool": {"noise": "pool", "quantizer": "compiled"},
            "native_fresh": {"noise": "fresh", "quantizer": "native"},
            "native_pool": {"noise": "pool", "quantizer": "native"},
            "native_philox": {"noise": "philox", "quantizer": "native"}}
#: (name, shape, rows): rows = a linear layer's δ (its all-zero token rows are counted too)
SHAPES = [("vit_s fc1 B8x197", (8, 197, 1536), True), ("vit_s qkv B8x197", (8, 197, 1152), True),
          ("vit_tiny fc1 B16x65", (16, 65, 768), True), ("vit_tiny proj B16x5", (16, 5, 192), True),
          ("resnet18 layer1 B16 32px", (16, 64, 32, 32), False),
          ("resnet18 conv1 B2 224px", (2, 64, 112, 112), False),
          ("resnet18 layer4 B16 32px", (16, 512, 4, 4), False)]
MODELS = [("resnet18", 32, 16), ("convnext_atto", 32, 16), ("vit_tiny_patch16_224", 32, 16),
          ("resnet18", 224, 2), ("vit_tiny_patch16_224", 224, 2)]


class _Stats:  # what a patched layer records; only written here
    _grad_nnz = _grad_numel = None
    _zero_rows = 0.0


def _median_us(stmt: str, env: dict, min_run_time: float) -> float:
    return Timer(stmt, globals=env).blocked_autorange(min_run_time=min_run_time).median * 1e6


def bench_alone(min_run_time: float) -> list[dict]:
    rows = []
    for name, shape, is_rows in SHAPES:
        dy = torch.randn(*shape)
        row = {"shape": name, "numel": dy.numel(),
               "clone_us": _median_us("dy.clone()", {"dy": dy}, min_run_time)}
        for setting, kw in SETTINGS.items():
            opts = dither_mod.DitherOptions(**kw)
            env = {"q": dither_mod._dither, "dy": dy, "opts": opts, "st": _Stats(), "r": is_rows}
            _ = env["q"](dy, opts, env["st"], is_rows)  # compile / fill the pool first
            row[f"{setting}_us"] = _median_us("q(dy, opts, st, r)", env, min_run_time)
        rows.append(row)
        print(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items() if k.endswith("_us")))
    return rows


def _model(name: str, res: int):
    import timm

    kw = {"num_classes": 10, **({"img_size": res} if name.startswith("vit") else {})}
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kw).train()


def bench_in_step(steps: int, min_run_time: float) -> list[dict]:
    quantizer = dither_mod._dither
    spent = [0.0]

    def timed(dy, opts, stats, rows=False):
        t = time.perf_counter()
        out = quantizer(dy, opts, stats, rows)
        spent[0] += time.perf_counter() - t
        return out

    rows = []
    for name, res, batch in MODELS:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, res, res, generator=g)
        y = torch.randint(0, 10, (batch,), generator=g)
        dense = _model(name, res)

        def dense_step(dense=dense, x=x, y=y):
            F.cross_entropy(dense(x), y).backward()

        dense_step()
        row = {"model": name, "res": res, "batch": batch,
               "dense_step_ms": _median_us("f()", {"f": dense_step}, min_run_time) / 1e3}
        for setting, kw in SETTINGS.items():
            m = _model(name, res)
            patch(m, "dither", scale=8.0, sparse_kernel=False, **kw)

            def step(m=m, x=x, y=y):
                F.cross_entropy(m(x), y).backward()

            step()
            step()  # compiled graphs and the pool are ready
            dither_mod._dither = timed
            try:
                spent[0] = 0.0
                times = []
                for _ in range(steps):
                    t = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t)
            finally:
                dither_mod._dither = quantizer
            row[f"{setting}_step_ms"] = 1e3 * statistics.median(times)
            row[f"{setting}_quantizer_ms"] = 1e3 * spent[0] / steps
            row[f"{setting}_share_of_dense"] = row[f"{setting}_quantizer_ms"] / row[
                "dense_step_ms"]
        rows.append(row)
        print(f"{name}@{res}: dense {row['dense_step_ms']:.1f} ms; " + ", ".join(
            f"{s} quantizer {row[f'{s}_quantizer_ms']:.1f} ms "
            f"({100 * row[f'{s}_share_of_dense']:.1f}%)" for s in SETTINGS))
    return rows


def write_markdown(result: dict, path: str) -> None:
    meta = result["meta"]
    lines = ["# Dither quantizer cost (issue 14)", "",
             f"- {meta['machine'].get('cpu_model', 'CPU')}, threads {meta['threads']}, torch "
             f"{meta['torch']}; command: `{meta['command']}`", "",
             "## Alone (hot caches), µs per call (ns per element)", "",
             "| shape | elements | clone | " + " | ".join(SETTINGS) + " |",
             "|" + "---|" * (3 + len(SETTINGS))]
    for r in result["alone"]:
        cells = [f"{r[f'{s}_us']:.1f} ({1e3 * r[f'{s}_us'] / r['numel']:.2f})" for s in SETTINGS]
        lines.append(f"| {r['shape']} | {r['numel']} | {r['clone_us']:.1f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "## Inside a train step: quantizer time per step, and its share of the dense "
              "step", "", "| model | res | batch | dense step ms | " + " | ".join(
                  f"{s} ms (share)" for s in SETTINGS) + " |", "|" + "---|" * (4 + len(SETTINGS))]
    for r in result["in_step"]:
        cells = [f"{r[f'{s}_quantizer_ms']:.1f} ({100 * r[f'{s}_share_of_dense']:.1f}%)"
                 for s in SETTINGS]
        lines.append(f"| {r['model']} | {r['res']} | {r['batch']} | {r['dense_step_ms']:.1f} | "
                     + " | ".join(cells) + " |")
    for s in SETTINGS:
        med = statistics.median(r[f"{s}_share_of_dense"] for r in result["in_step"])
        lines.append(f"\nMedian share of the dense step, {s}: {100 * med:.1f}% (target <= 5%).")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="shorter timings, fewer steps")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="work_dirs/benchmarks/dither_quantizer")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run_time = 0.1 if args.quick else 0.4
    t0 = time.time()
    result = {"meta": {"torch": torch.__version__, "threads": args.threads,
                       "machine": machine_info(), "quick": args.quick,
                       "command": " ".join(["python"] + sys.argv)},
              "alone": bench_alone(run_time),
              "in_step": bench_in_step(5 if args.quick else 20, run_time)}
    result["meta"]["seconds"] = time.time() - t0
    os.makedirs(osp.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    write_markdown(result, args.out + ".md")
    print(f"wrote {args.out}.json and {args.out}.md in {result['meta']['seconds']:.0f} s")


if __name__ == "__main__":
    main()
