"""dgsamp.cost and CostHook: FLOP counts against hand counts, cost.json schema, energy through
Zeus (its CPU-only behaviour here, and a fake meter), resumed runs."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import sys
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dgsamp.cost.energy import (
    ESTIMATE_SOURCE,
    CpuTimeEstimate,
    EnergyMeters,
    MeterInfo,
    sum_over_ranks,
)
from dgsamp.cost.flops import StepFlopCounter, count_step_flops
from dgsamp.cost.timing import scale_phases

B, H, W = 2, 8, 8


def small_net() -> nn.Sequential:
    # conv(1->4, 3x3, pad 1) 8x8 -> conv(4->8, 3x3, stride 2, pad 1) 4x4 -> linear(128->10)
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


# Hand counts: a multiply-add is 2 FLOPs; conv = 2 * B * C_out * H' * W' * C_in * k * k.
CONV1 = 2 * B * 4 * 8 * 8 * 1 * 9        # 4608
CONV2 = 2 * B * 8 * 4 * 4 * 4 * 9        # 18432
LIN = 2 * B * 128 * 10                   # 5120
FORWARD = CONV1 + CONV2 + LIN
# Backward: weight gradient (same count as forward) for every layer, input gradient (again the
# same) for every layer but the first (its input needs no gradient).
BACKWARD = CONV1 + 2 * CONV2 + 2 * LIN


def test_dense_forward_backward_match_hand_counts():
    r = count_step_flops(small_net(), torch.randn(B, 1, H, W))
    assert r.forward == FORWARD
    assert r.backward == BACKWARD
    assert r.backward_effective == BACKWARD
    assert r.samples == B
    assert r.modules_backward["Sequential.0"] == CONV1
    assert r.modules_backward["Sequential.2"] == 2 * CONV2
    assert r.modules_backward["Sequential.5"] == 2 * LIN


def test_optimizer_step_is_counted_apart():
    net = small_net()
    r = count_step_flops(net, torch.randn(B, 1, H, W),
                         optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    assert (r.forward, r.backward) == (FORWARD, BACKWARD)  # the step leaked into neither


def test_effective_backward_scales_dithered_modules_by_grad_density():
    net = small_net()
    net[2].grad_density = 0.25  # as dgsamp.methods.patch exposes it on dithered layers
    r = count_step_flops(net, torch.randn(B, 1, H, W))
    assert r.backward == BACKWARD  # the dense count stays
    assert r.backward_effective == pytest.approx(BACKWARD - 2 * CONV2 * 0.75)
    assert r.densities == {"Sequential.2": 0.25}


HAS_SSPROP = importlib.util.find_spec("dgsamp.methods.ssprop") is not None


@pytest.mark.skipif(not HAS_SSPROP, reason="dgsamp.methods.ssprop not written yet")
def test_ssprop_backward_counts_only_kept_channels():
    from dgsamp.methods.ssprop import SsPropConv2d, SsPropLinear, num_kept

    net = small_net()
    keep = 0.5
    for i, cls in ((0, SsPropConv2d), (2, SsPropConv2d), (5, SsPropLinear)):
        m = net[i]
        m.__class__ = cls
        m._sparse_init(keep=keep)
    k1, k2, kl = num_kept(keep, 4), num_kept(keep, 8), num_kept(keep, 10)
    r = count_step_flops(net, torch.randn(B, 1, H, W))
    assert r.forward == FORWARD  # forward unchanged
    # each layer's weight and input gradients run on k of C_out channels
    expected = CONV1 * k1 // 4 + 2 * CONV2 * k2 // 8 + 2 * LIN * kl // 10
    assert r.backward == expected
    assert r.backward < BACKWARD


def test_step_counter_attributes_only_inside_its_contexts():
    net = small_net()
    c = StepFlopCounter(net)
    with c.step():
        out = net(torch.randn(B, 1, H, W)).sum()
        out.backward()  # not inside c.backward(): counted as forward, as documented
    assert c.result.backward == 0 and c.result.forward == FORWARD + BACKWARD


def test_scale_phases_adds_up_to_step_total():
    ph = scale_phases([dict(step=1.0, forward=0.25, backward=0.5, optimizer=0.1)], 10.0, 10)
    assert ph["forward"] == pytest.approx(2.5) and ph["backward"] == pytest.approx(5.0)
    assert ph["other"] == pytest.approx(1.5)
    assert scale_phases([], 10.0, 10)["forward"] is None  # nothing sampled: unknown, not zero


# ------------------------------------------------------------------ meters
def test_zeus_cpu_only_machine_gives_unavailable_not_zero():
    """This machine: no GPU, no readable RAPL. Zeus finds no meter; the reasons are Zeus's."""
    m = EnergyMeters(watts_per_core=7.0)
    d, e = m.describe(), m.read()
    assert e["cpu_estimate"] > 0 and d["cpu_estimate"]["source"] == ESTIMATE_SOURCE
    if not torch.cuda.is_available():
        assert d["gpu"] == dict(name="gpu", available=False, source=None,
                                unavailable="no CUDA device")
        assert e["gpu"] is None
    rapl = [f for f in glob.glob("/sys/class/powercap/intel-rapl:*/energy_uj")
            if os.access(f, os.R_OK)]
    assert d["cpu_rapl"]["available"] is bool(rapl)
    if not rapl:  # as here: Zeus says why, and nothing reads as 0
        assert d["cpu_rapl"]["source"] is None and "zeus" in d["cpu_rapl"]["unavailable"]
        assert e["cpu_rapl"] is None and e["dram_rapl"] is None
        assert not d["dram_rapl"]["available"]
    if not rapl and not torch.cuda.is_available():
        assert m.monitor is None
        assert m.total(e) == (e["cpu_estimate"], "sum of cpu_estimate")


