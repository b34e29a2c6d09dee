"""Dithered backprop: sparse, unbiased output gradients (methods.md §3, arXiv 2004.04729).

The output gradient δ of a wrapped Conv2d / Linear is replaced, *before* both backward products
(dX = Wᵀδ̃ and dW = δ̃ xᵀ), by non-subtractive-dither quantization

    δ̃ = Δ · round(δ/Δ + ν),   ν ~ U(−½, ½) i.i.d.,

i.e. stochastic rounding onto the grid ΔZ: E[δ̃] = δ and P(δ̃_i = 0) = max(0, 1 − |δ_i|/Δ).
Δ = s · std(δ) per layer per step (``mode='std'``, default s = 8: ≈90% zeros for Gaussian δ) or
Δ = s · max|δ| (``mode='max'``).

int8: the codes δ̃/Δ are integers, and Δ is raised to max|δ|/127 whenever s·std(δ) is smaller
(only for extreme outliers: an element > 127·s standard deviations from zero), so that
|δ/Δ| ≤ 127 and every code fits in int8 *without clipping*: quantization stays unbiased in every
case. (``dither_quantize`` clamps to [−127, 127] as a guard before the int8 cast; it never
changes a value, so the training path skips that pass.)
:func:`dither_quantize` returns the int8 codes and Δ.

Dense kernels on a sparse δ̃ cost the same as on δ; the saving is reported as effective FLOPs
from nnz(δ̃) (``module.grad_density``). For linear layers a sparse (CSR) kernel path exists;
on this CPU it beats the dense matmul, *conversion included*, only below roughly 4–5% density
(tools/benchmark_sparse.py measures it), i.e. at scales well above the default. So
``sparse_kernel='auto'`` (default) takes it only on CPU and only when the measured density of the
current δ̃ is ≤ ``sparse_threshold`` (0.04); ``True`` forces it, ``False`` never uses it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DITHER_MODES",
    "DitherConv2d",
    "DitherLinear",
    "DitherOptions",
    "check_scale",
    "dither",
    "dither_grad",
    "dither_linear",
    "dither_quantize",
]

DITHER_MODES = ("std", "max")
DEFAULT_SCALE = 8.0
SPARSE_THRESHOLD = 0.04
INT8_MAX = 127


def check_scale(scale: Any) -> float:
    """Validate a dither scale s > 0 (finite). Returns it as float."""
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"dither scale must be a positive number, got {scale!r}") from None
    if not (s > 0.0) or math.isinf(s):
        raise ValueError(f"dither scale must be a positive finite number (s > 0), got {scale!r}")
    return s


def _check_mode(mode: str) -> None:
    if mode not in DITHER_MODES:
        raise ValueError(f"dither mode must be one of {DITHER_MODES}, got {mode!r}")


@dataclass(frozen=True)
class DitherOptions:
    """One layer's dither settings, validated once here (frozen and shared like
    :class:`~dgsamp.methods.ssprop.SsPropOptions`).

    ``enabled`` is dither's own on/off: False makes the layer's backward dense (a dense epoch
    of a schedule), True dithers at ``scale``.
    """

    scale: float = DEFAULT_SCALE
    mode: str = "std"
    generator: torch.Generator | None = None
    sparse_kernel: bool | str = "auto"
    sparse_threshold: float = SPARSE_THRESHOLD
    enabled: bool = True
    method: ClassVar[str] = "dither"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_scale(self.scale))
        _check_mode(self.mode)
        if self.sparse_kernel not in (True, False, "auto"):
            raise ValueError(f"sparse_kernel must be True, False or 'auto', "
                             f"got {self.sparse_kernel!r}")
        object.__setattr__(self, "sparse_threshold", float(self.sparse_threshold))
        object.__setattr__(self, "enabled", bool(self.enabled))


def _step(dy: Tensor, scale: float, mode: str) -> Tensor:
    """Δ as a 0-d tensor (no host sync), never below max|δ|/127 (int8 codes) and never 0.

    std from one norm and one sum (single-pass reductions; ``Tensor.std`` is two-pass), both
    accumulated in the gradient's own precision (at least float32): float64 accumulation made
    these two reductions ~50x slower on CPU, two thirds of the dither cost. Only the 0-d
    results are combined in float64; Δ is a scale, float32 sums are far more precise than it
    needs (cancellation would need |mean(δ)| > 1000·std(δ)).
    """
    d = dy.detach()
    acc = torch.promote_types(d.dtype, torch.float32)
    lo, hi = torch.aminmax(d)
    amax = torch.maximum(hi, -lo).double()
    n = d.numel()
    if mode == "std" and n > 1:
        sq = torch.linalg.vector_norm(d, dtype=acc).double().square()
        tot = d.sum(dtype=acc).double()
        var = ((sq - tot * tot / n) / (n - 1)).clamp_min(0.0)
        delta = torch.maximum(var.sqrt() * scale, amax / INT8_MAX)
    else:
        delta = amax * scale if mode == "max" else amax
        delta = torch.maximum(delta, amax / INT8_MAX)
    return torch.where(delta > 0, delta, torch.ones_like(delta)).to(dy.dtype)


def dither_quantize(
    dy: Tensor, scale: float = DEFAULT_SCALE, mode: str = "std",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """int8 codes q and step Δ with δ̃ = Δ·q."""
    _check_mode(mode)
    q, delta = _codes(dy, check_scale(scale), mode, generator)
    # guard only: Δ ≥ max|δ|/127 keeps every code in range (training skips this pass)
    return q.clamp_(-INT8_MAX, INT8_MAX).to(torch.int8), delta


def _codes(dy: Tensor, scale: float, mode: str, generator: torch.Generator | None):
    """Float codes round(δ/Δ + ν) = floor(δ/Δ + u), u ~ U(0, 1), all within [−127, 127].

    ``scale`` and ``mode`` are validated by the caller (DitherOptions or the public function).
    """
    delta = _step(dy, scale, mode)
    if generator is None:
        u = torch.rand_like(dy)
    else:
        u = torch.rand(dy.shape, generator=generator, dtype=dy.dtype,
                       device=generator.device).to(dy.device)
    return u.addcmul_(dy, delta.reciprocal()).floor_(), delta


def dither(
    dy: Tensor, scale: float = DEFAULT_SCALE, mode: str = "std",
    generator: torch.Generator | None = None, stats: Any = None,
) -> Tensor:
    """δ̃ = Δ·round(δ/Δ + ν). If ``stats`` is given, writes its density counters."""
    _check_mode(mode)
    return _dither(dy, check_scale(scale), mode, generator, stats)


def _dither(dy: Tensor, scale: float, mode: str, generator: torch.Generator | None,
            stats: Any) -> Tensor:
    q, delta = _codes(dy, scale, mode, generator)
    if stats is not None:
        _record(stats, q)
    return q.mul_(delta.to(dy.dtype))


def _record(stats: Any, q: Tensor) -> None:
    n = q.numel()
    stats._grad_nnz = torch.count_nonzero(q)
    stats._grad_numel = n


def dither_grad(y: Tensor, scale: float = DEFAULT_SCALE, mode: str = "std",
                generator: torch.Generator | None = None, stats: Any = None) -> Tensor:
    """Mark ``y`` (a layer output) so that its gradient is dithered before the layer's backward.

    Both backward products of the layer that produced ``y`` then run on δ̃. A tensor hook, not
    an autograd Function: it costs no copy in forward, and a hook registered before an in-place
    op (``ReLU(inplace=True)`` right after the conv) still receives the gradient of ``y`` itself.
    Returns ``y``.
    """
    return _mark(y, DitherOptions(scale, mode, generator), stats)


def _mark(y: Tensor, opts: DitherOptions, stats: Any) -> Tensor:
    if y.requires_grad:
        y.register_hook(lambda dy: _dither(dy, opts.scale, opts.mode, opts.generator, stats))
    return y


class _DitherLinearFn(torch.autograd.Function):
    """F.linear whose backward dithers δ and may run both products as CSR sparse matmuls."""

    @staticmethod
    def forward(ctx, x, weight, bias, opts, stats):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.opts = opts
        ctx.stats = stats
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        o = ctx.opts
        sparse_kernel = o.sparse_kernel
        out_f, in_f = w.shape
        dy2 = dy.reshape(-1, out_f)
        q, delta = _codes(dy2, o.scale, o.mode, o.generator)
        if ctx.stats is not None:
            _record(ctx.stats, q)
        use_sparse = sparse_kernel is True
        if sparse_kernel == "auto" and q.device.type == "cpu" and dy2.dtype in (
                torch.float32, torch.float64):
            nnz = int(torch.count_nonzero(q)) if ctx.stats is None else int(ctx.stats._grad_nnz)
            use_sparse = nnz <= o.sparse_threshold * q.numel()
        dq = q.mul_(delta.to(q.dtype))
        x2 = x.reshape(-1, in_f).to(dq.dtype)
        wq = w.to(dq.dtype)
        dx = dw = db = None
        if use_sparse:
            with warnings.catch_warnings():  # "Sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                csr = dq.to_sparse_csr()
            if ctx.needs_input_grad[0]:
                dx = (csr @ wq).reshape(x.shape).to(x.dtype)
            if ctx.needs_input_grad[1]:
                dw = (csr.t() @ x2).to(w.dtype)
        else:
            if ctx.needs_input_grad[0]:
                dx = (dq @ wq).reshape(x.shape).to(x.dtype)
            if ctx.needs_input_grad[1]:
                dw = (dq.t() @ x2).to(w.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dq.sum(0)
        if ctx.stats is not None:
            ctx.stats.sparse_kernel_used = use_sparse
        return dx, dw, db, None, None


def dither_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                  scale: float = DEFAULT_SCALE, mode: str = "std",
                  generator: torch.Generator | None = None, sparse_kernel: bool | str = "auto",
                  sparse_threshold: float = SPARSE_THRESHOLD, stats: Any = None) -> Tensor:
    """``F.linear`` (any leading dims) with a dithered backward; see the module docstring."""
    opts = DitherOptions(scale, mode, generator, sparse_kernel, sparse_threshold)
    return _DitherLinearFn.apply(x, weight, bias, opts, stats)


class _DitherMixin:
    """Attributes shared by the dither module classes (patch.py adds and removes them).

    ``sparse_options`` (a :class:`DitherOptions`) is the layer's configuration; ``_grad_nnz``,
    ``_grad_numel`` and ``sparse_kernel_used`` are what the last backward measured.
    """

    _sparse_attrs = ("sparse_options", "_grad_nnz", "_grad_numel", "sparse_kernel_used")
    sparse_method = "dither"
    options_class = DitherOptions

    def _sparse_init(self, options: DitherOptions | None = None, **kwargs: Any) -> None:
        """Attach ``options`` (or ``DitherOptions(**kwargs)``) to this layer."""
        self.sparse_options = options if options is not None else DitherOptions(**kwargs)
        self._grad_nnz = None
        self._grad_numel = None
        self.sparse_kernel_used = False

    @property
    def scale(self) -> float:
        return self.sparse_options.scale

    @property
    def enabled(self) -> bool:
        """Whether the next backward is dithered (False: a dense step)."""
        return self.sparse_options.enabled

    @property
    def grad_density(self) -> float:
        """nnz/numel of the last δ̃ (1.0 before the first dithered backward or when disabled)."""
        if not self.enabled or self._grad_nnz is None or not self._grad_numel:
            return 1.0
        return float(self._grad_nnz) / self._grad_numel

    def set_sparsity(self, scale: float | None = None, enabled: bool | None = None) -> None:
        """Set s and/or turn dithering on or off (what schedules drive)."""
        changes = {k: v for k, v in (("scale", scale), ("enabled", enabled)) if v is not None}
        if changes:
            self.sparse_options = replace(self.sparse_options, **changes)


class DitherConv2d(_DitherMixin, nn.Conv2d):
    """``nn.Conv2d`` whose output gradient is dithered. Made by patching (class swap)."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        y = super()._conv_forward(input, weight, bias)
        if not self.enabled or not torch.is_grad_enabled():
            return y
        return _mark(y, self.sparse_options, self)


class DitherLinear(_DitherMixin, nn.Linear):
    """``nn.Linear`` whose output gradient is dithered (optionally sparse-kernel backward)."""

    def forward(self, input: Tensor) -> Tensor:
        o = self.sparse_options
        if not o.enabled or not torch.is_grad_enabled():
            return F.linear(input, self.weight, self.bias)
        if o.sparse_kernel is False:
            return _mark(F.linear(input, self.weight, self.bias), o, self)
        return _DitherLinearFn.apply(input, self.weight, self.bias, o, self)
