"""ssProp and dithered backprop against dense autograd: per layer and per whole train step.

    python tools/benchmark_sparse.py [--quick] [--device cpu|cuda] [--threads 1] [--out PREFIX]

Per layer (ResNet-18 and ResNet-50 conv shapes, ViT-S linear shapes) and per train step (timm
resnet18, convnext_atto, vit_tiny_patch16_224 at 224 px and at digits resolution 32 px, random
init, SGD): dense autograd vs ssProp keep 0.5 / 0.2 vs dither (s = 8). Layers also get a masked-dY
variant (top-k channels kept by zeroing dY: the full-size kernels still run) and, for linear
layers, the CSR sparse-kernel dither path.

Measured (variants interleaved round by round in one process, so machine noise hits all alike):
- backward time (median over rounds) and the paired ratio: median over rounds of
  dense_time / variant_time of the same round;
- full step time (forward + backward + optimizer step) for whole models;
- FLOPs with ``torch.utils.flop_counter.FlopCounterMode`` (it sees the sliced
  ``convolution_backward``/``mm`` shapes, so the ssProp savings show; dither runs dense kernels,
  so its *effective* FLOPs = dense backward FLOPs × measured density are listed separately);
- peak memory of the backward: CUDA ``max_memory_allocated`` on GPU; on CPU the peak of live
  tensor-storage bytes created during the backward, tracked by a TorchDispatchMode (tracemalloc
  does not see PyTorch's allocator, so it would report ~0);
- dither: measured zero fraction of δ̃ (random Gaussian dY per layer, real gradients per step).

CPU timings default to ONE thread (``--threads``): the development machine has 2 cores shared
with other jobs, and oversubscribed OpenMP threads make the timings meaningless.
Writes ``<out>.json`` and ``<out>.md`` (default ``work_dirs/benchmarks/sparse``).
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import platform
import statistics
import sys
import time
import warnings
import weakref
from collections.abc import Callable

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.multiprocessing.reductions import StorageWeakRef  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from dgsamp.methods.dither import dither_grad, dither_linear  # noqa: E402
from dgsamp.methods.patch import patch, patched_modules, unpatch  # noqa: E402
from dgsamp.methods.ssprop import (  # noqa: E402
    channel_scores,
    select_channels,
    ssprop_conv2d,
    ssprop_linear,
)

TARGETS = {
    "conv_bwd_keep0.5_resnet18_median": 1.5,
    "conv_bwd_keep0.2_resnet18_median": 2.5,
    "resnet18_step_keep0.2": 1.4,
    "dither_zero_fraction_min": 0.90,
    "dither_time_overhead_max": 0.15,
}

# (name, c_in, c_out, kernel, stride, hw_in) at 224 px input
RESNET18_CONVS = [
    ("conv1 7x7/2", 3, 64, 7, 2, 224),
    ("layer1 3x3", 64, 64, 3, 1, 56),
    ("layer2.0 3x3/2", 64, 128, 3, 2, 56),
    ("layer2 3x3", 128, 128, 3, 1, 28),
    ("layer2 down 1x1/2", 64, 128, 1, 2, 56),
    ("layer3.0 3x3/2", 128, 256, 3, 2, 28),
    ("layer3 3x3", 256, 256, 3, 1, 14),
    ("layer4.0 3x3/2", 256, 512, 3, 2, 14),
    ("layer4 3x3", 512, 512, 3, 1, 7),
]
RESNET50_CONVS = [
    ("layer1 1x1 in", 256, 64, 1, 1, 56),
    ("layer1 3x3", 64, 64, 3, 1, 56),
    ("layer1 1x1 out", 64, 256, 1, 1, 56),
    ("layer2 1x1 in", 512, 128, 1, 1, 28),
    ("layer2 3x3", 128, 128, 3, 1, 28),
    ("layer3 1x1 in", 1024, 256, 1, 1, 14),
    ("layer3 3x3", 256, 256, 3, 1, 14),
    ("layer3 1x1 out", 256, 1024, 1, 1, 14),
    ("layer4 3x3", 512, 512, 3, 1, 7),
]
VIT_S_LINEARS = [("qkv", 384, 1152), ("attn.proj", 384, 384), ("mlp.fc1", 384, 1536),
                 ("mlp.fc2", 1536, 384)]
STEP_MODELS = ["resnet18", "convnext_atto", "vit_tiny_patch16_224"]


# -- measurement helpers --------------------------------------------------------------------------
def _sparse_parts(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if t.layout == torch.sparse_coo:
        return (t._indices(), t._values())
    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        return (t.crow_indices(), t.col_indices(), t.values())
    return (t.ccol_indices(), t.row_indices(), t.values())  # csc / bsc


class _TensorRef:
    """weakref to a tensor with StorageWeakRef's ``expired()`` interface."""

    def __init__(self, t):
        self.ref = weakref.ref(t)

    def expired(self):
        return self.ref() is None