def test_zeus_missing_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "zeus.device", None)  # import zeus.device -> ImportError
    m = EnergyMeters()
    assert all("zeus not importable" in m.info[k].reason
               for k in ("gpu", "cpu_rapl", "dram_rapl"))
    assert m.read()["cpu_rapl"] is None


class FakeMonitor:
    """A ZeusMonitor stand-in: each window reports fixed joules per GPU, package and DRAM."""

    def __init__(self):
        self.gpu_indices, self.cpu_indices = [0], [0, 1]
        self.per_window = (5.0, 3.0, 1.0)
        self.open: set[str] = set()

    def begin_window(self, key, sync_execution=True):
        assert key not in self.open
        self.open.add(key)

    def end_window(self, key, sync_execution=True):
        self.open.remove(key)
        g, c, d = self.per_window
        return SimpleNamespace(gpu_energy={0: g}, cpu_energy={0: c / 2, 1: c / 2},
                               dram_energy={0: d})


def _fake_zeus(*_) -> tuple[FakeMonitor, dict]:
    return FakeMonitor(), {
        "gpu": MeterInfo("gpu", True, "zeus ZeusMonitor: fake GPU (GPU 0)"),
        "cpu_rapl": MeterInfo("cpu_rapl", True, "zeus ZeusMonitor: RAPL package (fake)"),
        "dram_rapl": MeterInfo("dram_rapl", True, "zeus ZeusMonitor: RAPL DRAM (fake)")}


def _fake_meters() -> EnergyMeters:
    return EnergyMeters(zeus=_fake_zeus(), gpu_index=0)


def test_fake_meter_laps_add_up_and_total_uses_rapl_not_the_estimate():
    m = _fake_meters()
    a, b = m.read(), m.read()  # every read is one lap: 5 J GPU, 3 J CPU, 1 J DRAM
    assert (a["gpu"], a["cpu_rapl"], a["dram_rapl"]) == (5.0, 3.0, 1.0)
    assert (b["gpu"], b["cpu_rapl"], b["dram_rapl"]) == (10.0, 6.0, 2.0)
    assert m.total(m.delta(a, b)) == (9.0, "sum of gpu + cpu_rapl + dram_rapl")
    assert m.monitor.open == {"dgsamp.cost"}  # the next lap is running


def test_failing_meter_becomes_unavailable_not_zero():
    m = _fake_meters()
    m.monitor.end_window = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("NVML gone"))
    e = m.read()
    assert e["gpu"] is None and "NVML gone" in m.info["gpu"].reason
    assert m.total(e)[1] == "sum of cpu_estimate (GPU energy unavailable: partial)"


