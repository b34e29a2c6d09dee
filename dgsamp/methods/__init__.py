"""Plain-PyTorch training-cost methods (no mmengine import anywhere in this package).

ssProp (channel-sparse backward), dithered backprop, keep-fraction schedules and the patching that
puts them into any model; GradSamp (epoch skipping) lives in :mod:`.gradsamp`.
"""

from .dither import DitherConv2d, DitherLinear, dither, dither_grad, dither_linear, dither_quantize
from .gradsamp import *  # noqa: F401,F403  (GradSamp exports, owned by gradsamp.py's __all__)
from .keep_schedules import (
    BarKeep,
    ConstantKeep,
    CosineKeep,
    InterleaveKeep,
    KeepSchedule,
    LinearKeep,
    WarmupKeep,
    build_keep_schedule,
)
from .patch import (
    SPARSE_METHODS,
    output_layers,
    patch,
    patched_modules,
    set_sparsity,
    sparse_backward,
    sparse_stats,
    unpatch,
)
from .ssprop import SsPropConv2d, SsPropLinear, select_channels, ssprop_conv2d, ssprop_linear

__all__ = [
    "SPARSE_METHODS",
    "BarKeep",
    "ConstantKeep",
    "CosineKeep",
    "DitherConv2d",
    "DitherLinear",
    "InterleaveKeep",
    "KeepSchedule",
    "LinearKeep",
    "SsPropConv2d",
    "SsPropLinear",
    "WarmupKeep",
    "build_keep_schedule",
    "dither",
    "dither_grad",
    "dither_linear",
    "dither_quantize",
    "output_layers",
    "patch",
    "patched_modules",
    "select_channels",
    "set_sparsity",
    "sparse_backward",
    "sparse_stats",
    "ssprop_conv2d",
    "ssprop_linear",
    "unpatch",
]


def _gradsamp_exports() -> list[str]:
    """GradSamp's public names: its ``__all__`` or what it defines itself (not its imports)."""
    from . import gradsamp

    names = getattr(gradsamp, "__all__", None)
    if names is None:
        names = [n for n, v in vars(gradsamp).items()
                 if not n.startswith("_") and getattr(v, "__module__", None) == gradsamp.__name__]
    return list(names)


__all__ += [n for n in _gradsamp_exports() if n not in __all__]