class LiveBytes(TorchDispatchMode):
    """Peak bytes of tensor storages created while active and still alive (CPU memory proxy)."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.cur = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            if t.layout == torch.strided:
                st = t.untyped_storage()
                key, ref, nbytes = st._cdata, StorageWeakRef(st), st.nbytes()
            else:  # sparse: its index/value tensors, alive as long as the sparse tensor is
                parts = _sparse_parts(t)
                key, ref = id(t), _TensorRef(t)
                nbytes = sum(p.numel() * p.element_size() for p in parts)
            if key not in self.live:
                self.live[key] = (ref, nbytes)
                self.cur += nbytes
        dead = [k for k, (ref, _) in self.live.items() if ref.expired()]
        for k in dead:
            self.cur -= self.live.pop(k)[1]
        self.peak = max(self.peak, self.cur)
        return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _peak_backward(run_fwd: Callable, device: str) -> int:
    """Peak extra memory (bytes) of one backward."""
    loss_or_pair = run_fwd()
    if device == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _backward(loss_or_pair)
        _sync(device)
        return int(torch.cuda.max_memory_allocated() - base)
    with LiveBytes() as lb:
        _backward(loss_or_pair)
    return int(lb.peak)


def _backward(pair) -> None:
    y, dy = pair
    if dy is None:
        y.backward()
    else:
        y.backward(dy)


def _flops_backward(run_fwd: Callable) -> int:
    pair = run_fwd()
    with FlopCounterMode(display=False) as fc:
        _backward(pair)
    return int(fc.get_total_flops())


def _interleaved(fns: dict[str, Callable], rounds: int, device: str, warmup: int = 1):
    """fns: name → callable returning (timed_seconds). Rotated order per round."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            t = fns[n]()
            if r >= warmup:
                times[n].append(t)
    return times


def _summarize(times: dict[str, list[float]], ref: str = "dense") -> dict[str, dict]:
    out = {}
    for n, ts in times.items():
        paired = [a / b for a, b in zip(times[ref], ts, strict=True) if b > 0]
        out[n] = {"median_ms": statistics.median(ts) * 1e3,
                  "speedup_vs_dense": statistics.median(paired) if paired else None,
                  "speedup_of_medians": statistics.median(times[ref]) / statistics.median(ts)}
    return out


# -- per-layer ------------------------------------------------------------------------------------
def _masked_conv(x, w, stride, pad, keep):
    y = F.conv2d(x, w, None, stride, pad)

    def hook(g):
        idx = select_channels(channel_scores(g, 1), keep)
        m = torch.zeros(g.shape[1], dtype=g.dtype, device=g.device)
        m[idx] = 1
        return g * m.view(1, -1, 1, 1)

    y.register_hook(hook)
    return y


def bench_conv_layer(spec, batch, rounds, device, dtype=torch.float32):
    name, cin, cout, k, s, hw = spec
    torch.manual_seed(0)
    x = torch.randn(batch, cin, hw, hw, device=device, dtype=dtype, requires_grad=cin > 3)
    w = torch.randn(cout, cin, k, k, device=device, dtype=dtype, requires_grad=True)
    pad = k // 2
    variants = {
        "dense": lambda: F.conv2d(x, w, None, s, pad),
        "ssprop0.5": lambda: ssprop_conv2d(x, w, None, s, pad, keep=0.5),
        "ssprop0.2": lambda: ssprop_conv2d(x, w, None, s, pad, keep=0.2),
        "masked0.2": lambda: _masked_conv(x, w, s, pad, 0.2),
        "dither": lambda: dither_grad(F.conv2d(x, w, None, s, pad), stats=stats),
    }
    stats = _Stats()
    return _bench_layer_variants(variants, x, w, rounds, device, stats,
                                 shape=f"B{batch} {cin}->{cout} k{k} s{s} {hw}x{hw}", name=name)


