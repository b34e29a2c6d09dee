"""ssProp: channel-sparse backward for Conv2d and Linear (methods.md §2).

The forward is the ordinary convolution / matmul. In the backward the output channels with the
largest mean |dY| (or a random subset) are kept; everything else is *sliced away*, so the weight
and input gradient kernels really run on ``k = max(1, floor(keep * C_out))`` channels. A masked
dY would run the full-size kernels and save nothing, which is why the code below never masks.

Channels not kept get a zero weight/bias gradient, and the input gradient only receives the
contribution of the kept channels (``only_weight=True`` keeps the input gradient dense).

Grouped convolutions: a kept channel belongs to one group, and the sliced weight must still be a
valid grouped weight. With ``group_select='global'`` (default) the top-k is taken over all
channels exactly as in the spec; groups that end up with the same number of kept channels are
computed together in one grouped ``convolution_backward`` (groups without kept channels drop out,
together with their input channels), so a depthwise convolution keeps k of its C groups. With
``group_select='balanced'`` every group keeps ``max(1, floor(keep * C_out/groups))`` channels,
which always needs a single kernel call.

Module classes :class:`SsPropConv2d` and :class:`SsPropLinear` are what :mod:`dgsamp.methods.patch`
swaps an existing module's class to; they keep every parameter under the same name.

On CPU the backward of groups=1 convs and linear layers with top-k selection is one C++ call
(:mod:`.ssprop_native`, ``native=True`` by default): the same channels and products as the
Python path below, which runs everywhere else (grouped convs, random selection, CUDA,
``create_graph=True``, no compiler).

Over 350 lines for a reason: options, channel selection, the sliced backward, the two autograd
Functions, their functional forms and module classes are one algorithm sharing private helpers
(padding rules, the bucketed grouped backward); split, each part would import the others'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ssprop_native

__all__ = [
    "COPY_COST_MACS",
    "SSPROP_SELECT",
    "SsPropConv2d",
    "SsPropLinear",
    "SsPropOptions",
    "check_keep",
    "num_kept",
    "select_channels",
    "ssprop_conv2d",
    "ssprop_linear",
    "slicing_pays",
]

SSPROP_SELECT = ("topk", "random")
_GROUP_SELECT = ("global", "balanced")
_GROUPED = ("auto", "sliced")
#: one element copied by slicing (gather or scatter) costs about this many multiply-adds of the
#: conv kernels on this CPU (one AVX-512 core, ~50 GMAC/s): 20 before the channels-last gathers
#: of issue 14, 10 since (calibrated on ConvNeXt-atto's whole step, see :func:`slicing_pays`)
COPY_COST_MACS = 10.0


def check_keep(keep: Any) -> float:
    """Validate a keep fraction: a real number in (0, 1]. Returns it as float."""
    try:
        k = float(keep)
    except (TypeError, ValueError):
        raise ValueError(f"keep must be a number in (0, 1], got {keep!r}") from None
    if not (0.0 < k <= 1.0) or math.isnan(k):
        raise ValueError(f"keep must be in (0, 1], got {keep!r}")
    return k


def num_kept(keep: float, channels: int) -> int:
    """k = max(1, floor(keep * channels)) (methods.md §2)."""
    return max(1, int(math.floor(keep * channels + 1e-9)))


@dataclass(frozen=True)
class SsPropOptions:
    """One layer's ssProp settings, validated once here.

    Frozen, so one instance is shared by every layer a :func:`~dgsamp.methods.patch.patch` call
    makes and handed to the autograd Function as is; ``dataclasses.replace`` (what
    ``set_sparsity`` does) makes a validated copy. ``grouped`` decides the depthwise case: with
    ``'auto'`` (default) a patched depthwise conv keeps its dense backward where slicing cannot
    win (:func:`slicing_pays`), with ``'sliced'`` it is always sliced like every other conv.
    The functional ``ssprop_conv2d`` always slices. ``native`` (default True) runs the backward
    of groups=1 convs and linear layers with top-k selection on CPU as one C++ call
    (:mod:`.ssprop_native`: the same channels and gradients, without ~15 Python-level tensor
    ops per layer); False keeps the Python path, which is also what runs where the extension
    cannot be built.
    """

    keep: float = 0.5
    select: str = "topk"
    group_select: str = "global"
    only_weight: bool = False
    rescale: bool = False
    generator: torch.Generator | None = None
    grouped: str = "auto"
    native: bool = True
    method: ClassVar[str] = "ssprop"

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep", check_keep(self.keep))
        if self.select not in SSPROP_SELECT:
            raise ValueError(f"select must be one of {SSPROP_SELECT}, got {self.select!r}")
        if self.group_select not in _GROUP_SELECT:
            raise ValueError(f"group_select must be one of {_GROUP_SELECT}, "
                             f"got {self.group_select!r}")
        if self.grouped not in _GROUPED:
            raise ValueError(f"grouped must be one of {_GROUPED}, got {self.grouped!r}")
        object.__setattr__(self, "only_weight", bool(self.only_weight))
        object.__setattr__(self, "rescale", bool(self.rescale))
        object.__setattr__(self, "native", bool(self.native))


def slicing_pays(conv: nn.Conv2d, keep: float) -> bool:
    """Whether the sliced backward can beat the dense one for this conv's shape at ``keep``.

    Only depthwise convs (one input channel per group) can lose: slicing saves
    ``2(1 − keep)·k²`` multiply-adds per output-gradient element (dX and dW), and pays for
    gathering dY, gathering the kept groups' X and scattering their dX back, about
    ``(1 + 2·keep) + (|X|/|dY|)(1 + 3·keep)`` element copies (``COPY_COST_MACS`` each). For a
    7x7 depthwise conv that is break-even near keep 0.53. Since the gathers keep channels-last
    tensors channels-last (issue 14), ConvNeXt-atto's whole step at keep 0.5 is faster with its
    7x7 depthwise convs sliced than dense in each of three runs side by side (2026-12-03, quick
    steps: 1.05 / 1.02 / 1.03x vs 1.00 / 0.98 / 1.02x at 224 px, 0.99 / 1.00 / 0.99x vs
    0.92 / 0.92 / 0.92x at 32 px; docs/results/benchmark_sparse_steps_cpu.md), so the copy cost
    was halved from 20 (calibrated on the old copies, which put break-even at keep 0.29). A 3x3
    or 5x5 depthwise conv at keep 0.5 stays dense; 3x3 never pays. Deterministic: a function of
    shape and keep.
    """
    if conv.groups == 1 or conv.in_channels != conv.groups:
        return True
    sh, sw = conv.stride
    x_per_dy = sh * sw * conv.in_channels / conv.out_channels
    saved = 2.0 * (1.0 - keep) * conv.kernel_size[0] * conv.kernel_size[1]
    copies = (1.0 + 2.0 * keep) + x_per_dy * (1.0 + 3.0 * keep)
    return saved >= COPY_COST_MACS * copies


def channel_scores(dy: Tensor, channel_dim: int) -> Tensor:
    """s_c = sum over all dims but ``channel_dim`` of |dY| (ranking by sum == ranking by mean).

    ``abs`` then ``sum``, not ``vector_norm(ord=1, dim=...)``: on CPU the strided 1-norm
    reduction is not vectorized, and the extra pass is cheaper than it (one thread: 1.5-3.6x
    faster on conv gradients, 4-8x on linear ones, e.g. 2.1 vs 18.2 ms for a 1576x1536 dY).
    """
    dims = [d for d in range(dy.dim()) if d != channel_dim % dy.dim()]
    return dy.abs().sum(dims)


def select_channels(
    scores: Tensor,
    keep: float,
    select: str = "topk",
    groups: int = 1,
    group_select: str = "global",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Indices (sorted, int64) of the output channels whose gradient is kept.

    Exposed so tests and tools can recompute the exact selection the backward makes.
    """
    c = scores.numel()
    if group_select == "balanced" and groups > 1:
        m = c // groups
        kg = num_kept(keep, m)
        if select == "topk":
            idx = scores.view(groups, m).topk(kg, dim=1, sorted=False).indices
        else:
            r = torch.rand(groups, m, generator=generator, device="cpu").to(scores.device)
            idx = r.argsort(dim=1)[:, :kg]
        idx = idx + torch.arange(groups, device=scores.device).unsqueeze(1) * m
        return idx.flatten().sort().values
    k = num_kept(keep, c)
    if select == "topk":
        idx = scores.topk(k, sorted=False).indices
    else:
        idx = torch.randperm(c, generator=generator, device="cpu")[:k].to(scores.device)
    return idx.sort().values


