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
    assert s["targets_met"] == {"resnet18_step_keep0.2": False,  # 1.5 < 1.8 (issue 14)
                                "dither_step_speedup_min": False,  # 0.9 < 0.95
                                "ssprop_step_speedup_min": True,
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


def test_new_paths_are_reported_next_to_dense_and_the_old_path(tmp_path):
    """Depthwise layers: the patched layer (dense backward) beside the old sliced path; whole
    steps: the slowest sparse step, old sliced variant excluded."""
    dw = {"net": "convnext_atto", "layer": "dw", "shape": "B8", "variants": {
        v: {"median_ms": 10 / sp, "speedup_vs_dense": sp, "flops_ratio": 1.0,
            "peak_bwd_bytes": 0, **({"zero_fraction": 0.9} if v == "dither" else {})}
        for v, sp in (("dense", 1.0), ("ssprop0.5", 1.01), ("ssprop0.5_sliced", 0.8),
                      ("dither", 0.7))}}
    step = {"model": "convnext_atto", "res": 32, "batch": 4, "variants": {
        "dense": _variant(1.0), "ssprop0.5": _variant(1.02), "ssprop0.2": _variant(1.3),
        "ssprop0.5_sliced": _variant(0.9), "dither": _variant(0.96, zeros=0.93)}}
    result = {"meta": {"device_name": "cpu", "device": "cpu", "threads": 1, "torch": "x",
                       "quick": False, "rounds": 5, "memory_source": "m", "flop_source": "f"},
              "layers": [dw], "steps": [step]}
    result["summary"] = s = bench.summarize(result)
    assert s["depthwise_bwd_keep0.5_median"] == {"ssprop0.5": 1.01, "ssprop0.5_sliced": 0.8}
    assert s["ssprop_step_speedup_min"] == 1.02 and s["dither_step_speedup_min"] == 0.96
    out = tmp_path / "r.md"
    bench.write_markdown(result, out)
    text = out.read_text()
    assert "patched layer (slicing_pays) 1.01x, always sliced 0.80x" in text
    assert "ssProp (keep 0.5 / 0.2) 1.02x, dither 0.96x" in text
    assert "| convnext_atto | 32 | 4 | ssprop0.5_sliced | 3 | 11.1 | 0.90 |" in text


def test_profile_step_lists_what_ssprop_saves_and_adds(tmp_path, monkeypatch):
    """tools/profile_step.py on a small ResNet-18 step: the conv backward shrinks, ssProp's own
    ops (its autograd Function, the channel gathers) appear only in the variant."""
    import json

    import profile_step

    out = tmp_path / "prof"
    monkeypatch.setattr(sys, "argv", ["profile_step.py", "resnet18", "--res", "32", "--batch",
                                      "2", "--steps", "1", "--variant", "ssprop0.2",
                                      "--channels-last", "--out", str(out)])
    profile_step.main()
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["meta"]["channels_last"] is True
    ops = {r["op"]: r for r in result["ops"]}
    conv = ops["aten::convolution_backward"]
    assert conv["variant_ms"] < conv["dense_ms"]
    assert ops["aten::index_select"]["dense_ms"] == 0 < ops["aten::index_select"]["variant_ms"]
    assert "| op | dense ms/step | ssprop0.2 ms/step | difference |" in \
        out.with_suffix(".md").read_text()
    monkeypatch.setattr(sys, "argv", ["profile_step.py", "resnet18", "--variant", "sprop"])
    try:
        profile_step.main()
    except SystemExit as err:
        assert "--variant must be one of" in str(err)
    else:
        raise AssertionError("an unknown variant was accepted")