def test_sum_over_ranks():
    r0 = {"gpu": 2.0, "cpu_rapl": 4.0, "cpu_estimate": 1.0}
    r1 = {"gpu": 3.0, "cpu_estimate": 1.5}  # cpu_rapl: the socket is rank 0's to read
    assert sum_over_ranks([r0, r1]) == {"gpu": 5.0, "cpu_rapl": 4.0, "cpu_estimate": 2.5}
    assert sum_over_ranks([r0, {"gpu": None}])["gpu"] is None
    m = EnergyMeters(meter_cpu=False, zeus=None)
    assert "cpu_rapl" not in m.read() and m.info["cpu_rapl"].elsewhere


def test_cpu_estimate_is_labelled():
    m = CpuTimeEstimate(watts_per_core=10.0)
    a = m.read()
    sum(i * i for i in range(200000))
    assert m.read() > a and m.info().describe()["source"] == ESTIMATE_SOURCE == m.source


# ------------------------------------------------------------------ CostHook on a tiny runner
mmengine = pytest.importorskip("mmengine")


def _toy_runner(work_dir, hooks, max_epochs=2, **cfg):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch.utils.data import Dataset

    import dgsamp.engine.cost_hook  # noqa: F401  (registers CostHook)

    class ToyNet(BaseModel):
        def __init__(self):
            super().__init__()
            self.net = small_net()

        def forward(self, inputs, labels=None, mode="tensor"):
            logits = self.net(inputs)
            if mode == "loss":
                return dict(loss=nn.functional.cross_entropy(logits, labels))
            if mode == "predict":
                return [dict(pred=int(p), gt=int(t)) for p, t in zip(logits.argmax(1), labels,
                                                                       strict=True)]
            return logits

    class ToySet(Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return dict(inputs=torch.randn(1, H, W, generator=g), labels=i % 10)

    from mmengine.evaluator import BaseMetric

    class ToyAcc(BaseMetric):
        def process(self, data_batch, data_samples):
            self.results += [s["pred"] == s["gt"] for s in data_samples]

        def compute_metrics(self, results):
            return {"acc/toy": 100.0 * sum(results) / len(results)}

    loader = dict(dataset=ToySet(), batch_size=B * 2, num_workers=0,
                  sampler=dict(type="DefaultSampler", shuffle=False),
                  collate_fn=dict(type="default_collate"))
    return Runner(
        model=ToyNet(), work_dir=str(work_dir), train_dataloader=loader,
        val_dataloader=loader, val_evaluator=[ToyAcc()], val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01)),
        train_cfg=cfg.pop("train_cfg", dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)),
        custom_hooks=hooks, default_hooks=cfg.pop("default_hooks", dict(checkpoint=None)), **cfg)


