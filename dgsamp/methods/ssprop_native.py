"""ssProp's sliced backward as one C++ call (what :mod:`.ssprop` uses on CPU for groups=1 convs
and linear layers with top-k selection).

Why: in a ResNet-18 step at keep 0.2 (224 px, batch 4, one thread) torch.profiler put ~16 ms of
the 309 ms step in ssProp's own work around the kernels: 6.8 ms of Python in the autograd
Function's backward (~15 tensor ops and list handling per layer), 3.6 ms in the channel
scores (``abs`` then ``sum``: two passes and a temporary the size of dY), 3.0 ms zero-filling
the full weight gradient before scattering the kept rows into it, 2.7 ms in the gathers and
scatters (docs/results/benchmark_sparse_steps_cpu.md). This call does the same work with one
Python call per layer:

1. the channel scores Σ|dY| in one pass (float accumulators per lane, one double per
   channel; summed in a fixed order, so the same for any thread count);
2. the top-k channels (``nth_element`` on score, ties to the lower index; NaN ranks above
   everything, as in ``torch.topk``), sorted;
3. dY and W gathered to the kept channels (a channels-last dY along its last dim, as
   :func:`.ssprop._take_channels` does), and ATen's ``convolution_backward`` (or the two
   matmuls of a linear layer) on the slices: the kernels run on k channels;
4. dW (and db) written in one pass: the kept rows copied, the others zeroed.

The selection is the set :func:`.ssprop.select_channels` picks, except where two channels' sums
are equal or within float rounding of each other at the k-th place: the sums here are rounded
differently from torch's float ``sum`` (16 float lanes, then double), and torch does not specify
how it breaks ties. Which of two equally ranked channels is kept is all that can differ.

Only where no gradient of the gradient is asked for (autograd runs a backward without grad mode
unless ``create_graph=True``): dW and db are written through raw pointers, so they would not be
differentiable; with ``create_graph=True`` :mod:`.ssprop` takes its Python path. dW comes back in
W's memory format (channels-last for a channels-last model), so autograd need not convert it.

Built on first use (:class:`.native.NativeExtension`); where that fails :func:`conv_backward`
and :func:`linear_backward` return None and :mod:`.ssprop` runs its Python path.
"""

from __future__ import annotations

from .native import NativeExtension

SOURCE_VERSION = 3  # bump with any change to _SOURCE: the extension's name carries it

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <tuple>
#include <vector>

using at::Tensor;

// Σ|dY| of each channel of a contiguous (outer, C, inner) block layout (NCHW: inner = H*W).
template <typename T>
static void sums_blocks(const T* p, int64_t outer, int64_t C, int64_t inner, double* out) {
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, outer * inner));
  at::parallel_for(0, C, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double total = 0.0;
      for (int64_t n = 0; n < outer; ++n) {
        const T* q = p + (n * C + c) * inner;
        T acc[16] = {0};
        int64_t i = 0;
        for (; i + 16 <= inner; i += 16)
          for (int j = 0; j < 16; ++j) acc[j] += std::fabs(q[i + j]);
        T tail = 0;
        for (; i < inner; ++i) tail += std::fabs(q[i]);
        double s = static_cast<double>(tail);
        for (int j = 0; j < 16; ++j) s += static_cast<double>(acc[j]);
        total += s;
      }
      out[c] = total;
    }
  });
}

// Σ|dY| of each column of a contiguous (rows, C) matrix (a linear layer's dY, or a
// channels-last conv dY as (N*H*W, C)): chunks of 64 rows summed into per-chunk partials
// (the inner loop runs along C and vectorises), then the partials in chunk order.
template <typename T>
static void sums_rows(const T* p, int64_t rows, int64_t C, double* out) {
  const int64_t chunk = 64;
  const int64_t nchunks = (rows + chunk - 1) / chunk;
  std::vector<T> partial(static_cast<size_t>(nchunks * C), T(0));
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, chunk * C));
  at::parallel_for(0, nchunks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      T* acc = partial.data() + b * C;
      const int64_t r1 = std::min(rows, (b + 1) * chunk);
      for (int64_t r = b * chunk; r < r1; ++r) {
        const T* q = p + r * C;
        for (int64_t c = 0; c < C; ++c) acc[c] += std::fabs(q[c]);
      }
    }
  });
  for (int64_t c = 0; c < C; ++c) out[c] = 0.0;
  for (int64_t b = 0; b < nchunks; ++b) {
    const T* acc = partial.data() + b * C;
    for (int64_t c = 0; c < C; ++c) out[c] += static_cast<double>(acc[c]);
  }
}

