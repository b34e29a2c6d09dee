"""mmengine adapters: hooks, loops, checkpoint compatibility, config checks.

Each hook or loop module registers its class in mmengine's root registries on import.
"""

from . import checkpoint_compat  # noqa: F401  (allow-lists mmengine checkpoint classes)
from .adabn_loop import AdaBNTestLoop
from .config_check import check_config
from .cost_hook import CostHook
from .cpu_distributed import CPUDistributedDataParallel, init_cpu_distributed
from .ema_teacher_hook import EMATeacherHook
from .gradsamp_hook import GradSampHook
from .gradsamp_optim_wrapper import GradSampOptimWrapper
from .loops import GradSampEpochBasedTrainLoop, GradSampIterBasedTrainLoop
from .sparse_backward_hook import SparseBackwardHook
from .sparse_backward_optim_wrapper import (
    SparseBackwardAmpOptimWrapper,
    SparseBackwardOptimWrapper,
)
from .swad_hook import SWADHook

__all__ = ["CPUDistributedDataParallel", "CostHook", "GradSampEpochBasedTrainLoop", "GradSampHook",
           "GradSampIterBasedTrainLoop", "SWADHook", "SparseBackwardHook", "check_config",
           "init_cpu_distributed"]
__all__ += ["GradSampOptimWrapper"]
__all__ += ["AdaBNTestLoop", "EMATeacherHook"]
__all__ += ["SparseBackwardAmpOptimWrapper", "SparseBackwardOptimWrapper"]
