"""Dithered backprop: unbiasedness, zero probabilities, int8 codes, sparse linear path."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dgsamp.methods.dither import (
    DitherConv2d,
    DitherLinear,
    DitherOptions,
    UniformPool,
    dither,
    dither_grad,
    dither_linear,
    dither_quantize,
)


def _fixed_delta(n=64, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, generator=g, dtype=dtype)


@pytest.mark.parametrize("noise", ["fresh", "pool"])
def test_unbiased(noise):
    d = _fixed_delta(32)
    draws = 20000
    g = torch.Generator().manual_seed(1)
    rep = d.repeat(draws, 1)  # one tensor → one Δ shared by all draws
    dt = dither(rep, scale=2.0, generator=g, noise=noise)
    delta = 2.0 * rep.std()
    mean = dt.mean(0)
    # std of the mean of a two-point variable on the grid is ≤ Δ/2/sqrt(draws)
    tol = 5 * (delta / 2) / draws ** 0.5
    assert (mean - d).abs().max() < tol
    # each value is an integer multiple of Δ
    codes = dt / delta
    torch.testing.assert_close(codes, codes.round(), atol=1e-9, rtol=0)


@pytest.mark.parametrize("noise", ["fresh", "pool"])
@pytest.mark.parametrize("mode,scale", [("std", 1.5), ("std", 8.0), ("max", 0.5)])
def test_zero_probability_elementwise(mode, scale, noise):
    d = _fixed_delta(40)
    draws = 20000
    rep = d.repeat(draws, 1)
    g = torch.Generator().manual_seed(2)
    dt = dither(rep, scale=scale, mode=mode, generator=g, noise=noise)
    delta = scale * (rep.std() if mode == "std" else rep.abs().max())
    p_zero = (dt == 0).double().mean(0)
    expected = (1 - d.abs() / delta).clamp(min=0)
    tol = 5 * (0.25 / draws) ** 0.5
    assert (p_zero - expected).abs().max() < tol


def test_default_scale_gives_about_90_percent_zeros():
    x = torch.randn(200_000)
    q, delta = dither_quantize(x)
    assert q.dtype == torch.int8
    zeros = (q == 0).float().mean().item()
    assert 0.88 < zeros < 0.92
    assert torch.isclose(delta, 8 * x.std())


def test_int8_codes_without_clipping():
    x = torch.zeros(10_000, dtype=torch.float64)
    x[0] = 1e6  # a huge outlier: s·std is far below max|δ|/127, so Δ is raised
    x[1] = -3e5
    q, delta = dither_quantize(x, scale=0.01)
    assert q.dtype == torch.int8 and int(q[0]) == 127
    assert delta.item() == pytest.approx(1e6 / 127)
    # still unbiased at the outlier's neighbour: mean of many draws ≈ value
    g = torch.Generator().manual_seed(0)
    rep = x[:2].repeat(20000, 1)
    rep = torch.cat([rep, torch.zeros(20000, 100, dtype=torch.float64)], 1)
    m = dither(rep, scale=0.01, generator=g)[:, 1].mean()
    assert abs(m.item() - (-3e5)) < 5 * (1e6 / 127) / 2 / 20000 ** 0.5


def test_degenerate_gradients():
    z = torch.zeros(5, 4)
    assert (dither(z) == 0).all()
    c = torch.full((5, 4), 0.3, dtype=torch.float64)
    assert ((dither(c) - c).abs() <= 0.3 / 127 + 1e-12).all()  # codes stay within int8 range


def test_conv_uses_dithered_delta_for_both_products():
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 6, 3, padding=1).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    y = dither_grad(conv(x), scale=4.0, generator=g)
    y.backward(dy)
    dt = dither(dy, scale=4.0, generator=torch.Generator().manual_seed(5))
    x2 = x.detach().clone().requires_grad_()
    w_grad = conv.weight.grad.clone()
    conv.weight.grad = None
    conv(x2).backward(dt)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(w_grad, conv.weight.grad)


@pytest.mark.parametrize("zero_tokens", [False, True])
@pytest.mark.parametrize("sparse_kernel", [True, False, "gather", "auto"])
@pytest.mark.parametrize("shape", [(7, 12), (3, 5, 12), (2, 3, 4, 12)])
def test_dither_linear_matches_reference(sparse_kernel, shape, zero_tokens):
    torch.manual_seed(4)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(10, 12, dtype=torch.float64, requires_grad=True)
    b = torch.randn(10, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(*shape[:-1], 10, dtype=torch.float64)
    if zero_tokens:  # whole rows of δ̃ zero (a ViT's last block: only the class token)
        dy.view(-1, 10)[1::2] = 0
    y = dither_linear(x, w, b, scale=2.0, generator=torch.Generator().manual_seed(9),
                      sparse_kernel=sparse_kernel)
    torch.testing.assert_close(y, F.linear(x, w, b))
    y.backward(dy)
    dt = dither(dy.reshape(-1, 10), scale=2.0,
                generator=torch.Generator().manual_seed(9)).reshape(dy.shape)
    x2, w2, b2 = (t.detach().clone().requires_grad_() for t in (x, w, b))
    F.linear(x2, w2, b2).backward(dt)
    for a, r in ((x, x2), (w, w2), (b, b2)):
        torch.testing.assert_close(a.grad, r.grad, atol=1e-10, rtol=0)


def test_modules_record_grad_density():
    torch.manual_seed(6)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    conv.__class__ = DitherConv2d
    conv._sparse_init(scale=8.0)
    lin = nn.Linear(8, 16)
    lin.__class__ = DitherLinear
    lin._sparse_init(scale=8.0, sparse_kernel="auto")
    assert conv.grad_density == 1.0  # nothing measured yet
    x = torch.randn(4, 3, 16, 16)
    h = conv(x)
    out = lin(h.permute(0, 2, 3, 1))
    out.pow(2).sum().backward()
    for m in (conv, lin):
        assert isinstance(m.grad_density, float)
        assert 0.0 < m.grad_density < 0.2
    lin.set_sparsity(enabled=False)  # a dense step: dither's own on/off
    assert lin.grad_density == 1.0 and not lin.enabled


# without the extension 'auto' chooses among torch's kernels (with it, the native sparse
# products: tests/test_dither_sparse_products.py); the quantizer's fallback warning is
# test_dither_native's subject
@pytest.mark.filterwarnings("ignore:dither quantizer='native' needs")
def test_auto_sparse_kernel_only_at_low_density(native_unbuilt):
    """Without the native products 'auto' decides from the previous backward's measurement:
    the first backward and every one after a dense-looking δ̃ take the hook path (native dense
    kernels); after a δ̃ at or below the density threshold the next one goes through the CSR
    kernels."""
    torch.manual_seed(7)
    lin = nn.Linear(32, 64)
    lin.__class__ = DitherLinear
    lin._sparse_init(scale=8.0, sparse_kernel="auto", sparse_threshold=0.04)
    x = torch.randn(50, 32)
    lin(x).backward(torch.randn(50, 64))
    assert lin.grad_density > 0.04 and lin.sparse_kernel_used is False
    assert lin.backward_path is None  # the hook path: autograd's own kernels
    lin.set_sparsity(scale=40.0)
    lin(x).backward(torch.randn(50, 64))  # chosen from the last (dense-looking) measurement
    assert lin.grad_density <= 0.04 and lin.sparse_kernel_used is False
    lin(x).backward(torch.randn(50, 64))
    assert lin.grad_density <= 0.04 and lin.sparse_kernel_used is True
    assert lin.backward_path == "csr"
    lin.set_sparsity(scale=8.0)
    lin(x).backward(torch.randn(50, 64))  # still sparse-looking: through the Function, dense
    assert lin.backward_path == "dense" and lin.grad_density > 0.04
    lin.backward_path = None
    lin(x).backward(torch.randn(50, 64))  # and back to the hook path
    assert lin.backward_path is None


@pytest.mark.filterwarnings("ignore:dither quantizer='native' needs")
def test_auto_gathers_only_when_whole_rows_are_zero(native_unbuilt):
    """Rows of δ̃ (tokens) that are entirely zero are dropped from both products once the last
    backward saw at least GATHER_MIN_ZERO of them; the same shape and measurement always gives
    the same choice, and the gradients are those of the dense products on the same δ̃."""
    from dgsamp.methods.dither import GATHER_MIN_ZERO

    torch.manual_seed(8)
    lin = nn.Linear(16, 24).double()
    lin.__class__ = DitherLinear
    gen = torch.Generator().manual_seed(3)
    lin._sparse_init(scale=8.0, generator=gen, sparse_threshold=0.0,  # CSR off: gather or not
                     noise="fresh")  # the noise of dither() below
    x = torch.randn(4, 10, 16, dtype=torch.float64)
    dy = torch.randn(4, 10, 24, dtype=torch.float64)
    dy[:, 1:] = 0  # only the first token of each sequence gets a gradient
    lin(x).backward(dy)
    assert lin.backward_path is None and lin._zero_rows == pytest.approx(0.9)
    assert lin._zero_rows >= GATHER_MIN_ZERO
    for _ in range(2):  # deterministic: same measurement, same path
        for p in lin.parameters():
            p.grad = None
        xg = x.clone().requires_grad_()
        lin(xg).backward(dy)
        assert lin.backward_path == "gather"
    # reference: dense products on the same δ̃ (same generator state)
    lin2 = nn.Linear(16, 24).double()
    lin2.load_state_dict(lin.state_dict())
    gen.manual_seed(11)
    for p in lin.parameters():
        p.grad = None
    xg = x.clone().requires_grad_()
    lin(xg).backward(dy)
    assert lin.backward_path == "gather"
    dt = dither(dy.reshape(-1, 24), scale=8.0, generator=torch.Generator().manual_seed(11))
    x2 = x.clone().requires_grad_()
    F.linear(x2, lin2.weight, lin2.bias).backward(dt.reshape(dy.shape))
    torch.testing.assert_close(xg.grad, x2.grad, atol=1e-10, rtol=0)
    torch.testing.assert_close(lin.weight.grad, lin2.weight.grad, atol=1e-10, rtol=0)
    torch.testing.assert_close(lin.bias.grad, lin2.bias.grad, atol=1e-10, rtol=0)
    # a δ̃ without zero rows: the Function computes it densely, the next backward takes the
    # hook path (which does not write backward_path)
    lin(x).backward(torch.randn(4, 10, 24, dtype=torch.float64))
    assert lin.backward_path == "dense" and lin._zero_rows < GATHER_MIN_ZERO
    lin.backward_path = None
    lin(x).backward(torch.randn(4, 10, 24, dtype=torch.float64))
    assert lin.backward_path is None


def test_step_host_path_is_bit_identical_to_tensor_path():
    """Δ computed from read-back Python floats (CPU) equals the 0-d tensor computation."""
    from dgsamp.methods.dither import _step_host, _step_tensor

    g = torch.Generator().manual_seed(0)
    for i in range(120):
        shape = [(5,), (1,), (3, 7), (4, 3, 5, 5), (200, 33)][i % 5]
        dtype = [torch.float32, torch.float64, torch.bfloat16, torch.float16][i % 4]
        x = torch.randn(shape, generator=g) * 10.0 ** (i % 11 - 5)
        if i % 7 == 0:
            x.zero_()
        if i % 11 == 0:
            x.view(-1)[0] = 1e4
        x = x.to(dtype)
        for mode in ("std", "max"):
            for scale in (0.01, 1.0, 8.0):
                a, b = _step_host(x, scale, mode), _step_tensor(x, scale, mode)
                assert a.dtype == b.dtype == dtype
                assert torch.equal(a, b), (shape, dtype, mode, scale, a, b)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "x", None])
def test_bad_scale(bad):
    with pytest.raises(ValueError, match="scale"):
        dither(torch.randn(4), scale=bad)


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        dither(torch.randn(4), mode="median")


def test_dithered_conv_followed_by_inplace_relu_trains():
    # Regression: the gradient marker returned a view, and ReLU(inplace=True) after a dithered
    # conv (as in DomainBed's digits CNN) failed in backward.
    from dgsamp.methods import sparse_backward

    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(inplace=True),
                          nn.Conv2d(8, 4, 3), nn.ReLU(inplace=True))
    with sparse_backward(model, method="dither"):
        model(torch.randn(2, 1, 8, 8)).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_inplace_relu_after_dithered_conv_sees_the_same_gradient():
    """The dither hook must receive dL/dy of the conv output itself: an in-place ReLU after it
    gives exactly the gradients of an out-of-place one (same dither draws)."""
    grads = []
    for inplace in (False, True):
        torch.manual_seed(0)
        conv = nn.Conv2d(2, 6, 3, padding=1).double()
        x = torch.randn(3, 2, 6, 6, dtype=torch.float64)
        g = torch.Generator().manual_seed(7)
        y = dither_grad(conv(x), scale=2.0, generator=g)
        out = torch.relu_(y) if inplace else torch.relu(y)
        (out * torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)).sum() \
            .backward()
        grads.append(conv.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], atol=0, rtol=0)


def test_pool_windows_follow_each_other_and_the_pool_is_redrawn():
    g = torch.Generator().manual_seed(3)
    pool = UniformPool(size=1000, refresh=4, generator=g)
    start = pool._read
    first = pool.window(100, g).clone()
    second = pool.window(100, g).clone()
    if start + 200 <= 1000:  # consecutive windows: the numbers right after the last ones
        torch.testing.assert_close(torch.cat([first, second]),
                                   pool.buffer[start:start + 200])
    before = pool.buffer.clone()
    for _ in range(40):  # 40 x 100 numbers read: 1000 redrawn (refresh 4)
        pool.window(100, g)
    assert (pool.buffer != before).all()
    assert ((pool.buffer >= 0) & (pool.buffer < 1)).all()
    with pytest.raises(ValueError, match="exceeds"):
        pool.window(1001, g)


def test_pool_noise_is_reproducible_per_generator_and_keeps_memory_format():
    dy = torch.randn(4, 8, 6, 6).to(memory_format=torch.channels_last)
    a = dither(dy, generator=torch.Generator().manual_seed(5), noise="pool")
    b = dither(dy, generator=torch.Generator().manual_seed(5), noise="pool")
    torch.testing.assert_close(a, b)
    assert a.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="noise"):
        DitherOptions(noise="blue")


def test_pool_noise_trains_a_dithered_layer_like_fresh_noise():
    """The options reach the layers: a DitherLinear with noise='pool' gives integer multiples
    of Δ whose zero fraction is the fresh path's (default scale: about 90%)."""
    from dgsamp.methods.patch import patch

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256))
    patch(model, "dither", dense_output=False, noise="pool", sparse_kernel=False)
    lin = model[0]
    assert lin.sparse_options.noise == "pool"
    model(torch.randn(512, 64)).pow(2).sum().backward()
    assert 0.85 < 1 - lin.grad_density < 0.95