// Channel scores of dY (channel dim 1), as doubles on the CPU.
static std::vector<double> channel_scores(const Tensor& dy, int64_t C) {
  std::vector<double> s(static_cast<size_t>(C));
  const bool fast = dy.device().is_cpu() &&
      (dy.scalar_type() == at::kFloat || dy.scalar_type() == at::kDouble);
  if (fast && dy.is_contiguous()) {
    const int64_t outer = dy.size(0);
    const int64_t inner = dy.numel() / std::max<int64_t>(1, outer * C);
    AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "ssprop_scores", [&] {
      if (inner == 1)
        sums_rows<scalar_t>(dy.data_ptr<scalar_t>(), outer, C, s.data());
      else
        sums_blocks<scalar_t>(dy.data_ptr<scalar_t>(), outer, C, inner, s.data());
    });
    return s;
  }
  if (fast && dy.dim() == 4 && dy.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "ssprop_scores", [&] {
      sums_rows<scalar_t>(dy.data_ptr<scalar_t>(), dy.numel() / C, C, s.data());
    });
    return s;
  }
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < dy.dim(); ++d)
    if (d != 1) dims.push_back(d);
  Tensor t = dy.abs().sum(dims).to(at::kDouble).cpu().contiguous();
  std::memcpy(s.data(), t.data_ptr<double>(), sizeof(double) * C);
  return s;
}

// The k highest-scoring channels, ascending: NaN ranks above everything (as in torch.topk),
// equal scores go to the lower index.
static Tensor top_channels(const std::vector<double>& s, int64_t k, const at::Device& device) {
  const int64_t C = static_cast<int64_t>(s.size());
  std::vector<int64_t> order(static_cast<size_t>(C));
  std::iota(order.begin(), order.end(), int64_t(0));
  auto better = [&](int64_t a, int64_t b) {
    const bool na = std::isnan(s[a]), nb = std::isnan(s[b]);
    if (na || nb) return na != nb ? na : a < b;
    return s[a] > s[b] || (s[a] == s[b] && a < b);
  };
  if (k < C) std::nth_element(order.begin(), order.begin() + k, order.end(), better);
  std::sort(order.begin(), order.begin() + k);
  Tensor idx = at::empty({k}, at::TensorOptions().dtype(at::kLong));
  std::memcpy(idx.data_ptr<int64_t>(), order.data(), sizeof(int64_t) * k);
  return device.is_cpu() ? idx : idx.to(device);
}

// dY's kept channels, in dY's own memory format.
static Tensor take_channels(const Tensor& t, const Tensor& idx) {
  if (t.dim() == 4 && !t.is_contiguous() && t.is_contiguous(at::MemoryFormat::ChannelsLast)) {
    const int64_t n = t.size(0), c = t.size(1), h = t.size(2), w = t.size(3);
    Tensor rows = t.permute({0, 2, 3, 1}).reshape({n * h * w, c}).index_select(1, idx);
    return rows.view({n, h, w, idx.numel()}).permute({0, 3, 1, 2});
  }
  return t.index_select(1, idx);
}

// t * factor in place, rounded once as Python's `t.mul_(factor)` does (ATen's C++ mul_ with a
// double rounds the factor to bf16/fp16 first for those types).
static Tensor scaled(Tensor t, double factor) {
  if (factor == 1.0) return t;
  if (at::isReducedFloatingType(t.scalar_type()))
    return t.copy_(t.to(at::kFloat).mul_(factor));
  return t.mul_(factor);
}

// A gradient of `sizes` (rows outermost, in memory format `fmt`) with the kept rows from `part`
// (k rows, times `factor`, multiplied in float as `mul_` does for half types) and zeros
// elsewhere, written in one pass.
static Tensor scatter_rows(const Tensor& part, const Tensor& idx_cpu, at::IntArrayRef sizes,
                           const at::TensorOptions& options, double factor,
                           at::MemoryFormat fmt = at::MemoryFormat::Contiguous) {
  Tensor full = at::empty(sizes, options.memory_format(fmt));
  Tensor src = part.contiguous(fmt);
  if (!full.device().is_cpu()) {
    full.zero_();
    full.index_copy_(0, idx_cpu.to(full.device()), scaled(src.clone(), factor));
    return full;
  }
  const int64_t rows = sizes[0];
  const int64_t len = rows == 0 ? 0 : full.numel() / rows;
  std::vector<int64_t> pos(static_cast<size_t>(rows), -1);
  const int64_t* id = idx_cpu.data_ptr<int64_t>();
  for (int64_t j = 0; j < idx_cpu.numel(); ++j) pos[id[j]] = j;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, full.scalar_type(), "ssprop_dw", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    scalar_t* dst = full.data_ptr<scalar_t>();
    const scalar_t* from = src.data_ptr<scalar_t>();
    const opmath_t f = static_cast<opmath_t>(factor);
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, len));
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t* d = dst + r * len;
        if (pos[r] < 0) {
          std::fill(d, d + len, scalar_t(0));
        } else if (factor == 1.0) {
          std::memcpy(d, from + pos[r] * len, sizeof(scalar_t) * len);
        } else {
          const scalar_t* s = from + pos[r] * len;
          for (int64_t i = 0; i < len; ++i)
            d[i] = static_cast<scalar_t>(static_cast<opmath_t>(s[i]) * f);
        }
      }
    });
  });
  return full;
}