def test_cost_json_schema(tmp_path):
    from dgsamp.engine.cost_hook import CostHook

    runner = _toy_runner(tmp_path, [dict(type="CostHook")])
    runner.train()
    data = json.loads((tmp_path / "cost.json").read_text())
    assert data["schema"] == "dgsamp.cost/1" and data["run"]["complete"] is True
    assert data["run"]["loop"] == "epoch"
    assert {"cpu_model", "cpu_cores", "gpu", "torch"} <= set(data["machine"])
    assert data["methods"] == [] or isinstance(data["methods"], list)
    assert data["settings"]["flop_iters"] == 2
    t = data["totals"]
    for group, keys in (("flops", ("forward", "backward", "backward_effective", "optimizer",
                                   "sampling", "train", "train_effective")),
                        ("time_s", ("run", "train", "data", "forward", "backward", "optimizer",
                                    "other", "val")),
                        ("energy_j", ("gpu", "cpu_rapl", "dram_rapl", "cpu_estimate", "total"))):
        for k in keys:
            m = t[group][k]
            assert set(m) >= {"value", "source"}, (group, k)
            if m["value"] is None:
                assert m["unavailable"], (group, k)
            else:
                assert isinstance(m["value"], (int, float)) and m["source"], (group, k)
    # 20 samples, batch 4: 5 steps per epoch, each of FORWARD per 2 samples
    assert t["iterations"] == 10 and t["samples"] == 40
    assert t["flops"]["forward"]["value"] == pytest.approx(FORWARD * 20)
    assert t["flops"]["backward"]["value"] == pytest.approx(BACKWARD * 20)
    assert t["flops"]["optimizer"]["value"] > 0 and "estimate" in t["flops"]["optimizer"]["source"]
    assert t["epochs"] == dict(trained=2, skipped=0)
    assert t["energy_j"]["cpu_estimate"]["source"].startswith(ESTIMATE_SOURCE)
    if not torch.cuda.is_available():
        assert t["energy_j"]["gpu"] == dict(value=None, source=None,
                                                 unavailable="no CUDA device")
    assert len(data["epochs"]) == 2
    row = data["epochs"][0]
    assert row["epoch"] == 1 and row["kind"] == "trained" and row["iterations"] == 5
    assert {"forward", "backward", "optimizer", "data", "epoch", "other", "val"} <= set(
        row["time_s"])
    assert all(isinstance(v, (int, float)) for v in row["time_s"].values())
    assert "flops" in row["sources"] and "energy_j.cpu_estimate" in row["sources"]
    assert 0 <= data["overhead"]["fraction_of_run"]["value"] < 1
    assert data["metrics"]["val"]["acc/toy"] >= 0
    # the wrappers are gone after training
    assert "train_step" not in vars(runner.model)
    assert "backward" not in vars(runner.optim_wrapper)
    assert isinstance(CostHook(), CostHook)


def test_absent_meters_in_cost_json(tmp_path, monkeypatch):
    """Without Zeus no meter: energy is unavailable for them (None + reason), the estimate
    labelled and used for the total."""
    monkeypatch.setitem(sys.modules, "zeus.device", None)  # import zeus.device -> ImportError
    runner = _toy_runner(tmp_path / "w", [dict(type="CostHook")], max_epochs=1)
    runner.train()
    e = json.loads((tmp_path / "w" / "cost.json").read_text())["totals"]["energy_j"]
    for k in ("gpu", "cpu_rapl", "dram_rapl"):
        assert e[k]["value"] is None and "zeus not importable" in e[k]["unavailable"]
    assert "cpu_estimate" in e["total"]["source"] and e["total"]["value"] > 0


def test_fake_meter_through_the_hook_and_co2(tmp_path, monkeypatch):
    """A metered machine (fake Zeus monitor): rows and totals hold the laps' joules, the total
    is GPU + RAPL CPU + DRAM (not the estimate), CO2e is derived from it."""
    from dgsamp.cost import energy

    monkeypatch.setattr(energy, "_zeus_monitor", _fake_zeus)
    runner = _toy_runner(tmp_path, [dict(type="CostHook", grid_gco2_per_kwh=400)], max_epochs=2)
    runner.train()
    data = json.loads((tmp_path / "cost.json").read_text())
    t = data["totals"]
    reads = t["energy_j"]["gpu"]["value"] / 5.0  # laps between the first and the last read
    assert reads == int(reads) and reads >= 4  # rows and validations are lap boundaries
    assert t["energy_j"]["cpu_rapl"]["value"] == 3.0 * reads
    assert t["energy_j"]["total"]["value"] == 9.0 * reads
    assert t["energy_j"]["total"]["source"] == "sum of gpu + cpu_rapl + dram_rapl"
    assert t["energy_j"]["gpu"]["source"].startswith("zeus ZeusMonitor: fake GPU")
    for row in data["epochs"]:
        assert row["energy_j"]["gpu"] > 0 and row["energy_j"]["total"] == pytest.approx(
            row["energy_j"]["gpu"] + row["energy_j"]["cpu_rapl"] + row["energy_j"]["dram_rapl"])
    co2 = t["co2e_g"]["train"]
    assert co2["value"] == pytest.approx(t["energy_train_j"]["total"]["value"] / 3.6e6 * 400)
    assert co2["source"].startswith("derived:")
    from dgsamp.engine.cost_hook import CostHook
    with pytest.raises(ValueError, match="gCO2/kWh"):
        CostHook(grid_gco2_per_kwh=-1)


