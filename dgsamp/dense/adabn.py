"""Per-domain BatchNorm statistics (AdaBN, Li et al. 2016), in plain PyTorch.

A network trained on the source normalizes every target image with the source's running
statistics. AdaBN replaces them, for each target domain, by the statistics of that domain's
unlabeled images: no labels, no gradient step. On the embedded shapes benchmark it is
the largest single effect measured (docs/dense.md): a mean teacher whose running statistics mix
all styles collapses on the low-contrast fog style, and per-style statistics fix that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

__all__ = ["bn_layers", "reestimate_bn_stats"]


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model`` (1d/2d/3d and SyncBatchNorm)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_bn_stats(model: nn.Module, batches: Iterable[Tensor],
                        forward: Callable[[Tensor], object] | None = None) -> int:
    """Set every BatchNorm's running statistics from ``batches`` alone, weighting each batch
    equally (PyTorch's cumulative mode, not an exponential average): the mean over the images
    (exact for equal batch sizes) and the mean of the per-batch variances. Returns the number
    of images seen.

    Only the BatchNorm layers run in train mode meanwhile; dropout and everything else keep
    their mode, parameters are not touched, and each layer's momentum and mode are restored.
    ``forward`` (default ``model``) is what to call on a batch, e.g. ``detector.extract_feat``.
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
            seen += int(x.shape[0])
    finally:
        for m, (momentum, training) in zip(bns, saved, strict=True):
            m.momentum = momentum
            m.train(training)
    if seen == 0:
        raise ValueError("reestimate_bn_stats: no images given")
    return seen
