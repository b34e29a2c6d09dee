"""GradSamp on the server: a skipped round contacts no client; the global model moves by a sample.

The rounds play the epochs of centralized GradSamp (`dgsamp.methods.gradsamp.GradSampler`, the
same code): after every trained round the sampler snapshots the global model, so the fitted
update is the last global update (the aggregate of the clients' round); on a round the schedule
skips, every trainable tensor of the global model moves by ε drawn from the fit. Round r
(1-based) is the sampler's epoch r-1, so ``every=4, warmup=2`` skips rounds 3, 7, 11, ... and
never the last one. The sampler's state goes into each round checkpoint (exact resume).
"""

from __future__ import annotations

import torch

from ..methods.gradsamp import GradSampler


class ServerGradSamp:
    """GradSamp over rounds for a global state dict (the tensors the clients exchange).

    Args:
        options: ``fl.gradsamp`` without ``mode`` (schedule, distribution, statistics, ...).
        trainable: state-dict keys GradSamp may move (the model's trainable parameters; norm
            running statistics and other buffers are never moved).
        num_rounds: the federation's length (the last round is never skipped).
    """

    def __init__(self, options: dict, trainable: list[str], num_rounds: int):
        self.sampler = GradSampler(**options)
        self.trainable = list(trainable)
        self.num_rounds = int(num_rounds)

    def _params(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # GradSampler moves tensors that require grad (model parameters): give it such views
        return {k: state[k].detach().requires_grad_(True) for k in self.trainable}

    def should_skip(self, server_round: int) -> bool:
        return self.sampler.should_skip(server_round - 1, self.num_rounds)

    def observe(self, state: dict[str, torch.Tensor], server_round: int) -> None:
        """Record the global model after a trained round."""
        self.sampler.observe(self._params(state), server_round - 1)

    def skip(self, state: dict[str, torch.Tensor], server_round: int) -> dict:
        """Move ``state`` in place by the sampled update; the sampler's statistics.

        ``status`` is 'refused' when the sample was not finite (``state`` untouched): the
        caller then trains the round instead.
        """
        params = self._params(state)
        stats = self.sampler.step_skip(params, server_round - 1)
        for k, p in params.items():
            state[k] = p.detach()
        return stats

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