def bench_linear_layer(spec, batch, tokens, rounds, device, dtype=torch.float32):
    name, fin, fout = spec
    torch.manual_seed(0)
    x = torch.randn(batch, tokens, fin, device=device, dtype=dtype, requires_grad=True)
    w = torch.randn(fout, fin, device=device, dtype=dtype, requires_grad=True)
    stats = _Stats()
    variants = {
        "dense": lambda: F.linear(x, w),
        "ssprop0.5": lambda: ssprop_linear(x, w, keep=0.5),
        "ssprop0.2": lambda: ssprop_linear(x, w, keep=0.2),
        "dither": lambda: dither_grad(F.linear(x, w), stats=stats),
        "dither_csr": lambda: dither_linear(x, w, sparse_kernel=True, stats=stats),
    }
    return _bench_layer_variants(variants, x, w, rounds, device, stats,
                                 shape=f"B{batch}x{tokens} {fin}->{fout}", name=name)


class _Stats:
    _grad_nnz = None
    _grad_numel = None

    def density(self):
        return float(self._grad_nnz) / self._grad_numel if self._grad_numel else None


def _bench_layer_variants(variants, x, w, rounds, device, stats, shape, name):
    dys = {}

    def fwd(n):
        y = variants[n]()
        if n not in dys:
            g = torch.Generator(device="cpu").manual_seed(1)
            dys[n] = torch.randn(y.shape, generator=g, dtype=y.dtype).to(y.device)
        return y, dys[n]

    def timed(n):
        pair = fwd(n)
        _sync(device)
        t = time.perf_counter()
        _backward(pair)
        _sync(device)
        dt = time.perf_counter() - t
        x.grad = None
        w.grad = None
        return dt

    times = _interleaved({n: (lambda n=n: timed(n)) for n in variants}, rounds, device)
    res = _summarize(times)
    dense_flops = None
    for n in variants:
        res[n]["bwd_flops"] = _flops_backward(lambda n=n: fwd(n))
        x.grad = w.grad = None
        if n == "dense":
            dense_flops = res[n]["bwd_flops"]
        res[n]["peak_bwd_bytes"] = _peak_backward(lambda n=n: fwd(n), device)
        x.grad = w.grad = None
        if n.startswith("dither"):
            fwd(n)[0].backward(dys[n])
            res[n]["zero_fraction"] = 1 - stats.density()
            res[n]["effective_bwd_flops"] = dense_flops * stats.density()
            x.grad = w.grad = None
    for n in variants:
        res[n]["flops_ratio"] = res[n]["bwd_flops"] / dense_flops
    return {"layer": name, "shape": shape, "variants": res}


# -- whole train step -----------------------------------------------------------------------------
def _make_model(name: str, res: int, device: str):
    import timm

    kw = {"num_classes": 10}
    if name.startswith("vit"):
        kw["img_size"] = res
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **kw).to(device).train()


