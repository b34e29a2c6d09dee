"""tools/benchmark_sparse.py's report on a steps-only result (``--skip-layers``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import benchmark_sparse as bench  # noqa: E402


def _variant(speedup, zeros=None):
    row = {"step_median_ms": 10 / speedup, "step_speedup": speedup, "bwd_median_ms": 5.0,
           "bwd_speedup": speedup, "bwd_flops": 1, "flops_ratio": 1.0, "peak_bwd_bytes": 2**20,
           "patched_layers": 3}
    if zeros is not None:
        row.update(zero_fraction=zeros, step_overhead=1 / speedup - 1)
    return row


def test_steps_only_summary_and_markdown(tmp_path):
    step = {"model": "resnet18", "res": 224, "batch": 4, "variants": {
        "dense": _variant(1.0), "ssprop0.5": _variant(1.2), "ssprop0.2": _variant(1.5),
        "dither": _variant(0.9, zeros=0.95)}}
    result = {"meta": {"device_name": "cpu", "device": "cpu", "threads": 1, "torch": "x",
                       "quick": False, "rounds": 5, "memory_source": "m", "flop_source": "f"},
              "layers": [], "steps": [step]}
    result["summary"] = s = bench.summarize(result)
    assert s["targets_met"] == {"resnet18_step_keep0.2": True,
                                "dither_zeros_and_overhead(resnet18 step)": True}
    assert abs(s["dither_step_overhead_median"] - (1 / 0.9 - 1)) < 1e-12
    out = tmp_path / "r.md"
    bench.write_markdown(result, out)
    text = out.read_text()
    assert "## Per layer" not in text
    assert "| resnet18 | 224 | 4 | dither | 3 | 11.1 | 0.90 |" in text
    assert "time overhead median +11.1%" in text


def test_layers_only_markdown_has_no_empty_step_table(tmp_path):
    layer = {"net": "resnet18", "layer": "l1", "shape": "B8", "variants": {
        v: {"median_ms": 10 / sp, "speedup_vs_dense": sp, "flops_ratio": 1 / sp,
            "peak_bwd_bytes": 2**20, **({"zero_fraction": 0.9} if v == "dither" else {})}
        for v, sp in (("dense", 1.0), ("ssprop0.5", 1.6), ("ssprop0.2", 2.6), ("masked0.2", 0.96),
                      ("dither", 0.9))}}
    result = {"meta": {"device_name": "cpu", "device": "cpu", "threads": 1, "torch": "x",
                       "quick": False, "rounds": 5, "memory_source": "m", "flop_source": "f"},
              "layers": [layer], "steps": []}
    result["summary"] = bench.summarize(result)
    out = tmp_path / "r.md"
    bench.write_markdown(result, out)
    text = out.read_text()
    assert "| resnet18 | l1 | B8 | ssprop0.2 | 3.85 | 2.60 |" in text
    assert "## Whole train step" not in text
