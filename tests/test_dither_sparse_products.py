"""The native sparse products of a dithered linear layer (issue 14): dX = δ̃W, dW = δ̃ᵀx and db
from δ̃'s nonzeros (dgsamp.methods.dither_native.sparse_grads), the path DitherLinear
and DitherConv2d take with ``sparse_kernel='auto'`` or ``'native'``, and its fallbacks."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dgsamp.methods import dither_native
from dgsamp.methods.dither import (
    NATIVE_HALF_CHANNELS,
    NATIVE_MAX_DENSITY,
    DitherConv2d,
    DitherLinear,
    dither,
    dither_linear,
    native_max_density,
)
from dgsamp.methods.dither_native import LINEAR


@pytest.fixture(scope="module", autouse=True)
def built():
    """Every test here needs the kernel; a build failure is an error, never a skip."""
    assert dither_native.sparse_grads() is not None, dither_native.build_error()


def _dithered(n: int, o: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = dither(torch.randn(n, o, generator=g, dtype=dtype), scale=4.0, generator=g)
    if n > 5:
        q[5] = 0  # an all-zero row (token)
    if o > 7:
        q[:, 7] = 0  # an all-zero column (feature)
    return q


NEEDS = [(True, True, True), (True, False, False), (False, True, False), (False, False, True)]


@pytest.mark.parametrize("need", NEEDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n,o,i", [(37, 53, 29), (8, 16, 64), (3, 9, 5), (130, 24, 200)])
def test_sparse_products_equal_the_dense_products_on_the_same_dither(n, o, i, dtype, need):
    """Odd sizes exercise the vector loops' tails and the 4-way unrolled axpys' remainders."""
    q = _dithered(n, o, dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, i, generator=g, dtype=dtype)
    w = torch.randn(o, i, generator=g, dtype=dtype)
    dx, dw, db, nnz, zero_rows = dither_native.sparse_grads()(q, x, w, LINEAR, *need)
    tol = dict(atol=1e-12, rtol=0) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    for got, want, needed in ((dx, q @ w, need[0]), (dw, q.t() @ x, need[1]),
                              (db, q.sum(0), need[2])):
        if needed:
            torch.testing.assert_close(got, want, **tol)
        else:
            assert got is None
    nonzero = q != 0
    assert nnz == int(nonzero.sum()) and 0 < nnz < q.numel()
    assert zero_rows == int((~nonzero.any(1)).sum())


def test_sparse_products_of_an_all_zero_gradient_are_zero():
    q = torch.zeros(6, 4)
    x, w = torch.randn(6, 3), torch.randn(4, 3)
    dx, dw, db, nnz, zero_rows = dither_native.sparse_grads()(q, x, w, LINEAR, True, True, True)
    assert not dx.any() and not dw.any() and not db.any()
    assert (nnz, zero_rows) == (0, 6)


def test_sparse_products_ignore_the_thread_count():
    """Each output row is summed in a fixed order: bit-identical for 1 and 2 threads."""
    q = _dithered(300, 96, torch.float32)
    x, w = torch.randn(300, 128), torch.randn(96, 128)
    fn = dither_native.sparse_grads()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fn(q, x, w, LINEAR, True, True, True)
        torch.set_num_threads(2)
        two = fn(q, x, w, LINEAR, True, True, True)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one[:3], two[:3], strict=True):
        assert torch.equal(a, b)


def test_sparse_products_reject_what_they_cannot_read():
    fn = dither_native.sparse_grads()
    q, x, w = torch.randn(4, 3), torch.randn(4, 5), torch.randn(3, 5)
    with pytest.raises(RuntimeError, match="shapes do not match"):
        fn(q, x, torch.randn(3, 6), LINEAR, True, True, True)
    with pytest.raises(RuntimeError, match="contiguous"):
        fn(q.t().contiguous().t(), x, w, LINEAR, True, True, True)
    with pytest.raises(RuntimeError, match="one dtype"):
        fn(q.double(), x, w, LINEAR, True, True, True)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        fn(q.half(), x.half(), w.half(), LINEAR, True, True, True)
    with pytest.raises(RuntimeError, match="2-d"):
        fn(q.view(-1), x, w, LINEAR, True, True, True)
    with pytest.raises(RuntimeError, match="invalid geometry"):
        fn(q, x, w, (1, 1, 1, 1, 1, 1, 0, 1, 0, 0), True, True, True)
    with pytest.raises(RuntimeError, match="shapes do not match"):  # 3x3 taps, 1x1 weight rows
        fn(q, x, w, (1, 1, 1, 1, 3, 3, 1, 1, 1, 1), True, True, True)


def _pair(sparse_kernel: str | bool, quantizer: str, noise: str, seed: int = 3) -> DitherLinear:
    torch.manual_seed(0)  # same weights for every layer made here
    lin = nn.Linear(24, 40).double()
    lin.__class__ = DitherLinear
    lin._sparse_init(scale=8.0, generator=torch.Generator().manual_seed(seed),
                     sparse_kernel=sparse_kernel, quantizer=quantizer, noise=noise)
    return lin


@pytest.mark.parametrize("quantizer,noise", [("eager", "fresh"), ("native", "philox"),
                                             ("eager", "pool")])
def test_native_path_gives_the_hook_paths_gradients_on_the_same_dither(quantizer, noise):
    """Same generator state → same δ̃ on both paths; the products then agree to rounding."""
    native, hook = _pair("native", quantizer, noise), _pair(False, quantizer, noise)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 11, 24, dtype=torch.float64, generator=g)
    dy = torch.randn(3, 11, 40, dtype=torch.float64, generator=g)
    grads = []
    for lin in (native, hook):
        xg = x.clone().requires_grad_()
        lin(xg).backward(dy)
        grads.append((xg.grad, lin.weight.grad, lin.bias.grad))
    assert native.backward_path == "native" and native.sparse_kernel_used
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert native.grad_density == hook.grad_density < 0.2


def test_native_path_is_unbiased():
    """E[dW] over the dither noise is the dense dW (the products add no bias to δ̃'s)."""
    torch.manual_seed(5)
    lin = nn.Linear(6, 4).double()
    lin.__class__ = DitherLinear
    lin._sparse_init(scale=2.0, sparse_kernel="native", generator=torch.Generator().manual_seed(0))
    x = torch.randn(8, 6, dtype=torch.float64)
    dy = torch.randn(8, 4, dtype=torch.float64)
    dense = dy.t() @ x
    total = torch.zeros_like(dense)
    draws = 4000
    for _ in range(draws):
        lin.weight.grad = None
        lin(x).backward(dy)
        total += lin.weight.grad
    assert lin.backward_path == "native"
    # SE of the mean of one entry ≤ Δ·max|x|·sqrt(rows)/sqrt(draws) / 2; allow 5 SE
    delta = 2.0 * dy.std().item()
    bound = 5 * delta * x.abs().max().item() * 8 ** 0.5 / 2 / draws ** 0.5
    assert (total / draws - dense).abs().max().item() < bound


def test_auto_takes_the_native_products_while_the_density_is_low():
    """'auto' with the kernel built: the first backward and every one after a δ̃ at density ≤
    native_max_density(in_features) run the native products; after a denser δ̃ the hook path
    (autograd's dense kernels, which does not write backward_path) — a function of the last
    measurement."""
    torch.manual_seed(7)
    lin = nn.Linear(32, 64)
    lin.__class__ = DitherLinear
    lin._sparse_init(scale=8.0, sparse_kernel="auto")
    x = torch.randn(50, 32)
    lin(x).backward(torch.randn(50, 64))
    assert lin.backward_path == "native" and lin.grad_density < native_max_density(32)
    lin.set_sparsity(scale=0.05)  # a fine grid: almost no zeros
    lin(x).backward(torch.randn(50, 64))  # chosen from the last (sparse) measurement
    assert lin.backward_path == "native" and lin.grad_density > native_max_density(32)
    lin.backward_path = None
    lin.set_sparsity(scale=8.0)
    lin(x).backward(torch.randn(50, 64))  # chosen from the dense measurement: the hook path
    assert lin.backward_path is None and lin.grad_density < native_max_density(32)
    lin(x).backward(torch.randn(50, 64))
    assert lin.backward_path == "native"


def test_the_auto_density_limit_grows_with_the_row_length():
    """Short rows (few input channels) make each nonzero's vector FMA less efficient: the limit
    is NATIVE_MAX_DENSITY · c / (c + NATIVE_HALF_CHANNELS), by hand for two widths."""
    assert NATIVE_HALF_CHANNELS == 24 and NATIVE_MAX_DENSITY == 0.3
    assert native_max_density(24) == pytest.approx(0.15)
    assert native_max_density(72) == pytest.approx(0.225)
    assert native_max_density(16) < native_max_density(64) < native_max_density(768) < 0.3


def test_flop_counter_sees_the_dense_products():
    """Under FlopCounterMode the layer runs torch's products (the counter cannot see inside the
    kernel); cost/flops.py scales that count by the measured density."""
    torch.manual_seed(10)
    lin = nn.Linear(16, 8)
    lin.__class__ = DitherLinear
    lin._sparse_init(scale=1.0, sparse_kernel="native")  # dense enough for the dense products
    x = torch.randn(10, 16, requires_grad=True)
    y = lin(x)
    with FlopCounterMode(display=False) as counter:
        y.backward(torch.randn(10, 8))
    assert lin.backward_path == "dense"
    assert counter.get_total_flops() == 2 * (2 * 10 * 16 * 8)  # dX and dW


def test_without_the_kernel_auto_keeps_the_torch_paths_and_native_warns_once(native_unbuilt):
    torch.manual_seed(8)
    lin = nn.Linear(12, 20).double()
    lin.__class__ = DitherLinear
    lin._sparse_init(scale=8.0, sparse_kernel="auto", quantizer="eager", noise="fresh")
    x = torch.randn(9, 12, dtype=torch.float64)
    lin(x).backward(torch.randn(9, 20, dtype=torch.float64))
    assert lin.backward_path is None  # first backward: the hook path, as before
    g = torch.Generator().manual_seed(2)
    dy = torch.randn(9, 20, dtype=torch.float64)
    xg = x.clone().requires_grad_()
    w = lin.weight.detach().clone().requires_grad_()
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):  # one warning per process
        dither_linear(xg, w, None, scale=8.0, generator=g, sparse_kernel="native").backward(dy)
    dt = dither(dy, scale=8.0, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(xg.grad, dt @ lin.weight.detach(), atol=1e-10, rtol=0)
    torch.testing.assert_close(w.grad, dt.t() @ x, atol=1e-10, rtol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: quiet from now on
        dither_linear(x.clone().requires_grad_(), w, None, sparse_kernel="native").sum().backward()


def test_native_path_trains_like_the_dense_path():
    """A few SGD steps of a small MLP with the native products reduce the loss as the hook path
    does (same seeds, same δ̃: same trajectory up to rounding)."""
    losses = {}
    for kernel in ("native", False):
        torch.manual_seed(9)
        model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
        for m in model:
            if isinstance(m, nn.Linear):
                m.__class__ = DitherLinear
                m._sparse_init(scale=2.0, sparse_kernel=kernel,
                               generator=torch.Generator().manual_seed(1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
        trace = []
        for _ in range(60):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(loss.item())
        losses[kernel] = trace
    assert losses["native"][-1] < 0.85 * losses["native"][0]
    assert losses["native"] == pytest.approx(losses[False], rel=1e-4)


CONV_CASES = [  # (in, out, kernel, stride, padding, input hw)
    (16, 24, 3, 1, 1, 9),  # ResNet's 3x3
    (16, 24, 3, 2, 1, 9),  # strided, odd input: the last column is never read
    (20, 12, 1, 1, 0, 5),  # 1x1 (ConvNeXt-atto's MLP)
    (20, 12, 1, 2, 0, 6),  # ResNet's downsample (run as pointwise on every 2nd pixel)
    (20, 12, 1, (2, 3), 0, 7),  # the same, odd sizes and unequal strides
    (8, 16, 2, 2, 0, 8),  # ConvNeXt's downsample
    (3, 8, 7, 2, 3, 12),  # a stem on RGB ('native' forces it; 'auto' keeps torch's kernels)
    (5, 7, (3, 1), (1, 2), (2, 0), (6, 5)),  # rectangular everything, padding > kernel / 2
]


@pytest.mark.parametrize("need", NEEDS)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_native_path_gives_torchs_gradients_on_the_same_dither(case, channels_last, need):
    """DitherConv2d with sparse_kernel='native' against F.conv2d's backward on the same δ̃ (the
    same generator state), float64, in both memory formats."""
    c_in, c_out, k, stride, pad, hw = case
    torch.manual_seed(11)
    conv = nn.Conv2d(c_in, c_out, k, stride, pad).double()
    ref_conv = nn.Conv2d(c_in, c_out, k, stride, pad).double()
    ref_conv.load_state_dict(conv.state_dict())
    conv.__class__ = DitherConv2d
    # the eager quantizer, as the reference's: with a generator it lays the noise out in
    # NCHW order, the native one in memory order (same distribution, other numbers)
    conv._sparse_init(scale=2.0, generator=torch.Generator().manual_seed(4), sparse_kernel="native",
                      quantizer="eager", noise="fresh")
    hw = hw if isinstance(hw, tuple) else (hw, hw)
    x = torch.randn(3, c_in, *hw, dtype=torch.float64)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    xg = x.clone().requires_grad_(need[0])
    x2 = x.clone().requires_grad_(need[0])
    for p, wanted in ((conv.weight, need[1]), (conv.bias, need[2])):
        p.requires_grad_(wanted)
    for p, wanted in ((ref_conv.weight, need[1]), (ref_conv.bias, need[2])):
        p.requires_grad_(wanted)
    y = conv(xg)
    dy = torch.randn(y.shape, dtype=torch.float64).contiguous(memory_format=fmt)
    y.backward(dy)
    assert conv.backward_path == "native"
    dt = dither(dy, scale=2.0, generator=torch.Generator().manual_seed(4))
    ref_conv(x2).backward(dt)
    if need[0]:
        torch.testing.assert_close(xg.grad, x2.grad, atol=1e-10, rtol=0)
        assert xg.grad.is_contiguous(memory_format=fmt)  # the input's memory format
    for a, r, wanted in ((conv.weight, ref_conv.weight, need[1]),
                         (conv.bias, ref_conv.bias, need[2])):
        if wanted:
            torch.testing.assert_close(a.grad, r.grad, atol=1e-10, rtol=0)
        else:
            assert a.grad is None
    assert 0 < conv.grad_density < 1


def test_conv_auto_chooses_by_shape_and_last_density():
    """'auto': groups > 1 (depthwise), dilation, string padding and an RGB stem keep the hook
    path; a plain conv takes the native products until a backward measures a density above
    native_max_density(in_channels)."""
    from dgsamp.methods.dither import NATIVE_MIN_CHANNELS

    def layer(*args, **kw):
        conv = nn.Conv2d(*args, **kw)
        conv.__class__ = DitherConv2d
        conv._sparse_init(scale=8.0)
        return conv

    x = torch.randn(2, 32, 8, 8)
    for conv in (layer(32, 32, 3, padding=1, groups=32), layer(32, 16, 3, dilation=2),
                 layer(32, 16, 3, padding="same")):
        conv(x).sum().backward()
        assert conv.backward_path is None  # the hook path
    stem = layer(3, 16, 3)
    stem(torch.randn(2, 3, 8, 8)).sum().backward()
    assert 3 < NATIVE_MIN_CHANNELS and stem.backward_path is None
    conv = layer(32, 16, 3, padding=1)
    conv(x).backward(torch.randn(2, 16, 8, 8))
    assert conv.backward_path == "native" and conv.grad_density < native_max_density(32)
    conv.set_sparsity(scale=0.05)
    conv(x).backward(torch.randn(2, 16, 8, 8))
    assert conv.backward_path == "native" and conv.grad_density > native_max_density(32)
    conv.backward_path = None
    conv(x).backward(torch.randn(2, 16, 8, 8))  # chosen from the dense measurement
    assert conv.backward_path is None


def test_conv_without_the_kernel_runs_torchs_backward_on_the_same_dither(native_unbuilt):
    torch.manual_seed(12)
    conv = nn.Conv2d(16, 8, 3, padding=1).double()
    ref = nn.Conv2d(16, 8, 3, padding=1).double()
    ref.load_state_dict(conv.state_dict())
    conv.__class__ = DitherConv2d
    conv._sparse_init(scale=4.0, generator=torch.Generator().manual_seed(1), sparse_kernel="native",
                      quantizer="eager", noise="fresh")
    x = torch.randn(2, 16, 6, 6, dtype=torch.float64)
    dy = torch.randn(2, 8, 6, 6, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="torch's kernels"):
        conv(x).backward(dy)
    assert conv.backward_path == "dense"
    ref(x).backward(dither(dy, scale=4.0, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, atol=1e-10, rtol=0)


def test_conv_under_cpu_autocast_falls_back_to_torchs_backward():
    """bfloat16 δ (an autocast forward) is not the native kernel's: torch's backward on δ̃ cast
    to the input's dtype, gradients in the parameters' dtype."""
    torch.manual_seed(13)
    conv = nn.Conv2d(16, 8, 3, padding=1)
    conv.__class__ = DitherConv2d
    conv._sparse_init(scale=8.0)
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    y.float().pow(2).sum().backward()
    assert conv.backward_path == "dense"
    assert x.grad.dtype == conv.weight.grad.dtype == torch.float32
    assert torch.isfinite(conv.weight.grad).all() and conv.weight.grad.abs().sum() > 0
