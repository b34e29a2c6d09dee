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

Dense kernels on a sparse δ̃ cost the same as on δ. Linear layers therefore have sparse
paths in :class:`_DitherLinearFn`, each giving the dense products' dX, dW, db on the same δ̃:

- *native* (CPU, float32/float64, where dgsamp's C++ extension builds):
  :func:`.dither_native.sparse_grads` lists δ̃'s nonzeros by row and by column and
  runs each as one vector FMA over a contiguous row (dX row r += δ̃[r, c]·W row c; dW row c +=
  δ̃[r, c]·x row r): 2·nnz·in FMAs instead of 2·rows·out·in. Unstructured zeros are what it
  exploits (no row or column needs to be empty); at ~10% density it is 3-4x faster than the
  dense products on ViT-tiny's shapes on this CPU, break-even near 40%. Convolutions (groups
  1, zero padding, dilation 1) take the same kernel through :class:`_DitherConvFn`: one FMA
  per nonzero and kernel tap over x's channels-last rows;
- *gather*: the rows of δ̃ (tokens) that are entirely zero are dropped from both products
  (dX rows stay zero, dW = δ̃[rows]ᵀ x[rows]). Unstructured 90% zeros leave almost no zero row
  (0.9^C), but a ViT's last block only back-propagates through the class token (99.5% zero
  rows at 224 px), and at 32 px many tokens' whole gradient rounds to zero;
- *CSR*: torch's sparse CSR matmuls, which on this CPU beat the dense matmul, conversion
  included, only below roughly 4–5% density, i.e. at scales well above the default.

``sparse_kernel='auto'`` (default) decides per layer from what its previous backward measured
(deterministic for a given shape and measurement). Where the native products run: them, on
the first backward and whenever that density was ≤ :func:`native_max_density` of the layer's
input channels (convs: only with ≥ ``NATIVE_MIN_CHANNELS``), else the *hook path* (δ̃ handed
to native autograd's dense kernels; depthwise and dilated convs always). Elsewhere (no
compiler, off CPU): CSR when that density was ≤ ``sparse_threshold`` (0.04), the gather when ≥
``GATHER_MIN_ZERO`` of the rows were all zero, otherwise the hook path, which costs less than
the Python Function's own dense branch. ``'native'`` forces the native products (one warning
and torch's kernels where they cannot be built), ``True`` CSR, ``'gather'`` the gather,
``False`` always the hook path. Under a ``TorchDispatchMode`` (``FlopCounterMode``) torch's
kernels run, so that the counter sees the products (cost/flops.py scales them by the density:
for the native path that *is* the arithmetic done).

Cost on this CPU: the eager quantization is ~7 memory passes plus one uniform random number
per element (torch's CPU mt19937, ~3 ns per element unloaded), 4.3-4.7 ns per element in all;
pooled noise brings it to ~2.7, the compiled quantizer with pooled noise to 1.1-1.6 (a clone
costs ~0.3). In a train step that is still 7-39% of the dense step (median 20%;
tools/benchmark_dither_quantizer.py). Torch's CSR kernels and the row gather cannot win that
back at 90% unstructured zeros; the native sparse products can, which is why the default
quantizer is ``'native'`` (Δ to float rounding, one kernel call) and linear and conv layers
take the native products: whole dithered steps are then faster than dense ones here
(docs/results/benchmark_sparse_steps_cpu.md, "Native sparse products"). The default noise
is ``'philox'`` (below): with torch's generator the quantizer alone was 5.3-17.9% of a dense
step (median 10.9-12.9%), with Philox numbers made in the kernel 1.8-5.9% (median 3.4-4.5%
over three runs; issue 14 asks <= 5%).

``noise='pool'`` (CPU) replaces the per-element generator by reads from a pool of
``POOL_SIZE`` float32 U(0, 1) numbers (:class:`UniformPool`): each call takes the next window
after the last one (so the windows of one backward pass do not overlap while it reads fewer
than ``POOL_SIZE`` numbers, and the ν of one δ̃ are always distinct draws), and regenerates
1/``POOL_REFRESH`` of the pool as it goes, so a number is used about ``POOL_REFRESH`` times,
in different steps, before it is drawn anew. Every ν's marginal distribution is exactly the
generator's U(0, 1), so E[δ̃] = δ holds element by element as long as ν is independent of δ;
a reused number is not quite independent of the *history* (it shaped earlier updates), as
with any generator of short period. ``'fresh'``: one new number per element from torch's
generator, as the paper does; ``'philox'`` (the default of :class:`DitherOptions`, which the
hooks and presets use, since 2026-12-07): one new number per element too, from a Philox
stream (below) on CPU, and from torch's generator elsewhere (on CUDA that is Philox4x32-10
as well). The functional :func:`dither` and :func:`dither_grad` keep ``'fresh'``.

``quantizer='compiled'`` (CPU) runs the whole quantizer (the four statistics of Δ, the rounding,
δ̃ = Δ·q, nnz and the all-zero rows) as one ``torch.compile``d graph, two fused loops instead
of ~7 eager passes; the noise still comes from eager torch (the pool, or one fresh draw),
because inductor's in-kernel CPU random numbers cost more than the eager generator. Compiled
once per dtype (``dynamic=True``: every shape shares the graph, a few seconds the first time);
if compiling fails (no C++ compiler, an unsupported torch), a warning names the error and the
eager quantizer takes over. Off CPU, under a ``TorchDispatchMode`` (``FlopCounterMode``, the
memory tracker: dynamo does not compile inside them) and for a δ̃ whose memory is not one dense
block (neither contiguous nor channels-last), the eager quantizer runs.

