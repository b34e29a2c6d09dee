"""The dither quantizer as one small C++ kernel (``quantizer='native'`` in :mod:`.dither`), and
the Philox noise of ``noise='philox'``.

Why a kernel of our own: on a CPU the eager quantizer is ~15 tensor ops and ~7 memory passes,
and the ``torch.compile``d one still costs ~90 µs per call before it touches an element
(~40 µs the graph, ~45 µs dynamo's guards and the Python around them), which is most of its
cost on small layers: ViT-tiny at 32 px spent 39% of a dense step in it, 49 layers of
~290 µs. This kernel is one Python call and two passes over δ:

1. min, max, Σδ and Σδ² in float64, over fixed 64K-element chunks combined in order, so Δ is
   the same for any thread count;
2. q = floor(δ·(1/Δ) + u), δ̃ = Δ·q and the nonzero count in one vectorised loop; for linear
   layers the all-zero token rows from a pass that stops at each row's first nonzero.

Δ is :func:`.dither._step`'s formula (max(scale·std, max|δ|/127), or max(scale·max|δ|,
max|δ|/127) in mode 'max'; 1 where that is not > 0), summed in float64 where eager sums in
float32, so Δ agrees with the eager quantizer to float rounding and δ̃ is the same grid value
on the same noise except where δ/Δ + u lies within rounding of an integer.

The noise u is the caller's (fresh or pool), or, with ``u=None``, Philox4x32-10 (Salmon et al.
2011, the generator of cuRAND and of torch on CUDA; Random123's known-answer vectors are in
the tests) keyed by a 64-bit key drawn per call from the caller's torch generator (as
torch's own random ops draw, under its lock): every element gets its own counter, so the
numbers are fresh (none reused, unlike the pool) and cost ~0.4 ns each with AVX-512 (16
blocks per vector; ~0.9 ns for what GCC makes of the scalar loop) against ~3 ns for
``torch.rand`` here. :func:`philox_uniform` gives the same stream to the eager path. Either
way the kernel changes how δ̃ is computed, never its distribution.

Why the call does the layout and the key itself: it runs in every dithered backward, where
the caches are cold from the convolutions and each Python line around it cost ~5-30 µs
(measured inside ResNet-18 and ViT-tiny steps: the ~15 lines of checks, views, the key draw
and the counters' writes took as long as the kernel). So ``dither_fused`` takes the gradient
as it comes (any dense layout is read in memory order and its δ̃ keeps the strides; one with
gaps, like ViT's patch tokens sliced from the token gradient, is copied dense first) and
draws the Philox key from the generator; Python makes one call.

:func:`sparse_grads` is the other half of a dithered layer's backward: dX, dW and db from
δ̃'s nonzeros only (``sparse_kernel='native'``/'auto' in :mod:`.dither`), for linear layers and
for convolutions (groups 1) alike: a linear layer is a 1x1 convolution over its rows. It
compacts each output position's nonzeros (branch-free), transposes the lists by a stable
counting sort, and runs every nonzero and kernel tap as one FMA over a contiguous row of
channels (W's, or x's channels-last), four nonzeros per pass over the output row; each output
row is summed in a fixed order, so results do not depend on the thread count. At the ~90-97%
zeros of the default scale that is 2-6x faster than the dense products here (break-even near
40% density); torch's CSR matmuls only break even below ~4% density.

Built on first use (:class:`.native.NativeExtension`); where that fails :func:`kernel` returns
None and the caller falls back to the eager quantizer and fresh torch noise with one warning.
float32 and float64 only (``dither_fused``
declines other dtypes; :func:`sparse_grads` raises). Philox numbers have 24 random bits
(uniform on the grid k/2^24) for float64 gradients too, where torch's generator gives 53:
E[δ̃] = δ then holds to within 2^-24·Δ per element (as for float32), far below float32's own
rounding of δ/Δ + u.
"""

from __future__ import annotations

import torch

from .native import NativeExtension

SOURCE_VERSION = 16  # bump with any change to _SOURCE: the extension's name carries it

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <mutex>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

namespace {
constexpr int64_t kChunk = 1 << 16;  // stats chunk: fixed, so the sum order is fixed too
constexpr int64_t kSortBlocks = 64;  // row blocks of the sparse products' parallel transpose

struct Stats { double lo, hi, s, s2; };

// Philox4x32-10 (Salmon et al., SC'11; Random123's philox4x32_R(10, ...)): block b of the
// stream keyed by `seed` is the 4 words of philox(ctr = {b lo, b hi, 0, 0}, key = seed).
// Elements go in tiles of kTile = 4 * kTileBlocks: element t * kTile + w * kTileBlocks + j
// takes word w of block t * kTileBlocks + j, its top 24 bits as a uniform in [0, 1).
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
constexpr int kTileBlocks = 256;
constexpr int kTile = 4 * kTileBlocks;  // divides kChunk

inline void philox10(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0,
                     uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += kW0;
    k1 += kW1;
  }
}