# --- quantizer='compiled': one fused graph, the eager quantizer's δ̃ ------------------------

def _eager_and_compiled(dy, **kw):
    a = dither(dy, generator=torch.Generator().manual_seed(11), quantizer="eager", **kw)
    b = dither(dy, generator=torch.Generator().manual_seed(11), quantizer="compiled", **kw)
    return a, b


@pytest.mark.parametrize("noise", ["fresh", "pool"])
@pytest.mark.parametrize("mode", ["std", "max"])
def test_compiled_quantizer_gives_the_eager_quantizers_dither_on_the_same_noise(noise, mode):
    """Same generator state → same u; Δ agrees to float rounding, so δ̃ is the same grid value
    except where δ/Δ + u lies within rounding of an integer (almost never)."""
    dy = torch.randn(6, 40, generator=torch.Generator().manual_seed(4)) * 1e-3
    a, b = _eager_and_compiled(dy, noise=noise, mode=mode, scale=2.0)
    delta_a = a[a != 0].abs().min()
    delta_b = b[b != 0].abs().min()
    torch.testing.assert_close(delta_b, delta_a, rtol=1e-5, atol=0)
    assert (a == b).double().mean() > 0.99
    torch.testing.assert_close(b, a, atol=1.01 * float(delta_a), rtol=0)