``quantizer='native'`` (CPU, float32/float64) does the same in one small C++ kernel
(:mod:`.dither_native`, built on first use like any torch C++ extension): one call and two
passes, any layout of δ, the Philox key drawn in C++ (the Python around the call cost as much
as the kernel inside real backward passes: cold caches). On a 15K-element δ the quantizer
call takes ~15 µs with Philox noise, against ~95-110 µs for the compiled one (its guards and
wrappers cost ~90 µs before any element is touched), which is what dominates small layers.
``noise='philox'`` draws ν from a Philox4x32-10 stream keyed by one number drawn from the
generator per call: fresh numbers (none reused, unlike the pool) made inside the native
kernel, ~0.4 ns each with AVX-512 against ~3 ns for torch's CPU generator; the eager and
compiled quantizers read the same stream, so every quantizer gives the same δ̃ for a given
generator state. Where the kernel cannot be built: one warning, then the eager quantizer and
fresh noise. The default since 2026-12-07 (with ``noise='fresh'``, the default noise until
the AVX-512 Philox of the same day: the same torch numbers as the eager quantizer, laid out in
memory order; for a channels-last δ with an explicit generator the eager one lays them out in
NCHW order, so the two differ there in which element gets which number, not in
distribution).

Over 350 lines for a reason: the quantizer, its options and the exact backward paths of the
linear and conv Functions (hook, native, CSR, row gather) with their automatic choice are one
method, and nothing else imports their parts.
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

from . import dither_native

__all__ = [
    "DITHER_MODES",
    "DitherConv2d",
    "DitherLinear",
    "DitherOptions",
    "QUANTIZERS",
    "UniformPool",
    "check_scale",
    "dither",
    "dither_grad",
    "dither_linear",
    "dither_quantize",
    "native_max_density",
]

DITHER_MODES = ("std", "max")
DEFAULT_SCALE = 8.0
SPARSE_THRESHOLD = 0.04
#: the gather path drops δ̃'s all-zero rows / columns when at least this fraction of them are
#: all zero (below it the gathers and the scatter of dX cost more than the rows save)
GATHER_MIN_ZERO = 0.125
INT8_MAX = 127
NOISES = ("fresh", "pool", "philox")
SPARSE_KERNELS = ("auto", "native", "gather", True, False)
#: ``sparse_kernel='auto'`` runs a layer's backward on the native sparse products when its
#: previous δ̃ had at most NATIVE_MAX_DENSITY · c / (c + NATIVE_HALF_CHANNELS) nonzeros, c its
#: input channels / features (each nonzero is one vector FMA over c numbers per kernel tap, so
#: short rows pay less), and on its first backward; above it the hook path (torch's dense
#: kernels). Break-even measured on this CPU: ~0.4 for ViT-tiny's linear layers (c = 192-768),
#: ~0.25 for 3x3 convs with c = 64, ~0.14 with c = 24-32 (docs/results/
#: benchmark_sparse_steps_cpu.md, "Native sparse products")
NATIVE_MAX_DENSITY = 0.3
NATIVE_HALF_CHANNELS = 24
#: convolutions with fewer input channels (a stem on RGB) keep torch's kernels under 'auto':
#: the native products' vector FMAs run over rows of in_channels numbers
NATIVE_MIN_CHANNELS = 16
QUANTIZERS = ("eager", "compiled", "native")
#: float32 numbers in a CPU noise pool (16 MiB); a δ̃ with more elements draws fresh noise
POOL_SIZE = 1 << 22
#: the pool regenerates 1/POOL_REFRESH of the elements each call reads: a number is reused at
#: most about this many times
POOL_REFRESH = 8


def check_scale(scale: Any) -> float:
    """Validate a dither scale s > 0 (finite). Returns it as float."""
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"dither scale must be a positive number, got {scale!r}") from None
    if not (s > 0.0) or math.isinf(s):
        raise ValueError(f"dither scale must be a positive finite number (s > 0), got {scale!r}")
    return s


def native_max_density(channels: int) -> float:
    """The density of δ̃ up to which ``sparse_kernel='auto'`` runs a layer with ``channels``
    input channels (features) on the native sparse products (see NATIVE_MAX_DENSITY)."""
    return NATIVE_MAX_DENSITY * channels / (channels + NATIVE_HALF_CHANNELS)


def _check_mode(mode: str) -> None:
    if mode not in DITHER_MODES:
        raise ValueError(f"dither mode must be one of {DITHER_MODES}, got {mode!r}")


def _check_noise(noise: str) -> None:
    if noise not in NOISES:
        raise ValueError(f"dither noise must be one of {NOISES}, got {noise!r}")


def _check_quantizer(quantizer: str) -> None:
    if quantizer not in QUANTIZERS:
        raise ValueError(f"dither quantizer must be one of {QUANTIZERS}, got {quantizer!r}")