inline void philox_tile_scalar(uint64_t tile, uint64_t seed, uint32_t* __restrict out) {
  // word w of block j of the tile is number w * kTileBlocks + j: four contiguous stores per
  // block, so the loop over blocks vectorises (partly: ~0.9 ns per word here)
  const uint64_t first = tile * kTileBlocks;
  uint32_t* __restrict o0 = out;
  uint32_t* __restrict o1 = out + kTileBlocks;
  uint32_t* __restrict o2 = out + 2 * kTileBlocks;
  uint32_t* __restrict o3 = out + 3 * kTileBlocks;
  for (int j = 0; j < kTileBlocks; ++j) {
    const uint64_t b = first + static_cast<uint64_t>(j);
    uint32_t c0 = static_cast<uint32_t>(b), c1 = static_cast<uint32_t>(b >> 32), c2 = 0, c3 = 0;
    philox10(c0, c1, c2, c3, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    o0[j] = c0;
    o1[j] = c1;
    o2[j] = c2;
    o3[j] = c3;
  }
}

#if defined(__AVX512F__)
// hi and lo 32 bits of the 16 products a[i] * m, m in every 64-bit lane's low half: vpmuludq
// multiplies the even 32-bit lanes, a shift brings the odd ones down
inline void mulhilo16(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, m);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

// The same words as philox_tile_scalar, 16 blocks per vector and 4 vectors interleaved (the
// products' latency): ~0.42 ns per word against ~0.9 for what GCC makes of the scalar loop.
// A tile's blocks share their high counter word (a tile starts at a multiple of 256 blocks).
inline void philox_tile(uint64_t tile, uint64_t seed, uint32_t* __restrict out) {
  constexpr int kGroups = 4;
  const uint64_t first = tile * kTileBlocks;
  const __m512i m0 = _mm512_set1_epi64(kM0), m1 = _mm512_set1_epi64(kM1);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i high = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32)));
  for (int j = 0; j < kTileBlocks; j += 16 * kGroups) {
    __m512i c0[kGroups], c1[kGroups], c2[kGroups], c3[kGroups];
    for (int g = 0; g < kGroups; ++g) {
      const uint32_t low = static_cast<uint32_t>(first) + static_cast<uint32_t>(j + 16 * g);
      c0[g] = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(low)), lane);
      c1[g] = high;
      c2[g] = c3[g] = _mm512_setzero_si512();
    }
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int r = 0; r < 10; ++r) {
      const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0));
      const __m512i key1 = _mm512_set1_epi32(static_cast<int>(k1));
      for (int g = 0; g < kGroups; ++g) {
        __m512i hi0, lo0, hi1, lo1;
        mulhilo16(c0[g], m0, hi0, lo0);
        mulhilo16(c2[g], m1, hi1, lo1);
        c0[g] = _mm512_ternarylogic_epi32(hi1, c1[g], key0, 0x96);  // three-way xor
        c2[g] = _mm512_ternarylogic_epi32(hi0, c3[g], key1, 0x96);
        c1[g] = lo1;
        c3[g] = lo0;
      }
      k0 += kW0;
      k1 += kW1;
    }
    for (int g = 0; g < kGroups; ++g) {
      const int at = j + 16 * g;
      _mm512_storeu_si512(out + at, c0[g]);
      _mm512_storeu_si512(out + kTileBlocks + at, c1[g]);
      _mm512_storeu_si512(out + 2 * kTileBlocks + at, c2[g]);
      _mm512_storeu_si512(out + 3 * kTileBlocks + at, c3[g]);
    }
  }
}
#else
inline void philox_tile(uint64_t tile, uint64_t seed, uint32_t* __restrict out) {
  philox_tile_scalar(tile, seed, out);
}
#endif

template <typename T>
inline T uniform24(uint32_t w) {
  return static_cast<T>(w >> 8) * static_cast<T>(1.0 / 16777216.0);  // exact: 24 bits, 2^-24
}

