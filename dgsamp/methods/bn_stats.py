"""BatchNorm statistics re-estimated from data, in plain PyTorch: one helper for AdaBN and SWAD.

- AdaBN (Li et al. 2016): a network trained on the source normalizes every target image with
  the source's running statistics; replacing them, per target domain, by the statistics of that
  domain's unlabeled images needs no label and no gradient step. On the embedded shapes
  benchmark it is the largest single effect measured (docs/dense.md).
- SWAD (and SWA): averaged weights never produced the running statistics they carry, so they
  are recomputed on training batches (``torch.optim.swa_utils.update_bn`` does the same, but
  calls the model on raw loader items; here the caller says how a batch is run).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["bn_layers", "frozen_bn_stats", "reestimate_bn_stats"]


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model`` (1d/2d/3d and SyncBatchNorm)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_bn_stats(model: nn.Module, batches: Iterable,
                        forward: Callable[[object], object] | None = None) -> int:
    """Set every BatchNorm's running statistics from ``batches`` alone, weighting each batch
    equally (PyTorch's cumulative mode, not an exponential average): the mean over the images
    (exact for equal batch sizes) and the mean of the per-batch variances. Returns the number
    of batches' leading-dimension items seen (images, for tensors; batches otherwise).

    The BatchNorm layers run in train mode meanwhile; every other module keeps the mode the
    caller set (AdaBN keeps dropout off; SWAD, like ``update_bn``, puts the whole model in
    train mode first). Parameters are not touched; each layer's momentum and mode are
    restored. ``forward`` (default ``model``) is what to call on a batch, e.g.
    ``detector.extract_feat``.
    """
    bns = bn_layers(model)
    if not bns:
        raise ValueError("reestimate_bn_stats: the model has no BatchNorm layer to adapt")
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: exact mean over the batches
        m.train()
    seen = 0
    try:
        for x in batches:
            (forward or model)(x)
            seen += int(x.shape[0]) if isinstance(x, Tensor) else 1
    finally:
        for m, (momentum, training) in zip(bns, saved, strict=True):
            m.momentum = momentum
            m.train(training)
    if seen == 0:
        raise ValueError("reestimate_bn_stats: no batch given")
    return seen


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalize with batch statistics as usual but leave their running
    statistics unchanged (momentum 0) inside the block."""
    bns = bn_layers(model)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, mom in zip(bns, saved, strict=True):
            m.momentum = mom