def bench_step(name, res, batch, rounds, device):
    variants = {"dense": None, "ssprop0.5": ("ssprop", {"keep": 0.5}),
                "ssprop0.2": ("ssprop", {"keep": 0.2}), "dither": ("dither", {"scale": 8.0})}
    models, opts = {}, {}
    for v, cfg in variants.items():
        m = _make_model(name, res, device)
        if cfg is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                patch(m, cfg[0], **cfg[1])
        models[v] = m
        opts[v] = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, res, res, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    bwd_times: dict[str, list[float]] = {v: [] for v in variants}

    def fwd(v):
        return F.cross_entropy(models[v](x), y), None

    def step(v):
        _sync(device)
        t0 = time.perf_counter()
        loss, _ = fwd(v)
        _sync(device)
        t1 = time.perf_counter()
        loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        opts[v].step()
        opts[v].zero_grad(set_to_none=True)
        _sync(device)
        t3 = time.perf_counter()
        bwd_times[v].append(t2 - t1)
        return t3 - t0

    step_times = _interleaved({v: (lambda v=v: step(v)) for v in variants}, rounds, device)
    for v in variants:  # drop the warm-up backward times
        bwd_times[v] = bwd_times[v][-rounds:]
    st = _summarize(step_times)
    bt = _summarize(bwd_times)
    out = {"model": name, "res": res, "batch": batch, "variants": {}}
    dense_bwd = None
    for v in variants:
        m = models[v]
        pair = fwd(v)
        with FlopCounterMode(display=False) as fc:
            _backward(pair)
        flops = int(fc.get_total_flops())
        opts[v].zero_grad(set_to_none=True)
        dense_bwd = flops if v == "dense" else dense_bwd
        peak = _peak_backward(lambda v=v: fwd(v), device)
        opts[v].zero_grad(set_to_none=True)
        row = {"step_median_ms": st[v]["median_ms"], "step_speedup": st[v]["speedup_vs_dense"],
               "bwd_median_ms": bt[v]["median_ms"], "bwd_speedup": bt[v]["speedup_vs_dense"],
               "bwd_flops": flops, "flops_ratio": flops / dense_bwd, "peak_bwd_bytes": peak,
               "patched_layers": len(patched_modules(m))}
        if v == "dither":
            mods = [mm for mm in patched_modules(m).values() if mm._grad_numel]
            nnz = sum(float(mm._grad_nnz) for mm in mods)
            numel = sum(mm._grad_numel for mm in mods)
            row["zero_fraction"] = 1 - nnz / numel
            row["step_overhead"] = 1.0 / st[v]["speedup_vs_dense"] - 1.0
        out["variants"][v] = row
        unpatch(m)
    return out


