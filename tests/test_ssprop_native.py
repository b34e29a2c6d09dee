"""ssProp's one-call native backward (dgsamp.methods.ssprop_native) against the Python path.

The two must keep the same channels and give the same dX, dW, db on the same dY; the Python
path is what runs where the extension cannot be built (the ``native_unbuilt`` fixture).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dgsamp.methods import ssprop_native
from dgsamp.methods.ssprop import (
    _conv_backward_sliced,
    _linear_backward_sliced,
    channel_scores,
    num_kept,
    select_channels,
    ssprop_conv2d,
    ssprop_linear,
)


@pytest.fixture(scope="module", autouse=True)
def built():
    """Every test here needs the kernel; a build failure is an error, never a skip."""
    assert ssprop_native.conv_backward() is not None, ssprop_native.build_error()


def _python_conv(dy, x, w, keep, stride, padding, mask, only_weight, rescale):
    idx = select_channels(channel_scores(dy, 1), keep)
    dx, dw, db = _conv_backward_sliced(dy, x, w, idx, list(stride), list(padding), [1, 1], 1,
                                       mask, only_weight)
    f = w.shape[0] / idx.numel() if rescale else 1.0
    if f != 1.0:
        dw = dw * f if dw is not None else None
        db = db * f if db is not None else None
        dx = dx * f if dx is not None and not only_weight else dx
    return dx, dw, db


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("only_weight,rescale", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("mask", [(True, True, True), (False, True, False), (True, False, False)])
def test_conv_backward_equals_python_path(fmt, dtype, only_weight, rescale, mask):
    torch.manual_seed(0)
    x = torch.randn(3, 12, 13, 11, dtype=dtype).contiguous(memory_format=fmt)
    w = torch.randn(20, 12, 3, 3, dtype=dtype).contiguous(memory_format=fmt)
    dy = F.conv2d(x, w, None, 2, 1) * torch.rand(1, 20, 1, 1, dtype=dtype)
    dy = torch.randn_like(dy) * dy.abs()  # channels of distinct scale
    k = num_kept(0.3, 20)
    got = ssprop_native.conv_backward()(dy, x, w, k, [2, 2], [1, 1], [1, 1], *mask, only_weight,
                                        20 / k if rescale else 1.0)
    ref = _python_conv(dy, x, w, 0.3, (2, 2), (1, 1), mask, only_weight, rescale)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(got, ref, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=tol, rtol=tol)
            assert a.shape == b.shape


@pytest.mark.parametrize("shape", [(17, 24), (2, 9, 24)])
@pytest.mark.parametrize("only_weight", [False, True])
def test_linear_backward_equals_python_path(shape, only_weight):
    torch.manual_seed(1)
    x = torch.randn(*shape[:-1], 10)
    w = torch.randn(24, 10)
    dy = torch.randn(*shape) * torch.rand(24)
    dy2, x2 = dy.reshape(-1, 24), x.reshape(-1, 10)
    k = num_kept(0.25, 24)
    got = ssprop_native.linear_backward()(dy2, x2, w, k, True, True, True, only_weight, 1.0)
    idx = select_channels(channel_scores(dy2, 1), 0.25)
    ref = _linear_backward_sliced(dy2, x2, w, idx, True, True, True, only_weight, 1.0)
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_top_k_channels_is_select_channels(fmt):
    gen = torch.Generator().manual_seed(2)
    for c in (1, 5, 64, 300):
        dy = torch.randn(4, c, 7, 6, generator=gen).contiguous(memory_format=fmt)
        for keep in (0.1, 0.2, 0.5, 1.0):
            k = num_kept(keep, c)
            expect = select_channels(channel_scores(dy, 1), keep)
            assert torch.equal(ssprop_native.top_k_channels()(dy, k), expect)
    rows = torch.randn(50, 33, generator=gen)
    assert torch.equal(ssprop_native.top_k_channels()(rows, 7),
                       select_channels(channel_scores(rows, 1), 7 / 33))
    # neither contiguous nor channels-last: scored by torch's reduction, same channels
    odd = torch.randn(6, 4, 5, 30, generator=gen).permute(3, 1, 2, 0)
    assert torch.equal(ssprop_native.top_k_channels()(odd, 3),
                       select_channels(channel_scores(odd, 1), 3 / 4))


def test_ties_go_to_the_lower_channel_and_nan_ranks_highest():
    top = ssprop_native.top_k_channels()
    assert top(torch.zeros(2, 8, 3, 3), 3).tolist() == [0, 1, 2]
    dy = torch.zeros(2, 8, 3, 3)
    dy[0, 6, 0, 0] = float("nan")
    dy[1, 4] = 1.0
    assert top(dy, 2).tolist() == [4, 6]


def test_selection_does_not_depend_on_the_thread_count():
    """The channel sums run in a fixed order (the conv kernels themselves need not)."""
    gen = torch.Generator().manual_seed(3)
    blocks = torch.randn(8, 96, 40, 40, generator=gen)
    rows = torch.randn(5000, 96, generator=gen)
    threads = torch.get_num_threads()
    picked = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            picked.append([ssprop_native.top_k_channels()(t, k)
                           for t in (blocks, rows) for k in (1, 19, 48)])
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*picked, strict=True))


def test_bad_k_is_refused():
    x, w, dy = torch.randn(1, 2, 4, 4), torch.randn(3, 2, 3, 3), torch.randn(1, 3, 4, 4)
    with pytest.raises(RuntimeError, match="k must be in"):
        ssprop_native.conv_backward()(dy, x, w, 0, [1, 1], [1, 1], [1, 1], True, True, False,
                                      False, 1.0)


def _autograd(fn, *tensors):
    leaves = [t.clone().requires_grad_() for t in tensors]
    y = fn(*leaves)
    y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(4)))
    return [t.grad for t in leaves]


def test_ssprop_uses_the_native_call_and_matches_the_fallback(monkeypatch, request):
    """The autograd Functions run the native call when it is built, and the Python path gives
    the same gradients where it is not (and for random selection, which it never takes)."""
    torch.manual_seed(5)
    x, w, b = torch.randn(2, 6, 9, 9), torch.randn(10, 6, 3, 3), torch.randn(10)
    xl, wl, bl = torch.randn(3, 5, 8), torch.randn(12, 8), torch.randn(12)
    calls = []
    real_conv, real_linear = ssprop_native.conv_backward, ssprop_native.linear_backward

    def counting(real, name):
        def get():
            fn = real()
            if fn is None:
                return None

            def call(*args):
                calls.append(name)
                return fn(*args)
            return call
        return get

    monkeypatch.setattr(ssprop_native, "conv_backward", counting(real_conv, "conv"))
    monkeypatch.setattr(ssprop_native, "linear_backward", counting(real_linear, "linear"))
    conv = _autograd(lambda x, w, b: ssprop_conv2d(x, w, b, 1, 1, keep=0.3), x, w, b)
    lin = _autograd(lambda x, w, b: ssprop_linear(x, w, b, keep=0.3), xl, wl, bl)
    assert calls == ["conv", "linear"]
    python_path = _autograd(lambda x, w, b: ssprop_conv2d(x, w, b, 1, 1, keep=0.3, native=False),
                            x, w, b)
    assert calls == ["conv", "linear"]  # native=False: the Python path
    for a, c in zip(conv, python_path, strict=True):
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
    request.getfixturevalue("native_unbuilt")
    assert ssprop_native.conv_backward() is None and ssprop_native.build_error()
    conv_fallback = _autograd(lambda x, w, b: ssprop_conv2d(x, w, b, 1, 1, keep=0.3), x, w, b)
    lin_fallback = _autograd(lambda x, w, b: ssprop_linear(x, w, b, keep=0.3), xl, wl, bl)
    assert calls == ["conv", "linear"]
    for a, c in zip(conv + lin, conv_fallback + lin_fallback, strict=True):
        torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)


def test_nan_ranks_above_inf_as_in_torch_topk():
    dy = torch.zeros(1, 5, 2, 2)
    dy[0, 1, 0, 0] = float("inf")
    dy[0, 3, 0, 0] = float("nan")
    expect = select_channels(channel_scores(dy, 1), 1 / 5)
    assert ssprop_native.top_k_channels()(dy, 1).tolist() == expect.tolist() == [3]
    assert ssprop_native.top_k_channels()(dy, 2).tolist() == [1, 3]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rescale_multiplies_half_types_in_float(dtype):
    """dW and db times C/k rounded once, as the Python path's ``mul_`` does. (Channels of
    clearly different scale: half-type sums, which the Python path ranks by, are coarse.)"""
    torch.manual_seed(6)
    x = torch.randn(2, 8, 9, 9).to(dtype)
    w = torch.randn(20, 8, 3, 3).to(dtype)
    dy = (torch.randn(2, 20, 9, 9) * torch.arange(1, 21).view(1, -1, 1, 1)).to(dtype)
    k = num_kept(0.3, 20)
    got = ssprop_native.conv_backward()(dy, x, w, k, [1, 1], [1, 1], [1, 1], True, True, True,
                                        False, 20 / k)
    ref = _python_conv(dy, x, w, 0.3, (1, 1), (1, 1), (True, True, True), False, True)
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a, b)


def test_dw_keeps_the_weight_memory_format():
    x = torch.randn(2, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    w = torch.randn(16, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    dy = torch.randn(2, 16, 9, 9).contiguous(memory_format=torch.channels_last)
    _, dw, _ = ssprop_native.conv_backward()(dy, x, w, 4, [1, 1], [1, 1], [1, 1], False, True,
                                             False, False, 1.0)
    assert dw.is_contiguous(memory_format=torch.channels_last)
    ref = _python_conv(dy, x, w, 4 / 16, (1, 1), (1, 1), (False, True, False), False, False)[1]
    assert torch.equal(dw, ref)


def test_create_graph_keeps_dw_differentiable():
    """Under ``create_graph=True`` the Functions take the Python path: dW has a graph, and its
    gradient with respect to x is the Python path's."""
    torch.manual_seed(7)
    x0 = torch.randn(2, 4, 7, 7, dtype=torch.float64)
    w0 = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    grads = []
    for native in (True, False):
        x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
        y = ssprop_conv2d(x, w, None, 1, 1, keep=0.5, native=native)
        (gw,) = torch.autograd.grad((y * y).sum(), w, create_graph=True)
        assert gw.requires_grad
        grads.append(torch.autograd.grad(gw.sum(), x)[0])
    torch.testing.assert_close(grads[0], grads[1])