@pytest.mark.parametrize("noise,quantizer", [("pool", "compiled"), ("philox", "native")])
def test_fused_quantizers_are_unbiased_and_zero_fraction_matches(noise, quantizer):
    d = _fixed_delta(32, torch.float32)
    draws = 20000
    rep = d.repeat(draws, 1)
    dt = dither(rep, scale=2.0, generator=torch.Generator().manual_seed(1), noise=noise,
                quantizer=quantizer)
    delta = 2.0 * rep.double().std()
    tol = 5 * (delta / 2) / draws ** 0.5
    assert (dt.double().mean(0) - d.double()).abs().max() < tol
    p_zero = (dt == 0).double().mean(0)
    expected = (1 - d.double().abs() / delta).clamp(min=0)
    assert (p_zero - expected).abs().max() < 5 * (0.25 / draws) ** 0.5


@pytest.mark.parametrize("noise,quantizer", [("pool", "compiled"), ("philox", "native")])
def test_fused_quantizers_keep_channels_last_and_record_density_and_zero_rows(noise, quantizer):
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(4, 3, 10, 10).to(memory_format=torch.channels_last)
    seen = {}
    y = conv(x)
    y.register_hook(lambda g: seen.setdefault("in", g))  # runs first: the grad before dither

    class Stats:
        pass

    st = Stats()
    dither_grad(y, generator=torch.Generator().manual_seed(2), stats=st, noise=noise,
                quantizer=quantizer)
    y.register_hook(lambda g: seen.setdefault("out", g))
    y.pow(2).sum().backward()
    out = seen["out"]
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert int(st._grad_nnz) == int((out != 0).sum()) and st._grad_numel == out.numel()
    assert 0.8 < 1 - int(st._grad_nnz) / out.numel() < 0.97

    # a DitherLinear's hook path records the all-zero rows as the eager quantizer does
    torch.manual_seed(0)
    lin = DitherLinear(16, 4)
    lin._sparse_init(quantizer=quantizer, noise=noise, scale=30.0, sparse_kernel=False)
    out = lin(torch.randn(50, 16))
    out.register_hook(lambda g: seen.setdefault("lin", g))  # after the dither hook: δ̃
    (out * torch.randn(50, 4)).sum().backward()
    zero_rows = 1 - (seen["lin"] != 0).any(1).double().mean()
    assert lin._zero_rows == pytest.approx(float(zero_rows)) and lin._zero_rows > 0.5