def test_skipped_epoch_counts_only_sampling(tmp_path):
    """An epoch in which no step ran (as GradSamp skips it) is a 'skipped' row."""
    from mmengine.hooks import Hook

    class SkipSecond(Hook):
        priority = "VERY_HIGH"

        def before_train_epoch(self, runner):
            if runner.epoch == 1:
                runner.train_loop.dataloader_backup = runner.train_loop.dataloader
                runner.train_loop.dataloader = []
            elif hasattr(runner.train_loop, "dataloader_backup"):
                runner.train_loop.dataloader = runner.train_loop.dataloader_backup

    runner = _toy_runner(tmp_path, [dict(type="CostHook")], max_epochs=3)
    runner.register_hook(SkipSecond(), priority="HIGHEST")
    runner.train()
    data = json.loads((tmp_path / "cost.json").read_text())
    rows = data["epochs"]
    assert [r["kind"] for r in rows] == ["trained", "skipped", "trained"]
    skipped = rows[1]
    n_params = sum(p.numel() for p in runner.model.parameters())
    assert skipped["flops"]["forward"] == 0 and skipped["flops"]["backward"] == 0
    assert skipped["flops"]["sampling"] == 10 * n_params
    assert "estimate" in skipped["sources"]["flops.sampling"]
    assert data["totals"]["epochs"] == dict(trained=2, skipped=1)
    assert data["totals"]["flops"]["forward"]["value"] == pytest.approx(FORWARD * 20)


def test_iter_based_loop_rows(tmp_path):
    runner = _toy_runner(tmp_path, [dict(type="CostHook", window=4)],
                         train_cfg=dict(by_epoch=False, max_iters=8, val_interval=8))
    runner.train()
    data = json.loads((tmp_path / "cost.json").read_text())
    assert data["run"]["loop"] == "iter"
    assert [r["iterations"] for r in data["epochs"]] == [4, 4]
    assert data["totals"]["flops"]["forward"]["value"] == pytest.approx(FORWARD * 16)


def test_gradsamp_skipped_epochs_are_rows(tmp_path):
    """With the real GradSampHook (periodic, every 2nd epoch after 2 trained): skipped rows."""
    from dgsamp.engine.gradsamp_hook import GradSampHook  # noqa: F401  (registers it)

    runner = _toy_runner(tmp_path, [dict(type="GradSampHook",
                                         schedule=dict(type="periodic", every=2, warmup=2)),
                                    dict(type="CostHook")], max_epochs=5)
    runner.train()
    data = json.loads((tmp_path / "cost.json").read_text())
    kinds = [r["kind"] for r in data["epochs"]]
    assert len(kinds) == 5 and "skipped" in kinds and kinds[-1] == "trained"
    for r in data["epochs"]:
        if r["kind"] == "skipped":
            assert r["iterations"] == 0 and r["flops"]["backward"] == 0
            assert r["flops"]["sampling"] > 0 and r["time_s"]["epoch"] > 0
    trained = kinds.count("trained")
    assert data["totals"]["flops"]["forward"]["value"] == pytest.approx(FORWARD * 10 * trained)
    assert "GradSampHook" in [m["type"] for m in data["methods"]]


def test_dither_effective_flops_from_real_dithered_layers():
    """With dgsamp.methods.patch's dithered layers the effective count uses their nnz(δ̃)."""
    from dgsamp.methods.patch import patch

    net = small_net()
    patch(net, "dither", scale=8.0)
    r = count_step_flops(net, torch.randn(B, 1, H, W))
    assert r.backward == BACKWARD  # dense kernels ran
    assert set(r.densities) == {"Sequential.0", "Sequential.2", "Sequential.5"}
    mods = {"Sequential.0": net[0], "Sequential.2": net[2], "Sequential.5": net[5]}
    expected = BACKWARD - sum(r.modules_backward[n] * (1 - m.grad_density)
                              for n, m in mods.items())
    assert r.backward_effective == pytest.approx(expected)
    assert r.backward_effective < BACKWARD


