"""tools/benchmark_step_phases.py end to end on a tiny step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

import benchmark_step_phases as phases  # noqa: E402


def test_phases_of_every_mode_are_written(tmp_path):
    out = tmp_path / "phases"
    result = phases.main(["--res", "32", "--batch", "2", "--reps", "1", "--out", str(out)])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["modes"].keys() == set(phases.MODES)
    for mode, row in result["modes"].items():
        assert set(row) == {"dense", "ssprop0.2", "step_ratio"}
        for model in ("dense", "ssprop0.2"):
            assert set(row[model]) == {"forward_ms", "backward_ms", "optimizer_ms"}
            assert row[model]["backward_ms"] > 0
        assert row["step_ratio"] > 0
        if mode == "accumulate":  # nothing runs after the backward
            assert row["dense"]["optimizer_ms"] < 1.0
