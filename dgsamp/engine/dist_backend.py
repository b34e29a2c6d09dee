"""Which ``torch.distributed`` backend a run uses: NCCL on CUDA machines, gloo on CPU ones.

The runtime bases (``configs/_base_/*runtime*.py``) leave ``env_cfg.dist_cfg.backend`` unset, so
one config runs on either machine without edits; `set_default_dist_backend` fills it in from
what the machine has (tools/train.py calls it). A backend the config names is kept: on a
CPU-only machine `init_cpu_distributed` starts gloo regardless (NCCL needs GPUs).
"""

from __future__ import annotations

import torch


def default_dist_backend(cuda_available: bool | None = None) -> str:
    """'nccl' when CUDA is available (NCCL is the fast GPU collective), else 'gloo'."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    return "nccl" if cuda_available else "gloo"


def set_default_dist_backend(cfg, cuda_available: bool | None = None) -> str:
    """Set ``cfg.env_cfg.dist_cfg.backend`` where the config leaves it out; return the backend."""
    env = dict(cfg.get("env_cfg") or {})
    dist_cfg = dict(env.get("dist_cfg") or {})
    dist_cfg.setdefault("backend", default_dist_backend(cuda_available))
    env["dist_cfg"] = dist_cfg
    cfg.env_cfg = env
    return dist_cfg["backend"]