def test_cost_hook_with_sparse_backward_hooks(tmp_path):
    """ssProp: counted backward shrinks; dither: effective count beside the dense one."""
    import dgsamp.engine.sparse_backward_hook  # noqa: F401  (registers it)

    out = {}
    # dither on the dense kernels (sparse_kernel=False): 'auto' may take the exact row-gather
    # path, whose counted FLOPs are lower, depending on which rows the random draws zero
    for method, extra in (("ssprop", dict(keep=0.5)), ("dither", dict(sparse_kernel=False))):
        runner = _toy_runner(tmp_path / method, [
            dict(type="SparseBackwardHook", method=method, **extra), dict(type="CostHook")],
            max_epochs=1)
        runner.train()
        out[method] = json.loads((tmp_path / method / "cost.json").read_text())
    fl = out["ssprop"]["totals"]["flops"]
    assert fl["forward"]["value"] == pytest.approx(FORWARD * 10)
    assert fl["backward"]["value"] < BACKWARD * 10
    assert out["ssprop"]["epochs"][0]["sparsity"]["ssprop_keep_mean"] == 0.5
    fl = out["dither"]["totals"]["flops"]
    assert fl["backward"]["value"] == pytest.approx(BACKWARD * 10)
    assert fl["backward_effective"]["value"] < fl["backward"]["value"]
    assert "grad_density" in out["dither"]["epochs"][0]["sources"]["flops.backward_effective"]


# ------------------------------------------------------------------ resumed runs
def _interrupt_at(epoch=None, iteration=None):
    """A hook that kills training at the start of an epoch / iteration (after the checkpoint
    before it was written), as a crash or a preempted job would."""
    from mmengine.hooks import Hook

    class Interrupt(Hook):
        priority = "HIGHEST"

        def before_train_epoch(self, runner):
            if epoch is not None and runner.epoch == epoch:
                raise KeyboardInterrupt("interrupted")

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if iteration is not None and runner.iter == iteration:
                raise KeyboardInterrupt("interrupted")

    return Interrupt()


def _interrupted_then_resumed(work_dir, first_hooks, hooks, stop, **cfg):
    runner = _toy_runner(work_dir, first_hooks, **cfg)
    runner.register_hook(_interrupt_at(**stop))
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    mmengine.logging.MessageHub._instance_dict.clear()  # a fresh process would start empty
    _toy_runner(work_dir, hooks, resume=True, **cfg).train()
    return json.loads((work_dir / "cost.json").read_text())


def _same_costs(resumed, full):
    for k in ("forward", "backward", "optimizer", "train"):
        assert resumed["totals"]["flops"][k]["value"] == full["totals"]["flops"][k]["value"], k
    assert resumed["totals"]["samples"] == full["totals"]["samples"]
    assert resumed["totals"]["iterations"] == full["totals"]["iterations"]
    strip = ("time_s", "energy_j", "sources", "segment")
    rows = [[{k: v for k, v in r.items() if k not in strip} for r in d["epochs"]]
            for d in (resumed, full)]
    assert rows[0] == rows[1]  # same rows: FLOPs, samples, kinds, iterations


def test_resumed_run_reports_the_whole_run(tmp_path):
    """Interrupted after epoch 2 of 4 and resumed: cost.json covers all 4 epochs, the time
    before the interruption included, and says where each process ran."""
    ckpt = dict(default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1)),
                max_epochs=4)
    full = _toy_runner(tmp_path / "full", [dict(type="CostHook")], **ckpt)
    full.train()
    full = json.loads((tmp_path / "full" / "cost.json").read_text())
    res = _interrupted_then_resumed(tmp_path / "res", [dict(type="CostHook")],
                                    [dict(type="CostHook")], dict(epoch=2), **ckpt)
    _same_costs(res, full)
    assert [r["epoch"] for r in res["epochs"]] == [1, 2, 3, 4]
    assert [r["segment"] for r in res["epochs"]] == [0, 0, 1, 1]
    run = res["run"]
    assert run["resumed"] is True and full["run"]["resumed"] is False
    assert [(s["start_epoch"], s["end_epoch"]) for s in run["segments"]] == [(0, 2), (2, 4)]
    train = res["totals"]["time_s"]["train"]
    assert train["value"] == pytest.approx(sum(s["train_s"] for s in run["segments"]))
    assert train["value"] > run["segments"][1]["train_s"] > 0  # the first process's time too
    assert "resumed run" in train["source"]


