"""Distributed training on CPU-only machines (gloo), which mmengine 0.10.7 cannot start by itself.

mmengine's `init_dist('pytorch')` calls `torch.cuda.set_device`, and its runner wraps the model
with `device_ids=[LOCAL_RANK]`, which DDP rejects for CPU modules. `init_cpu_distributed` starts
the gloo process group first (the runner then skips its own init), and
`CPUDistributedDataParallel` drops `device_ids` when the module is on the CPU.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """MMDistributedDataParallel that also works for CPU modules (no device_ids)."""

    def __init__(self, module, device_ids=None, **kwargs):
        if next(module.parameters()).device.type == "cpu":
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)


def init_cpu_distributed(cfg) -> bool:
    """For launcher='pytorch' without CUDA: start gloo and use the CPU-capable DDP wrapper.

    Returns True when it did so. The config is edited in place.
    """
    if cfg.get("launcher", "none") != "pytorch" or torch.cuda.is_available():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]))
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper.setdefault("type", "CPUDistributedDataParallel")
    cfg.model_wrapper_cfg = wrapper
    return True
