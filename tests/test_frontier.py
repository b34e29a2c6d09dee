"""tools/frontier.py: the equal-cost interpolation, the compressed schedules, and a tiny study
end to end (runs, summaries, no rerun, report and plot)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import frontier  # noqa: E402

from dgsamp.evaluation.stats import MeanSE  # noqa: E402


def test_interpolation_by_hand():
    pts = [(100.0, 60.0), (200.0, 70.0), (400.0, 80.0)]
    # 250 lies a quarter of the way from 200 to 400: 70 + 0.25 * 10
    assert frontier.interpolate(250.0, pts) == (pytest.approx(72.5), False)
    assert frontier.interpolate(150.0, list(reversed(pts))) == (pytest.approx(65.0), False)
    assert frontier.interpolate(400.0, pts) == (80.0, False)  # an end point is inside
    assert frontier.interpolate(50.0, pts) == (60.0, True)  # never extrapolated, and flagged
    assert frontier.interpolate(500.0, pts) == (80.0, True)


def _summary(setting, seed, flops, acc):
    return dict(setting=setting, seed=seed, flops_train=dict(value=flops, source="test"),
                accuracy={frontier.METRIC: acc, "acc/train_domains": acc + 10},
                time_train_s=dict(value=1.0, source="test"),
                energy_train_j=dict(value=None, unavailable="no meter"))


def test_paired_delta_against_each_seeds_own_frontier():
    summaries = {
        "dense-50": {0: _summary("dense-50", 0, 50, 60.0), 1: _summary("dense-50", 1, 50, 62.0)},
        "dense": {0: _summary("dense", 0, 100, 70.0), 1: _summary("dense", 1, 100, 74.0)},
        # seed 0 at 75 FLOPs: dense there 65 -> +1; seed 1 at 60: 62 + 0.2 * 12 = 64.4 -> +1.6
        "gradsamp-every4": {0: _summary("gradsamp-every4", 0, 75, 66.0),
                            1: _summary("gradsamp-every4", 1, 60, 66.0)},
    }
    rows = {r["setting"]: r for r in frontier.frontier_rows(summaries)}
    delta = rows["gradsamp-every4"]["delta"]
    assert delta.n == 2 and delta.mean == pytest.approx(1.3)
    assert delta.se == pytest.approx(0.3)  # stdev(1.0, 1.6) / sqrt(2)
    assert rows["gradsamp-every4"]["verdict"].startswith("undecided")  # 2 seeds decide nothing
    assert rows["gradsamp-every4"]["flops_pct"] == pytest.approx(67.5)
    assert "unavailable: no meter" in rows["dense"]["energy_source"]
    assert frontier.verdict(MeanSE(-0.5, 0.4, 5)) == "on the frontier (|Δ| ≤ 2 SE)"
    assert frontier.verdict(MeanSE(-1.0, 0.4, 5)) == "below the frontier"
    assert frontier.verdict(MeanSE(1.0, None, 1)).startswith("undecided")
    assert frontier.verdict(MeanSE(3.0, 0.4, 2)).startswith("undecided")
    assert frontier.verdict(MeanSE(3.0, 0.4, 3)) == "above the frontier"


def test_effective_flops_place_dither_at_its_density_scaled_cost():
    """--flops effective: a dithered run is compared with dense at its effective FLOPs (dense
    runs count the same either way); a summary without the measure has no Δ."""
    summaries = {
        "dense-50": {s: _summary("dense-50", s, 50, 60.0 + s) for s in range(3)},
        "dense": {s: _summary("dense", s, 100, 70.0 + s) for s in range(3)},
        "dither": {s: _summary("dither", s, 100, 64.0 + s) for s in range(3)},
    }
    for runs in summaries.values():
        for s in runs.values():
            s["flops_train_effective"] = dict(s["flops_train"])
    for s in summaries["dither"].values():
        s["flops_train_effective"]["value"] = 60  # 60% of dense: dense there 62 + seed
    counted = {r["setting"]: r for r in frontier.frontier_rows(summaries)}["dither"]
    effective = {r["setting"]: r for r in frontier.frontier_rows(summaries, "effective")}["dither"]
    assert counted["delta"].mean == pytest.approx(-6.0) and counted["flops_pct"] == 100
    assert effective["delta"].mean == pytest.approx(2.0) and effective["flops_pct"] == 60
    assert effective["verdict"] == "above the frontier"  # SE 0: every seed +2
    del summaries["dither"][0]["flops_train_effective"]
    effective = {r["setting"]: r for r in frontier.frontier_rows(summaries, "effective")}["dither"]
    assert effective["delta"].n == 2


def test_training_domain_validation_picks_the_setting_and_ignores_the_test_domain():
    summaries = {"dense-50": {0: _summary("dense-50", 0, 50, 60.0)},
                 "dense": {0: _summary("dense", 0, 100, 70.0)},
                 "dither": {0: _summary("dither", 0, 100, 80.0)},
                 "dither-s2": {0: _summary("dither-s2", 0, 100, 50.0)}}
    # dither-s2 wins on the training domains although its held-out accuracy is lower
    summaries["dither-s2"][0]["accuracy"]["acc/train_domains"] = 95.0
    chosen = frontier.select_by_training_domains(frontier.frontier_rows(summaries))
    assert [(family, row["setting"], among) for family, row, among in chosen] == [
        ("dither", "dither-s2", ["dither", "dither-s2"])]


def test_schedules_are_compressed_with_their_milestones():
    config = str(ROOT / "configs" / "dg" / "erm_styled_glyphs.py")
    assert frontier.scaled_schedule(config, 1.0)[0] == 8
    epochs, scheds = frontier.scaled_schedule(config, 0.5)
    assert epochs == 4 and scheds[0]["milestones"] == [3]  # 6 of 8 -> 3 of 4
    epochs, scheds = frontier.scaled_schedule(config, 0.25)
    assert epochs == 2 and scheds[0]["milestones"] == [1]  # still a last epoch at low LR
    vit = str(ROOT / "configs" / "dg" / "erm_styled_glyphs_vit.py")
    epochs, (warmup, steps) = frontier.scaled_schedule(vit, 0.5)  # warmup 2 of 16 epochs
    assert epochs == 8 and (warmup["begin"], warmup["end"]) == (0, 1)
    assert steps["milestones"] == [6]


def test_bad_backbone_is_refused():
    with pytest.raises(SystemExit, match="unknown 'convnext'"):
        frontier.parse_backbones(["convnext"])
    with pytest.raises(SystemExit, match="does not exist"):
        frontier.parse_backbones(["x=/nonexistent/config.py"])


TINY = """_base_ = [{base!r}]
_data = dict(images_per_domain=24, num_classes=4, image_size=16)
train_dataloader = dict(batch_size=16, dataset=_data)
val_dataloader = dict(dataset=_data)
test_dataloader = dict(dataset=_data)
model = dict(num_classes=4)
train_cfg = dict(max_epochs=4, val_interval=4)
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[3], gamma=0.1)]
"""


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("DGSAMP_DATA_CACHE", str(tmp_path / "cache"))
    cfg = tmp_path / "tiny.py"
    cfg.write_text(TINY.format(base=str(ROOT / "configs" / "dg" / "erm_styled_glyphs.py")))
    results = tmp_path / "docs" / "frontier"  # reports go to --report-dir
    argv = ["--backbones", f"tiny={cfg}", "--settings", "dense-50", "dense", "gradsamp-every4",
            "--seeds", "0", "--work-root", str(tmp_path / "work"), "--results-dir", str(results),
            "--report-dir", str(tmp_path / "docs")]
    frontier.main(argv)
    files = sorted(p.name for p in (results / "tiny" / "sketch").iterdir())
    assert files == ["dense-50_s0.json", "dense_s0.json", "gradsamp-every4_s0.json"]
    s = json.loads((results / "tiny" / "sketch" / "gradsamp-every4_s0.json").read_text())
    assert s["methods"] == ["gradsamp-every4"] and s["epochs"] == 4
    assert s["data_version"] == frontier.FORMAT_VERSION
    assert s["epochs_trained"] == {"trained": 3, "skipped": 1}  # epoch 2 of 0..3 sampled
    assert set(s["accuracy"]) >= {"acc/photo", "acc/sketch", frontier.METRIC}
    dense = json.loads((results / "tiny" / "sketch" / "dense_s0.json").read_text())
    half = json.loads((results / "tiny" / "sketch" / "dense-50_s0.json").read_text())
    assert half["epochs"] == 2
    assert half["flops_train"]["value"] == pytest.approx(dense["flops_train"]["value"] / 2)
    table = (tmp_path / "docs" / "frontier_tiny.md").read_text()
    assert "| gradsamp-every4 | 1 |" in table and "(n=1)" in table
    assert (tmp_path / "docs" / "frontier_tiny.png").stat().st_size > 10_000
    # a finished point is never run again: nothing left to do, summaries untouched
    before = {p: p.stat().st_mtime_ns for p in (results / "tiny" / "sketch").iterdir()}
    frontier.main(argv)
    assert {p: p.stat().st_mtime_ns for p in (results / "tiny" / "sketch").iterdir()} == before
