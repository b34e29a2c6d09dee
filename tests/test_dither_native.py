"""quantizer='native' (dgsamp.methods.dither_native's C++ kernel) and noise='philox'."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

from dgsamp.methods import dither_native
from dgsamp.methods.dither import DitherOptions, dither

dither_mod = importlib.import_module("dgsamp.methods.dither")  # the module, not the function


@pytest.fixture(scope="module", autouse=True)
def built():
    """Every test here needs the kernel; a build failure is an error, never a skip."""
    assert dither_native.kernel() is not None, dither_native.build_error()


# Random123's known-answer vectors for philox4x32-10 (kat_vectors: counter, key, result)
PHILOX_KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox_matches_the_random123_known_answers(counter, key, expected):
    assert dither_native.philox_block(counter, key) == expected


def test_philox_uniforms_follow_the_documented_layout_and_are_uniform():
    """Element t*1024 + w*256 + j is word w of block t*256 + j, top 24 bits / 2^24."""
    seed = (7 << 32) | 3  # key words (3, 7)
    u = dither_native.philox_uniform(3000, seed)
    expected = []  # every element: the AVX-512 tile (16 blocks per lane vector) and the tail
    for i in range(3000):
        t, rem = divmod(i, 1024)
        w, j = divmod(rem, 256)
        word = dither_native.philox_block([t * 256 + j, 0, 0, 0], [3, 7])[w]
        expected.append((word >> 8) / 2 ** 24)
    assert u.tolist() == expected
    # tiles from 2^24 on: block numbers >= 2^32, the high counter word (lane vectors share it)
    far = dither_native.philox_uniform(2048, seed, first_tile=(1 << 24) + 3)
    for i in (0, 1, 17, 255, 256, 1023, 1024, 2047):
        t, rem = divmod(i, 1024)
        w, j = divmod(rem, 256)
        block = ((1 << 24) + 3 + t) * 256 + j
        word = dither_native.philox_block([block & 0xFFFFFFFF, block >> 32, 0, 0], [3, 7])[w]
        assert far[i].item() == (word >> 8) / 2 ** 24
    big = dither_native.philox_uniform(200_000, 11).double()
    assert 0.0 <= big.min() and big.max() < 1.0
    assert abs(big.mean().item() - 0.5) < 5 * (1 / 12 / big.numel()) ** 0.5
    assert abs(big.var().item() - 1 / 12) < 1e-3
    # a prefix of a longer stream: the noise of an element never depends on the length
    torch.testing.assert_close(dither_native.philox_uniform(1500, 11), big[:1500].float())
    assert not torch.equal(dither_native.philox_uniform(100, 12), big[:100].float())


def _pair(dy, quantizer, **kw):
    a = dither(dy, generator=torch.Generator().manual_seed(11), quantizer="eager", **kw)
    b = dither(dy, generator=torch.Generator().manual_seed(11), quantizer=quantizer, **kw)
    return a, b


@pytest.mark.parametrize("noise", ["fresh", "pool", "philox"])
@pytest.mark.parametrize("mode", ["std", "max"])
@pytest.mark.parametrize("n", [240, 70_001, 300_000])  # one stats chunk, several, a tail
def test_native_quantizer_gives_the_eager_quantizers_dither_on_the_same_noise(noise, mode, n):
    """Same generator state → the same noise (philox: drawn in the kernel, from the same
    stream the eager path reads); Δ agrees to float rounding (float64 sums against eager's
    float32 ones), so the codes agree except within rounding of an integer."""
    dy = torch.randn(n, generator=torch.Generator().manual_seed(4)) * 1e-3
    a, b = _pair(dy, "native", noise=noise, mode=mode, scale=2.0)
    delta_a, delta_b = a[a != 0].abs().min(), b[b != 0].abs().min()
    torch.testing.assert_close(delta_b, delta_a, rtol=1e-5, atol=0)
    codes_a, codes_b = (a / delta_a).round(), (b / delta_b).round()
    assert (codes_a == codes_b).double().mean() > 0.999
    assert (codes_a - codes_b).abs().max() <= 1


def test_native_step_is_the_float64_formula_and_ignores_the_thread_count():
    dy = torch.randn(200_000, generator=torch.Generator().manual_seed(0)) * 3e-4 + 1e-5
    fn = dither_native.kernel()
    u = torch.rand(dy.numel(), generator=torch.Generator().manual_seed(1))
    d64 = dy.double()
    for mode, scale, want in (("std", 4.0, 4.0 * d64.std()), ("max", 0.5, 0.5 * d64.abs().max()),
                              ("std", 1e-9, d64.abs().max() / 127)):
        _, _, _, delta = fn(dy, u, None, scale, mode == "std", False)
        assert delta == pytest.approx(float(want), rel=1e-6)
    threads = torch.get_num_threads()
    rows = dy.view(50_000, 4)
    try:
        torch.set_num_threads(1)
        one = fn(rows, None, torch.Generator().manual_seed(5), 2.0, True, True)
        torch.set_num_threads(2)
        two = fn(rows, None, torch.Generator().manual_seed(5), 2.0, True, True)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], two[0]) and one[1:] == two[1:]
    assert one[2] == (one[0].view(-1, 4) == 0).all(1).double().mean().item()  # rows of 4
    assert 0 < one[2] < 1


def test_native_step_edge_cases_match_eager():
    """All zeros → Δ = 1 (δ̃ = 0); a NaN or an infinity → Δ = 1 as in eager, NaN stays."""
    fn = dither_native.kernel()
    u = torch.full((8,), 0.5)
    out, nnz, _, delta = fn(torch.zeros(8), u, None, 2.0, True, False)
    assert delta == 1.0 and nnz == 0 and not out.any()
    for bad in (float("nan"), float("inf")):
        d = torch.ones(8)
        d[3] = bad
        eager = dither_mod._step(d, 2.0, "std").item()
        _, _, _, delta = fn(d, u, None, 2.0, True, False)
        assert delta == eager == 1.0
    d = torch.ones(8)
    d[3] = float("nan")
    assert torch.isnan(fn(d, u, None, 2.0, False, False)[0][3])


# unbiasedness, zero probabilities, channels-last and the recorded counts: tests/test_dither.py
# runs those for every fused quantizer (test_fused_quantizers_*)


def test_native_quantizer_and_philox_noise_fall_back_with_one_warning(native_unbuilt):
    dy = torch.randn(100)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*eager quantizer"):
        out = dither(dy, quantizer="native")
    codes = out / out[out != 0].abs().min()
    torch.testing.assert_close(codes, codes.round())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once: quiet from now on
        dither(dy, quantizer="native", noise="philox")  # fresh torch noise instead
    with pytest.raises(RuntimeError, match="could not be built"):
        dither_native.philox_block([0, 0, 0, 0], [0, 0])
    with pytest.raises(ValueError, match="noise"):
        DitherOptions(noise="philox10")


def test_native_kernel_declines_what_it_cannot_read_and_rejects_bad_noise():
    """None (the caller falls back) for layouts and dtypes it does not read; an error for
    noise that does not fit the gradient (a caller's bug)."""
    fn = dither_native.kernel()
    assert fn(torch.randn(1), None, None, 1.0, True, False) is None
    assert fn(torch.empty(8, device="meta"), None, None, 1.0, True, False) is None  # not CPU
    base = torch.randn(1000)  # a view with a storage offset reads from its own first element
    a = fn(base[7:], None, torch.Generator().manual_seed(2), 1.0, True, False)
    b = fn(base[7:].clone(), None, torch.Generator().manual_seed(2), 1.0, True, False)
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    assert fn(torch.randn(8).half(), None, None, 1.0, True, False) is None
    with pytest.raises(RuntimeError, match="as long as dy"):
        fn(torch.randn(8), torch.rand(7), None, 1.0, True, False)
    with pytest.raises(RuntimeError, match="differ in dtype"):
        fn(torch.randn(8), torch.rand(8, dtype=torch.float64), None, 1.0, True, False)
    # any dense layout: δ̃ keeps the strides, rows are counted only when row-major
    dy = torch.randn(6, 5, 4).permute(2, 0, 1)
    out, nnz, zero_rows, _ = fn(dy, None, torch.Generator().manual_seed(0), 1.0, True, True)
    assert out.stride() == dy.stride() and zero_rows == -1.0
    assert nnz == int((out != 0).sum())
    # gaps (a slice, as ViT's patch tokens of the token gradient) or overlaps: a dense copy,
    # the same values as the kernel gives for that copy with the same key
    for odd in (torch.randn(16, 5, 192)[:, 1:].transpose(1, 2), torch.randn(4, 1).expand(4, 4)):
        out, nnz, _, _ = fn(odd, None, torch.Generator().manual_seed(3), 1.0, True, False)
        dense = fn(odd.contiguous(), None, torch.Generator().manual_seed(3), 1.0, True, False)
        assert out.is_contiguous() and torch.equal(out, dense[0]) and nnz == dense[1]
    # the quantizer itself sends other dtypes to eager
    dy = torch.randn(64, dtype=torch.bfloat16)
    assert dither(dy, quantizer="native").dtype == torch.bfloat16


def test_the_hooks_default_is_the_native_quantizer_with_philox_noise():
    """What presets and SparseBackwardHook get without options (issue 14's quantizer cost
    target is met by this pair); the functional dither() keeps torch's fresh noise."""
    opts = DitherOptions()
    assert (opts.quantizer, opts.noise) == ("native", "philox")
    dy = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    a = dither_mod._dither(dy, DitherOptions(generator=torch.Generator().manual_seed(5)), None)
    b = dither_mod._dither(dy, DitherOptions(generator=torch.Generator().manual_seed(5),
                                             quantizer="eager"), None)
    torch.testing.assert_close(a, b)  # eager reads the same Philox stream: same δ̃


def test_native_quantizer_is_not_consulted_off_cpu(monkeypatch):
    """A gradient on another device never builds or calls the extension (the eager path runs;
    here a meta tensor stands in for CUDA)."""
    def boom():
        raise AssertionError("the native kernel was consulted for a non-CPU gradient")

    monkeypatch.setattr(dither_native, "kernel", boom)
    dy = torch.empty(4, 8, device="meta")
    assert dither_mod._dither_native(dy, DitherOptions(), None, True) is None


@pytest.mark.parametrize("noise", ["philox", "pool"])
def test_every_quantizer_reads_stream_noise_in_memory_order(noise):
    """Channels-last gradient, same generator state: eager, compiled and native give the same
    δ̃ (the stream's element i goes to the i-th element in memory, in every quantizer)."""
    dy = torch.randn(2, 8, 5, 5, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last)
    outs = {}
    for quantizer in ("eager", "native"):
        opts = DitherOptions(generator=torch.Generator().manual_seed(5), noise=noise,
                             quantizer=quantizer)
        outs[quantizer] = dither_mod._dither(dy, opts, None)
    a, b = outs["eager"], outs["native"]
    assert b.is_contiguous(memory_format=torch.channels_last)
    step = a[a != 0].abs().min()
    assert ((a - b).abs() > step / 2).double().mean() < 0.01  # equal but for float rounding


def test_philox_without_the_kernel_is_exactly_fresh_noise(native_unbuilt):
    dy = torch.randn(300, generator=torch.Generator().manual_seed(0))
    fresh = dither_mod._dither(dy, DitherOptions(generator=torch.Generator().manual_seed(9),
                                                 noise="fresh", quantizer="eager"), None)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        philox = dither_mod._dither(dy, DitherOptions(generator=torch.Generator().manual_seed(9)),
                                    None)
    assert torch.equal(philox, fresh)


def test_density_counters_go_through_setters_where_there_are_some():
    """The one-update fast path is for plain instances (layers); a property, a class object
    or slots get ordinary setattr."""
    class WithProperty:
        seen: list = []

        @property
        def _grad_nnz(self):
            return -1

        @_grad_nnz.setter
        def _grad_nnz(self, value):
            type(self).seen.append(value)

    st = WithProperty()
    dither_mod._store_density(st, 7, 10, None)
    assert WithProperty.seen == [7] and st._grad_numel == 10

    class Plain:
        pass

    dither_mod._store_density(Plain, 3, 4, 0.5)  # the class itself as the stats object
    assert (Plain._grad_nnz, Plain._grad_numel, Plain._zero_rows) == (3, 4, 0.5)

    class Slotted:
        __slots__ = ("_grad_nnz", "_grad_numel", "_zero_rows")

    sl = Slotted()
    dither_mod._store_density(sl, 1, 2, 0.25)
    assert (sl._grad_nnz, sl._grad_numel, sl._zero_rows) == (1, 2, 0.25)
    layer = torch.nn.Linear(2, 2)
    dither_mod._store_density(layer, 5, 6, None, backward_path="native")
    assert (layer._grad_nnz, layer.backward_path) == (5, "native")
