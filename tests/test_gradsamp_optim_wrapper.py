"""GradSampOptimWrapper: GradSamp per iteration through mmengine's optimizer-wrapper interface.

What is checked: on a sampled iteration the forward runs without autograd, no backward or step
runs, and the parameters move by exactly what a plain `GradSampler` draws; the schedule's plan is
followed in a real Runner; resume from a checkpoint reproduces the uninterrupted run bit for bit
and refuses other settings; gradient accumulation is refused; DDP ranks stay identical.
"""

from __future__ import annotations

import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import OPTIM_WRAPPERS
from test_gradsamp_hook import N_SAMPLES, _params, _runner, run_two_ranks
from torch import nn

from dgsamp.engine.gradsamp_optim_wrapper import GradSampOptimWrapper
from dgsamp.methods.gradsamp import GradSampler, build_schedule

SCHEDULE = dict(type="periodic", every=3, warmup=2)
ITERS_PER_EPOCH = 4


def _wrapper_cfg(**gradsamp) -> dict:
    return dict(type="GradSampOptimWrapper", optimizer=dict(type="SGD", lr=0.1, momentum=0.9),
                **dict(dict(schedule=SCHEDULE, seed=1), **gradsamp))


def _wrapper(runner) -> GradSampOptimWrapper:
    return runner.optim_wrapper


def test_sample_is_the_plain_samplers_and_no_backward_runs():
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.arange(8) % 3
    wrapper = GradSampOptimWrapper(torch.optim.SGD(net.parameters(), lr=0.1), schedule=SCHEDULE,
                                   seed=4)
    wrapper.initialize_count_status(net, 0, 10)
    ref = GradSampler(schedule=SCHEDULE, seed=4)  # driven by hand beside the wrapper
    ref_params = [p.detach().clone() for p in net.parameters()]
    steps = []
    wrapper.optimizer.register_step_post_hook(lambda *_: steps.append(wrapper._inner_count))
    for it in range(10):
        with wrapper.optim_context(net):
            loss = F.cross_entropy(net(x), y)
        sampled = it in (2, 5, 8)  # plan: every 3rd after two trained, never the last
        assert loss.requires_grad is not sampled  # a sampled forward records no graph
        before = [p.detach().clone() for p in net.parameters()]
        wrapper.update_params(loss)
        if sampled:
            assert ref.step_skip(ref_params, it)["status"] == "applied"
            for p, q in zip(net.parameters(), ref_params, strict=True):
                assert torch.equal(p.detach(), q)
        else:
            ref_params = [p.detach().clone() for p in net.parameters()]
            ref.observe(ref_params, it)
            assert not all(torch.equal(p, b) for p, b in zip(net.parameters(), before,
                                                             strict=True))
    assert wrapper.sampler.skipped_epochs == [2, 5, 8] == build_schedule(SCHEDULE).plan(10)
    assert len(steps) == 7 and wrapper._inner_count == 10


def test_in_a_runner_forward_runs_backward_skipped(tmp_path):
    runner, rec, data = _runner(tmp_path, None, max_epochs=4, optim_wrapper=_wrapper_cfg())
    steps = []
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)  # to hook its step
    runner.optim_wrapper.optimizer.register_step_post_hook(lambda *_: steps.append(1))
    runner.train()
    total = 4 * ITERS_PER_EPOCH
    plan = build_schedule(SCHEDULE).plan(total, seed=1)
    assert _wrapper(runner).sampler.skipped_epochs == plan == [2, 5, 8, 11, 14]
    assert data.calls == 4 * N_SAMPLES and rec.rows[-1]["forwards"] == total  # data + forward
    assert len(steps) == total - len(plan)
    assert runner.message_hub.get_scalar("train/gradsamp_sampled").data[0].sum() == len(plan)
    assert all(torch.isfinite(v).all() for v in _params(runner).values())


def test_resume_reproduces_uninterrupted_run(tmp_path):
    ref, _, _ = _runner(tmp_path / "ref", None, max_epochs=4, optim_wrapper=_wrapper_cfg())
    ref.train()
    want = _params(ref)
    ckpt = osp.join(tmp_path, "ref", "epoch_2.pth")
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["optimizer"]["gradsamp"]["skipped_epochs"] == [2, 5]
    res, _, data = _runner(tmp_path / "res", None, max_epochs=4, optim_wrapper=_wrapper_cfg(),
                           resume_from=ckpt)
    res.train()
    assert data.calls == 2 * N_SAMPLES
    assert _wrapper(res).sampler.skipped_epochs == [2, 5, 8, 11, 14]
    got = _params(res)
    for k, v in want.items():
        assert torch.equal(got[k], v), k

    other, _, _ = _runner(tmp_path / "other", None, max_epochs=4, resume_from=ckpt,
                          optim_wrapper=_wrapper_cfg(distribution="ggd"))
    with pytest.raises(ValueError, match="GradSampOptimWrapper cannot resume.*distribution"):
        other.train()


def test_accumulation_refused_and_registered():
    with pytest.raises(ValueError, match="accumulative_counts"):
        GradSampOptimWrapper(torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1),
                             accumulative_counts=2)
    assert OPTIM_WRAPPERS.get("GradSampOptimWrapper") is GradSampOptimWrapper


# -- DDP -------------------------------------------------------------------------------------------
def _train_rank(model, work_dir: str) -> dict:
    runner, _, _ = _runner(work_dir, None, max_epochs=3, model=model, launcher="pytorch",
                           optim_wrapper=_wrapper_cfg(
                               schedule=dict(type="random", p=0.4, warmup=2),
                               distribution="ggd", statistics="elementwise", seed=3))
    runner.train()
    return dict(params=_params(runner), skipped=_wrapper(runner).sampler.skipped_epochs)


@pytest.mark.slow
def test_ddp_ranks_stay_identical(tmp_path):
    r0, r1 = run_two_ranks(tmp_path, _train_rank)
    assert r0["skipped"] == r1["skipped"] and r0["skipped"], r0["skipped"]
    for k, v in r0["params"].items():
        assert torch.equal(v, r1["params"][k]), k
