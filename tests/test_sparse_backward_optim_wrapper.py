"""SparseBackwardOptimWrapper: the hook's sparse backward through ``optim_wrapper=dict(type=...)``.

Checked in a real Runner on the toy conv model of test_sparse_backward_hook: the wrapper and the
hook train to identical parameters (same code, same schedule), the layers are restored after the
last update, it composes with AMP (AmpOptimWrapper; bf16 autocast on this CPU-only machine), and
outside a Runner it steps by its own iteration count. Bad arguments fail at construction.
"""

from __future__ import annotations

import uuid

import pytest
import torch
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner import Runner
from test_sparse_backward_hook import BATCH, Probe, ToyConvNet, ToyImages

from dgsamp.engine.sparse_backward_optim_wrapper import (
    SparseBackwardAmpOptimWrapper,
    SparseBackwardOptimWrapper,
)
from dgsamp.methods import patched_modules

SPARSE = dict(method="ssprop", keep=0.25, include=["backbone"],
              schedule=dict(type="constant", interleave=True))


def _train(tmp_path, *, hook: dict | None = None, wrapper: dict | None = None,
           max_iters: int | None = None):
    """Train the toy for 2 epochs, or ``max_iters`` iterations of an iteration-based loop."""
    torch.manual_seed(0)
    probe = Probe()
    optim = dict(optimizer=dict(type="SGD", lr=0.05), **(wrapper or {}))
    by_epoch = max_iters is None
    runner = Runner(
        model=ToyConvNet(), work_dir=str(tmp_path),
        experiment_name=f"sbw_{uuid.uuid4().hex[:8]}",
        train_dataloader=dict(dataset=ToyImages(),
                              sampler=dict(type="DefaultSampler" if by_epoch
                                           else "InfiniteSampler", shuffle=True),
                              batch_size=BATCH, num_workers=0,
                              collate_fn=dict(type="default_collate")),
        train_cfg=(dict(by_epoch=True, max_epochs=2) if by_epoch
                   else dict(by_epoch=False, max_iters=max_iters)),
        optim_wrapper=optim, log_processor=dict(by_epoch=by_epoch),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=1), checkpoint=None),
        custom_hooks=[*([dict(type="SparseBackwardHook", **hook)] if hook else []), probe],
        randomness=dict(seed=0), default_scope=None)
    runner.train()
    return runner, probe


def test_wrapper_trains_exactly_as_the_hook(tmp_path):
    hooked, _ = _train(tmp_path / "hook", hook=SPARSE)
    wrapped, probe = _train(tmp_path / "wrap",
                            wrapper=dict(type="SparseBackwardOptimWrapper", sparse=SPARSE))
    assert [r["keep"]["backbone.0"] for r in probe.rows] == [1.0] * 3 + [0.25] * 3
    assert [r["hub_sparsity"] for r in probe.rows] == [0.0] * 3 + [0.75] * 3
    for (name, a), (_, b) in zip(hooked.model.named_parameters(),
                                 wrapped.model.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)
    assert patched_modules(wrapped.model)  # the wrapper sees no end of training ...
    wrapped.optim_wrapper.sparse.detach()  # ... so restoring the layers is explicit
    assert patched_modules(wrapped.model) == {}


def test_composes_with_amp(tmp_path, monkeypatch):
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp

    monkeypatch.setattr(amp, "is_cuda_available", lambda: True)  # CPU: bf16 autocast
    runner, probe = _train(tmp_path, wrapper=dict(
        type="SparseBackwardAmpOptimWrapper", dtype="bfloat16",
        sparse=dict(method="dither", schedule=dict(type="constant", warmup=1))))
    assert isinstance(runner.optim_wrapper, SparseBackwardAmpOptimWrapper)
    assert all(d == 1.0 for d in probe.rows[0]["density"].values())  # warmup: dense
    for r in probe.rows[3:]:  # dithered bf16 gradients (the toy's can underflow to all-zero)
        assert all(0.0 <= d < 0.5 for d in r["density"].values())
        assert r["hub_sparsity"] > 0.5
    assert all(torch.isfinite(p).all() for p in runner.model.parameters())


def test_outside_a_runner_steps_by_its_own_iterations():
    torch.manual_seed(0)
    model = ToyConvNet()
    ow = SparseBackwardOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1), by_epoch=False,
        sparse=dict(method="ssprop", keep=0.5, schedule=dict(type="linear", p_min=0.5)))
    ow.initialize_count_status(model, 0, 3)
    data = ToyImages()
    keeps = []
    for i in range(3):
        with ow.optim_context(model):
            loss = model(data.x[i * 4:(i + 1) * 4], data.y[i * 4:(i + 1) * 4], mode="loss")
            keeps.append(model.head.keep)
            ow.update_params(loss["loss"])
    assert keeps == [1.0, 0.75, 0.5]


def test_iteration_loop_steps_per_window_and_warns_without_one(tmp_path, caplog):
    """An iteration loop never advances the epoch: window=N makes by_epoch schedules step every
    N iterations (what SparseBackwardHook does); without it the run warns that it stays dense."""
    _, probe = _train(tmp_path / "w", wrapper=dict(type="SparseBackwardOptimWrapper", window=2,
                                                   sparse=SPARSE), max_iters=6)
    assert [r["keep"]["backbone.0"] for r in probe.rows] == [1.0, 1.0, 0.25, 0.25, 1.0, 1.0]
    runner, probe = _train(tmp_path / "n", wrapper=dict(type="SparseBackwardOptimWrapper",
                                                        sparse=SPARSE), max_iters=4)
    assert [r["keep"]["backbone.0"] for r in probe.rows] == [1.0] * 4  # the flaw, now reported
    log = open(runner.logger.log_file).read()
    assert "schedule never steps" in log and "window=N" in log


@pytest.mark.parametrize("kw,match", [
    (dict(sparse=dict(method="ssprop", keep=2.0)), "keep"),
    (dict(sparse="ssprop"), "sparse must be a dict"),
    (dict(stats_interval=0), "stats_interval"),
    (dict(window=0), "window must be a positive int"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        SparseBackwardOptimWrapper(optimizer=torch.optim.SGD([torch.zeros(1)], lr=0.1), **kw)


def test_registered():
    assert OPTIM_WRAPPERS.get("SparseBackwardOptimWrapper") is SparseBackwardOptimWrapper
    assert OPTIM_WRAPPERS.get("SparseBackwardAmpOptimWrapper") is SparseBackwardAmpOptimWrapper