template <typename T>
Stats chunk_stats(const T* x, int64_t n) {
  // kLanes independent accumulators, so that the compiler vectorises the loop (one running
  // sum would be a dependency chain); NaN propagates through s and s2, lo/hi are plain
  // comparisons (NaN is handled by the caller)
  constexpr int kLanes = 16;
  T lo[kLanes], hi[kLanes];
  double s[kLanes], s2[kLanes];
  for (int j = 0; j < kLanes; ++j) {
    lo[j] = std::numeric_limits<T>::infinity();
    hi[j] = -lo[j];
    s[j] = s2[j] = 0.0;
  }
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const T v = x[i + j];
      lo[j] = v < lo[j] ? v : lo[j];
      hi[j] = v > hi[j] ? v : hi[j];
      const double w = static_cast<double>(v);
      s[j] += w;
      s2[j] += w * w;
    }
  }
  for (; i < n; ++i) {  // the tail, into lane 0
    const T v = x[i];
    lo[0] = v < lo[0] ? v : lo[0];
    hi[0] = v > hi[0] ? v : hi[0];
    s[0] += static_cast<double>(v);
    s2[0] += static_cast<double>(v) * static_cast<double>(v);
  }
  Stats out{static_cast<double>(lo[0]), static_cast<double>(hi[0]), 0.0, 0.0};
  for (int j = 0; j < kLanes; ++j) {
    out.lo = std::min(out.lo, static_cast<double>(lo[j]));
    out.hi = std::max(out.hi, static_cast<double>(hi[j]));
    out.s += s[j];
    out.s2 += s2[j];
  }
  return out;
}

// the step: max(scale * std, amax / 127) in mode std, max(scale * amax, amax / 127) in
// mode max; 1 where that is not > 0, NaN included (eager: torch.where(delta > 0, delta, 1))
double step_of(const std::vector<Stats>& parts, int64_t n, double scale, bool std_mode) {
  double lo = parts[0].lo, hi = parts[0].hi, s = 0.0, s2 = 0.0;
  for (const Stats& p : parts) {
    lo = std::min(lo, p.lo);
    hi = std::max(hi, p.hi);
    s += p.s;
    s2 += p.s2;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double amax = std::max(hi, -lo);
  if (std::isnan(s)) amax = nan;  // a NaN in the gradient: amax is NaN, as torch.aminmax's
  const double lim = amax / 127.0;
  double delta;
  if (std_mode && n > 1) {
    double var = (s2 - s * s / static_cast<double>(n)) / static_cast<double>(n - 1);
    if (!(var >= 0.0) && !std::isnan(var)) var = 0.0;
    const double sd = std::sqrt(var) * scale;
    delta = (sd >= lim || std::isnan(sd)) ? sd : lim;
  } else {
    const double m = std_mode ? amax : amax * scale;
    delta = (m >= lim || std::isnan(m)) ? m : lim;
  }
  return delta > 0.0 ? delta : 1.0;
}

// One pass for Delta's statistics, one for the rounding, over x[0, n) into y[0, n); r the
// noise or nullptr for Philox keyed by `seed`; width > 0: also count the all-zero rows of
// (n / width, width). Returns (nnz, zero rows, Delta).
template <typename T>
std::tuple<int64_t, int64_t, double> run(const T* x, T* y, int64_t n, const T* r, uint64_t seed,
                                         double scale, bool std_mode, int64_t width) {
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
  std::vector<Stats> parts(n_chunks);
  at::parallel_for(0, n_chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      const int64_t lo = c * kChunk;
      parts[c] = chunk_stats(x + lo, std::min(kChunk, n - lo));
    }
  });
  const T delta = static_cast<T>(step_of(parts, n, scale, std_mode));
  const T inv = T(1) / delta;
  // 64K-element chunks (whole tiles: the noise of an element does not depend on the chunking)
  std::vector<int64_t> nnz(n_chunks, 0);
  at::parallel_for(0, n_chunks, 1, [&](int64_t b, int64_t e) {
    alignas(64) uint32_t words[kTile];
    alignas(64) T noise[kTile];
    for (int64_t c = b; c < e; ++c) {
      const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      int64_t count = 0;
      for (int64_t t0 = lo; t0 < hi; t0 += kTile) {
        const int64_t m = std::min<int64_t>(kTile, hi - t0);
        const T* __restrict us = r != nullptr ? r + t0 : noise;
        if (r == nullptr) {
          philox_tile(static_cast<uint64_t>(t0 / kTile), seed, words);
          for (int j = 0; j < kTile; ++j) noise[j] = uniform24<T>(words[j]);
        }
        const T* __restrict xs = x + t0;
        T* __restrict ys = y + t0;
        int32_t tile_count = 0;
        for (int64_t i = 0; i < m; ++i) {
          const T q = std::floor(xs[i] * inv + us[i]);
          ys[i] = q * delta;
          tile_count += q != T(0) ? 1 : 0;
        }
        count += tile_count;
      }
      nnz[c] = count;
    }
  });
  int64_t total = 0, zero_rows = 0;
  for (int64_t c = 0; c < n_chunks; ++c) total += nnz[c];
  if (width > 0) {  // all-zero rows: a row stops at its first nonzero (most rows have one)
    const int64_t n_rows = n / width;
    std::vector<char> zero(n_rows, 0);
    at::parallel_for(0, n_rows, std::max<int64_t>(1, kChunk / width), [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const T* row = y + k * width;
        int64_t i = 0;
        while (i < width && row[i] == T(0)) ++i;
        zero[k] = i == width;
      }
    });
    for (int64_t k = 0; k < n_rows; ++k) zero_rows += zero[k];
  }
  return {total, zero_rows, static_cast<double>(delta)};
}

