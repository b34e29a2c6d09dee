"""ssProp backward: exact dense path at keep=1, equality with a masked-dY reference at keep<1."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dgsamp.methods.ssprop import (
    channel_scores,
    num_kept,
    select_channels,
    ssprop_conv2d,
    ssprop_linear,
)

DT = torch.float64


def _conv_grads(fn, x, w, b, dy):
    x = x.clone().requires_grad_()
    w = w.clone().requires_grad_()
    b = b.clone().requires_grad_() if b is not None else None
    y = fn(x, w, b)
    y.backward(dy)
    return y.detach(), x.grad, w.grad, (b.grad if b is not None else None)


CONV_CASES = [
    # (c_in, c_out, k, stride, padding, dilation, groups, padding_mode)
    (6, 8, 3, 1, 1, 1, 1, "zeros"),
    (6, 8, 3, 2, 1, 1, 1, "zeros"),
    (4, 10, 3, (2, 1), (1, 2), 1, 1, "zeros"),
    (5, 7, 3, 1, 2, 2, 1, "zeros"),
    (6, 8, 3, 1, 1, 1, 1, "reflect"),
    (6, 8, 3, 2, 1, 1, 1, "circular"),
    (6, 8, 3, 1, 1, 1, 1, "replicate"),
    (8, 12, 3, 1, 1, 1, 4, "zeros"),       # grouped
    (8, 12, 3, 2, 1, 2, 2, "reflect"),     # grouped + strided + dilated + reflect
    (8, 8, 3, 1, 1, 1, 8, "zeros"),        # depthwise
    (8, 16, 5, 2, 2, 1, 8, "zeros"),       # depthwise, channel multiplier 2
    (6, 8, 1, 1, 0, 1, 1, "zeros"),        # pointwise
    (6, 8, 3, 1, "same", 2, 1, "zeros"),
]


def _pad_then(padding_mode, padding):
    """Reference conv: nn.Conv2d semantics for padding modes."""
    def fn(x, w, b, stride, dilation, groups):
        if padding_mode != "zeros":
            p = (padding, padding) if isinstance(padding, int) else padding
            x = F.pad(x, (p[1], p[1], p[0], p[0]), mode=padding_mode)
            return F.conv2d(x, w, b, stride, 0, dilation, groups)
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    return fn


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_keep1_is_dense(case, bias):
    cin, cout, k, s, p, d, g, pm = case
    torch.manual_seed(0)
    x = torch.randn(2, cin, 9, 10, dtype=DT)
    w = torch.randn(cout, cin // g, k, k, dtype=DT)
    b = torch.randn(cout, dtype=DT) if bias else None
    ref = _pad_then(pm, p)
    y0 = ref(x, w, b, s, d, g)
    dy = torch.randn_like(y0)
    r = _conv_grads(lambda x, w, b: ref(x, w, b, s, d, g), x, w, b, dy)
    o = _conv_grads(lambda x, w, b: ssprop_conv2d(x, w, b, s, p, d, g, keep=1.0,
                                                  padding_mode=pm), x, w, b, dy)
    for a, c in zip(r, o, strict=True):
        if a is None:
            assert c is None
        else:
            torch.testing.assert_close(c, a, atol=1e-10, rtol=0)


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("keep", [0.5, 0.2])
@pytest.mark.parametrize("group_select", ["global", "balanced"])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_conv_sparse_equals_masked_reference(case, keep, group_select, fmt):
    """channels_last: x and dY as ConvNeXt hands them over (the NHWC gather path)."""
    cin, cout, k, s, p, d, g, pm = case
    torch.manual_seed(1)
    x = torch.randn(3, cin, 11, 9, dtype=DT).contiguous(memory_format=fmt)
    w = torch.randn(cout, cin // g, k, k, dtype=DT)
    b = torch.randn(cout, dtype=DT)
    ref = _pad_then(pm, p)
    y0 = ref(x, w, b, s, d, g)
    dy = torch.randn_like(y0) * torch.rand(1, cout, 1, 1, dtype=DT)  # distinct channel scales
    dy = dy.contiguous(memory_format=fmt)
    idx = select_channels(channel_scores(dy, 1), keep, "topk", g, group_select)
    if group_select == "global" or g == 1:
        assert idx.numel() == num_kept(keep, cout)
    m = torch.zeros(cout, dtype=DT)
    m[idx] = 1
    dy_masked = dy * m.view(1, -1, 1, 1)
    r = _conv_grads(lambda x, w, b: ref(x, w, b, s, d, g), x, w, b, dy_masked)
    o = _conv_grads(lambda x, w, b: ssprop_conv2d(x, w, b, s, p, d, g, keep=keep,
                                                  group_select=group_select,
                                                  padding_mode=pm), x, w, b, dy)
    torch.testing.assert_close(o[0], y0, atol=1e-12, rtol=0)  # forward unchanged
    for a, c in zip(r[1:], o[1:], strict=True):
        torch.testing.assert_close(c, a, atol=1e-10, rtol=0)
    # dW rows not kept are exactly zero
    dropped = torch.ones(cout, dtype=torch.bool)
    dropped[idx] = False
    assert (o[2][dropped] == 0).all() and (o[3][dropped] == 0).all()


def test_take_channels_keeps_the_memory_format():
    from dgsamp.methods.ssprop import _take_channels

    t = torch.randn(2, 7, 3, 5)
    idx = torch.tensor([0, 3, 6])
    for fmt in (torch.contiguous_format, torch.channels_last):
        tf = t.contiguous(memory_format=fmt)
        out = _take_channels(tf, idx)
        assert torch.equal(out, t.index_select(1, idx))
        assert out.is_contiguous(memory_format=fmt)


def test_channel_scores_are_channel_l1_norms():
    dy = torch.randn(3, 5, 4, 2, dtype=DT)
    torch.testing.assert_close(channel_scores(dy, 1),
                               torch.linalg.vector_norm(dy, ord=1, dim=(0, 2, 3)))
    d2 = torch.randn(9, 6, dtype=DT)
    torch.testing.assert_close(channel_scores(d2, 1), d2.abs().sum(0))


def test_conv_only_weight_and_rescale():
    torch.manual_seed(2)
    x = torch.randn(2, 4, 8, 8, dtype=DT)
    w = torch.randn(10, 4, 3, 3, dtype=DT)
    b = torch.randn(10, dtype=DT)
    dy = torch.randn(2, 10, 8, 8, dtype=DT)
    idx = select_channels(channel_scores(dy, 1), 0.3, "topk")
    m = torch.zeros(10, dtype=DT)
    m[idx] = 1
    dense = _conv_grads(lambda x, w, b: F.conv2d(x, w, b, 1, 1), x, w, b, dy)
    masked = _conv_grads(lambda x, w, b: F.conv2d(x, w, b, 1, 1), x, w, b,
                         dy * m.view(1, -1, 1, 1))
    ow = _conv_grads(lambda x, w, b: ssprop_conv2d(x, w, b, 1, 1, keep=0.3, only_weight=True),
                     x, w, b, dy)
    torch.testing.assert_close(ow[1], dense[1], atol=1e-10, rtol=0)  # dX dense
    torch.testing.assert_close(ow[2], masked[2], atol=1e-10, rtol=0)
    rs = _conv_grads(lambda x, w, b: ssprop_conv2d(x, w, b, 1, 1, keep=0.3, rescale=True),
                     x, w, b, dy)
    f = 10 / idx.numel()
    for a, c in zip(masked[1:], rs[1:], strict=True):
        torch.testing.assert_close(c, a * f, atol=1e-10, rtol=0)


def test_conv_random_select_keeps_k_rows():
    torch.manual_seed(3)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    w = torch.randn(20, 4, 3, 3, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    ssprop_conv2d(x, w, None, 1, 1, keep=0.25, select="random", generator=gen).sum().backward()
    nz_rows = (w.grad.flatten(1).abs().sum(1) > 0).sum().item()
    assert nz_rows == 5


@pytest.mark.parametrize("shape", [(7, 12), (3, 5, 12), (2, 3, 4, 12)])
@pytest.mark.parametrize("keep", [1.0, 0.5, 0.2])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_equals_masked_reference(shape, keep, bias):
    torch.manual_seed(4)
    x = torch.randn(*shape, dtype=DT)
    w = torch.randn(10, 12, dtype=DT)
    b = torch.randn(10, dtype=DT) if bias else None
    dy = torch.randn(*shape[:-1], 10, dtype=DT) * torch.rand(10, dtype=DT)
    m = torch.ones(10, dtype=DT)
    if keep < 1:
        idx = select_channels(channel_scores(dy.reshape(-1, 10), 1), keep, "topk")
        assert idx.numel() == num_kept(keep, 10)
        m.zero_()
        m[idx] = 1
    r = _conv_grads(F.linear, x, w, b, dy * m)
    o = _conv_grads(lambda x, w, b: ssprop_linear(x, w, b, keep=keep), x, w, b, dy)
    torch.testing.assert_close(o[0], F.linear(x, w, b), atol=1e-12, rtol=0)
    for a, c in zip(r[1:], o[1:], strict=True):
        if a is None:
            assert c is None
        else:
            torch.testing.assert_close(c, a, atol=1e-10, rtol=0)


def test_linear_only_weight():
    torch.manual_seed(5)
    x = torch.randn(4, 6, 12, dtype=DT)
    w = torch.randn(10, 12, dtype=DT)
    dy = torch.randn(4, 6, 10, dtype=DT)
    dense = _conv_grads(F.linear, x, w, None, dy)
    o = _conv_grads(lambda x, w, b: ssprop_linear(x, w, b, keep=0.3, only_weight=True),
                    x, w, None, dy)
    torch.testing.assert_close(o[1], dense[1], atol=1e-10, rtol=0)
    assert (o[2].abs().sum(1) > 0).sum().item() == 3


def _backward_flops(fn, x, w, b):
    y = fn(x, w, b)
    dy = torch.randn_like(y)
    with FlopCounterMode(display=False) as fc:
        y.backward(dy)
    return fc.get_total_flops()


@pytest.mark.parametrize("keep", [0.5, 0.25])
def test_flops_fall_with_keep(keep):
    torch.manual_seed(6)
    x = torch.randn(2, 16, 16, 16, requires_grad=True)
    w = torch.randn(32, 16, 3, 3, requires_grad=True)
    dense = _backward_flops(lambda x, w, b: F.conv2d(x, w, b, 1, 1), x, w, None)
    sparse = _backward_flops(lambda x, w, b: ssprop_conv2d(x, w, b, 1, 1, keep=keep), x, w, None)
    assert sparse == pytest.approx(dense * num_kept(keep, 32) / 32, rel=1e-6)
    xl = torch.randn(8, 20, 64, requires_grad=True)
    wl = torch.randn(128, 64, requires_grad=True)
    dense = _backward_flops(F.linear, xl, wl, None)
    sparse = _backward_flops(lambda x, w, b: ssprop_linear(x, w, b, keep=keep), xl, wl, None)
    assert sparse == pytest.approx(dense * num_kept(keep, 128) / 128, rel=1e-6)


def test_depthwise_flops_fall():
    """keep 1/4 of a depthwise conv's channels costs what a 4-channel depthwise conv costs.

    (torch's flop counter scales the grouped input-gradient count with the group count, so the
    expected value is taken from the same counter on the smaller dense layer.)
    """
    x = torch.randn(2, 16, 12, 12, requires_grad=True)
    w = torch.randn(16, 1, 3, 3, requires_grad=True)
    dense = _backward_flops(lambda x, w, b: F.conv2d(x, w, b, 1, 1, 1, 16), x, w, None)
    sparse = _backward_flops(
        lambda x, w, b: ssprop_conv2d(x, w, b, 1, 1, 1, 16, keep=0.25), x, w, None)
    small = _backward_flops(lambda x, w, b: F.conv2d(x, w, b, 1, 1, 1, 4),
                            x[:, :4].detach().requires_grad_(), w[:4].detach().requires_grad_(),
                            None)
    assert sparse == small < dense / 4


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), "a", None])
def test_bad_keep(bad):
    x = torch.randn(1, 2, 4, 4)
    w = torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="keep"):
        ssprop_conv2d(x, w, keep=bad)
    with pytest.raises(ValueError, match="keep"):
        ssprop_linear(torch.randn(2, 3), torch.randn(4, 3), keep=bad)


def test_bad_select():
    with pytest.raises(ValueError, match="select"):
        ssprop_linear(torch.randn(2, 3), torch.randn(4, 3), keep=0.5, select="best")


def test_patched_depthwise_conv_keeps_its_dense_backward_unless_sliced():
    """The automatic choice (slicing_pays) depends on the shape and keep only, so it is
    deterministic; a depthwise conv where slicing cannot win falls back to the dense backward,
    ``grouped='sliced'`` forces slicing."""
    from torch import nn

    from dgsamp.methods.patch import patch, sparse_stats, unpatch
    from dgsamp.methods.ssprop import slicing_pays

    torch.manual_seed(7)
    dw, grouped = nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 8, 3, padding=1, groups=2)
    assert [slicing_pays(dw, 0.5), slicing_pays(grouped, 0.5),
            slicing_pays(nn.Conv2d(8, 4, 1), 0.5)] == [False, True, True]
    dw7 = nn.Conv2d(40, 40, 7, padding=3, groups=40)  # ConvNeXt's: slicing pays at low keep
    assert [slicing_pays(dw7, k) for k in (0.7, 0.5, 0.2)] == [False, True, True]
    assert not any(slicing_pays(dw, k) for k in (0.5, 0.2, 0.05))  # 3x3: never
    x = torch.randn(2, 8, 6, 6, dtype=DT)
    dy = torch.randn(2, 8, 6, 6, dtype=DT) * torch.rand(1, 8, 1, 1, dtype=DT)
    dw.double()
    ref = _conv_grads(lambda x, w, b: F.conv2d(x, w, b, 1, 1, 1, 8), x, dw.weight.detach(),
                      dw.bias.detach(), dy)
    for grouped_opt, expect_dense in (("auto", True), ("sliced", False)):
        patch(dw, "ssprop", keep=0.5, dense_output=False, grouped=grouped_opt)
        assert dw.dense_backward is expect_dense
        xg = x.clone().requires_grad_()
        dw.weight.grad = dw.bias.grad = None
        dw(xg).backward(dy)
        if expect_dense:  # the fallback: exactly dense autograd, every channel used
            torch.testing.assert_close(xg.grad, ref[1], atol=1e-12, rtol=0)
            torch.testing.assert_close(dw.weight.grad, ref[2], atol=1e-12, rtol=0)
            assert sparse_stats(dw)["kept_fraction"] == 1.0
        else:
            assert int((dw.weight.grad.flatten(1).abs().sum(1) > 0).sum()) == 4
            assert sparse_stats(dw)["kept_fraction"] == 0.5
        unpatch(dw)
