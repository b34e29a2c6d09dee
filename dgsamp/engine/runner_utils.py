"""Two questions every adapter asks the runner, answered in one place.

- `unwrap_model`: the user's model under a DDP/FSDP wrapper (mmengine's `is_model_wrapper`
  knows every registered wrapper, ours included).
- `optim_wrappers`: the runner's optimizer wrappers as a list, whether the config built one
  `OptimWrapper` or an `OptimWrapperDict` (DA/DG algorithms with several optimizers do).
- `unique_experiment_name`: a name no other Runner of this process has.
"""

from __future__ import annotations

import uuid

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


def unique_experiment_name(prefix: str) -> str:
    """``prefix`` plus a random suffix. mmengine names a Runner's logger, visualizer and scope
    ``<experiment_name>_<timestamp>`` at one-second resolution and hands back the existing
    instance on a repeat, so two Runners of one process started within a second would share
    the first one's log file (the second writes no log of its own)."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"