// A Philox key drawn from `generator` (torch's default CPU generator when None) under its lock,
// as torch's own random ops draw: seeding torch seeds the stream.
uint64_t draw_key(const c10::optional<at::Generator>& generator) {
  auto* gen = at::get_generator_or_default<at::CPUGeneratorImpl>(
      generator, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(gen->mutex_);
  return gen->random64();
}
}  // namespace

// The quantizer as a backward hook calls it, so that one call does what ~15 Python lines did
// (each ~5-30 us with the cold caches of a backward pass). grad: any layout; a dense one
// (contiguous, channels-last, any permutation) is read as it lies and its dithered copy has
// the same strides, one with gaps or overlaps is first copied dense. Elements and noise go in
// memory order (u: contiguous and as long as grad, or None for Philox noise keyed by a draw
// from `generator`). rows: also the fraction of all-zero rows of a row-major grad viewed as
// (n / last dim, last dim), -1 where not counted. Returns (dithered grad, nnz, zero-row
// fraction, Delta), or None where the kernel does not apply and the caller falls back: not a
// CPU float32/float64 tensor, fewer than 2 elements, a generator of another device.
c10::optional<std::tuple<torch::Tensor, int64_t, double, double>> dither_fused(
    const torch::Tensor& grad, const c10::optional<torch::Tensor>& u,
    const c10::optional<at::Generator>& generator, double scale, bool std_mode, bool rows) {
  const auto dtype = grad.scalar_type();
  if (!grad.device().is_cpu() || (dtype != torch::kFloat && dtype != torch::kDouble) ||
      grad.numel() < 2 ||
      (generator.has_value() && generator->defined() && !generator->device().is_cpu()))
    return c10::nullopt;
  // gaps or overlaps (a slice of a larger gradient, an expanded one): a dense copy first
  const torch::Tensor dy = grad.is_non_overlapping_and_dense()
                               ? grad
                               : grad.contiguous(grad.suggest_memory_format());
  const int64_t n = dy.numel();
  if (u.has_value()) {
    TORCH_CHECK(u->device().is_cpu() && u->is_contiguous() && u->numel() == n,
                "dither_fused: u must be a contiguous CPU tensor as long as dy");
    TORCH_CHECK(u->scalar_type() == dtype, "dither_fused: dy and u differ in dtype");
  }
  const int64_t width = rows && dy.dim() > 1 && dy.is_contiguous() ? dy.size(-1) : 0;
  torch::Tensor out = at::empty_like(dy);  // dense input: empty_like keeps its strides
  const uint64_t key = u.has_value() ? 0 : draw_key(generator);
  int64_t nnz, zero_rows;
  double delta;
  if (dtype == torch::kFloat)
    std::tie(nnz, zero_rows, delta) = run<float>(
        dy.data_ptr<float>(), out.data_ptr<float>(), n,
        u.has_value() ? u->data_ptr<float>() : nullptr, key, scale, std_mode, width);
  else
    std::tie(nnz, zero_rows, delta) = run<double>(
        dy.data_ptr<double>(), out.data_ptr<double>(), n,
        u.has_value() ? u->data_ptr<double>() : nullptr, key, scale, std_mode, width);
  const double zero_fraction =
      width > 0 ? static_cast<double>(zero_rows) / static_cast<double>(n / width) : -1.0;
  return std::make_tuple(out, nnz, zero_fraction, delta);
}

// The Philox key dither_fused draws when u is None (the eager path's philox noise uses it too)
int64_t philox_key(const c10::optional<at::Generator>& generator) {
  return static_cast<int64_t>(draw_key(generator));
}