def test_compiled_quantizer_falls_back_to_eager_with_one_warning(monkeypatch):
    import importlib

    dither_mod = importlib.import_module("dgsamp.methods.dither")  # the module, not the function

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(dither_mod, "_COMPILED", {"flat": broken, "rows": broken})
    dy = torch.randn(100)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*eager"):
        out = dither(dy, quantizer="compiled")
    assert dither_mod._COMPILED["failed"]
    codes = out / out[out != 0].abs().min()
    torch.testing.assert_close(codes, codes.round())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; the eager quantizer runs quietly now
        dither(dy, quantizer="compiled")
    with pytest.raises(ValueError, match="quantizer"):
        DitherOptions(quantizer="fast")


def test_compiled_quantizer_runs_eager_under_a_dispatch_mode_without_giving_up():
    """FlopCounterMode (the benchmarks' FLOP count) is a dispatch mode dynamo does not compile
    inside: the eager quantizer answers there, and the compiled one is still used after."""
    import importlib

    from torch.utils.flop_counter import FlopCounterMode

    dither_mod = importlib.import_module("dgsamp.methods.dither")
    dy = torch.randn(64, 8)
    with FlopCounterMode(display=False):
        a = dither(dy, generator=torch.Generator().manual_seed(3), quantizer="compiled")
    b = dither(dy, generator=torch.Generator().manual_seed(3), quantizer="eager")
    torch.testing.assert_close(a, b)
    assert not dither_mod._COMPILED.get("failed")


