"""dgsamp.cost.ledger / rows without mmengine: row arithmetic, totals, checkpoint state, merge."""

from __future__ import annotations

import io

import pytest
import torch

from dgsamp.cost.flops import StepFlops
from dgsamp.cost.ledger import CostLedger, Row, Source
from dgsamp.cost.rows import RowContext, RowDraft, StepRecord

METERS = {"cpu_estimate": dict(name="cpu_estimate", available=True, source="estimate (x)",
                               unavailable=None),
          "gpu": dict(name="gpu", available=False, source=None, unavailable="no CUDA device")}


def _ctx(world: int = 1) -> RowContext:
    return RowContext(world, 100, "estimate (k ops per parameter)", 7, "estimate (sampling)",
                      False, {"cpu_estimate": Source("estimate (x)"),
                              "gpu": Source(unavailable="no CUDA device")},
                      lambda e: (e.get("cpu_estimate"), "sum of cpu_estimate"))


def _step(step_s=1.0, counted=False, phases=None, samples=4):
    flops = StepFlops(forward=10, backward=20, backward_effective=15.0, optimizer=0,
                      samples=samples) if counted else None
    return StepRecord(step_s=step_s, data_s=0.5, samples=samples, optimizer_steps=1,
                      flops=flops, keep=0.5 if counted else None, phases=phases)


def test_row_fills_train_sums_and_keeps_unknowns_unknown():
    r = Row(kind="trained", index=1, flops=dict(forward=1, backward=2, backward_effective=1.5,
                                                optimizer=3, sampling=0))
    assert r.flops["train"] == 6 and r.flops["train_effective"] == 5.5
    r = Row(kind="trained", index=1, flops=dict(forward=None, backward=2, backward_effective=2,
                                                optimizer=3, sampling=0))
    assert r.flops["train"] is None
    with pytest.raises(ValueError, match="kind"):
        Row(kind="dense", index=1)


def test_draft_scales_counted_steps_by_samples_and_splits_time():
    d = RowDraft(index=1, iter_start=0)
    d.add_step(_step(2.0, counted=True))          # counted: 0.5 s over the median plain step
    for _ in range(4):
        d.add_step(_step(1.5, phases=dict(forward=0.5, backward=0.75, optimizer=0.15)))
    d.add_val(1.0, {"cpu_estimate": 2.0, "gpu": None})
    row = d.finish(_ctx(world=2), iter_end=5, seconds=20.0,
                   energy={"cpu_estimate": 12.0, "gpu": None})
    # 1 of 5 steps counted, 4 samples each: x5 by samples, x2 ranks
    assert row.flops["forward"] == 10 * 5 * 2 and row.flops["backward"] == 20 * 5 * 2
    assert row.flops["optimizer"] == 100 * 5 * 2 and row.flops["sampling"] == 0
    assert row.flops["train"] == 100 + 200 + 1000
    assert str(row.sources["flops"]).endswith("x2 ranks, 1 of 5 steps counted")
    assert row.sources["flops"].method.startswith("FlopCounterMode")
    assert row.samples == 40 and row.steps == 5 and row.kind == "trained"
    t = row.time_s
    assert t["epoch"] == 19.0 and t["val"] == 1.0 and t["data"] == 2.5
    assert t["measuring_overhead"] == pytest.approx(0.5)
    assert t["forward"] == pytest.approx(0.5 / 1.5 * 7.5)  # step total 4 x 1.5 + 1 x median
    assert sum(t[k] for k in ("data", "forward", "backward", "optimizer", "measuring_overhead",
                              "other")) == pytest.approx(t["epoch"])
    assert row.energy_j == {"cpu_estimate": 10.0, "gpu": None, "total": 10.0}
    assert str(row.sources["energy_j.gpu"]) == "unavailable: no CUDA device"
    assert row.sparsity["ssprop_keep_mean"] == 0.5 and row.counted_steps == 1


def test_skipped_draft_counts_sampling_only():
    row = RowDraft(index=3, iter_start=10).finish(_ctx(world=2), 10, 0.1, {"cpu_estimate": 0.2})
    assert row.kind == "skipped" and row.steps == 0
    assert row.flops == dict(forward=0, backward=0, backward_effective=0, optimizer=0,
                             sampling=14, train=14, train_effective=14)
    assert str(row.sources["flops.sampling"]) == "estimate (sampling)"