// n uniforms of the Philox stream keyed by `seed` from tile `first_tile` on (what
// dither_fused adds to d / Delta when u is None: first_tile 0), as float32: for the eager
// path's equal noise, and for tests (a first_tile >= 2^24 reaches the high counter word).
torch::Tensor philox_uniform(int64_t n, int64_t seed, int64_t first_tile) {
  TORCH_CHECK(n >= 0 && first_tile >= 0, "philox_uniform: n and first_tile must be >= 0");
  torch::Tensor out = torch::empty({n}, torch::kFloat);
  float* y = out.data_ptr<float>();
  alignas(64) uint32_t words[kTile];
  for (int64_t t0 = 0; t0 < n; t0 += kTile) {
    const int64_t m = std::min<int64_t>(n - t0, kTile);
    philox_tile(static_cast<uint64_t>(first_tile + t0 / kTile), static_cast<uint64_t>(seed),
                words);
    for (int64_t j = 0; j < m; ++j) y[t0 + j] = uniform24<float>(words[j]);
  }
  return out;
}

// --- the products of a dithered layer's backward from the nonzeros of its output gradient ----
//
// One kernel for linear layers and convolutions (groups 1, dilation 1, zero padding). q is the
// dithered output gradient as rows = output positions (b, h, w) (a linear layer: h = w = 0)
// by columns = output channels; x the input channels-last, rows (b, ih, iw) by c; w the weight
// as o by (kh, kw, c). Each nonzero q[r, o] and kernel tap (kh, kw) is one vector FMA over a
// contiguous row of c: dX row (b, h*sh - ph + kh, w*sw - pw + kw) += q[r, o] * w[o, kh, kw, :]
// and dW[o, kh, kw, :] += q[r, o] * x row (b, ...), four nonzeros per pass over the output
// row. Work: 2 * nnz * kh * kw * c FMAs against 2 * rows * o * kh * kw * c dense. Each output
// row is summed in a fixed order (dX over ascending rows then columns, dW over ascending
// rows), whatever the thread count.
namespace {
template <typename T>
struct Rows {  // q's nonzeros by row (CSR): row r holds entries ptr[r] .. ptr[r + 1]
  std::vector<int64_t> ptr;
  std::vector<int32_t> col;
  std::vector<T> val;
};

template <typename T>
Rows<T> nonzero_rows(const T* q, int64_t n, int64_t o) {
  Rows<T> rows;
  rows.ptr.assign(n + 1, 0);
  const int64_t grain = std::max<int64_t>(1, kChunk / std::max<int64_t>(o, 1));
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) {  // count (vectorised)
    for (int64_t r = b; r < e; ++r) {
      const T* __restrict row = q + r * o;
      int32_t count = 0;
      for (int64_t c = 0; c < o; ++c) count += row[c] != T(0) ? 1 : 0;
      rows.ptr[r + 1] = count;
    }
  });
  for (int64_t r = 0; r < n; ++r) rows.ptr[r + 1] += rows.ptr[r];
  rows.col.resize(rows.ptr[n]);
  rows.val.resize(rows.ptr[n]);
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) {  // compact, branch-free
    std::vector<int32_t> cols(o + 1);
    for (int64_t r = b; r < e; ++r) {
      const T* __restrict row = q + r * o;
      int64_t k = 0;
      for (int64_t c = 0; c < o; ++c) {
        cols[k] = static_cast<int32_t>(c);
        k += row[c] != T(0) ? 1 : 0;
      }
      const int64_t at = rows.ptr[r];
      for (int64_t j = 0; j < k; ++j) {
        rows.col[at + j] = cols[j];
        rows.val[at + j] = row[cols[j]];
      }
    }
  });
  return rows;
}