// ssProp conv backward (groups 1): (dX, dW, db); outputs not asked for are undefined (None).
std::tuple<Tensor, Tensor, Tensor> conv_backward(
    const Tensor& dy, const Tensor& x, const Tensor& w, int64_t k,
    std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation,
    bool need_dx, bool need_dw, bool need_db, bool only_weight, double factor) {
  const int64_t C = w.size(0);
  TORCH_CHECK(k >= 1 && k <= C, "ssprop conv_backward: k must be in [1, ", C, "], got ", k);
  Tensor dx, dw, db;
  if (need_dx && only_weight) {
    dx = std::get<0>(at::convolution_backward(dy, x, w, c10::nullopt, stride, padding,
        dilation, false, {0, 0}, 1, {true, false, false}));
    need_dx = false;
  }
  if (!(need_dx || need_dw || need_db)) return {dx, dw, db};
  Tensor idx = top_channels(channel_scores(dy, C), k, dy.device());
  Tensor idx_cpu = idx.device().is_cpu() ? idx : idx.cpu();
  Tensor dy_s = take_channels(dy, idx);
  Tensor w_s = w.index_select(0, idx);
  std::vector<int64_t> bias_sizes{k};
  at::OptionalIntArrayRef bias = c10::nullopt;
  if (need_db) bias = bias_sizes;
  auto grads = at::convolution_backward(
      dy_s, x, w_s, bias, stride, padding, dilation, false, {0, 0}, 1, {need_dx, need_dw, need_db});
  if (need_dx) dx = scaled(std::get<0>(grads), factor);
  if (need_dw)
    dw = scatter_rows(std::get<1>(grads), idx_cpu, w.sizes(), w.options(), factor,
                      w.suggest_memory_format());
  if (need_db)
    db = scatter_rows(std::get<2>(grads), idx_cpu, {C}, dy.options(), factor);
  return {dx, dw, db};
}

// ssProp linear backward on 2-d dY (rows x out) and x (rows x in): (dX, dW, db).
std::tuple<Tensor, Tensor, Tensor> linear_backward(
    const Tensor& dy, const Tensor& x, const Tensor& w, int64_t k,
    bool need_dx, bool need_dw, bool need_db, bool only_weight, double factor) {
  const int64_t C = w.size(0);
  TORCH_CHECK(k >= 1 && k <= C, "ssprop linear_backward: k must be in [1, ", C, "], got ", k);
  Tensor dx, dw, db;
  if (need_dx && only_weight) {
    dx = dy.mm(w);
    need_dx = false;
  }
  if (!(need_dx || need_dw || need_db)) return {dx, dw, db};
  Tensor idx = top_channels(channel_scores(dy, C), k, dy.device());
  Tensor idx_cpu = idx.device().is_cpu() ? idx : idx.cpu();
  Tensor dy_s = dy.index_select(1, idx);
  if (need_dx) {
    dx = scaled(dy_s.mm(w.index_select(0, idx)), factor);
  }
  if (need_dw) dw = scatter_rows(dy_s.t().mm(x), idx_cpu, w.sizes(), w.options(), factor);
  if (need_db) db = scatter_rows(dy_s.sum(0), idx_cpu, {C}, dy.options(), factor);
  return {dx, dw, db};
}

// The channels conv_backward / linear_backward keep (for tests and tools).
Tensor top_k_channels(const Tensor& dy, int64_t k) {
  return top_channels(channel_scores(dy, dy.size(1)), k, dy.device());
}
"""

_EXTENSION = NativeExtension(f"dgsamp_ssprop_v{SOURCE_VERSION}", _SOURCE,
                             ["conv_backward", "linear_backward", "top_k_channels"])


def conv_backward():
    """``conv_backward(dy, x, w, k, stride, padding, dilation, need_dx, need_dw, need_db,
    only_weight, factor) -> (dX, dW, db)`` of a groups=1 convolution whose output gradient keeps
    its k top channels (outputs not needed are None; ``factor`` multiplies all three, 1 for
    none). None where the extension could not be built (:func:`build_error` says why)."""
    mod = _EXTENSION.module()
    return None if mod is None else mod.conv_backward


def linear_backward():
    """``linear_backward(dy, x, w, k, need_dx, need_dw, need_db, only_weight, factor) -> (dX,
    dW, db)`` on 2-d ``dy`` (rows x out) and ``x`` (rows x in); None where the extension could
    not be built."""
    mod = _EXTENSION.module()
    return None if mod is None else mod.linear_backward


def top_k_channels():
    """``top_k_channels(dy, k)``: the channels (dim 1) the two backward calls keep, ascending;
    None where the extension could not be built."""
    mod = _EXTENSION.module()
    return None if mod is None else mod.top_k_channels


def build_error() -> str | None:
    """Why the extension could not be built (None if it was, or was not tried)."""
    return _EXTENSION.error