def test_resume_from_a_checkpoint_without_cost_state(tmp_path):
    """A checkpoint written without CostHook: the resume works, the part before it is
    'unavailable' and so are the whole-run totals."""
    ckpt = dict(default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1)),
                max_epochs=4)
    res = _interrupted_then_resumed(tmp_path, [], [dict(type="CostHook")], dict(epoch=2),
                                    **ckpt)
    first = res["run"]["segments"][0]
    assert res["run"]["resumed"] is True and "without cost ledger state" in first["unavailable"]
    assert (first["start_epoch"], first["end_epoch"]) == (0, 2)
    t = res["totals"]
    assert t["flops"]["train"]["value"] is None and "not recorded" in t["unavailable"]
    assert [r["epoch"] for r in res["epochs"]] == [3, 4]
    assert res["epochs"][0]["flops"]["forward"] == pytest.approx(FORWARD * 10)


def test_resumed_iteration_run_with_checkpoints_inside_windows(tmp_path):
    """Iteration loop, rows of 4 iterations, checkpoints every 3: a row open at a checkpoint is
    closed there, so a run resumed from iteration 6 misses none of the first 6."""
    cfg = dict(default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=3,
                                                  by_epoch=False)),
               train_cfg=dict(by_epoch=False, max_iters=10, val_interval=10))
    hooks = [dict(type="CostHook", window=4)]
    _toy_runner(tmp_path / "full", hooks, **cfg).train()
    full = json.loads((tmp_path / "full" / "cost.json").read_text())
    res = _interrupted_then_resumed(tmp_path / "res", hooks, hooks, dict(iteration=6), **cfg)
    _same_costs(res, full)
    assert [(r["iter_start"], r["iter_end"]) for r in full["epochs"]] == [
        (0, 3), (3, 4), (4, 6), (6, 8), (8, 9), (9, 10)]
    assert res["totals"]["flops"]["forward"]["value"] == pytest.approx(FORWARD * 20)
    assert [(s["start_iter"], s["end_iter"]) for s in res["run"]["segments"]] == [(0, 6), (6, 10)]


def test_gradsamp_iteration_windows_are_rows(tmp_path):
    """GradSamp in an iteration loop: rows line up with its windows (the loop's ``window``),
    skipped windows are rows of their own."""
    from dgsamp.engine.gradsamp_hook import GradSampHook  # noqa: F401  (registers it)

    runner = _toy_runner(tmp_path, [dict(type="GradSampHook",
                                         schedule=dict(type="periodic", every=2, warmup=2)),
                                    dict(type="CostHook")],
                         train_cfg=dict(by_epoch=False, max_iters=25, val_interval=5))
    runner.train()
    data = json.loads((tmp_path / "cost.json").read_text())
    assert data["settings"]["window"] == runner.train_loop.window == 5
    rows = data["epochs"]
    assert [(r["iter_start"], r["iter_end"]) for r in rows] == [
        (5 * k, 5 * k + 5) for k in range(5)]
    kinds = [r["kind"] for r in rows]
    assert "skipped" in kinds and kinds[:2] == ["trained", "trained"]
    for r in rows:
        assert r["iterations"] == (0 if r["kind"] == "skipped" else 5)
    assert data["totals"]["flops"]["forward"]["value"] == pytest.approx(
        FORWARD * 10 * kinds.count("trained"))