def _ledger(n_rows=2) -> CostLedger:
    led = CostLedger(energy_meters=METERS, notes={"energy_total_source": "sum of cpu_estimate"})
    led.begin_segment()
    for i in range(n_rows):
        d = RowDraft(index=i + 1, iter_start=5 * i)
        for k in range(5):
            d.add_step(_step(counted=k < 2))
        led.add_row(d.finish(_ctx(), 5 * (i + 1), 10.0, {"cpu_estimate": 3.0}))
    led.current.update(end_epoch=n_rows, end_iter=5 * n_rows, run_s=25.0, train_s=21.0,
                       val_s=1.0, energy_j={"cpu_estimate": 9.0, "total": 9.0},
                       energy_train_j={"cpu_estimate": 7.0, "total": 7.0})
    return led


def test_totals_sum_rows_and_name_methods_not_details():
    t = _ledger().totals()
    assert t["flops"]["forward"]["value"] == 2 * 10 * 5 / 2 * 2  # 2 counted of 5, per row
    assert t["flops"]["forward"]["source"] == (
        "sum over epochs of: FlopCounterMode (torch.utils.flop_counter), scaled by samples")
    assert "steps" not in t["flops"]["optimizer"]["source"]  # the per-row '5 steps' stays there
    assert t["time_s"]["train"] == dict(value=21.0, source="perf_counter, before_train to "
                                        "after_train")
    assert t["energy_train_j"]["cpu_estimate"]["value"] == 7.0
    assert t["energy_train_j"]["gpu"] == dict(value=None, source=None,
                                              unavailable="no CUDA device")
    assert t["epochs"] == dict(trained=2, skipped=0) and t["iterations"] == 10
    assert "co2e_g" not in t


def test_a_row_without_a_figure_makes_its_total_unavailable():
    led = _ledger()
    led.rows[0].flops["forward"] = None
    assert led.totals()["flops"]["forward"]["value"] is None
    assert led.totals()["flops"]["forward"]["unavailable"]


def test_state_dict_is_plain_and_resumes_before_the_new_segment():
    old = _ledger()
    buf = io.BytesIO()
    torch.save({"cost": old.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["cost"]  # a checkpoint loads it as is
    new = _ledger(n_rows=1)
    new.rows[0].index, new.segments[0].start_epoch = 3, 2
    new.load_state_dict(state)
    assert [r.index for r in new.rows] == [1, 2, 3]
    assert [r.segment for r in new.rows] == [0, 0, 1]
    assert new.rows[0].sources["flops"] == old.rows[0].sources["flops"]
    j = new.to_json(complete=True)
    assert j["run"]["resumed"] is True and len(j["run"]["segments"]) == 2
    assert j["totals"]["time_s"]["train"]["value"] == 42.0
    assert "2 segments (resumed run)" in j["totals"]["time_s"]["train"]["source"]
    assert j["totals"]["flops"]["forward"]["value"] == 3 * 10 * 5 / 2 * 2
    with pytest.raises(ValueError, match="version"):
        CostLedger().load_state_dict(dict(state, version=99))


def test_unrecorded_part_makes_whole_run_figures_unavailable():
    led = CostLedger(energy_meters=METERS)
    led.add_unrecorded(0, 0, 2, 10, "resumed from a checkpoint saved without cost ledger state")
    led.begin_segment(2, 10)
    led.add_row(RowDraft(index=3, iter_start=10).finish(_ctx(), 10, 1.0, {}))
    t = led.to_json(complete=True)["totals"]
    assert "epochs 0-2" in t["unavailable"] and "without cost ledger state" in t["unavailable"]
    assert t["flops"]["train"]["value"] is None and t["time_s"]["train"]["value"] is None
    assert t["epochs"]["trained"] is None


def test_merge_tags_rows_and_sums_segments():
    a, b = _ledger(), _ledger(n_rows=1)
    m = CostLedger.merge([a, b], labels=[{"client": 0}, {"client": 1}])
    assert [r.labels for r in m.rows] == [{"client": 0}] * 2 + [{"client": 1}]
    assert [r.segment for r in m.rows] == [0, 0, 1]
    assert m.totals()["flops"]["forward"]["value"] == 3 * 10 * 5 / 2 * 2
    assert m.totals()["energy_j"]["cpu_estimate"]["value"] == 18.0
    assert a.rows[0].labels == {}  # the inputs are left as they were
    assert m.to_json(True)["epochs"][2]["labels"] == {"client": 1}
    assert "2 segments (merged ledgers)" in m.totals()["time_s"]["train"]["source"]
    fl = CostLedger.merge([a, b], segment_kind="client rounds")
    assert "2 segments (client rounds)" in fl.totals()["time_s"]["train"]["source"]


def test_co2e_is_derived_from_the_energy_total():
    led = _ledger()
    led.settings["grid_gco2_per_kwh"] = 400.0
    c = led.totals()["co2e_g"]
    assert c["train"]["value"] == pytest.approx(7.0 / 3.6e6 * 400.0)
    assert c["train"]["source"].startswith("derived: energy_train_j.total (sum of cpu_estimate)")