@pytest.mark.parametrize("shape", [(0,), (5,), (128,), (3, 300), (2, 8, 7, 9)])
def test_nonzero_count_equals_the_bool_sum(shape):
    """The chunked uint8 count is exact: all-True chunks (128 ones fit uint8), a tail shorter
    than a chunk, channels-last masks and strided masks (the plain-sum fallback)."""
    from dgsamp.methods.dither import _count_true

    g = torch.Generator().manual_seed(0)
    masks = [torch.rand(shape, generator=g) < 0.3, torch.ones(shape, dtype=torch.bool)]
    if len(shape) == 4:
        masks.append(masks[0].to(memory_format=torch.channels_last))
    if len(shape) == 2:
        masks.append(masks[0].t())  # not one dense block in row order
    for m in masks:
        got = _count_true(m)
        assert got.dtype == torch.int64 and int(got) == int(m.sum())


def test_compiled_quantizer_serves_many_shapes_without_giving_up():
    """dynamic=True and detached inputs: conv and linear shapes of one model family, pool
    windows at varying offsets and fresh noise, all served by the compiled graphs (a
    recompile storm would hit dynamo's limit and fall back to eager with a warning)."""
    import importlib

    dither_mod = importlib.import_module("dgsamp.methods.dither")
    shapes = [(2, 8, 6, 6), (4, 16, 3, 3), (3, 7), (5, 9, 12), (2, 64), (1000,), (6, 4, 5, 5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for noise in ("pool", "fresh"):
            for i, shape in enumerate(shapes):
                dy = torch.randn(shape)
                if len(shape) == 4 and i % 2:
                    dy = dy.to(memory_format=torch.channels_last)
                st = type("S", (), {})()
                out = dither_mod._dither(dy, DitherOptions(noise=noise, quantizer="compiled"),
                                         st, rows=len(shape) in (2, 3))
                assert out.shape == dy.shape and int(st._grad_nnz) == int((out != 0).sum())
    assert not dither_mod._COMPILED.get("failed")