// a * b + c with one rounding where the CPU has FMA (the sparse products only; the quantizer
// keeps -ffp-contract=off so that it rounds as eager torch does); elsewhere two roundings, as
// a dense kernel without FMA would
template <typename T>
inline T fma_(T a, T b, T c) {
#if defined(__FMA__) || defined(__aarch64__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// out[0:len] += sum_j v[j] * src[j][0:len] for 4 or 1 sources (one load and one store of out
// per 4 FMAs)
template <typename T>
inline void axpy4(T* __restrict out, const T* __restrict s0, const T* __restrict s1,
                  const T* __restrict s2, const T* __restrict s3, T v0, T v1, T v2, T v3,
                  int64_t len) {
  for (int64_t i = 0; i < len; ++i)
    out[i] = fma_(v3, s3[i], fma_(v2, s2[i], fma_(v1, s1[i], fma_(v0, s0[i], out[i]))));
}

template <typename T>
inline void axpy1(T* __restrict out, const T* __restrict s0, T v0, int64_t len) {
  for (int64_t i = 0; i < len; ++i) out[i] = fma_(v0, s0[i], out[i]);
}

struct Geometry {  // output h x w, input hi x wi, kernel kh x kw, stride, padding
  int64_t h, w, hi, wi, kh, kw, sh, sw, ph, pw;
};

template <typename T>
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, int64_t, int64_t> run_products(
    const torch::Tensor& q_t, const torch::Tensor& x_t, const torch::Tensor& w_t,
    const Geometry& g, bool need_dx, bool need_dw, bool need_db) {
  const int64_t n = q_t.size(0), o = q_t.size(1), c = x_t.size(1);
  const int64_t taps = g.kh * g.kw, kc = taps * c, per_image = g.h * g.w;
  const int64_t images = n / per_image;
  const T* q = q_t.data_ptr<T>();
  const T* x = x_t.data_ptr<T>();
  const T* w = w_t.data_ptr<T>();
  const Rows<T> rows = nonzero_rows(q, n, o);
  const int64_t* ptr = rows.ptr.data();
  const int32_t* col = rows.col.data();
  const T* val = rows.val.data();
  torch::Tensor dx, dw, db;
  if (need_dx) {  // images in parallel: one image's taps overlap, another's never do
    dx = torch::zeros({x_t.size(0), c}, x_t.options());
    T* out = dx.data_ptr<T>();
    at::parallel_for(0, images, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t r = b0 * per_image; r < b1 * per_image; ++r) {
        const int64_t k0 = ptr[r], k1 = ptr[r + 1];
        if (k0 == k1) continue;
        const int64_t b = r / per_image, oh = (r % per_image) / g.w, ow = r % g.w;
        for (int64_t i = 0; i < g.kh; ++i) {
          const int64_t ih = oh * g.sh - g.ph + i;
          if (ih < 0 || ih >= g.hi) continue;
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t iw = ow * g.sw - g.pw + j;
            if (iw < 0 || iw >= g.wi) continue;
            T* __restrict dst = out + ((b * g.hi + ih) * g.wi + iw) * c;
            const T* src = w + (i * g.kw + j) * c;
            int64_t k = k0;
            for (; k + 4 <= k1; k += 4)
              axpy4(dst, src + col[k] * kc, src + col[k + 1] * kc, src + col[k + 2] * kc,
                    src + col[k + 3] * kc, val[k], val[k + 1], val[k + 2], val[k + 3], c);
            for (; k < k1; ++k) axpy1(dst, src + col[k] * kc, val[k], c);
          }
        }
      }
    });
  }
  if (need_dw || need_db) {
    // dW[o] gathers the nonzeros of column o in row order: transpose the nonzero lists
    // (counting sort, stable, so each column's rows stay ascending)
    // a counting sort in row blocks, in parallel: counts per (block, column), offsets, fill;
    // blocks are ascending row ranges, so every column's entries stay in ascending rows
    // whatever the number of blocks or threads
    const int64_t nnz = ptr[n];
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(n, kSortBlocks));
    const int64_t per_block = (n + blocks - 1) / blocks;
    std::vector<int64_t> offset(blocks * o, 0);  // count, then first slot, per (block, column)
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        int64_t* count = offset.data() + blk * o;
        const int64_t r1 = std::min(n, (blk + 1) * per_block);
        for (int64_t k = ptr[std::min(n, blk * per_block)]; k < ptr[r1]; ++k) ++count[col[k]];
      }
    });
    std::vector<int64_t> cptr(o + 1, 0);
    for (int64_t j = 0, at = 0; j < o; ++j) {
      cptr[j] = at;
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t c = offset[blk * o + j];
        offset[blk * o + j] = at;
        at += c;
      }
    }
    cptr[o] = nnz;
    // per entry: the input row of tap (0, 0) and its (ih, iw), possibly in the padding (the
    // divisions once per entry, not once per tap); a pointwise layer (a linear layer, a 1x1
    // stride-1 convolution) reads input row r for output row r: no divisions, no bounds
    const bool pointwise = taps == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 &&
                           g.h == g.hi && g.w == g.wi;
    std::vector<int64_t> cbase(nnz);
    std::vector<int32_t> cih(pointwise ? 0 : nnz), ciw(pointwise ? 0 : nnz);
    std::vector<T> cval(nnz);
    at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        int64_t* fill = offset.data() + blk * o;
        const int64_t r1 = std::min(n, (blk + 1) * per_block);
        for (int64_t r = std::min(n, blk * per_block); r < r1; ++r) {
          if (ptr[r] == ptr[r + 1]) continue;
          if (pointwise) {
            for (int64_t k = ptr[r]; k < ptr[r + 1]; ++k) {
              const int64_t at = fill[col[k]]++;
              cbase[at] = r;
              cval[at] = val[k];
            }
            continue;
          }
          const int64_t b = r / per_image, oh = (r % per_image) / g.w, ow = r % g.w;
          const int64_t ih = oh * g.sh - g.ph, iw = ow * g.sw - g.pw;
          const int64_t base = (b * g.hi + ih) * g.wi + iw;
          for (int64_t k = ptr[r]; k < ptr[r + 1]; ++k) {
            const int64_t at = fill[col[k]]++;
            cbase[at] = base;
            cih[at] = static_cast<int32_t>(ih);
            ciw[at] = static_cast<int32_t>(iw);
            cval[at] = val[k];
          }
        }
      }
    });
    if (need_db) {
      db = torch::empty({o}, x_t.options());
      T* out = db.data_ptr<T>();
      for (int64_t j = 0; j < o; ++j) {
        T s = T(0);
        for (int64_t k = cptr[j]; k < cptr[j + 1]; ++k) s += cval[k];
        out[j] = s;
      }
    }
    if (need_dw) {
      dw = torch::zeros({o, kc}, w_t.options());
      T* out = dw.data_ptr<T>();
      const std::vector<T> zeros(c, T(0));  // the padding's input row
      // one column is nnz(column) * taps axpys of c: enough work to split at any column
      at::parallel_for(0, o, 1, [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; ++j) {
          for (int64_t i = 0; i < g.kh; ++i)
            for (int64_t t = 0; t < g.kw; ++t) {
              T* __restrict dst = out + j * kc + (i * g.kw + t) * c;
              // the input row that tap (i, t) of entry k reads, or the zero row
              const int64_t shift = i * g.wi + t;
              auto row_of = [&](int64_t k) -> const T* {
                if (pointwise) return x + cbase[k] * c;
                const int64_t ih = cih[k] + i, iw = ciw[k] + t;
                if (ih < 0 || ih >= g.hi || iw < 0 || iw >= g.wi) return zeros.data();
                return x + (cbase[k] + shift) * c;
              };
              int64_t k = cptr[j];
              const int64_t end = cptr[j + 1];
              for (; k + 4 <= end; k += 4)
                axpy4(dst, row_of(k), row_of(k + 1), row_of(k + 2), row_of(k + 3), cval[k],
                      cval[k + 1], cval[k + 2], cval[k + 3], c);
              for (; k < end; ++k) axpy1(dst, row_of(k), cval[k], c);
            }
        }
      });
    }
  }
  int64_t zero_rows = 0;
  for (int64_t r = 0; r < n; ++r) zero_rows += ptr[r + 1] == ptr[r] ? 1 : 0;
  return {dx, dw, db, ptr[n], zero_rows};
}
}  // namespace