def _take_channels(t: Tensor, idx: Tensor) -> Tensor:
    """``t.index_select(1, idx)`` in ``t``'s own memory format.

    A channels_last tensor (ConvNeXt's convs after its LayerNorm2d permutes) is gathered as
    NHWC along its last dim and comes back channels_last: ``index_select(1)`` would return it
    NCHW-contiguous, a strided gather (3.3x slower here), and ``convolution_backward`` would
    then convert formats to match ``x`` (copies that made the sliced ConvNeXt-atto backward
    slower than dense).
    """
    if (t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last)):
        n, c, h, w = t.shape  # as (NHW, C): the 2-d gather is ~7x faster than the 4-d one
        rows = t.permute(0, 2, 3, 1).reshape(n * h * w, c).index_select(1, idx)
        return rows.view(n, h, w, idx.numel()).permute(0, 3, 1, 2)
    return t.index_select(1, idx)


def _conv_backward_sliced(
    dy: Tensor,
    x: Tensor,
    w: Tensor,
    idx: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    mask: tuple[bool, bool, bool],
    only_weight: bool,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """dX, dW, db of a conv whose output gradient is restricted to channels ``idx``."""
    c_out = w.shape[0]
    need_dx, need_dw, need_db = mask
    dx = dw = db = None
    if need_dx and only_weight:
        dx = torch.ops.aten.convolution_backward(
            dy, x, w, None, stride, padding, dilation, False, [0, 0], groups,
            [True, False, False])[0]
        need_dx = False
    if not (need_dx or need_dw or need_db):
        return dx, dw, db
    if need_dw:
        dw = w.new_zeros(w.shape)
    if need_db:
        db = dy.new_zeros(c_out)
    if groups == 1:
        buckets = [(idx, None, 1)]
    else:
        m = c_out // groups
        cin_g = w.shape[1]
        grp = torch.div(idx, m, rounding_mode="floor")
        counts = torch.bincount(grp, minlength=groups)
        buckets = []
        for n in counts.unique().tolist():
            if n == 0:
                continue
            in_bucket = counts[grp] == n
            sel = idx[in_bucket]
            gs = grp[in_bucket][::n]  # idx is sorted, so each group's channels are contiguous
            if gs.numel() == groups:
                in_idx = None
            else:
                in_idx = (gs.unsqueeze(1) * cin_g
                          + torch.arange(cin_g, device=idx.device)).flatten()
            buckets.append((sel, in_idx, gs.numel()))
        if need_dx and any(b[1] is not None for b in buckets):
            dx = x.new_zeros(x.shape)
    for sel, in_idx, g in buckets:
        dy_s = _take_channels(dy, sel)
        w_s = w.index_select(0, sel)
        x_s = x if in_idx is None else _take_channels(x, in_idx)
        dx_s, dw_s, db_s = torch.ops.aten.convolution_backward(
            dy_s, x_s, w_s, [sel.numel()] if need_db else None, stride, padding, dilation,
            False, [0, 0], g, [need_dx, need_dw, need_db])
        if need_dx:
            if in_idx is None:
                dx = dx_s if dx is None else dx.add_(dx_s)
            else:
                dx.index_copy_(1, in_idx, dx_s)
        if need_dw:
            dw.index_copy_(0, sel, dw_s)
        if need_db:
            db.index_copy_(0, sel, db_s)
    return dx, dw, db


def _native_call(getter, opts: SsPropOptions, dy: Tensor):
    """The one-call native backward ``getter`` returns, where it applies: ``native`` on, top-k
    selection, a CPU gradient, no ``create_graph`` (its dW has no graph), the extension built.
    None means the Python path."""
    if (opts.native and opts.select == "topk" and dy.device.type == "cpu"
            and not torch.is_grad_enabled()):
        return getter()
    return None


class _SsPropConv2dFn(torch.autograd.Function):
    """conv2d with zero padding in forward; channel-sliced convolution_backward in backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, opts, stats):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.conf = (list(stride), list(padding), list(dilation), groups)
        ctx.opts = opts
        ctx.stats = stats
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        o = ctx.opts
        only_weight = o.only_weight
        x_dtype, w_dtype = x.dtype, w.dtype
        if x.dtype != dy.dtype:  # autocast forward: dy comes in the low-precision type
            x = x.to(dy.dtype)
        if w.dtype != dy.dtype:
            w = w.to(dy.dtype)
        c_out = w.shape[0]
        mask = (ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                ctx.has_bias and ctx.needs_input_grad[2])
        native = _native_call(ssprop_native.conv_backward, o, dy) if groups == 1 else None
        if native is not None:  # the same selection and products in one call (ssprop_native)
            k = num_kept(o.keep, c_out)
            dx, dw, db = native(dy, x, w, k, stride, padding, dilation, *mask, only_weight,
                                c_out / k if o.rescale else 1.0)
        else:
            idx = select_channels(channel_scores(dy, 1), o.keep, o.select, groups,
                                  o.group_select, o.generator)
            k = idx.numel()
            dx, dw, db = _conv_backward_sliced(dy, x, w, idx, stride, padding, dilation, groups,
                                               mask, only_weight)
            if o.rescale:
                f = c_out / k
                dw = dw.mul_(f) if dw is not None else None
                db = db.mul_(f) if db is not None else None
                if dx is not None and not only_weight:
                    dx = dx.mul_(f)
        if ctx.stats is not None:
            ctx.stats.kept_fraction = k / c_out
        dx = dx.to(x_dtype) if dx is not None else None
        dw = dw.to(w_dtype) if dw is not None else None
        return dx, dw, db, None, None, None, None, None, None


class _SsPropLinearFn(torch.autograd.Function):
    """F.linear in forward; matmuls on the kept output features only in backward."""

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
        only_weight, rescale = o.only_weight, o.rescale
        x_dtype, w_dtype = x.dtype, w.dtype
        x = x.to(dy.dtype)
        w = w.to(dy.dtype)
        out_f, in_f = w.shape
        dy2 = dy.reshape(-1, out_f)
        x2 = x.reshape(-1, in_f)
        need_db = ctx.has_bias and ctx.needs_input_grad[2]
        native = _native_call(ssprop_native.linear_backward, o, dy)
        if native is not None:  # the same selection and products in one call (ssprop_native)
            k = num_kept(o.keep, out_f)
            dx, dw, db = native(dy2, x2, w, k, ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                                need_db, only_weight, out_f / k if rescale else 1.0)
        else:
            idx = select_channels(channel_scores(dy2, 1), o.keep, o.select, 1, "global",
                                  o.generator)
            k = idx.numel()
            dx, dw, db = _linear_backward_sliced(dy2, x2, w, idx, ctx.needs_input_grad[0],
                                                 ctx.needs_input_grad[1], need_db, only_weight,
                                                 out_f / k if rescale else 1.0)
        if dx is not None:
            dx = dx.reshape(x.shape).to(x_dtype)
        if dw is not None:
            dw = dw.to(w_dtype)
        if ctx.stats is not None:
            ctx.stats.kept_fraction = k / out_f
        return dx, dw, db, None, None


def _linear_backward_sliced(dy2: Tensor, x2: Tensor, w: Tensor, idx: Tensor, need_dx: bool,
                            need_dw: bool, need_db: bool, only_weight: bool,
                            f: float) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """dX, dW, db of a linear layer (2-d dY and x) whose output gradient keeps features
    ``idx``; ``f`` multiplies the sliced products (1 for none)."""
    dy_s = dy2.index_select(1, idx)  # (N, k)
    dx = dw = db = None
    if need_dx:
        if only_weight:
            dx = dy2 @ w
        else:
            dx = dy_s @ w.index_select(0, idx)
            if f != 1.0:
                dx.mul_(f)
    if need_dw:
        dw = w.new_zeros(w.shape)
        dws = dy_s.t() @ x2
        dw.index_copy_(0, idx, dws.mul_(f) if f != 1.0 else dws)
    if need_db:
        db = dy2.new_zeros(w.shape[0])
        dbs = dy_s.sum(0)
        db.index_copy_(0, idx, dbs.mul_(f) if f != 1.0 else dbs)
    return dx, dw, db


def ssprop_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    *,
    keep: float = 0.5,
    select: str = "topk",
    group_select: str = "global",
    only_weight: bool = False,
    rescale: bool = False,
    padding_mode: str = "zeros",
    generator: torch.Generator | None = None,
    stats: Any = None,
    native: bool = True,
) -> Tensor:
    """``F.conv2d`` whose backward keeps only ``keep`` of the output channels.

    ``padding`` may be an int, a pair or ``'valid'``/``'same'``; with a ``padding_mode`` other
    than ``'zeros'`` the input is padded with ``F.pad`` first (its backward is ordinary autograd)
    and the convolution runs with padding 0, as ``nn.Conv2d`` does. ``keep == 1`` is the plain
    ``F.conv2d`` (exact dense autograd). ``stats``, if given, gets ``kept_fraction`` written.
    """
    opts = SsPropOptions(keep, select, group_select, only_weight, rescale, generator, "sliced",
                         native)
    return _conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode, opts, stats)


def _conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: Any, padding: Any,
            dilation: Any, groups: int, padding_mode: str, opts: SsPropOptions,
            stats: Any) -> Tensor:
    """ssprop_conv2d on options validated already (what the module calls every forward)."""
    stride = _pair(stride)
    dilation = _pair(dilation)
    if isinstance(padding, str):
        padding = _resolve_str_padding(padding, weight.shape[-2:], stride, dilation)
        if padding is None:  # 'same' with an asymmetric total: let F.pad do it
            padding = _same_pad_amounts(weight.shape[-2:], dilation)
            x = F.pad(x, padding, mode="constant" if padding_mode == "zeros" else padding_mode)
            padding = (0, 0)
    padding = _pair(padding)
    if padding_mode != "zeros" and any(padding):
        ph, pw = padding
        x = F.pad(x, (pw, pw, ph, ph), mode=padding_mode)
        padding = (0, 0)
    if opts.keep >= 1.0:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    return _SsPropConv2dFn.apply(x, weight, bias, stride, padding, dilation, groups, opts, stats)


def ssprop_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    keep: float = 0.5,
    select: str = "topk",
    only_weight: bool = False,
    rescale: bool = False,
    generator: torch.Generator | None = None,
    stats: Any = None,
    native: bool = True,
) -> Tensor:
    """``F.linear`` (any leading dims) whose backward keeps only ``keep`` of the out features."""
    opts = SsPropOptions(keep, select, "global", only_weight, rescale, generator, native=native)
    return _linear(x, weight, bias, opts, stats)


def _linear(x: Tensor, weight: Tensor, bias: Tensor | None, opts: SsPropOptions,
            stats: Any) -> Tensor:
    if opts.keep >= 1.0:
        return F.linear(x, weight, bias)
    return _SsPropLinearFn.apply(x, weight, bias, opts, stats)


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(int(i) for i in v)
    return t if len(t) == 2 else (t[0], t[0])


def _same_pad_amounts(ksize, dilation) -> tuple[int, int, int, int]:
    """F.pad amounts (left, right, top, bottom) of 'same' padding for stride 1."""
    tot_h = dilation[0] * (ksize[0] - 1)
    tot_w = dilation[1] * (ksize[1] - 1)
    return (tot_w // 2, tot_w - tot_w // 2, tot_h // 2, tot_h - tot_h // 2)


def _resolve_str_padding(padding: str, ksize, stride, dilation):
    if padding == "valid":
        return (0, 0)
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions")
        tot = [d * (k - 1) for d, k in zip(dilation, ksize, strict=True)]
        if all(t % 2 == 0 for t in tot):
            return (tot[0] // 2, tot[1] // 2)
        return None
    raise ValueError(f"unknown padding {padding!r}")


class _SsPropMixin:
    """Attributes and helpers shared by the ssProp module classes.

    ``sparse_options`` (an :class:`SsPropOptions`) is the layer's whole configuration;
    ``kept_fraction`` is what the last backward measured.
    """

    #: attributes patch.py adds on patching and removes on unpatching
    _sparse_attrs = ("sparse_options", "kept_fraction")
    sparse_method = "ssprop"
    options_class = SsPropOptions

    def _sparse_init(self, options: SsPropOptions | None = None, **kwargs: Any) -> None:
        """Attach ``options`` (or ``SsPropOptions(**kwargs)``) to this layer."""
        self.sparse_options = options if options is not None else SsPropOptions(**kwargs)
        self.kept_fraction = None  # measured k / C_out of the last backward

    @property
    def keep(self) -> float:
        """The keep fraction the next backward uses."""
        return self.sparse_options.keep

    def set_sparsity(self, keep: float) -> None:
        """Change the keep fraction (what schedules drive)."""
        self.sparse_options = replace(self.sparse_options, keep=keep)


class SsPropConv2d(_SsPropMixin, nn.Conv2d):
    """``nn.Conv2d`` with the ssProp backward. Made by patching (class swap), not constructed.

    Only ``_conv_forward`` is overridden, so ``forward`` and every parameter name stay those of
    ``nn.Conv2d``. A depthwise conv keeps its dense backward where slicing cannot win, unless
    ``grouped='sliced'`` (:func:`slicing_pays`).
    """

    @property
    def dense_backward(self) -> bool:
        """Whether the next backward runs dense although keep < 1 (the depthwise fallback)."""
        o = self.sparse_options
        return o.keep < 1.0 and o.grouped == "auto" and not slicing_pays(self, o.keep)

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.sparse_options.keep >= 1.0:
            return super()._conv_forward(input, weight, bias)
        if self.dense_backward:
            if torch.is_grad_enabled():
                self.kept_fraction = 1.0  # its backward uses every channel
            return super()._conv_forward(input, weight, bias)
        return _conv2d(input, weight, bias, self.stride, self.padding, self.dilation,
                       self.groups, self.padding_mode, self.sparse_options, self)

    def extra_repr(self) -> str:
        o = self.sparse_options
        dense = ", dense backward (depthwise)" if self.dense_backward else ""
        return super().extra_repr() + f", ssprop_keep={o.keep}, select={o.select}{dense}"


class SsPropLinear(_SsPropMixin, nn.Linear):
    """``nn.Linear`` with the ssProp backward on its output features."""

    def forward(self, input: Tensor) -> Tensor:
        return _linear(input, self.weight, self.bias, self.sparse_options, self)

    def extra_repr(self) -> str:
        o = self.sparse_options
        return super().extra_repr() + f", ssprop_keep={o.keep}, select={o.select}"
