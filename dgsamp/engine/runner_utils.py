"""Two questions every adapter asks the runner, answered in one place.

- `unwrap_model`: the user's model under a DDP/FSDP wrapper (mmengine's `is_model_wrapper`
  knows every registered wrapper, ours included).
- `optim_wrappers`: the runner's optimizer wrappers as a list, whether the config built one
  `OptimWrapper` or an `OptimWrapperDict` (DA/DG algorithms with several optimizers do).
"""

from __future__ import annotations

from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a model wrapper (DDP, FSDP, ...), or ``model`` itself."""
    return model.module if is_model_wrapper(model) else model


def optim_wrappers(optim_wrapper: OptimWrapper | OptimWrapperDict | None) -> list[OptimWrapper]:
    """Every `OptimWrapper` in ``optim_wrapper``: its values for a dict, else itself."""
    if optim_wrapper is None:
        return []
    if isinstance(optim_wrapper, OptimWrapperDict):
        return list(optim_wrapper.values())
    return [optim_wrapper]
