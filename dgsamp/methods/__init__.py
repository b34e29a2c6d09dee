"""Plain-PyTorch methods and algorithms (no mmengine import anywhere in this package).

ssProp (channel-sparse backward), dithered backprop, keep-fraction schedules and the patching that
puts them into any model; GradSamp (epoch skipping, :mod:`.gradsamp`); SWAD weight averaging
(:mod:`.swad`); BatchNorm re-estimation for AdaBN and SWAD (:mod:`.bn_stats`).
"""

from .bn_stats import bn_layers, frozen_bn_stats, reestimate_bn_stats
from .dither import DitherConv2d, DitherLinear, dither, dither_grad, dither_linear, dither_quantize
from .gradsamp import (
    GradSampler,
    PeriodicSchedule,
    RandomSchedule,
    SkipSchedule,
    TensorFit,
    build_schedule,
    fit_ggd_beta,
    fit_update,
    ggd_alpha,
    ggd_rho,
    sample_gamma,
    sample_ggd,
    trainable_parameters,
)
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
from .swad import SWAD, WeightSum

__all__ = [
    "SPARSE_METHODS",
    "SWAD",
    "BarKeep",
    "ConstantKeep",
    "CosineKeep",
    "DitherConv2d",
    "DitherLinear",
    "GradSampler",
    "InterleaveKeep",
    "KeepSchedule",
    "LinearKeep",
    "PeriodicSchedule",
    "RandomSchedule",
    "SkipSchedule",
    "SsPropConv2d",
    "SsPropLinear",
    "TensorFit",
    "WarmupKeep",
    "WeightSum",
    "bn_layers",
    "build_keep_schedule",
    "build_schedule",
    "dither",
    "dither_grad",
    "dither_linear",
    "dither_quantize",
    "fit_ggd_beta",
    "fit_update",
    "frozen_bn_stats",
    "ggd_alpha",
    "ggd_rho",
    "output_layers",
    "patch",
    "patched_modules",
    "reestimate_bn_stats",
    "sample_gamma",
    "sample_ggd",
    "select_channels",
    "set_sparsity",
    "sparse_backward",
    "sparse_stats",
    "ssprop_conv2d",
    "ssprop_linear",
    "trainable_parameters",
    "unpatch",
]

