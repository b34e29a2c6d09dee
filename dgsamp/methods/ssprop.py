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
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SSPROP_SELECT",
    "SsPropConv2d",
    "SsPropLinear",
    "check_keep",
    "num_kept",
    "select_channels",
    "ssprop_conv2d",
    "ssprop_linear",
]

SSPROP_SELECT = ("topk", "random")
_GROUP_SELECT = ("global", "balanced")


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


def _check_select(select: str, group_select: str = "global") -> None:
    if select not in SSPROP_SELECT:
        raise ValueError(f"select must be one of {SSPROP_SELECT}, got {select!r}")
    if group_select not in _GROUP_SELECT:
        raise ValueError(f"group_select must be one of {_GROUP_SELECT}, got {group_select!r}")


def channel_scores(dy: Tensor, channel_dim: int) -> Tensor:
    """s_c = sum over all dims but ``channel_dim`` of |dY| (ranking by sum == ranking by mean)."""
    dims = [d for d in range(dy.dim()) if d != channel_dim % dy.dim()]
    return torch.linalg.vector_norm(dy, ord=1, dim=dims)


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
        dy_s = dy.index_select(1, sel)
        w_s = w.index_select(0, sel)
        x_s = x if in_idx is None else x.index_select(1, in_idx)
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
        keep, select, group_select, only_weight, rescale, generator = ctx.opts
        x_dtype, w_dtype = x.dtype, w.dtype
        if x.dtype != dy.dtype:  # autocast forward: dy comes in the low-precision type
            x = x.to(dy.dtype)
        if w.dtype != dy.dtype:
            w = w.to(dy.dtype)
        idx = select_channels(channel_scores(dy, 1), keep, select, groups, group_select, generator)
        mask = (ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                ctx.has_bias and ctx.needs_input_grad[2])
        dx, dw, db = _conv_backward_sliced(dy, x, w, idx, stride, padding, dilation, groups,
                                           mask, only_weight)
        c_out = w.shape[0]
        if rescale:
            f = c_out / idx.numel()
            dw = dw.mul_(f) if dw is not None else None
            db = db.mul_(f) if db is not None else None
            if dx is not None and not only_weight:
                dx = dx.mul_(f)
        if ctx.stats is not None:
            ctx.stats.kept_fraction = idx.numel() / c_out
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
        keep, select, _group_select, only_weight, rescale, generator = ctx.opts
        x_dtype, w_dtype = x.dtype, w.dtype
        x = x.to(dy.dtype)
        w = w.to(dy.dtype)
        out_f, in_f = w.shape
        dy2 = dy.reshape(-1, out_f)
        x2 = x.reshape(-1, in_f)
        idx = select_channels(channel_scores(dy2, 1), keep, select, 1, "global", generator)
        dy_s = dy2.index_select(1, idx)  # (N, k)
        f = out_f / idx.numel() if rescale else 1.0
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            if only_weight:
                dx = dy2 @ w
            else:
                dx = dy_s @ w.index_select(0, idx)
                if rescale:
                    dx.mul_(f)
            dx = dx.reshape(x.shape).to(x_dtype)
        if ctx.needs_input_grad[1]:
            dw = w.new_zeros(w.shape)
            dws = dy_s.t() @ x2
            dw.index_copy_(0, idx, dws.mul_(f) if rescale else dws)
            dw = dw.to(w_dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.new_zeros(out_f)
            dbs = dy_s.sum(0)
            db.index_copy_(0, idx, dbs.mul_(f) if rescale else dbs)
        if ctx.stats is not None:
            ctx.stats.kept_fraction = idx.numel() / out_f
        return dx, dw, db, None, None


def _opts(keep, select, group_select, only_weight, rescale, generator):
    keep = check_keep(keep)
    _check_select(select, group_select)
    return (keep, select, group_select, bool(only_weight), bool(rescale), generator)


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
) -> Tensor:
    """``F.conv2d`` whose backward keeps only ``keep`` of the output channels.

    ``padding`` may be an int, a pair or ``'valid'``/``'same'``; with a ``padding_mode`` other
    than ``'zeros'`` the input is padded with ``F.pad`` first (its backward is ordinary autograd)
    and the convolution runs with padding 0, as ``nn.Conv2d`` does. ``keep == 1`` is the plain
    ``F.conv2d`` (exact dense autograd). ``stats``, if given, gets ``kept_fraction`` written.
    """
    opts = _opts(keep, select, group_select, only_weight, rescale, generator)
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
    if opts[0] >= 1.0:
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
) -> Tensor:
    """``F.linear`` (any leading dims) whose backward keeps only ``keep`` of the out features."""
    opts = _opts(keep, select, "global", only_weight, rescale, generator)
    if opts[0] >= 1.0:
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
    """Attributes and helpers shared by the ssProp module classes."""

    #: attributes patch.py adds on patching and removes on unpatching
    _sparse_attrs = ("keep", "select", "group_select", "only_weight", "rescale", "generator",
                     "kept_fraction")
    sparse_method = "ssprop"

    def _sparse_init(self, keep: float = 0.5, select: str = "topk", group_select: str = "global",
                     only_weight: bool = False, rescale: bool = False,
                     generator: torch.Generator | None = None) -> None:
        _check_select(select, group_select)
        self.keep = check_keep(keep)
        self.select = select
        self.group_select = group_select
        self.only_weight = bool(only_weight)
        self.rescale = bool(rescale)
        self.generator = generator
        self.kept_fraction = None  # measured k / C_out of the last backward

    def set_sparsity(self, keep: float | None = None, scale: float | None = None) -> None:
        """Change the keep fraction (``scale`` is the dither knob and is ignored here)."""
        if keep is not None:
            self.keep = check_keep(keep)


class SsPropConv2d(_SsPropMixin, nn.Conv2d):
    """``nn.Conv2d`` with the ssProp backward. Made by patching (class swap), not constructed.

    Only ``_conv_forward`` is overridden, so ``forward`` and every parameter name stay those of
    ``nn.Conv2d``.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.keep >= 1.0:
            return super()._conv_forward(input, weight, bias)
        return ssprop_conv2d(
            input, weight, bias, self.stride, self.padding, self.dilation, self.groups,
            keep=self.keep, select=self.select, group_select=self.group_select,
            only_weight=self.only_weight, rescale=self.rescale, padding_mode=self.padding_mode,
            generator=self.generator, stats=self)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ssprop_keep={self.keep}, select={self.select}"


class SsPropLinear(_SsPropMixin, nn.Linear):
    """``nn.Linear`` with the ssProp backward on its output features."""

    def forward(self, input: Tensor) -> Tensor:
        if self.keep >= 1.0:
            return F.linear(input, self.weight, self.bias)
        return ssprop_linear(input, self.weight, self.bias, keep=self.keep, select=self.select,
                             only_weight=self.only_weight, rescale=self.rescale,
                             generator=self.generator, stats=self)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ssprop_keep={self.keep}, select={self.select}"