// q: the dithered output gradient, rows (b, h, w) x columns o; x: the input channels-last,
// rows (b, ih, iw) x c; w: the weight, o x (kh, kw, c); all contiguous, one dtype (float32 or
// float64); geometry = (h, w, hi, wi, kh, kw, sh, sw, ph, pw) (a linear layer: 1, 1, 1, 1, 1,
// 1, 1, 1, 0, 0). Returns (dX rows x c or undefined, dW o x (kh, kw, c) or undefined, db or
// undefined, nnz(q), number of all-zero rows of q).
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor, int64_t, int64_t> sparse_grads(
    torch::Tensor q, torch::Tensor x, torch::Tensor w, std::vector<int64_t> geometry,
    bool need_dx, bool need_dw, bool need_db) {
  TORCH_CHECK(q.dim() == 2 && x.dim() == 2 && w.dim() == 2, "sparse_grads takes 2-d q, x and w");
  TORCH_CHECK(q.is_contiguous() && x.is_contiguous() && w.is_contiguous(),
              "sparse_grads takes contiguous tensors");
  TORCH_CHECK(geometry.size() == 10,
              "sparse_grads: geometry is (h, w, hi, wi, kh, kw, sh, sw, ph, pw)");
  const Geometry g{geometry[0], geometry[1], geometry[2], geometry[3], geometry[4],
                   geometry[5], geometry[6], geometry[7], geometry[8], geometry[9]};
  TORCH_CHECK(g.h > 0 && g.w > 0 && g.hi > 0 && g.wi > 0 && g.kh > 0 && g.kw > 0 && g.sh > 0 &&
              g.sw > 0 && g.ph >= 0 && g.pw >= 0, "sparse_grads: invalid geometry");
  const int64_t n = q.size(0);
  TORCH_CHECK(n % (g.h * g.w) == 0 && x.size(0) == n / (g.h * g.w) * g.hi * g.wi &&
              q.size(1) == w.size(0) && w.size(1) == g.kh * g.kw * x.size(1),
              "sparse_grads: shapes do not match (q rows x o, x rows x c, w o x kh*kw*c)");
  TORCH_CHECK(q.scalar_type() == x.scalar_type() && q.scalar_type() == w.scalar_type(),
              "sparse_grads: q, x and w must share one dtype");
  TORCH_CHECK(q.size(1) < (int64_t(1) << 31), "sparse_grads: too many columns");
  if (q.scalar_type() == torch::kFloat)
    return run_products<float>(q, x, w, g, need_dx, need_dw, need_db);
  TORCH_CHECK(q.scalar_type() == torch::kDouble, "sparse_grads takes float32 or float64");
  return run_products<double>(q, x, w, g, need_dx, need_dw, need_db);
}