# -- report ---------------------------------------------------------------------------------------
def _fmt(v, nd=2):
    return "—" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    """Markdown table lines: header, separator, one line per row."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def summarize(result) -> dict:
    r18 = [r for r in result["layers"] if r["net"] == "resnet18"]
    s = {}
    checks = {}
    if r18:  # per-layer results (absent with --skip-layers)
        for k in ("0.5", "0.2"):
            s[f"conv_bwd_keep{k}_resnet18_median"] = statistics.median(
                r["variants"][f"ssprop{k}"]["speedup_vs_dense"] for r in r18)
            s[f"conv_bwd_keep{k}_resnet18_range"] = [
                min(r["variants"][f"ssprop{k}"]["speedup_vs_dense"] for r in r18),
                max(r["variants"][f"ssprop{k}"]["speedup_vs_dense"] for r in r18)]
        s["conv_bwd_masked0.2_resnet18_median"] = statistics.median(
            r["variants"]["masked0.2"]["speedup_vs_dense"] for r in r18)
        conv_layers = [r for r in result["layers"] if r["net"] != "vit_s"]
        s["dither_layer_zero_fraction_median"] = statistics.median(
            r["variants"]["dither"]["zero_fraction"] for r in result["layers"])
        s["dither_conv_bwd_overhead_median"] = statistics.median(
            1 / r["variants"]["dither"]["speedup_vs_dense"] - 1 for r in conv_layers)
    steps = result["steps"]
    r18s = [r for r in steps if r["model"] == "resnet18" and r["res"] == 224]
    if r18s:
        v = r18s[0]["variants"]
        s["resnet18_step_keep0.2"] = v["ssprop0.2"]["step_speedup"]
        s["resnet18_step_keep0.5"] = v["ssprop0.5"]["step_speedup"]
        s["resnet18_dither_step_overhead"] = v["dither"]["step_overhead"]
        s["resnet18_dither_zero_fraction"] = v["dither"]["zero_fraction"]
    if steps:
        s["dither_step_zero_fraction_min"] = min(
            r["variants"]["dither"]["zero_fraction"] for r in steps)
        s["dither_step_overhead_median"] = statistics.median(
            r["variants"]["dither"]["step_overhead"] for r in steps)
    for k in ("conv_bwd_keep0.5_resnet18_median", "conv_bwd_keep0.2_resnet18_median"):
        if k in s:
            checks[k] = s[k] >= TARGETS[k]
    if "resnet18_step_keep0.2" in s:
        checks["resnet18_step_keep0.2"] = s["resnet18_step_keep0.2"] >= TARGETS[
            "resnet18_step_keep0.2"]
        checks["dither_zeros_and_overhead(resnet18 step)"] = (
            s["resnet18_dither_zero_fraction"] >= TARGETS["dither_zero_fraction_min"]
            and s["resnet18_dither_step_overhead"] <= TARGETS["dither_time_overhead_max"])
    s["targets_met"] = checks
    return s


def write_markdown(result, path):
    meta, s = result["meta"], result["summary"]
    lines = ["# Sparse backward benchmark (ssProp, dither) vs dense autograd", "",
             f"- device: {meta['device_name']} ({meta['device']}), threads: {meta['threads']}, "
             f"torch {meta['torch']}, quick={meta['quick']}, rounds={meta['rounds']}",
             f"- time: median over interleaved rounds; speedup = median over rounds of "
             f"dense/variant (paired). Memory: {meta['memory_source']}.",
             f"- FLOPs: {meta['flop_source']}", ""]
    lines += ["## Targets", "", "| metric | measured | target | met |", "|---|---|---|---|"]
    tmap = {"conv_bwd_keep0.5_resnet18_median": ">= 1.5x",
            "conv_bwd_keep0.2_resnet18_median": ">= 2.5x", "resnet18_step_keep0.2": ">= 1.4x"}
    for k, t in tmap.items():
        if k in s:
            lines.append(f"| {k} | {_fmt(s[k])}x | {t} | {s['targets_met'].get(k)} |")
    if "resnet18_dither_zero_fraction" in s:
        lines.append(f"| resnet18 step dither zeros / time overhead | "
                     f"{100 * s['resnet18_dither_zero_fraction']:.1f}% / "
                     f"{100 * s['resnet18_dither_step_overhead']:+.1f}% | >= 90% / <= 15% | "
                     f"{s['targets_met'].get('dither_zeros_and_overhead(resnet18 step)')} |")
    if "conv_bwd_keep0.5_resnet18_range" in s:
        lines += ["", f"Other: ResNet-18 conv bwd speedup range keep 0.5 "
                  f"{_fmt(s['conv_bwd_keep0.5_resnet18_range'][0])}–"
                  f"{_fmt(s['conv_bwd_keep0.5_resnet18_range'][1])}x, keep 0.2 "
                  f"{_fmt(s['conv_bwd_keep0.2_resnet18_range'][0])}–"
                  f"{_fmt(s['conv_bwd_keep0.2_resnet18_range'][1])}x; masking dY at keep 0.2 "
                  f"(full kernels) {_fmt(s['conv_bwd_masked0.2_resnet18_median'])}x; dither "
                  f"layer zeros (Gaussian dY) {100 * s['dither_layer_zero_fraction_median']:.1f}%,"
                  f" dither conv bwd overhead median "
                  f"{100 * s['dither_conv_bwd_overhead_median']:+.1f}%."]
    if "dither_step_overhead_median" in s:
        lines += ["", f"Dither, whole steps: zeros >= "
                  f"{100 * s['dither_step_zero_fraction_min']:.1f}% on every model, time overhead "
                  f"median {100 * s['dither_step_overhead_median']:+.1f}% over the models and "
                  f"resolutions."]
    lines += [""]
    if result["layers"]:
        lines += ["## Per layer (backward)", ""] + _md_table(
            ["net", "layer", "shape", "variant", "bwd ms", "speedup", "FLOPs ratio", "peak MiB",
             "zeros"],
            [[r["net"], r["layer"], r["shape"], v, f"{d['median_ms']:.2f}",
              _fmt(d["speedup_vs_dense"]), f"{d['flops_ratio']:.3f}",
              f"{d['peak_bwd_bytes'] / 2**20:.1f}", _fmt(d.get("zero_fraction"), 3)]
             for r in result["layers"] for v, d in r["variants"].items()])
    if result["steps"]:
        lines += ["", "## Whole train step (forward + backward + SGD step)", ""] + _md_table(
            ["model", "res", "batch", "variant", "layers", "step ms", "step speedup", "bwd ms",
             "bwd speedup", "bwd FLOPs ratio", "peak bwd MiB", "dither zeros"],
            [[r["model"], r["res"], r["batch"], v, d["patched_layers"],
              f"{d['step_median_ms']:.1f}", _fmt(d["step_speedup"]), f"{d['bwd_median_ms']:.1f}",
              _fmt(d["bwd_speedup"]), f"{d['flops_ratio']:.3f}",
              f"{d['peak_bwd_bytes'] / 2**20:.1f}", _fmt(d.get("zero_fraction"), 3)]
             for r in result["steps"] for v, d in r["variants"].items()])
    lines += ["", "Dither runs dense kernels: its FLOPs ratio is 1; the effective count "
              "(dense × density) is in the JSON (`effective_bwd_flops`)."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds, fewer shapes, small batch")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1, see doc)")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--out", default="work_dirs/benchmarks/sparse",
                   help="output prefix: writes PREFIX.json and PREFIX.md")
    p.add_argument("--skip-steps", action="store_true", help="per-layer benchmarks only")
    p.add_argument("--skip-layers", action="store_true", help="whole-step benchmarks only")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda requested but CUDA is not available")
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    dev = args.device
    quick = args.quick
    rounds = args.rounds or (3 if quick else 7)
    lbatch = 4 if quick else 8
    if dev == "cuda":
        lbatch *= 8
    t_start = time.time()
    layers = []
    r50 = RESNET50_CONVS[1::2] if quick else RESNET50_CONVS
    nets = [] if args.skip_layers else [("resnet18", RESNET18_CONVS), ("resnet50", r50)]
    for net, specs in nets:
        for spec in specs:
            r = bench_conv_layer(spec, lbatch, rounds, dev)
            r["net"] = net
            layers.append(r)
            print(f"[{time.time() - t_start:6.1f}s] {net} {r['layer']}: " + ", ".join(
                f"{v} {d['speedup_vs_dense']:.2f}x" for v, d in r["variants"].items()),
                flush=True)
    for spec in [] if args.skip_layers else VIT_S_LINEARS:
        r = bench_linear_layer(spec, lbatch, 197, rounds, dev)
        r["net"] = "vit_s"
        layers.append(r)
        print(f"[{time.time() - t_start:6.1f}s] vit_s {r['layer']}: " + ", ".join(
            f"{v} {d['speedup_vs_dense']:.2f}x" for v, d in r["variants"].items()), flush=True)
    steps = []
    if not args.skip_steps:
        sbatch = {224: 2 if quick else 4, 32: 16 if quick else 32}
        if dev == "cuda":
            sbatch = {224: 64, 32: 256}
        srounds = max(2, rounds - 2) if quick else 5
        for name in STEP_MODELS:
            for res in (224, 32):
                r = bench_step(name, res, sbatch[res], srounds, dev)
                steps.append(r)
                print(f"[{time.time() - t_start:6.1f}s] step {name}@{res}: " + ", ".join(
                    f"{v} {d['step_speedup']:.2f}x" for v, d in r["variants"].items()),
                    flush=True)
    meta = {
        "device": dev,
        "device_name": (torch.cuda.get_device_name() if dev == "cuda"
                        else platform.processor() or platform.machine()),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "quick": quick, "rounds": rounds,
        "layer_batch": lbatch, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "wall_s": None,
        "memory_source": ("torch.cuda.max_memory_allocated during backward" if dev == "cuda"
                          else "peak live tensor-storage bytes created during backward "
                               "(TorchDispatchMode tracker; tracemalloc cannot see torch)"),
        "flop_source": "torch.utils.flop_counter.FlopCounterMode on one backward "
                       "(sliced shapes for ssProp; dense kernels for dither)",
    }
    result = {"meta": meta, "targets": TARGETS, "layers": layers, "steps": steps}
    result["summary"] = summarize(result)
    meta["wall_s"] = round(time.time() - t_start, 1)
    os.makedirs(osp.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    write_markdown(result, args.out + ".md")
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {args.out}.json and {args.out}.md in {meta['wall_s']} s")


if __name__ == "__main__":
    main()