class UniformPool:
    """U(0, 1) noise read from a buffer instead of drawn per element (``noise='pool'``).

    ``window(n)`` returns the next ``n`` numbers after the previous window (a view, no copy;
    the cursor starts at a random offset and goes back to 0 when the window would pass the
    pool's end, so consecutive windows overlap only once ``size`` numbers have been read
    since, more than one backward pass of most models) and first regenerates
    the next ``ceil(n / refresh)`` numbers at a second, independent cursor, so the whole pool
    is redrawn every ``refresh`` passes over it. ``n > size`` is refused (the caller draws
    fresh noise then). Contents and offsets come from the ``generator`` given to the
    constructor and to ``window`` (default: torch's global CPU generator), so runs stay
    reproducible under ``torch.manual_seed``. The pool keeps no reference to the generator
    (the per-generator pools are dropped with their generator).
    """

    def __init__(self, size: int = POOL_SIZE, refresh: int = POOL_REFRESH,
                 dtype: torch.dtype = torch.float32,
                 generator: torch.Generator | None = None) -> None:
        if size < 1 or refresh < 1:
            raise ValueError(f"UniformPool: size={size} and refresh={refresh} must be >= 1")
        self.size, self.refresh = int(size), int(refresh)
        # the buffer starts 2 numbers into its storage, so every window's storage offset is
        # >= 2: torch.compile's dynamic shapes specialize offsets 0 and 1, and a window at
        # offset 0 (after a wrap) would recompile the compiled quantizer mid-training
        self.buffer = torch.rand(self.size + 2, dtype=dtype, generator=generator)[2:]
        self._read = int(torch.randint(self.size, (1,), generator=generator))
        self._write = 0

    def _regenerate(self, n: int, generator: torch.Generator | None) -> None:
        while n > 0:
            k = min(n, self.size - self._write)
            self.buffer[self._write:self._write + k] = torch.rand(
                k, dtype=self.buffer.dtype, generator=generator)
            self._write = (self._write + k) % self.size
            n -= k

    def window(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """The next ``n`` numbers: a 1-d view, valid until the next call (which may redraw
        it); ``n`` must be at most ``size``."""
        if n > self.size:
            raise ValueError(f"UniformPool.window({n}) exceeds the pool's {self.size} numbers")
        self._regenerate(-(-n // self.refresh), generator)
        if self._read + n > self.size:  # wrap: windows overlap only after `size` numbers
            self._read = 0
        out = self.buffer.narrow(0, self._read, n)
        self._read += n
        return out


_POOLS: dict[torch.dtype, UniformPool] = {}  # noise from torch's global generator
# a generator's own pools, dropped with the generator
_GENERATOR_POOLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pool(dtype: torch.dtype, generator: torch.Generator | None) -> UniformPool:
    """One pool per dtype and generator: a generator's runs stay reproducible on their own."""
    pools = _POOLS if generator is None else _GENERATOR_POOLS.setdefault(generator, {})
    if dtype not in pools:
        pools[dtype] = UniformPool(dtype=dtype, generator=generator)
    return pools[dtype]


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
    noise: str = "philox"
    quantizer: str = "native"
    method: ClassVar[str] = "dither"

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", check_scale(self.scale))
        _check_mode(self.mode)
        _check_noise(self.noise)
        _check_quantizer(self.quantizer)
        if self.sparse_kernel not in SPARSE_KERNELS:
            raise ValueError(f"sparse_kernel must be one of {SPARSE_KERNELS}, "
                             f"got {self.sparse_kernel!r}")
        object.__setattr__(self, "sparse_threshold", float(self.sparse_threshold))
        object.__setattr__(self, "enabled", bool(self.enabled))


def _step(dy: Tensor, scale: float, mode: str) -> Tensor:
    """Δ as a 0-d tensor, never below max|δ|/127 (int8 codes) and never 0.

    std from one norm and one sum (single-pass reductions; ``Tensor.std`` is two-pass), both
    accumulated in the gradient's own precision (at least float32): float64 accumulation made
    these two reductions ~50x slower on CPU, two thirds of the dither cost. Only the 0-d
    results are combined in float64; Δ is a scale, float32 sums are far more precise than it
    needs (cancellation would need |mean(δ)| > 1000·std(δ)).

    On CPU the reductions' results are read back once and combined as Python floats (the same
    IEEE float64 operations in the same order, and torch's sqrt, so Δ is bit-identical to the
    tensor path; tests/test_dither.py checks it):
    reading a CPU scalar costs no device sync, and it replaces ~15 tiny tensor ops (~90-140 µs
    per layer per step on this CPU, most of the quantizer's cost on small layers). Elsewhere
    (CUDA) Δ stays a tensor: no host sync.
    """
    d = dy.detach()
    return _step_host(d, scale, mode) if d.device.type == "cpu" else _step_tensor(d, scale, mode)


def _step_tensor(d: Tensor, scale: float | Tensor, mode: str) -> Tensor:
    """:func:`_step` as tensor ops only (no host sync; any device). ``scale`` may be a 0-d
    float64 tensor: the compiled quantizer traces this function with it, so that a schedule
    changing the scale does not recompile (Python floats are specialised on)."""
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
    return torch.where(delta > 0, delta, torch.ones_like(delta)).to(d.dtype)


def _nanmax(a: float, b: float) -> float:
    """max that propagates NaN, as ``torch.maximum`` does."""
    return a if (a >= b or math.isnan(a)) else b


def _step_host(d: Tensor, scale: float, mode: str) -> Tensor:
    """:func:`_step` for a CPU tensor: the same float64 arithmetic on Python floats."""
    acc = torch.promote_types(d.dtype, torch.float32)
    lo, hi = torch.aminmax(d)
    n = d.numel()
    std_mode = mode == "std" and n > 1
    parts = [lo.to(acc), hi.to(acc)]
    if std_mode:
        parts += [torch.linalg.vector_norm(d, dtype=acc), d.sum(dtype=acc)]
    vals = torch.stack(parts).tolist()  # exact: every float32/float64 value is a float
    amax = _nanmax(vals[1], -vals[0])
    lim = amax / INT8_MAX
    if std_mode:
        sq = vals[2] * vals[2]
        tot = vals[3]
        var = (sq - tot * tot / n) / (n - 1)
        var = var if (var >= 0.0 or math.isnan(var)) else 0.0
        # torch's float64 sqrt, not math.sqrt: they differ in the last bit now and then
        std = torch.tensor(var, dtype=torch.float64).sqrt_().item()
        delta = _nanmax(std * scale, lim)
    else:
        delta = amax * scale if mode == "max" else amax
        delta = _nanmax(delta, lim)
    return torch.tensor(delta if delta > 0 else 1.0, dtype=d.dtype)


def _fused_codes(d: Tensor, u: Tensor, scale: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """Codes floor(δ/Δ + u) and :func:`_step_tensor`'s Δ, for :func:`torch.compile` (``scale``
    a 0-d float64 tensor; ``mode`` a constant: one graph per mode)."""
    delta = _step_tensor(d, scale, mode)
    return torch.floor(u + d * delta.reciprocal()), delta


def _fused_flat(d: Tensor, u: Tensor, scale: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """δ̃ = Δ·q and nnz(δ̃) of a 1-d δ (conv layers): one reduction loop, one pointwise loop."""
    q, delta = _fused_codes(d, u, scale, mode)
    return q * delta, (q != 0).sum()


def _fused_rows(d: Tensor, u: Tensor, scale: Tensor, mode: str
                ) -> tuple[Tensor, Tensor, Tensor]:
    """δ̃, nnz(δ̃) and its number of all-zero rows, of a 2-d δ (tokens x features). The rows'
    nonzeros are summed as float (a bool ``any`` per row compiles to a slower loop)."""
    q, delta = _fused_codes(d, u, scale, mode)
    per_row = (q != 0).to(torch.float32).sum(1)
    return q * delta, per_row.sum().to(torch.int64), (per_row == 0).sum()


_COMPILED: dict[str, Any] = {}  # 'flat' / 'rows': the compiled graphs; 'failed': gave up


def _compiled(kind: str):
    """The compiled :func:`_fused_flat` or :func:`_fused_rows`, made on first use; None once
    compiling has failed."""
    if _COMPILED.get("failed"):
        return None
    if kind not in _COMPILED:
        fn = _fused_rows if kind == "rows" else _fused_flat
        _COMPILED[kind] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _COMPILED[kind]


def _flat(dy: Tensor) -> tuple[Tensor, Any] | None:
    """δ as a 1-d view in memory order, with a function that views a 1-d result of the same
    length as δ's shape and memory format; None when δ's memory is not one dense block."""
    if dy.is_contiguous():
        return dy.view(-1), lambda t: t.view(dy.shape)
    if dy.dim() == 4 and dy.is_contiguous(memory_format=torch.channels_last):
        n, c, h, w = dy.shape
        return dy.permute(0, 2, 3, 1).reshape(-1), \
            lambda t: t.view(n, h, w, c).permute(0, 3, 1, 2)
    return None


def _dither_compiled(dy: Tensor, opts: DitherOptions, stats: Any, rows: bool) -> Tensor | None:
    """``quantizer='compiled'``: one graph for Δ, the rounding, δ̃ and the counts; None where
    it does not apply (the caller runs the eager quantizer then)."""
    gen = opts.generator
    if dy.device.type != "cpu" or (gen is not None and gen.device.type != "cpu") or \
            dy.numel() < 2:
        return None
    if _get_current_dispatch_mode() is not None:  # FlopCounterMode, memory trackers: dynamo
        return None  # skips such frames, and the eager ops are what they should see anyway
    flat = _flat(dy.detach())
    if flat is None:
        return None
    # rows: the compiled graph's float32 per-row counts are exact below 2^24 elements
    rows = rows and dy.dim() > 1 and dy.is_contiguous() and dy.shape[-1] > 0 and \
        dy.numel() < 1 << 24
    fn = _compiled("rows" if rows else "flat")
    if fn is None:
        return None
    d, unflat = flat
    n = d.numel()
    u = _cpu_noise(n, dy.dtype, opts.noise, gen)
    width = dy.shape[-1] if rows else 0
    out, nnz, zero_rows = _run_compiled(fn, d, u, opts, width)
    if out is None:
        return None
    if stats is not None:
        _store_density(stats, nnz, n, int(zero_rows) / (n // width) if rows else None)
    return unflat(out.view(-1))


def _dither_native(dy: Tensor, opts: DitherOptions, stats: Any, rows: bool) -> Tensor | None:
    """``quantizer='native'``: one call of :func:`.dither_native.kernel`, which checks where it
    applies (CPU float32/float64, any layout) and draws Philox keys itself; this runs in
    every dithered backward, where each Python line costs microseconds (cold caches), so it
    does as little as it can. None where the kernel does not apply."""
    if dy.device.type != "cpu" or _get_current_dispatch_mode() is not None:  # FlopCounterMode
        return None  # sees the eager ops; off CPU the extension is not even built
    fn = _native_kernel()
    if fn is None:
        return None
    u = None
    if opts.noise != "philox":  # Philox is drawn in the kernel; the others here, in memory order
        gen = opts.generator
        if dy.numel() < 2 or dy.dtype not in (torch.float32, torch.float64) or (
                gen is not None and gen.device.type != "cpu"):
            return None  # before any number is drawn: eager draws its own
        u = _cpu_noise(dy.numel(), dy.dtype, opts.noise, gen)
    result = fn(dy.detach(), u, opts.generator, opts.scale, opts.mode == "std", rows)
    if result is None:
        return None
    out, nnz, zero_rows, _ = result
    if stats is not None:
        _store_density(stats, nnz, out.numel(), zero_rows if zero_rows >= 0 else None)
    return out


def _cpu_noise(n: int, dtype: torch.dtype, noise: str,
               generator: torch.Generator | None) -> Tensor:
    """``n`` U(0, 1) numbers on CPU for the fused quantizers, laid out in memory order: the
    pool's next window (``'pool'``, n ≤ ``POOL_SIZE``), the Philox stream (``'philox'``, where
    the kernel library is built), else torch's generator. ``generator``: a CPU one or None."""
    if noise == "pool" and n <= POOL_SIZE:
        return _pool(dtype, generator).window(n, generator)
    u = _philox(n, dtype, generator, torch.device("cpu")) if noise == "philox" else None
    return u if u is not None else torch.rand(n, generator=generator, dtype=dtype)


def _store_density(stats: Any, nnz: Any, numel: int, zero_rows: float | None,
                   **more: Any) -> None:
    """Write what a dithered layer records: ``_grad_nnz``, ``_grad_numel`` and, for a linear
    layer's δ̃ (features last), ``_zero_rows``, the fraction of its rows (tokens) that are all
    zero, which the next forward's path choice reads. Through the instance dict in one update
    where there is one: the stats object is usually the layer, and nn.Module's __setattr__
    cost ~10 µs per attribute in a backward pass (cold caches); these are plain numbers, which
    it would have put there too (``more``: other plain attributes, same way)."""
    values = {"_grad_nnz": nnz, "_grad_numel": numel, **more}
    if zero_rows is not None:
        values["_zero_rows"] = zero_rows
    if _plain_attributes(stats):
        vars(stats).update(values)
    else:  # a custom __setattr__, a property of one of these names, no __dict__, a class
        for name, value in values.items():
            setattr(stats, name, value)


#: what :func:`_store_density` may write; per stats type, whether the instance dict is where
#: setattr would put them (checked once per type)
_STORED = ("_grad_nnz", "_grad_numel", "_zero_rows", "sparse_kernel_used", "backward_path")
_PLAIN_TYPES: dict[type, bool] = {}


def _plain_attributes(stats: Any) -> bool:
    cls = type(stats)
    plain = _PLAIN_TYPES.get(cls)
    if plain is None:
        plain = (cls.__setattr__ in (object.__setattr__, nn.Module.__setattr__)
                 and hasattr(stats, "__dict__")
                 and not any(hasattr(getattr(cls, n, None), "__set__") for n in _STORED))
        _PLAIN_TYPES[cls] = plain
    return plain


def _philox_seed(generator: torch.Generator | None) -> int:
    """A Philox key for one call, drawn from ``generator`` (the default one when None), so
    that seeding torch seeds the stream: the native kernel's own draw for CPU generators
    (what ``quantizer='native'`` draws too), a torch integer from a CUDA generator."""
    if generator is None or generator.device.type == "cpu":
        key = dither_native.philox_key(generator)
        if key is not None:
            return key
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 1 << 62, (), generator=generator, device=device))


def _philox(n: int, dtype: torch.dtype, generator: torch.Generator | None,
            device: torch.device) -> Tensor | None:
    """``noise='philox'`` outside the native kernel: the same stream, made by the kernel's
    library; None (fresh torch noise then, one warning) where it cannot be built, before any
    number is drawn from ``generator`` (so the fallback is exactly ``noise='fresh'``)."""
    if dither_native.kernel() is None:
        _warn_native("noise='philox'", "fresh torch noise")
        return None
    u = dither_native.philox_uniform(n, _philox_seed(generator))
    return u.to(device=device, dtype=dtype)


def _warn_native(what: str, instead: str) -> None:
    if not _NATIVE_WARNED:
        _NATIVE_WARNED.append(True)
        warnings.warn(f"dither {what} needs dgsamp's C++ kernel, which could not be built "
                      f"({dither_native.build_error()}); using {instead} instead",
                      RuntimeWarning, stacklevel=4)


def _native_kernel():
    """dither_native's kernel, built on first use; None (one warning) where it cannot be."""
    fn = dither_native.kernel()
    if fn is None:
        _warn_native("quantizer='native'", "the eager quantizer")
    return fn


_NATIVE_WARNED: list[bool] = []  # one warning per process


def _run_compiled(fn, d: Tensor, u: Tensor, opts: DitherOptions, width: int):
    """(δ̃, nnz, zero rows) from the compiled graph; (None, None, None) once compiling failed."""
    scale = torch.tensor(opts.scale, dtype=torch.float64)
    try:  # detached: not views, so that dynamo guards on neither their bases nor their shapes
        if width:
            return fn(d.view(-1, width).detach(), u.view(-1, width).detach(), scale, opts.mode)
        out, nnz = fn(d.detach(), u.detach(), scale, opts.mode)
        return out, nnz, None
    except Exception as err:  # noqa: BLE001  (any compile failure: fall back, say why)
        _COMPILED["failed"] = True
        first = str(err).splitlines()[0] if str(err) else ""
        warnings.warn(f"dither quantizer='compiled' could not be compiled ({type(err).__name__}: "
                      f"{first}); using the eager quantizer instead", RuntimeWarning,
                      stacklevel=4)
        return None, None, None


def dither_quantize(
    dy: Tensor, scale: float = DEFAULT_SCALE, mode: str = "std",
    generator: torch.Generator | None = None, noise: str = "fresh",
) -> tuple[Tensor, Tensor]:
    """int8 codes q and step Δ with δ̃ = Δ·q."""
    _check_mode(mode)
    _check_noise(noise)
    q, delta = _codes(dy, check_scale(scale), mode, generator, noise)
    # guard only: Δ ≥ max|δ|/127 keeps every code in range (training skips this pass)
    return q.clamp_(-INT8_MAX, INT8_MAX).to(torch.int8), delta


def _codes(dy: Tensor, scale: float, mode: str, generator: torch.Generator | None,
           noise: str = "fresh"):
    """Float codes round(δ/Δ + ν) = floor(δ/Δ + u), u ~ U(0, 1), all within [−127, 127].

    ``scale``, ``mode`` and ``noise`` are validated by the caller (DitherOptions or the public
    function).
    """
    delta = _step(dy, scale, mode)
    u = None  # pool or Philox numbers, in memory order
    if noise == "pool" and dy.device.type == "cpu" and dy.numel() <= POOL_SIZE and (
            generator is None or generator.device.type == "cpu"):
        u = _pool(dy.dtype, generator).window(dy.numel(), generator)
    elif noise == "philox" and dy.device.type == "cpu":  # elsewhere torch's generator: on
        u = _philox(dy.numel(), dy.dtype, generator, dy.device)  # CUDA that is Philox already
    if u is not None:
        out = torch.empty_like(dy)  # dy's memory format (channels_last stays so)
        # the stream in memory order, as the native kernel reads it: the same δ̃ for any layout
        u = u.as_strided(dy.shape, out.stride())
        return torch.addcmul(u, dy, delta.reciprocal(), out=out).floor_(), delta
    if generator is None:
        u = torch.rand_like(dy)
    else:
        u = torch.rand(dy.shape, generator=generator, dtype=dy.dtype,
                       device=generator.device).to(dy.device)
    return u.addcmul_(dy, delta.reciprocal()).floor_(), delta


def dither(
    dy: Tensor, scale: float = DEFAULT_SCALE, mode: str = "std",
    generator: torch.Generator | None = None, stats: Any = None, noise: str = "fresh",
    quantizer: str = "eager",
) -> Tensor:
    """δ̃ = Δ·round(δ/Δ + ν). If ``stats`` is given, writes its density counters."""
    opts = DitherOptions(scale, mode, generator, noise=noise, quantizer=quantizer)
    return _dither(dy, opts, stats)


def _dither(dy: Tensor, opts: DitherOptions, stats: Any, rows: bool = False) -> Tensor:
    if opts.quantizer != "eager":
        fused = _dither_native if opts.quantizer == "native" else _dither_compiled
        out = fused(dy, opts, stats, rows)
        if out is not None:
            return out
    q, delta = _codes(dy, opts.scale, opts.mode, opts.generator, opts.noise)
    if stats is not None:
        _record(stats, q, rows)
    return q.mul_(delta.to(dy.dtype))


def _record(stats: Any, q: Tensor, rows: bool = False) -> None:
    """:func:`_store_density` of the eager quantizer's codes ``q``."""
    nz = q != 0  # with _count_true ~1.5x cheaper than count_nonzero(q) on CPU, same count
    zero_rows = _zero_fraction(_any(nz.reshape(-1, q.shape[-1]), 1)) if rows else None
    _store_density(stats, _count_true(nz), q.numel(), zero_rows)


#: elements per partial count of :func:`_count_true` (a uint8 sum of at most 255 ones is exact)
_COUNT_CHUNK = 128


def _count_true(mask: Tensor) -> Tensor:
    """Number of True in a bool mask, as a 0-d int64 tensor (= ``mask.sum()``).

    On CPU ``mask.sum()`` first copies the mask to int64 (~0.6 ns per element, as much as the
    comparison that made it); summing uint8 chunks of 128 in uint8 and then the partial sums
    is exact and ~13x faster (one thread, a 1040x768 mask: 37 vs 494 µs). Masks whose memory
    is not one dense block take ``mask.sum()``.
    """
    flat = _flat(mask)
    if flat is None:
        return mask.sum()
    u8 = flat[0].view(torch.uint8)
    n = u8.numel() - u8.numel() % _COUNT_CHUNK
    head = u8[:n].view(-1, _COUNT_CHUNK).sum(1, dtype=torch.uint8).sum()
    return head + u8[n:].sum() if n < u8.numel() else head


def _zero_fraction(any_nonzero: Tensor) -> float:
    """Fraction of False in a 1-d mask (a CPU read-back: only the CPU paths call it)."""
    n = any_nonzero.numel()
    return 1.0 - int(any_nonzero.sum()) / n if n else 0.0


def dither_grad(y: Tensor, scale: float = DEFAULT_SCALE, mode: str = "std",
                generator: torch.Generator | None = None, stats: Any = None,
                noise: str = "fresh", quantizer: str = "eager") -> Tensor:
    """Mark ``y`` (a layer output) so that its gradient is dithered before the layer's backward.

    Both backward products of the layer that produced ``y`` then run on δ̃. A tensor hook, not
    an autograd Function: it costs no copy in forward, and a hook registered before an in-place
    op (``ReLU(inplace=True)`` right after the conv) still receives the gradient of ``y`` itself.
    Returns ``y``.
    """
    return _mark(y, DitherOptions(scale, mode, generator, noise=noise, quantizer=quantizer),
                 stats)


def _mark(y: Tensor, opts: DitherOptions, stats: Any, rows: bool = False) -> Tensor:
    if y.requires_grad:
        y.register_hook(lambda dy: _dither(dy, opts, stats, rows))
    return y


def _any(nz: Tensor, dim: int) -> Tensor:
    """``nz.any(dim)`` of a bool mask as a uint8 max: on CPU the bool ``any`` reduction is
    scalar, the uint8 ``amax`` vectorized (one thread: 30 vs 196 µs on a 160x576 mask)."""
    return nz.view(torch.uint8).amax(dim)


def _nonzero_rows(nz: Tensor, min_zero: float) -> Tensor | None:
    """Sorted indices of the rows of the nonzero mask ``nz`` that hold a nonzero, or None when
    fewer than ``min_zero`` of them are entirely zero (then dropping them cannot pay for the
    gathers and the scatter of dX)."""
    keep = _any(nz, 1)
    n = keep.numel()
    idx = keep.nonzero().squeeze(1)
    return idx if n - idx.numel() >= min_zero * n else None


def _gather_products(dq: Tensor, x2: Tensor, w: Tensor, rows: Tensor | None,
                     need: tuple[bool, bool, bool]):
    """dX = δ̃W, dW = δ̃ᵀx, db = Σδ̃ over the nonzero rows of δ̃ only (all rows when ``rows`` is
    None: the dense products). Exact: the dropped rows are all zeros, they add nothing."""
    need_dx, need_dw, need_db = need
    qs = dq if rows is None else dq.index_select(0, rows)
    dx = dw = db = None
    if need_dx:
        dxs = qs @ w
        dx = dxs if rows is None else dxs.new_zeros(x2.shape).index_copy_(0, rows, dxs)
    if need_dw:
        dw = qs.t() @ (x2 if rows is None else x2.index_select(0, rows))
    if need_db:
        db = qs.sum(0)
    return dx, dw, db


class _DitherLinearFn(torch.autograd.Function):
    """F.linear whose backward dithers δ and runs both products on δ̃'s nonzero rows (gather),
    as CSR sparse matmuls, or dense; see the module docstring."""

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
        out_f, in_f = w.shape
        dy2 = dy.reshape(-1, out_f)
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                ctx.has_bias and ctx.needs_input_grad[2])
        products = _native_products(o, dy2)
        if products is not None:
            dx, dw, db = _native_backward(products, dy2, x, w, o, ctx.stats, need)
        else:
            dx, dw, db = _torch_backward(dy2, x, w, o, ctx.stats, need)
        dx = dx.reshape(x.shape).to(x.dtype) if dx is not None else None
        dw = dw.to(w.dtype) if dw is not None else None
        return dx, dw, db, None, None


def _native_products(opts: DitherOptions, dy: Tensor):
    """The native sparse products (:func:`.dither_native.sparse_grads`) where they apply
    (``sparse_kernel`` 'auto' or 'native', a float32/float64 gradient on CPU, the extension
    built), else None. 'native' where they cannot run warns once and takes the torch path."""
    if opts.sparse_kernel not in ("auto", "native"):
        return None
    if dy.device.type != "cpu" or dy.dtype not in (torch.float32, torch.float64):
        return None
    if _get_current_dispatch_mode() is not None:  # FlopCounterMode must see the products: the
        return None  # torch path (dense, counted; cost/flops.py scales it by the density)
    fn = dither_native.sparse_grads()
    if fn is None and opts.sparse_kernel == "native":
        _warn_native("sparse_kernel='native'", "torch's kernels")
    return fn


def _record_native(stats: Any, nnz: int, numel: int, zero_rows: float | None) -> None:
    if stats is not None:
        _store_density(stats, nnz, numel, zero_rows, sparse_kernel_used=True,
                       backward_path="native")


def _native_backward(products, dy2: Tensor, x: Tensor, w: Tensor, opts: DitherOptions,
                     stats: Any, need: tuple[bool, bool, bool]):
    """dX, dW, db of a linear layer from the nonzeros of δ̃ (any quantizer: δ̃ is the same as on
    the other paths); nnz and the all-zero rows come back from the kernel, which scans δ̃
    anyway."""
    dq = _dither(dy2.contiguous(), opts, None).contiguous()
    x2 = x.reshape(-1, w.shape[1]).to(dq.dtype).contiguous()
    dx, dw, db, nnz, zero_rows = products(dq, x2, w.to(dq.dtype).contiguous(),
                                          dither_native.LINEAR, *need)
    _record_native(stats, nnz, dq.numel(), zero_rows / dq.shape[0] if dq.shape[0] else 0.0)
    return dx, dw, db


def _memory_format(t: Tensor) -> torch.memory_format:
    channels_last = t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


class _DitherConvFn(torch.autograd.Function):
    """F.conv2d (groups 1, dilation 1, zero padding) whose backward dithers δ and runs both
    products on δ̃'s nonzeros (:func:`.dither_native.sparse_grads`: channels-last rows, one
    vector FMA per nonzero and kernel tap); torch's ``convolution_backward`` on the same δ̃
    where the native products do not apply (FlopCounterMode, no extension)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, opts, stats):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.geometry = (tuple(stride), tuple(padding))
        ctx.opts = opts
        ctx.stats = stats
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        o = ctx.opts
        (sh, sw), (ph, pw) = ctx.geometry
        need = (ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                ctx.has_bias and ctx.needs_input_grad[2])
        products = _native_products(o, dy)
        if products is None:  # (an autocast forward's low-precision δ back to x's dtype)
            dq = _dither(dy, o, ctx.stats).to(x.dtype)
            dx, dw, db = torch.ops.aten.convolution_backward(
                dq, x, w, [w.shape[0]] if ctx.has_bias else None, [sh, sw], [ph, pw], [1, 1],
                False, [0, 0], 1, list(need))
            if ctx.stats is not None:
                ctx.stats.sparse_kernel_used = False
                ctx.stats.backward_path = "dense"
            return dx, dw, db, None, None, None, None
        dq = _dither(dy, o, None)
        b, c_out, h, wo = dq.shape
        kh, kw = w.shape[2:]
        # a strided 1x1 conv reads every s-th pixel only: run it as a pointwise one on those
        # (the channels-last copy of x and of dX shrink by sh·sw), dX zero elsewhere
        strided_1x1 = (kh, kw, ph, pw) == (1, 1, 0, 0) and (sh, sw) != (1, 1)
        xs = x[:, :, ::sh, ::sw] if strided_1x1 else x
        geometry = (h, wo, h, wo, 1, 1, 1, 1, 0, 0) if strided_1x1 else \
            (h, wo, x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw)
        c_in, hi, wi = xs.shape[1:]
        rows = dq.permute(0, 2, 3, 1).reshape(-1, c_out)  # a copy unless dq is channels-last
        dx, dw, db, nnz, _ = products(
            rows.contiguous(), xs.permute(0, 2, 3, 1).to(dq.dtype).reshape(-1, c_in).contiguous(),
            w.permute(0, 2, 3, 1).to(dq.dtype).reshape(c_out, -1).contiguous(), geometry, *need)
        _record_native(ctx.stats, nnz, dq.numel(), None)
        if dx is not None:
            dx = dx.view(b, hi, wi, c_in).permute(0, 3, 1, 2).to(x.dtype)
            if strided_1x1:
                full = torch.zeros_like(x, memory_format=_memory_format(x))
                full[:, :, ::sh, ::sw] = dx
                dx = full
            else:
                dx = dx.contiguous(memory_format=_memory_format(x))
        if dw is not None:
            dw = dw.view(c_out, kh, kw, c_in).permute(0, 3, 1, 2).to(w.dtype).contiguous()
        return dx, dw, db, None, None, None, None


def _torch_backward(dy2: Tensor, x: Tensor, w: Tensor, o: DitherOptions, stats: Any,
                    need: tuple[bool, bool, bool]):
    """dX, dW, db with torch's kernels: CSR, the row gather or dense (see the module
    docstring)."""
    sparse_kernel = o.sparse_kernel
    q, delta = _codes(dy2, o.scale, o.mode, o.generator, o.noise)
    nz = q != 0  # one pass; nnz and the zero rows both come from it
    nnz = _count_true(nz)
    if stats is not None:
        _store_density(stats, nnz, q.numel(),
                       _zero_fraction(_any(nz, 1)) if q.device.type == "cpu" else None)
    path = "csr" if sparse_kernel is True else "dense"
    rows = None
    if sparse_kernel == "gather":
        path = "gather"
        rows = _nonzero_rows(nz, 0.0)
    elif sparse_kernel in ("auto", "native"):
        cpu_float = q.device.type == "cpu" and dy2.dtype in (torch.float32, torch.float64)
        if cpu_float and int(nnz) <= o.sparse_threshold * q.numel():
            path = "csr"
        else:
            rows = _nonzero_rows(nz, GATHER_MIN_ZERO)
            path = "dense" if rows is None else "gather"
    dq = q.mul_(delta.to(q.dtype))
    x2 = x.reshape(-1, w.shape[1]).to(dq.dtype)
    wq = w.to(dq.dtype)
    dx = dw = db = None
    if path == "csr":
        with warnings.catch_warnings():  # "Sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            csr = dq.to_sparse_csr()
        if need[0]:
            dx = csr @ wq
        if need[1]:
            dw = csr.t() @ x2
        if need[2]:
            db = dq.sum(0)
    else:  # dense: the gather with every row and column kept
        dx, dw, db = _gather_products(dq, x2, wq, rows, need)
    if stats is not None:
        stats.sparse_kernel_used = path == "csr"
        stats.backward_path = path
    return dx, dw, db


def dither_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                  scale: float = DEFAULT_SCALE, mode: str = "std",
                  generator: torch.Generator | None = None, sparse_kernel: bool | str = "auto",
                  sparse_threshold: float = SPARSE_THRESHOLD, stats: Any = None,
                  noise: str = "fresh") -> Tensor:
    """``F.linear`` (any leading dims) with a dithered backward; see the module docstring."""
    opts = DitherOptions(scale, mode, generator, sparse_kernel, sparse_threshold, noise=noise)
    return _DitherLinearFn.apply(x, weight, bias, opts, stats)


class _DitherMixin:
    """Attributes shared by the dither module classes (patch.py adds and removes them).

    ``sparse_options`` (a :class:`DitherOptions`) is the layer's configuration; ``_grad_nnz``,
    ``_grad_numel`` and ``sparse_kernel_used`` are what the last backward measured.
    """

    _sparse_attrs = ("sparse_options", "_grad_nnz", "_grad_numel", "sparse_kernel_used",
                     "backward_path", "_zero_rows")
    sparse_method = "dither"
    options_class = DitherOptions

    def _sparse_init(self, options: DitherOptions | None = None, **kwargs: Any) -> None:
        """Attach ``options`` (or ``DitherOptions(**kwargs)``) to this layer."""
        self.sparse_options = options if options is not None else DitherOptions(**kwargs)
        self._grad_nnz = None
        self._grad_numel = None
        self.sparse_kernel_used = False
        # 'native', 'dense', 'gather' or 'csr': the last backward through the layer's own
        # Function (None: only hook-path backwards so far)
        self.backward_path = None
        self._zero_rows = 0.0  # fraction of all-zero rows of the last δ̃ (DitherLinear, CPU)

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

    @staticmethod
    def _native_available(input: Tensor) -> bool:
        """Whether the native sparse products can run on this input (CPU, float32/float64,
        the extension built)."""
        return input.device.type == "cpu" and input.dtype in (torch.float32, torch.float64) \
            and dither_native.sparse_grads() is not None

    def _native_pays(self, channels: int) -> bool:
        """``sparse_kernel='auto'``, where the native products are available: whether they run
        this backward: on the first backward (the default scale leaves ~5-10% nonzeros) and
        whenever the previous one measured a density ≤ :func:`native_max_density` of the
        layer's input ``channels``. Deterministic: a function of the last measurement."""
        return self._grad_nnz is None or not self._grad_numel or \
            float(self._grad_nnz) / self._grad_numel <= native_max_density(channels)


class DitherConv2d(_DitherMixin, nn.Conv2d):
    """``nn.Conv2d`` whose output gradient is dithered. Made by patching (class swap)."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        o = self.sparse_options
        if not o.enabled or not torch.is_grad_enabled():
            return super()._conv_forward(input, weight, bias)
        if self._native_shape(input) and (o.sparse_kernel == "native" or (
                o.sparse_kernel == "auto" and self.in_channels >= NATIVE_MIN_CHANNELS
                and self._native_available(input) and self._native_pays(self.in_channels))):
            return _DitherConvFn.apply(input, weight, bias, self.stride, self.padding, o, self)
        return _mark(super()._conv_forward(input, weight, bias), o, self)

    def _native_shape(self, input: Tensor) -> bool:
        """Whether the native products handle this convolution: groups 1, dilation 1, zero
        padding given as numbers, a batched 4-d input."""
        return (self.groups == 1 and tuple(self.dilation) == (1, 1)
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and input.dim() == 4)


class DitherLinear(_DitherMixin, nn.Linear):
    """``nn.Linear`` whose output gradient is dithered (optionally sparse-kernel backward)."""

    def forward(self, input: Tensor) -> Tensor:
        o = self.sparse_options
        if not o.enabled or not torch.is_grad_enabled():
            return F.linear(input, self.weight, self.bias)
        if o.sparse_kernel is False or (o.sparse_kernel == "auto" and not self._sparse_may_pay(
                input)):
            return _mark(F.linear(input, self.weight, self.bias), o, self,
                         rows=input.device.type == "cpu")
        return _DitherLinearFn.apply(input, self.weight, self.bias, o, self)

    def _sparse_may_pay(self, input: Tensor) -> bool:
        """``sparse_kernel='auto'``: whether this backward goes through :class:`_DitherLinearFn`,
        decided from what the previous backward of this layer measured (deterministic: a
        function of the last measurement). Where the native sparse products run:
        :meth:`_native_pays`. Elsewhere: when the density was ≤ ``sparse_threshold`` (CSR) or ≥
        ``GATHER_MIN_ZERO`` of the rows were all zero (gather). Otherwise the layer takes the
        hook path: the same δ̃ into native autograd's dense kernels, which on this CPU costs
        ~10% of a ViT-tiny step less than the Python Function's dense branch.
        """
        if self._native_available(input):
            return self._native_pays(self.in_features)
        if input.device.type != "cpu" or self._grad_nnz is None or not self._grad_numel:
            return False
        density = float(self._grad_nnz) / self._grad_numel
        return (density <= self.sparse_options.sparse_threshold
                or self._zero_rows >= GATHER_MIN_ZERO)
