"""Forward, backward and optimizer time of a dense and an ssProp train step, per gradient mode.

    python tools/benchmark_step_phases.py [--model resnet18] [--res 224] [--batch 4]
        [--keep 0.2] [--channels-last] [--keep-freed-memory] [--reps 8] [--out PREFIX]

Why: ``tools/benchmark_sparse.py`` times whole steps. This splits them to show where a
step's time goes when gradients are allocated anew each step. Three modes:
- ``sgd``: SGD with momentum, then ``zero_grad(set_to_none=True)`` (torch's and mmengine's
  default);
- ``none``: gradients set to None with no optimizer;
- ``accumulate``: gradients kept and accumulated in place.

Under glibc's default allocator the large new gradients page-fault on every step, which costs
ssProp's sliced backward proportionally more than the dense one.
``--keep-freed-memory`` applies :func:`dgsamp.runtime.keep_freed_memory` to both models.
Dense and ssProp steps alternate; each phase is the median over ``--reps`` steps after one
warm-up step. One thread by default. Writes ``<out>.json``
(default ``work_dirs/benchmarks/step_phases``).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dgsamp.cost.report import machine_info  # noqa: E402
from dgsamp.methods.patch import patch  # noqa: E402
from dgsamp.runtime import keep_freed_memory  # noqa: E402

MODES = ("sgd", "none", "accumulate")


def _model(name: str, keep: float | None, fmt: torch.memory_format) -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    m = timm.create_model(name, pretrained=False, num_classes=10).train().to(memory_format=fmt)
    if keep is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            patch(m, "ssprop", keep=keep)
    return m


def measure(name: str, res: int, batch: int, keep: float, channels_last: bool,
            reps: int) -> dict:
    """Per mode and model: median forward, backward and optimizer ms, and dense / ssProp."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    models = {"dense": _model(name, None, fmt), f"ssprop{keep}": _model(name, keep, fmt)}
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for k, m in models.items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, res, res, generator=g).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), generator=g)

    def step(k: str, mode: str) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        loss = F.cross_entropy(models[k](x), y)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if mode == "sgd":
            opts[k].step()
            opts[k].zero_grad(set_to_none=True)
        elif mode == "none":
            models[k].zero_grad(set_to_none=True)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    out = {}
    for mode in MODES:
        times = {k: [] for k in models}
        for _ in range(reps + 1):
            for k in models:
                times[k].append(step(k, mode))
        row = {k: {phase: statistics.median(t[i] for t in v[1:]) * 1e3
                   for i, phase in enumerate(("forward_ms", "backward_ms", "optimizer_ms"))}
               for k, v in times.items()}
        total = {k: sum(r.values()) for k, r in row.items()}
        dense, sparse = models
        out[mode] = {**row, "step_ratio": total[dense] / total[sparse]}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--keep", type=float, default=0.2)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--keep-freed-memory", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--out", default="work_dirs/benchmarks/step_phases")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory and not keep_freed_memory():
        p.error("--keep-freed-memory: this C library is not glibc, or it refused the settings")
    result = {"settings": vars(args), "machine": machine_info(), "torch": torch.__version__,
              "modes": measure(args.model, args.res, args.batch, args.keep,
                               args.channels_last, args.reps)}
    os.makedirs(osp.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    for mode, r in result["modes"].items():
        print(f"{mode}: " + ", ".join(
            f"{k} " + " / ".join(f"{v:.1f}" for v in d.values())
            for k, d in r.items() if k != "step_ratio") + f" ms; ratio {r['step_ratio']:.2f}")
    print(f"wrote {args.out}.json")
    return result


if __name__ == "__main__":
    main()
