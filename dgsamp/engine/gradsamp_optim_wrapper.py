"""GradSampOptimWrapper: GradSamp at iteration granularity, as an mmengine optimizer wrapper::

    optim_wrapper = dict(type='GradSampOptimWrapper', optimizer=dict(type='Adam', lr=1e-3),
                         schedule=dict(type='periodic', every=4, warmup=2))

The same `dgsamp.methods.gradsamp.GradSampler` as `GradSampHook`, stepping by iteration: on a
sampled iteration the parameters move by a sample fitted to the last trained iteration's update,
and the backward and the optimizer step are not run. The forward still runs, so the data order
is a dense run's and the loss is logged; when the model's ``train_step`` enters
``optim_context`` (mmengine's ``BaseModel.train_step`` does), the sample is applied there and the
forward (on the sampled parameters) runs without autograd, so it records no graph either. A
train step that does not enter ``optim_context`` gets the same update, applied in
``update_params`` after its forward. Parameter schedulers step as usual; the optimizer's own
state (momentum, Adam's moments and step count) does not move on a sampled iteration.

Why per iteration and not per epoch: an mmengine user attaches step behaviour through
``optim_wrapper=dict(type=...)`` as often as through hooks, and this form needs no loop of its
own (any train loop, epoch- or iteration-based). The iteration index is the wrapper's
``_inner_count``, which the runner initializes to its iteration counter (also on resume), and
the run length is its ``max_iters``; so decisions and draws depend only on (seed, iteration) and
are identical on every DDP rank, with no communication. The sampler's state goes into the
optimizer wrapper's ``state_dict`` (``state['gradsamp']``, saved in the checkpoint), so a resumed
run continues exactly; a state saved with other settings is refused.

Cost: after each trained iteration the sampler snapshots the trainable parameters (two
parameter-sized copies on ``snapshot_device``, CPU by default). The ``train/gradsamp_sampled``
scalar (1 on a sampled iteration, 0 otherwise) reaches the logs through the message hub.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import torch
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

from ..methods.gradsamp import GradSampler

CHECKPOINT_KEY = "gradsamp"


@OPTIM_WRAPPERS.register_module()
class GradSampOptimWrapper(OptimWrapper):
    """`OptimWrapper` that replaces scheduled iterations' updates by a GradSamp sample.

    Args:
        optimizer: the optimizer (built by mmengine from ``optimizer=dict(...)``).
        schedule, distribution, statistics, tau, history, seed, snapshot_device: as for
            `dgsamp.methods.gradsamp.GradSampler`, with iterations in place of epochs; the
            default schedule skips every 4th iteration after 2 trained ones.
        **kwargs: `OptimWrapper`'s (``clip_grad``); gradient accumulation is refused, since a
            sampled iteration inside an accumulation window has no update of its own.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: dict | None = None,
                 distribution: str = "gaussian", statistics: str = "layerwise",
                 tau: float = 1.0, history: str = "trained", seed: int = 0,
                 snapshot_device: str = "cpu", **kwargs):
        if kwargs.get("accumulative_counts", 1) != 1:
            raise ValueError(
                f"GradSampOptimWrapper: accumulative_counts={kwargs['accumulative_counts']!r} is "
                "not supported (a sampled iteration replaces a whole update). Fix: drop "
                "accumulative_counts, or use GradSampHook, which skips whole epochs.")
        super().__init__(optimizer, **kwargs)
        self.sampler = GradSampler(
            schedule=schedule if schedule is not None else dict(type="periodic", every=4,
                                                                warmup=2),
            distribution=distribution, statistics=statistics, tau=tau, history=history,
            seed=seed, snapshot_device=snapshot_device)
        self._decided: tuple[int, bool] | None = None  # (iteration, sampled) of the current one

    def _params(self) -> list[torch.Tensor]:
        """The optimizer's parameters, in group order (the sampler names them by position)."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _sampled(self) -> bool:
        """Whether the current iteration's update is a sample; decided (and the sample applied)
        once per iteration, by whichever of optim_context and update_params asks first."""
        index = self._inner_count
        if self._decided is not None and self._decided[0] == index:
            return self._decided[1]
        total = self._max_counts if self._max_counts > 0 else None
        sampled = False
        if self.sampler.should_skip(index, total):
            stats = self.sampler.step_skip(self._params(), index)
            sampled = stats["status"] == "applied"
            if not sampled:
                print_log(f"GradSamp: iteration {index}: sampled update refused "
                          f"({stats.get('reason')}); training it instead.", logger="current",
                          level=logging.WARNING)
            elif len(self.sampler.skipped_epochs) == 1:
                print_log(f"GradSamp: iteration {index} is the first sampled one "
                          f"({self.sampler.schedule.config()}): no backward, parameters += "
                          f"sample ({self.sampler.distribution}, {self.sampler.statistics}).",
                          logger="current")
        self._decided = (index, sampled)
        return sampled

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model):
            if self._sampled():
                with torch.no_grad():
                    yield
            else:
                yield

    def update_params(self, loss: torch.Tensor, step_kwargs: dict | None = None,
                      zero_kwargs: dict | None = None) -> None:
        sampled = self._sampled()
        self.message_hub.update_scalar("train/gradsamp_sampled", float(sampled))
        if sampled:
            self._inner_count += 1  # the iteration is done; its update was the sample
            return
        super().update_params(loss, step_kwargs, zero_kwargs)
        self.sampler.observe(self._params(), self._inner_count - 1)

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state[CHECKPOINT_KEY] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state = dict(state_dict)
        gradsamp = state.pop(CHECKPOINT_KEY, None)
        super().load_state_dict(state)
        if gradsamp is None:
            print_log("GradSampOptimWrapper: the optimizer state holds no GradSamp state; "
                      "sampling restarts (two trained iterations needed first).",
                      logger="current", level=logging.WARNING)
            return
        try:
            self.sampler.load_state_dict(gradsamp)
        except ValueError as e:
            raise ValueError(f"GradSampOptimWrapper cannot resume: {e} (Weights only: "
                             "load_from=CKPT, resume=False.)") from None
        self._decided = None