def test_compare_table_groups_seeds_and_plots(tmp_path, capsys):
    import importlib.util as iu
    import os

    spec = iu.spec_from_file_location(
        "dgsamp_compare", os.path.join(os.path.dirname(__file__), "..", "tools", "compare.py"))
    compare = iu.module_from_spec(spec)
    spec.loader.exec_module(compare)

    def run(name, acc, flops, time_s, energy):
        d = tmp_path / name
        d.mkdir()
        m = lambda v: dict(value=v, source="test")  # noqa: E731
        (d / "cost.json").write_text(json.dumps(dict(
            schema="dgsamp.cost/1", run=dict(complete=True),
            config=dict(train_dataset=dict(test_domains=["75"])),
            totals=dict(flops=dict(train=m(flops), train_effective=m(flops)),
                        time_s=dict(train=m(time_s)),
                        energy_train_j=dict(total=dict(value=energy, source="estimate (x)")),
                        epochs=dict(trained=4, skipped=0)),
            epochs=[{}] * 4, overhead=dict(fraction_of_run=m(0.01)),
            metrics=dict(val={"acc/test_domains": acc, "acc/0": acc + 10, "acc/75": acc}))))
        return str(d)

    dirs = [run("dense_s0", 80.0, 4e9, 100.0, 50.0), run("dense_s1", 82.0, 4e9, 110.0, 60.0),
            run("fast_s0", 81.0, 2e9, 60.0, 30.0)]
    summary = compare.main(dirs + ["--baseline", "dense", "--out", str(tmp_path / "cmp")])
    assert list(summary) == ["dense", "fast"] and summary["dense"]["n"] == 2
    assert summary["dense"]["acc"] == (81.0, 1.0, 2)  # mean ± standard error, n
    out = capsys.readouterr().out
    assert "| fast | 1 |" in out and "50.0% (+50.0% saved)" in out
    assert "| +0.00 | +1.00 ± n/a (1) |" in out  # fast_s0 − dense_s0: one seed, SE not measured
    # paired over seeds: per-seed spread cancels, a seed only one side has is left out
    runs = lambda name, accs: [dict(name=f"{name}_s{k}", metrics={"acc": a})  # noqa: E731
                               for k, a in accs.items()]
    base = runs("dense", {0: 70.0, 1: 80.0, 2: 90.0})
    m, se, n = compare.paired_delta(runs("x", {0: 69.0, 1: 79.5, 2: 88.5, 7: 10.0}), base, "acc")
    assert n == 3 and m == pytest.approx(-1.0) and se == pytest.approx(0.5 / 3 ** 0.5)
    assert compare.paired_delta(runs("y", {5: 1.0}), base, "acc") == (None, None, 0)
    for f in ("compare.md", "acc_vs_flops.png", "acc_vs_time.png", "acc_vs_energy.png",
              "per_domain_accuracy.png"):
        assert (tmp_path / "cmp" / f).stat().st_size > 0


def test_compare_curve_means_each_validation_step(tmp_path, capsys):
    import os

    spec = importlib.util.spec_from_file_location(
        "dgsamp_compare", os.path.join(os.path.dirname(__file__), "..", "tools", "compare.py"))
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    curves = {"dense_s0": [10.0, 50.0], "dense_s1": [20.0, 70.0], "sparse_s0": [10.0]}
    dirs = []
    for name, accs in curves.items():
        d = tmp_path / name
        (d / "20261201_000000" / "vis_data").mkdir(parents=True)
        (d / "cost.json").write_text(json.dumps(dict(run=dict(complete=True), totals={},
                                                     metrics=dict(val={"acc/test_domains": 1}))))
        recs = [{"loss": 2.0, "step": 5}]  # a training record: no metric, not a curve point
        recs += [{"acc/train_domains": a, "step": k + 1} for k, a in enumerate(accs)]
        for f in ("scalars.json", "20261201_000000.json"):  # mmengine writes both
            (d / "20261201_000000" / "vis_data" / f).write_text(
                "\n".join(json.dumps(r) for r in recs) + "\n")
        dirs.append(str(d))
    compare.main(dirs + ["--curve", "acc/train_domains", "--out", str(tmp_path / "cmp")])
    text = (tmp_path / "cmp" / "curve.md").read_text()
    assert "| step | dense | sparse |" in text
    assert "| 1 | 15.0 (n=2) | 10.0 (n=1) |" in text
    assert "| 2 | 60.0 (n=2) | n/a |" in text
    assert "| 5 |" not in text
    assert "| 2 | 60.0 (n=2) | n/a |" in capsys.readouterr().out