// Philox4x32-10 of one counter and key (known-answer tests)
std::vector<int64_t> philox_block(std::vector<int64_t> ctr, std::vector<int64_t> key) {
  TORCH_CHECK(ctr.size() == 4 && key.size() == 2, "philox_block: 4 counter words, 2 key words");
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  philox10(c0, c1, c2, c3, static_cast<uint32_t>(key[0]), static_cast<uint32_t>(key[1]));
  return {c0, c1, c2, c3};
}
"""

_EXTENSION = NativeExtension(
    f"dgsamp_dither_v{SOURCE_VERSION}", _SOURCE,
    ["dither_fused", "philox_key", "philox_uniform", "philox_block", "sparse_grads"])


def _module():
    """The built extension, building it on first use; None if that failed."""
    return _EXTENSION.module()


def kernel():
    """``dither_fused(dy, u, generator, scale, std_mode, rows) -> (δ̃, nnz, zero-row fraction,
    Δ)`` or None where it does not apply (see the C++ comment); u None means Philox noise
    keyed by a draw from ``generator``. None where the extension could not be built
    (:func:`build_error` says why)."""
    mod = _module()
    return None if mod is None else mod.dither_fused


def philox_key(generator: torch.Generator | None) -> int | None:
    """The Philox key ``dither_fused`` draws from a CPU ``generator`` (torch's default one when
    None) when u is None; None where the extension could not be built."""
    mod = _module()
    return None if mod is None else mod.philox_key(generator)


LINEAR = (1, 1, 1, 1, 1, 1, 1, 1, 0, 0)  # a linear layer's geometry: one 1x1 "pixel" per row


def sparse_grads():
    """``sparse_grads(q, x, w, geometry, need_dx, need_dw, need_db) -> (dX, dW, db, nnz, zero
    rows)``: the products of a linear or convolution layer's backward from the nonzeros of its
    dithered output gradient ``q`` (rows = output positions, columns = output channels; x
    channels-last rows; w as out x (kh, kw, in); geometry (h, w, hi, wi, kh, kw, sh, sw, ph,
    pw), :data:`LINEAR` for a linear layer; outputs not needed are None). None where the
    extension could not be built."""
    mod = _module()
    return None if mod is None else mod.sparse_grads


def philox_uniform(n: int, seed: int, first_tile: int = 0) -> torch.Tensor | None:
    """``n`` float32 uniforms of the Philox stream keyed by ``seed``, from tile ``first_tile``
    (1,024 numbers each) on: with 0, the noise ``dither_fused`` adds when u is None (None
    where the extension could not be built)."""
    mod = _module()
    return None if mod is None else mod.philox_uniform(n, seed, first_tile)


def philox_block(counter: list[int], key: list[int]) -> list[int]:
    """Philox4x32-10 of one counter (4 words) and key (2 words), for known-answer tests."""
    mod = _module()
    if mod is None:
        raise RuntimeError(f"dgsamp's dither kernel could not be built: {build_error()}")
    return mod.philox_block(counter, key)


def build_error() -> str | None:
    """Why the kernel could not be built (None if it was, or was not tried)."""
    return _EXTENSION.error
