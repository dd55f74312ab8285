// dendritic's CPU kernels, registered as PyTorch operators in the `dendritic` namespace.
//
// Sparse feature-major products, the fused dendro-somatic layer and the pieces of a training step
// (see dendritic/layers/kernels.py for what each computes and why it is shaped this way). Python
// registers their fake (meta) kernels and autograd formulas (dendritic/layers/ops.py), so
// torch.compile and torch.export see them as ordinary operators. Built at install time where a
// compiler exists (setup.py), else on first use (torch.utils.cpp_extension.load).
#include <ATen/core/Tensor.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <optional>
#include <vector>
#if defined(__AVX__)
#include <immintrin.h>
#endif
#if defined(__SSE__)
#include <xmmintrin.h>
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

// 32-byte GCC vectors: AVX registers when built with -mavx2, pairs of SSE registers otherwise.
template <typename T> struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int L = 32 / sizeof(T);
};
template <typename T> inline typename Vec<T>::type loadu(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T> inline void storeu(T* p, typename Vec<T>::type v) { std::memcpy(p, &v, sizeof(v)); }

// a · b + c rounded once where the vector loops' `+= a * b` is (an FMA build), so that a column in
// scalar sums equals the same column in vector lanes: written out, not left to contraction, which
// the compiler gives up where it vectorises the multiplies apart from the adds.
template <typename T> inline T mul_add(T a, T b, T c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

constexpr int NV = 4;  // vectors of the batch held in registers per row (4 × 8 floats)

inline int64_t row_end(const int64_t* off, int64_t r, int64_t n_rows, int64_t nnz) {
  return r + 1 < n_rows ? off[r + 1] : nnz;
}
// Runs f(r0, r1) on `parts` contiguous row ranges of about equal work (connections + rows, from
// the rows' start offsets `start`, n_rows + 1 entries), one per thread; about 32k multiply-adds
// per part at least, so small problems stay on one thread.
template <typename F>
void parallel_rows(const int64_t* start, int64_t n_rows, int64_t B, const F& f) {
  const int64_t nnz = start[n_rows], total = nnz + n_rows;
  const int64_t parts = std::max<int64_t>(
      1, std::min<int64_t>(at::get_num_threads(), total * std::max<int64_t>(B, 1) / (int64_t(1) << 15)));
  if (parts == 1 || n_rows < 2) {
    f(int64_t(0), n_rows);
    return;
  }
  auto split = [&](int64_t p) {  // first row r with start[r] + r >= p · total / parts
    const int64_t target = p * total / parts;
    int64_t lo = 0, hi = n_rows;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (start[mid] + mid < target) lo = mid + 1; else hi = mid;
    }
    return lo;
  };
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r0 = p == 0 ? 0 : split(p), r1 = p + 1 == parts ? n_rows : split(p + 1);
      if (r0 < r1) f(r0, r1);
    }
  });
}

// The CSR row starts with the end appended (n_rows + 1 entries).
std::vector<int64_t> with_end(const int64_t* off, int64_t n_rows, int64_t nnz) {
  std::vector<int64_t> start(off, off + n_rows);
  start.push_back(nnz);
  return start;
}

// dst[0 : W] (=|+)= Σ_{c in [c0, c1)} w[perm[c]] · src[row[c] * B + (0 : W)], W = K·L.
template <typename T, int K, bool PERM>
inline void gather_block(const T* __restrict src, int64_t B, const int64_t* __restrict row,
                         const int64_t* __restrict perm, const T* __restrict w, int64_t c0, int64_t c1,
                         T* __restrict dst, bool accumulate) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  V acc[K];
  for (int k = 0; k < K; ++k) acc[k] = accumulate ? loadu<T>(dst + k * L) : V{};
  for (int64_t c = c0; c < c1; ++c) {
    const T wc = w[PERM ? perm[c] : c];
    const T* s = src + row[c] * B;
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) acc[k] += wc * loadu<T>(s + k * L);
  }
#pragma GCC unroll 16
  for (int k = 0; k < K; ++k) storeu<T>(dst + k * L, acc[k]);
}

// Columns 0 … until − 1 of one row (all B by default), row stride B.
template <typename T, bool PERM>
inline void gather_row(const T* src, int64_t B, const int64_t* row, const int64_t* perm, const T* w, int64_t c0,
                       int64_t c1, T* dst, bool accumulate, int64_t until = -1) {
  constexpr int L = Vec<T>::L;
  const int64_t end = until < 0 ? B : until;
  int64_t b = 0;
  for (; b + NV * L <= end; b += NV * L) gather_block<T, NV, PERM>(src + b, B, row, perm, w, c0, c1, dst + b, accumulate);
  for (; b + L <= end; b += L) gather_block<T, 1, PERM>(src + b, B, row, perm, w, c0, c1, dst + b, accumulate);
  for (; b < end; ++b) {
    T acc = accumulate ? dst[b] : T(0);
    for (int64_t c = c0; c < c1; ++c) acc += w[PERM ? perm[c] : c] * src[row[c] * B + b];
    dst[b] = acc;
  }
}

// Scalar sums over the columns x[·, 0 : NB] (NB fewer than a vector) of G rows of equal fan-in n
// at once, row g's connections starting at base[g]: acc[g][b] = Σ_j w[c] · x[idx[c] · B + b] for
// c = base[g] + j, in j order. One row alone is a chain of dependent adds that waits on each add's
// latency (a batch of one sample was latency-bound); G independent chains overlap.
template <typename T, int NB, int G>
inline void interleaved_sums(const T* __restrict x, int64_t B, const int64_t* __restrict idx, const T* __restrict w,
                             const int64_t (&base)[G], int64_t n, T (&acc)[G][NB]) {
  for (int g = 0; g < G; ++g)
    for (int b = 0; b < NB; ++b) acc[g][b] = T(0);
  for (int64_t j = 0; j < n; ++j) {
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      const T wc = w[base[g] + j];
      const T* s = x + idx[base[g] + j] * B;
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) acc[g][b] = mul_add<T>(wc, s[b], acc[g][b]);
    }
  }
}

// The fan-in of rows r … r + G − 1 (their starts in base) if all G are equal, else −1.
template <int G>
inline int64_t equal_fan_in(const int64_t* off, int64_t r, int64_t n_rows, int64_t nnz, int64_t (&base)[G]) {
  const int64_t n = row_end(off, r, n_rows, nnz) - off[r];
  for (int g = 0; g < G; ++g) {
    base[g] = off[r + g];
    if (row_end(off, r + g, n_rows, nnz) - base[g] != n) return -1;
  }
  return n;
}

// dst rows r0 … r1 − 1 (row stride B) = the sparse product over the NB columns x[·, 0 : NB]: four
// rows at a time where their fan-in is equal, else one.
template <typename T, int NB>
inline void gather_rows_narrow(const T* x, int64_t B, const int64_t* idx, const T* w, const int64_t* off,
                               int64_t n_rows, int64_t nnz, int64_t r0, int64_t r1, T* dst) {
  constexpr int G = 4;
  for (int64_t r = r0; r < r1;) {
    int64_t base[G];
    T acc[G][NB];
    const int64_t n = r + G <= r1 ? equal_fan_in<G>(off, r, n_rows, nnz, base) : -1;
    if (n >= 0) {
      interleaved_sums<T, NB, G>(x, B, idx, w, base, n, acc);
      for (int g = 0; g < G; ++g)
        for (int b = 0; b < NB; ++b) dst[(r + g) * B + b] = acc[g][b];
      r += G;
    } else {
      int64_t one[1];
      T acc1[1][NB];
      const int64_t n1 = equal_fan_in<1>(off, r, n_rows, nnz, one);
      interleaved_sums<T, NB, 1>(x, B, idx, w, one, n1, acc1);
      for (int b = 0; b < NB; ++b) dst[r * B + b] = acc1[0][b];
      r += 1;
    }
  }
}

// f(std::integral_constant<int, n>) for 1 ≤ n < 8: the count of columns left after the vectors as
// a compile-time constant, so that the narrow kernels' loops over them unroll.
template <typename F> inline void with_narrow(int64_t n, F&& f) {
  switch (n) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: TORCH_CHECK(false, "at most 7 columns after the vectors");
  }
}

void check_common(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.is_contiguous(), "expected a contiguous 2-D CPU tensor");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() && weight.is_contiguous() && weight.dim() == 1,
              "weight must be 1-D, contiguous and of the activations' dtype");
  TORCH_CHECK(a.scalar_type() == at::kLong && a.is_contiguous() && b.scalar_type() == at::kLong && b.is_contiguous(),
              "index tensors must be contiguous int64");
}

// The fused layer's leaky ReLU is max(z, slope · z) and its gradient reads the sign of the output:
// both F.leaky_relu only for 0 < slope < 1.
void check_slope(double slope) {
  TORCH_CHECK(slope > 0.0 && slope < 1.0, "the fused layer needs a leaky-ReLU slope in (0, 1), got ", slope);
}

// out[o, :] = Σ_{c in o} weight[c] · h[indices[c], :]
at::Tensor spmm_t(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& indices,
                  const at::Tensor& offsets, int64_t n_out) {
  check_common(h, weight, indices, offsets);
  TORCH_CHECK(offsets.numel() == n_out && weight.numel() == indices.numel(), "wiring sizes disagree");
  const int64_t B = h.size(1), nnz = indices.numel();
  auto out = at::empty({n_out, B}, h.options());
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "spmm_t", [&] {
    const scalar_t* src = h.data_ptr<scalar_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    const int64_t* idx = indices.data_ptr<int64_t>();
    const int64_t* off = offsets.data_ptr<int64_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    const std::vector<int64_t> start = with_end(off, n_out, nnz);
    constexpr int L = Vec<scalar_t>::L;
    const int64_t wide = B / L * L;  // columns of whole vectors; the rest, fewer than L, by rows in fours
    parallel_rows(start.data(), n_out, B, [&](int64_t r0, int64_t r1) {
      if (wide > 0)
        for (int64_t r = r0; r < r1; ++r)
          gather_row<scalar_t, false>(src, B, idx, nullptr, w, off[r], row_end(off, r, n_out, nnz), dst + r * B,
                                      false, wide);
      if (wide < B)
        with_narrow(B - wide, [&](auto nb) {
          gather_rows_narrow<scalar_t, decltype(nb)::value>(src + wide, B, idx, w, off, n_out, nnz, r0, r1, dst + wide);
        });
    });
  });
  return out;
}

// gw[k] = ⟨g, src[idx[k]]⟩ for G connections at once: one load of g feeds G multiply-adds.
template <typename T, int G>
inline void dots(const T* __restrict g, const T* __restrict src, int64_t B, const int64_t* __restrict idx,
                 T* __restrict gw) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  if (B == 1) {  // one sample (an RL step): one product per connection
    for (int k = 0; k < G; ++k) gw[k] = T(0) + g[0] * src[idx[k]];
    return;
  }
  if (B < L) {  // a small batch (RL, online learning): no vector lanes to fill; the same sums in the same
    T s[G];      // order, the G connections' chains side by side (one after another, each add waited on
    const T* rows[G];  // the one before: a batch of 2 cost four times a batch of 1)
    for (int k = 0; k < G; ++k) {
      s[k] = T(0);
      rows[k] = src + idx[k] * B;
    }
    for (int64_t b = 0; b < B; ++b) {
      const T gb = g[b];
#pragma GCC unroll 8
      for (int k = 0; k < G; ++k) s[k] += gb * rows[k][b];
    }
    for (int k = 0; k < G; ++k) gw[k] = s[k];
    return;
  }
  V acc[G];
  const T* rows[G];
  for (int k = 0; k < G; ++k) {
    acc[k] = V{};
    rows[k] = src + idx[k] * B;
  }
  int64_t b = 0;
  for (; b + L <= B; b += L) {
    const V gv = loadu<T>(g + b);
#pragma GCC unroll 16
    for (int k = 0; k < G; ++k) acc[k] += gv * loadu<T>(rows[k] + b);
  }
  T sums[G];
#if defined(__AVX__)
  if constexpr (G == 8 && sizeof(T) == 4) {  // transpose-and-add the 8 accumulators in registers
    __m256 a[8];
    for (int k = 0; k < 8; ++k) a[k] = reinterpret_cast<__m256>(acc[k]);
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    const __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
    if (b == B) {  // no columns left: the sums are the gradients
      _mm256_storeu_ps(gw, s);
      return;
    }
    _mm256_storeu_ps(sums, s);
  } else
#endif
  {
    for (int k = 0; k < G; ++k) {
      T s = 0;
      for (int j = 0; j < L; ++j) s += acc[k][j];
      sums[k] = s;
    }
  }
  // The columns after the vectors, the G chains side by side (each in its samples' order, the
  // same sums): one chain after another, each add waiting on the one before, a batch of 100 took
  // 1.6 times a batch of 104 (64 → 256, D = 16).
  for (; b < B; ++b) {
    const T gb = g[b];
#pragma GCC unroll 8
    for (int k = 0; k < G; ++k) sums[k] += gb * rows[k][b];
  }
  for (int k = 0; k < G; ++k) gw[k] = sums[k];
}

// grad_weight[c] = ⟨grad_out[o(c), :], h[indices[c], :]⟩
at::Tensor sddmm_t(const at::Tensor& grad_out, const at::Tensor& h, const at::Tensor& indices,
                   const at::Tensor& offsets) {
  TORCH_CHECK(h.device().is_cpu() && h.dim() == 2 && h.is_contiguous(), "expected a contiguous 2-D CPU tensor");
  TORCH_CHECK(grad_out.scalar_type() == h.scalar_type() && grad_out.dim() == 2 && grad_out.is_contiguous() &&
                  grad_out.size(0) == offsets.numel() && grad_out.size(1) == h.size(1),
              "grad_out must be contiguous (n_out, B) of the activations' dtype");
  TORCH_CHECK(indices.scalar_type() == at::kLong && indices.is_contiguous() && offsets.scalar_type() == at::kLong &&
                  offsets.is_contiguous(), "index tensors must be contiguous int64");
  const int64_t n_out = grad_out.size(0), B = h.size(1), nnz = indices.numel();
  auto gw = at::empty({nnz}, h.options());
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "sddmm_t", [&] {
    const scalar_t* src = h.data_ptr<scalar_t>();
    const scalar_t* g = grad_out.data_ptr<scalar_t>();
    const int64_t* idx = indices.data_ptr<int64_t>();
    const int64_t* off = offsets.data_ptr<int64_t>();
    scalar_t* out = gw.data_ptr<scalar_t>();
    const std::vector<int64_t> start = with_end(off, n_out, nnz);
    parallel_rows(start.data(), n_out, B, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t c1 = row_end(off, r, n_out, nnz);
        const scalar_t* gr = g + r * B;
        int64_t c = off[r];
        for (; c + 8 <= c1; c += 8) dots<scalar_t, 8>(gr, src, B, idx + c, out + c);
        for (; c + 4 <= c1; c += 4) dots<scalar_t, 4>(gr, src, B, idx + c, out + c);
        for (; c < c1; ++c) dots<scalar_t, 1>(gr, src, B, idx + c, out + c);
      }
    });
  });
  return gw;
}

// Transposed CSR tiled by output blocks: entries sorted by (o / block, input, o); returns
// (starts (n_blocks·n_in + 1), output of each entry, connection of each entry,
//  connections before each input over all blocks (n_in + 1), to split the inputs between threads).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> transpose_blocked(const at::Tensor& indices, const at::Tensor& offsets,
                                                                 int64_t n_in, int64_t block) {
  TORCH_CHECK(indices.scalar_type() == at::kLong && indices.is_contiguous() && offsets.scalar_type() == at::kLong &&
                  offsets.is_contiguous() && block > 0 && n_in >= 0, "bad wiring");
  const int64_t nnz = indices.numel(), n_out = offsets.numel();
  const int64_t n_blocks = (n_out + block - 1) / block;
  auto starts = at::zeros({n_blocks * n_in + 1}, indices.options());
  auto rows = at::empty({nnz}, indices.options());
  auto perm = at::empty({nnz}, indices.options());
  auto fan_out = at::zeros({n_in + 1}, indices.options());
  const int64_t* idx = indices.data_ptr<int64_t>();
  const int64_t* off = offsets.data_ptr<int64_t>();
  int64_t* fo = fan_out.data_ptr<int64_t>();
  for (int64_t c = 0; c < nnz; ++c) fo[idx[c] + 1]++;
  for (int64_t i = 0; i < n_in; ++i) fo[i + 1] += fo[i];
  int64_t* st = starts.data_ptr<int64_t>();
  int64_t* rw = rows.data_ptr<int64_t>();
  int64_t* pm = perm.data_ptr<int64_t>();
  for (int64_t o = 0; o < n_out; ++o) {
    const int64_t c1 = row_end(off, o, n_out, nnz), base = (o / block) * n_in + 1;
    for (int64_t c = off[o]; c < c1; ++c) st[base + idx[c]]++;
  }
  for (int64_t k = 0; k < n_blocks * n_in; ++k) st[k + 1] += st[k];
  std::vector<int64_t> fill(st, st + n_blocks * n_in);
  for (int64_t o = 0; o < n_out; ++o) {
    const int64_t c1 = row_end(off, o, n_out, nnz), base = (o / block) * n_in;
    for (int64_t c = off[o]; c < c1; ++c) {
      const int64_t p = fill[base + idx[c]]++;
      rw[p] = o;
      pm[p] = c;
    }
  }
  return {starts, rows, perm, fan_out};
}

// grad_h[i, :] = Σ_{c: indices[c] = i} weight[c] · grad_out[o(c), :], as a gather over the
// blocked transposed CSR: each thread owns a range of inputs and walks the output blocks in order.
at::Tensor spmm_t_transposed(const at::Tensor& grad_out, const at::Tensor& weight, const at::Tensor& starts,
                             const at::Tensor& rows, const at::Tensor& perm, const at::Tensor& fan_out,
                             int64_t n_in, int64_t n_blocks) {
  check_common(grad_out, weight, rows, perm);
  TORCH_CHECK(starts.scalar_type() == at::kLong && starts.is_contiguous() && starts.numel() == n_blocks * n_in + 1 &&
                  fan_out.scalar_type() == at::kLong && fan_out.is_contiguous() && fan_out.numel() == n_in + 1 &&
                  rows.numel() == weight.numel(), "transposed wiring does not match");
  const int64_t B = grad_out.size(1);
  auto out = at::empty({n_in, B}, grad_out.options());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "spmm_t_transposed", [&] {
    const scalar_t* g = grad_out.data_ptr<scalar_t>();
    const scalar_t* w = weight.data_ptr<scalar_t>();
    const int64_t* st = starts.data_ptr<int64_t>();
    const int64_t* rw = rows.data_ptr<int64_t>();
    const int64_t* pm = perm.data_ptr<int64_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    parallel_rows(fan_out.data_ptr<int64_t>(), n_in, B, [&](int64_t i0, int64_t i1) {
      if (n_blocks == 0) std::fill(dst + i0 * B, dst + i1 * B, scalar_t(0));
      for (int64_t blk = 0; blk < n_blocks; ++blk) {
        const bool accumulate = blk > 0;
        for (int64_t i = i0; i < i1; ++i) {
          const int64_t c0 = st[blk * n_in + i], c1 = st[blk * n_in + i + 1];
          if (accumulate && c0 == c1) continue;
          gather_row<scalar_t, true>(g, B, rw, pm, w, c0, c1, dst + i * B, accumulate);
        }
      }
    });
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// A whole dendro-somatic layer in one pass: dendrite d = leaky(Σ_c w[c] · x[idx[c]] + bd[d]);
// soma s = leaky(Σ_{d of s} v[d] · dendrite d + bs[s]), soma s owning dendrites s·D .. s·D + D − 1.
// Each dendrite's row is used for its soma while it is still in registers, so the (dendrites, B)
// activations are written once (only when the backward needs them) and never read back in the
// forward; the same sums in the same order as the unfused layers, so the outputs are identical.

// leaky(z) = z > 0 ? z : slope · z (F.leaky_relu, bit for bit, for 0 < slope < 1).
template <typename T> inline typename Vec<T>::type leaky_v(typename Vec<T>::type z, T slope) {
  const typename Vec<T>::type s = z * slope;
  return z > s ? z : s;
}
// The same as a scalar: max(z, slope · z), a vmaxss, without a branch on the sign of a dendrite's
// sum (as good as random: a batch of two, 64 → 256, D = 16, 34 → 29 µs).
template <typename T> inline T leaky_s(T z, T slope) {
  const T s = z * slope;
  return z > s ? z : s;
}

template <typename T, int K>
inline void layer_block(const T* __restrict x, int64_t B, const int64_t* __restrict idx, const T* __restrict w,
                        const int64_t* __restrict off, int64_t n_dend, int64_t nnz, const T* __restrict bd,
                        const T* __restrict v, T bs, int64_t d0, int64_t d1, T slope, T* __restrict A,
                        T* __restrict out) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  V soma[K];
  for (int k = 0; k < K; ++k) soma[k] = V{};
  for (int64_t d = d0; d < d1; ++d) {
    V acc[K];
    for (int k = 0; k < K; ++k) acc[k] = V{};
    const int64_t c1 = row_end(off, d, n_dend, nnz);
    for (int64_t c = off[d]; c < c1; ++c) {
      const T wc = w[c];
      const T* s = x + idx[c] * B;
#pragma GCC unroll 16
      for (int k = 0; k < K; ++k) acc[k] += wc * loadu<T>(s + k * L);
    }
    const T vd = v[d], b = bd[d];
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) {
      const V a = leaky_v<T>(acc[k] + b, slope);
      if (A != nullptr) storeu<T>(A + (d - d0) * B + k * L, a);
      soma[k] += vd * a;
    }
  }
#pragma GCC unroll 16
  for (int k = 0; k < K; ++k) storeu<T>(out + k * L, leaky_v<T>(soma[k] + bs, slope));
}

// G dendrites' sums (acc) → their activations (kept in A when not null) → added to their soma's.
template <typename T, int NB, int G>
inline void into_soma(const T (&acc)[G][NB], int64_t d, int64_t B, const T* bd, const T* v, T slope, T* A,
                      T (&soma)[NB]) {
  for (int g = 0; g < G; ++g)
    for (int b = 0; b < NB; ++b) {
      const T a = leaky_s<T>(acc[g][b] + bd[d + g], slope);
      if (A != nullptr) A[(d + g) * B + b] = a;
      soma[b] = mul_add<T>(v[d + g], a, soma[b]);
    }
}

// G dendrites from d on, if they fit before d1 and their fan-in is equal: their sums into the
// soma's (into_soma), d advanced past them; else nothing (false).
template <typename T, int NB, int G>
inline bool layer_group(const T* x, int64_t B, const int64_t* idx, const T* w, const int64_t* off, int64_t n_dend,
                        int64_t nnz, const T* bd, const T* v, int64_t& d, int64_t d1, T slope, T* A, T (&soma)[NB]) {
  int64_t base[G];
  const int64_t n = d + G <= d1 ? equal_fan_in<G>(off, d, n_dend, nnz, base) : -1;
  if (n < 0) return false;
  T acc[G][NB];
  interleaved_sums<T, NB, G>(x, B, idx, w, base, n, acc);
  into_soma<T, NB, G>(acc, d, B, bd, v, slope, A, soma);
  d += G;
  return true;
}

// The last NB < L columns of one soma's rows (x, A and out start at the first of them), in
// scalar sums, several dendrites of equal fan-in at a time (interleaved_sums): eight for a
// single column (a batch of one: D = 16, 64 → 256, 30 → 24 µs), else four. Each dendrite's and
// each soma's sum keeps its order: the values are those of one dendrite at a time.
template <typename T, int NB>
inline void layer_columns(const T* x, int64_t B, const int64_t* idx, const T* w, const int64_t* off, int64_t n_dend,
                          int64_t nnz, const T* bd, const T* v, T bs, int64_t d0, int64_t d1, T slope, T* A, T* out) {
  T soma[NB] = {};
  // compile-time group sizes: indexed by a run-time count, the sums were kept in memory instead
  // of registers (D = 16, batch 4: 81 instead of 53 µs)
  for (int64_t d = d0; d < d1;) {
    if constexpr (NB == 1) {
      if (layer_group<T, NB, 8>(x, B, idx, w, off, n_dend, nnz, bd, v, d, d1, slope, A, soma)) continue;
    }
    if (layer_group<T, NB, 4>(x, B, idx, w, off, n_dend, nnz, bd, v, d, d1, slope, A, soma)) continue;
    layer_group<T, NB, 1>(x, B, idx, w, off, n_dend, nnz, bd, v, d, d1, slope, A, soma);  // one: always
  }
  for (int b = 0; b < NB; ++b) out[b] = leaky_s<T>(soma[b] + bs, slope);
}

// Somata per parallel chunk: at least ~32k multiply-adds each, so small layers stay on one thread.
inline int64_t soma_grain(int64_t S, int64_t nnz, int64_t B) {
  const int64_t per_soma = std::max<int64_t>(1, (nnz / std::max<int64_t>(S, 1) + 1) * std::max<int64_t>(B, 1));
  return std::max<int64_t>(1, (int64_t(1) << 15) / per_soma);
}

// The forward of somata s0 … s1 − 1 over raw pointers (x (n_in, B), A (n_dend, B) or null, out (S, B)).
// xtail, when not null: x's last B mod L (3 or more) columns copied into a zero-padded (n_in, L)
// block, which the vector kernel runs as one more vector of columns (each lane a column, summed
// in the order of the scalar sums, so the same values: a batch of 7 cost seven times a batch of 8).
template <typename T>
void layer_forward_somata(const T* xp, int64_t B, const T* wp, const int64_t* ip, const int64_t* op, int64_t n_dend,
                          int64_t nnz, const T* bdp, const T* vp, const T* bsp, int64_t D, T sl, T* Ap, T* outp,
                          const T* xtail, int64_t s0, int64_t s1) {
  constexpr int L = Vec<T>::L;
  std::vector<T> tail_A(xtail != nullptr && Ap != nullptr ? D * L : 0);
  T tail_out[L];
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t d0 = s * D, d1 = d0 + D;
    T* As = Ap ? Ap + d0 * B : nullptr;  // the soma's dendrites' rows
    int64_t b = 0;
    for (; b + NV * L <= B; b += NV * L)
      layer_block<T, NV>(xp + b, B, ip, wp, op, n_dend, nnz, bdp, vp, bsp[s], d0, d1, sl, As ? As + b : nullptr,
                         outp + s * B + b);
    for (; b + L <= B; b += L)
      layer_block<T, 1>(xp + b, B, ip, wp, op, n_dend, nnz, bdp, vp, bsp[s], d0, d1, sl, As ? As + b : nullptr,
                        outp + s * B + b);
    if (b < B && xtail != nullptr) {
      layer_block<T, 1>(xtail, L, ip, wp, op, n_dend, nnz, bdp, vp, bsp[s], d0, d1, sl,
                        As ? tail_A.data() : nullptr, tail_out);
      for (int64_t j = 0; j < B - b; ++j) outp[s * B + b + j] = tail_out[j];
      if (As != nullptr)
        for (int64_t k = 0; k < D; ++k)
          for (int64_t j = 0; j < B - b; ++j) As[k * B + b + j] = tail_A[k * L + j];
    } else if (b < B) {
      with_narrow(B - b, [&](auto nb) {
        layer_columns<T, decltype(nb)::value>(xp + b, B, ip, wp, op, n_dend, nnz, bdp, vp, bsp[s], d0, d1, sl,
                                              Ap ? Ap + b : nullptr, outp + s * B + b);
      });
    }
  }
}

// One thread per range of somata, so the result does not depend on the thread count. A tail of
// 3 to L − 1 columns runs as one zero-padded vector (layer_forward_somata); one or two columns in
// scalar sums, which are faster there (64 → 256, D = 16: batch 1 23 µs, batch 2 27 against 36
// padded; batch 3 the same either way).
template <typename T>
void layer_forward(const T* xp, int64_t n_in, int64_t B, const T* wp, const int64_t* ip, const int64_t* op,
                   int64_t n_dend, int64_t nnz, const T* bdp, const T* vp, const T* bsp, int64_t S, int64_t D, T sl,
                   T* Ap, T* outp) {
  constexpr int L = Vec<T>::L;
  const int64_t tail = B % L, first = B - tail;
  const bool padded = tail > 2;
  std::vector<T> xtail(padded ? n_in * L : 0, T(0));
  for (int64_t i = 0; padded && i < n_in; ++i)
    for (int64_t j = 0; j < tail; ++j) xtail[i * L + j] = xp[i * B + first + j];
  const T* xt = padded ? xtail.data() : nullptr;
  at::parallel_for(0, S, soma_grain(S, nnz, B), [&](int64_t s0, int64_t s1) {
    layer_forward_somata<T>(xp, B, wp, ip, op, n_dend, nnz, bdp, vp, bsp, D, sl, Ap, outp, xt, s0, s1);
  });
}

std::tuple<at::Tensor, at::Tensor> dendritic_layer(const at::Tensor& x, const at::Tensor& w, const at::Tensor& idx,
                                                   const at::Tensor& off, const at::Tensor& bd, const at::Tensor& v,
                                                   const at::Tensor& bs, int64_t D, double slope, bool keep) {
  check_common(x, w, idx, off);
  check_slope(slope);
  const int64_t n_dend = off.numel(), S = bs.numel(), B = x.size(1), nnz = idx.numel();
  TORCH_CHECK(D > 0 && S * D == n_dend && bd.numel() == n_dend && v.numel() == n_dend && w.numel() == nnz,
              "layer sizes disagree");
  for (const at::Tensor* t : {&bd, &v, &bs})
    TORCH_CHECK(t->scalar_type() == x.scalar_type() && t->is_contiguous(), "biases and soma weights: contiguous, same dtype");
  auto out = at::empty({S, B}, x.options());
  auto A = keep ? at::empty({n_dend, B}, x.options()) : at::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dendritic_layer", [&] {
    layer_forward<scalar_t>(x.data_ptr<scalar_t>(), x.size(0), B, w.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(),
                            off.data_ptr<int64_t>(), n_dend, nnz, bd.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                            bs.data_ptr<scalar_t>(), S, D, static_cast<scalar_t>(slope),
                            keep ? A.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>());
  });
  return {out, A};
}

// Σ_b a[b] (vector lanes, then the tail)
template <typename T> inline T row_sum(const T* a, int64_t B) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  if (B < L) {  // no full vector: the tail alone, the same sum
    T s = 0;
    for (int64_t b = 0; b < B; ++b) s += a[b];
    return s;
  }
  V acc = V{};
  int64_t b = 0;
  for (; b + L <= B; b += L) acc += loadu<T>(a + b);
  T s = 0;
  for (int j = 0; j < L; ++j) s += acc[j];
  for (; b < B; ++b) s += a[b];
  return s;
}

// dst[b] = (scale · g[b] + extra[b]) · (a[b] > 0 ? 1 : slope): the gradient through a leaky ReLU
// whose output is a, with (EXTRA) a gradient that reaches that output directly as well (a loss on
// the dendrites' activations). Vector selects, not a branch per sample: the signs of a dendrite's
// activations are as good as random, and a mispredicted branch per sample made the regularised
// backward three times slower.
template <typename T, bool EXTRA>
inline void leaky_grad_of(const T* g, const T* extra, const T* a, T scale, T slope, int64_t B, T* dst) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  const V one = V{} + T(1), sl = V{} + slope, zero = V{};
  int64_t b = 0;
  for (; b + L <= B; b += L) {
    const V av = loadu<T>(a + b);
    V in = scale * loadu<T>(g + b);
    if constexpr (EXTRA) in += loadu<T>(extra + b);
    storeu<T>(dst + b, in * (av > zero ? one : sl));
  }
  const T factor[2] = {slope, T(1)};  // the columns after the vectors: a select by index, no branch
  for (; b < B; ++b) {                  // (a batch of one is all tail)
    T in = scale * g[b];
    if constexpr (EXTRA) in += extra[b];
    dst[b] = in * factor[a[b] > T(0)];
  }
}

// leaky_grad_of, with extra (when not null) added to scale · g.
template <typename T>
inline void leaky_grad(const T* g, const T* extra, const T* a, T scale, T slope, int64_t B, T* dst) {
  if (extra != nullptr) leaky_grad_of<T, true>(g, extra, a, scale, slope, B, dst);
  else leaky_grad_of<T, false>(g, nullptr, a, scale, slope, B, dst);
}

// Gradients of dendritic_layer for somata s0 … s1 − 1: (w, bd, v, bs) and, when G is not null, the
// dendrites' pre-activation gradient G (dendrites, B) from which the caller gathers the input
// gradient. gAp, when not null: a gradient (dendrites, B) on the dendrites' activations themselves.
// A function of its own, not the body of the parallel_for lambda: read through the lambda's
// by-reference captures, every pointer and size was reloaded inside the loops (twice the time at a
// batch of one).
template <typename T>
void layer_backward_somata(const T* gp, const T* outp, const T* Ap, const T* xp, int64_t B, const int64_t* ip,
                           const int64_t* op, int64_t n_dend, int64_t nnz, const T* vp, int64_t D, T sl, T* gwp,
                           T* gbdp, T* gvp, T* gbsp, T* Gp, const T* gAp, int64_t s0, int64_t s1) {
  if (B == 1) {  // one sample (an RL step): every sum is one product, as the general loops below
    for (int64_t s = s0; s < s1; ++s) {  // compute it (0 + the product), without their per-row setup
      const T factor[2] = {sl, T(1)};
      const T gz = gp[s] * factor[outp[s] > T(0)];
      gbsp[s] = T(0) + gz;
      for (int64_t d = s * D; d < (s + 1) * D; ++d) {
        gvp[d] = T(0) + gz * Ap[d];
        T ga;  // the general loops' own gradient step (its multiply-adds contracted alike)
        leaky_grad<T>(&gz, gAp != nullptr ? gAp + d : nullptr, Ap + d, vp[d], sl, 1, &ga);
        if (Gp != nullptr) Gp[d] = ga;
        gbdp[d] = T(0) + ga;
        const int64_t c1 = row_end(op, d, n_dend, nnz);
        for (int64_t c = op[d]; c < c1; ++c) gwp[c] = T(0) + ga * xp[ip[c]];
      }
    }
    return;
  }
  std::vector<T> gz(B), scratch(B);
  std::vector<int64_t> dend(std::max<int64_t>(D, 1));
  for (int64_t s = s0; s < s1; ++s) {
    leaky_grad<T>(gp + s * B, nullptr, outp + s * B, T(1), sl, B, gz.data());
    gbsp[s] = row_sum<T>(gz.data(), B);
    const int64_t d0 = s * D;
    for (int64_t k = 0; k < D; ++k) dend[k] = d0 + k;
    int64_t k = 0;  // soma weights: ⟨gz, A[d]⟩, eight dendrites per pass over gz
    for (; k + 8 <= D; k += 8) dots<T, 8>(gz.data(), Ap, B, dend.data() + k, gvp + d0 + k);
    for (; k + 4 <= D; k += 4) dots<T, 4>(gz.data(), Ap, B, dend.data() + k, gvp + d0 + k);
    for (; k < D; ++k) dots<T, 1>(gz.data(), Ap, B, dend.data() + k, gvp + d0 + k);
    for (int64_t d = d0; d < d0 + D; ++d) {
      T* ga = Gp ? Gp + d * B : scratch.data();
      leaky_grad<T>(gz.data(), gAp ? gAp + d * B : nullptr, Ap + d * B, vp[d], sl, B, ga);
      gbdp[d] = row_sum<T>(ga, B);
      const int64_t c1 = row_end(op, d, n_dend, nnz);
      int64_t c = op[d];
      for (; c + 8 <= c1; c += 8) dots<T, 8>(ga, xp, B, ip + c, gwp + c);
      for (; c + 4 <= c1; c += 4) dots<T, 4>(ga, xp, B, ip + c, gwp + c);
      for (; c < c1; ++c) dots<T, 1>(ga, xp, B, ip + c, gwp + c);
    }
  }
}

template <typename T>
void layer_backward(const T* gp, const T* outp, const T* Ap, const T* xp, int64_t B, const int64_t* ip,
                    const int64_t* op, int64_t n_dend, int64_t nnz, const T* vp, int64_t S, int64_t D, T sl, T* gwp,
                    T* gbdp, T* gvp, T* gbsp, T* Gp, const T* gAp = nullptr) {
  at::parallel_for(0, S, soma_grain(S, nnz, B), [&](int64_t s0, int64_t s1) {
    layer_backward_somata<T>(gp, outp, Ap, xp, B, ip, op, n_dend, nnz, vp, D, sl, gwp, gbdp, gvp, gbsp, Gp, gAp, s0, s1);
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dendritic_layer_backward(
    const at::Tensor& g_out, const at::Tensor& out, const at::Tensor& A, const at::Tensor& x, const at::Tensor& w,
    const at::Tensor& idx, const at::Tensor& off, const at::Tensor& v, int64_t D, double slope, bool need_gx,
    const std::optional<at::Tensor>& grad_dendrites) {
  check_common(x, w, idx, off);
  check_slope(slope);
  const int64_t n_dend = off.numel(), S = out.size(0), B = x.size(1), nnz = idx.numel();
  TORCH_CHECK(g_out.is_contiguous() && out.is_contiguous() && A.is_contiguous() && g_out.sizes() == out.sizes() &&
                  out.size(1) == B && A.size(0) == n_dend && A.size(1) == B && S * D == n_dend,
              "saved tensors disagree");
  at::Tensor gA;
  if (grad_dendrites.has_value() && grad_dendrites->defined()) {
    gA = grad_dendrites->to(x.scalar_type()).contiguous();
    TORCH_CHECK(gA.sizes() == A.sizes(), "grad_dendrites must be shaped like the dendrites");
  }
  const int64_t L = 32 / x.element_size();
  if (B > 3 && B < L && nnz >= 4096) {  // 4 to L − 1 samples: as one vector, zero-padded (the added samples
    // carry no gradient and add exact zeros; the sums over samples then run in the vector loops' order,
    // at a vector's cost instead of B scalar chains: 64 → 256, D = 16, batch 7, 181 → 79 µs). Not for
    // fewer samples or connections, where the padded copies cost more than they save (4 → 32: 6 → 12 µs).
    auto pad = [&](const at::Tensor& t) { return at::constant_pad_nd(t, {0, L - B}); };
    auto grads = dendritic_layer_backward(pad(g_out), pad(out), pad(A), pad(x), w, idx, off, v, D, slope, need_gx,
                                          gA.defined() ? std::optional<at::Tensor>(pad(gA)) : std::nullopt);
    if (need_gx) std::get<4>(grads) = std::get<4>(grads).narrow(1, 0, B).contiguous();
    return grads;
  }
  auto gw = at::empty({nnz}, x.options());
  auto gbd = at::empty({n_dend}, x.options());
  auto gv = at::empty({n_dend}, x.options());
  auto gbs = at::empty({S}, x.options());
  auto G = need_gx ? at::empty({n_dend, B}, x.options()) : at::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dendritic_layer_backward", [&] {
    layer_backward<scalar_t>(g_out.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), A.data_ptr<scalar_t>(),
                             x.data_ptr<scalar_t>(), B, idx.data_ptr<int64_t>(), off.data_ptr<int64_t>(), n_dend, nnz,
                             v.data_ptr<scalar_t>(), S, D, static_cast<scalar_t>(slope), gw.data_ptr<scalar_t>(),
                             gbd.data_ptr<scalar_t>(), gv.data_ptr<scalar_t>(), gbs.data_ptr<scalar_t>(),
                             need_gx ? G.data_ptr<scalar_t>() : nullptr,
                             gA.defined() ? gA.data_ptr<scalar_t>() : nullptr);
  });
  return {gw, gbd, gv, gbs, G};
}

// out (n, B) = xᵀ for x (B, n), in 8 × 8 tiles (AVX registers for float32), so every read and
// write is a run of 8 contiguous values. With `pick`, row b of x is x[pick[b]] (a batch gathered
// from the training set and transposed in one pass).
#if defined(__AVX__)
inline void transpose8x8(const float* const* rows, int64_t col, float* dst, int64_t ld_dst) {
  __m256 r[8], t[8];
  for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(rows[k] + col);
  for (int k = 0; k < 4; ++k) {
    t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
    t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
  }
  for (int k = 0; k < 2; ++k) {
    r[4 * k + 0] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
    r[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
    r[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
    r[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    _mm256_storeu_ps(dst + k * ld_dst, _mm256_permute2f128_ps(r[k], r[k + 4], 0x20));
    _mm256_storeu_ps(dst + (k + 4) * ld_dst, _mm256_permute2f128_ps(r[k], r[k + 4], 0x31));
  }
}
#endif

template <typename T>
void transpose_tiles(const T* src, const int64_t* pick, T* dst, int64_t B, int64_t n, int64_t i0, int64_t i1) {
  auto row = [&](int64_t b) { return src + (pick != nullptr ? pick[b] : b) * n; };
  int64_t b0 = 0;
#if defined(__AVX__)
  if constexpr (std::is_same_v<T, float>) {
    for (; b0 + 8 <= B; b0 += 8) {
      const float* rows[8];
      for (int k = 0; k < 8; ++k) rows[k] = row(b0 + k);
      int64_t i = i0;
      for (; i + 8 <= i1; i += 8) transpose8x8(rows, i, dst + i * B + b0, B);
      for (; i < i1; ++i)
        for (int k = 0; k < 8; ++k) dst[i * B + b0 + k] = rows[k][i];
    }
  }
#endif
  for (; b0 < B; b0 += 8) {
    const int64_t b1 = std::min(B, b0 + 8);
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t b = b0; b < b1; ++b) dst[i * B + b] = row(b)[i];
  }
}

template <typename T> void transpose_rows(const T* src, const int64_t* pick, int64_t B, int64_t n, T* dst) {
  constexpr int64_t TN = 64;  // columns of x per task: a (B, 64) panel
  at::parallel_for(0, (n + TN - 1) / TN, std::max<int64_t>(1, 16384 / std::max<int64_t>(B * TN, 1)),
                   [&](int64_t t0, int64_t t1) {
                     for (int64_t t = t0; t < t1; ++t) transpose_tiles<T>(src, pick, dst, B, n, t * TN, std::min(n, (t + 1) * TN));
                   });
}

at::Tensor transpose_2d(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 2 && x.is_contiguous(), "expected a contiguous 2-D CPU tensor");
  const int64_t B = x.size(0), n = x.size(1);
  auto out = at::empty({n, B}, x.options());
  AT_DISPATCH_ALL_TYPES_AND(at::kBool, x.scalar_type(), "transpose_2d", [&] {
    transpose_rows<scalar_t>(x.data_ptr<scalar_t>(), nullptr, B, n, out.data_ptr<scalar_t>());
  });
  return out;
}

// One Adam step over a list of float32/float64 parameters (torch's formula, as its fused CPU
// kernel computes it): m ← m + (1 − β1)(g − m); v ← β2·v + (1 − β2)·g²;
// p ← p − lr / (1 − β1^t) · m / (√v / √(1 − β2^t) + ε) (the division by √(1 − β2^t) as a
// multiplication by its inverse: one division per element instead of two). One call instead of torch.optim's
// per-step Python, which costs more than the arithmetic for a model of 76 k parameters.
template <typename T> inline typename Vec<T>::type vsqrt(typename Vec<T>::type v) {
#if defined(__AVX__)
  if constexpr (std::is_same_v<T, float>) {
    __m256 r;
    std::memcpy(&r, &v, 32);
    r = _mm256_sqrt_ps(r);
    std::memcpy(&v, &r, 32);
    return v;
  } else if constexpr (std::is_same_v<T, double>) {
    __m256d r;
    std::memcpy(&r, &v, 32);
    r = _mm256_sqrt_pd(r);
    std::memcpy(&v, &r, 32);
    return v;
  }
#endif
  for (int j = 0; j < Vec<T>::L; ++j) v[j] = std::sqrt(v[j]);
  return v;
}

// Adam's constants for one step (torch's formula and its order of operations).
// Two forms of Adam's update. torch's adds ε to the bias-corrected √v̂:
//   p -= lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε);
// Keras's (the paper's code) adds it to the uncorrected √v:
//   p -= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε),
// which is torch's with ε_t = ε / √(1−β2ᵗ). One kernel serves both through that ε_t.
struct AdamCoef {
  double step_size, inv_bc2s, w1, b2, w2, eps;
  AdamCoef(int64_t step, double lr, double beta1, double beta2, double eps_, bool keras)
      : step_size(lr / (1.0 - std::pow(beta1, double(step)))),
        inv_bc2s(1.0 / std::sqrt(1.0 - std::pow(beta2, double(step)))),
        w1(1 - beta1),
        b2(beta2),
        w2(1 - beta2),
        eps(keras ? eps_ * inv_bc2s : eps_) {}
};

template <typename T> void adam_update(T* pp, const T* gp, T* mp, T* vp, int64_t n, const AdamCoef& k) {
  const T w1 = T(k.w1), b2 = T(k.b2), w2 = T(k.w2), step_size = T(k.step_size), inv_bc2s = T(k.inv_bc2s), ep = T(k.eps);
  at::parallel_for(0, n, 1 << 15, [&](int64_t i0, int64_t i1) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::L;
    int64_t i = i0;
    for (; i + L <= i1; i += L) {  // the same arithmetic, L lanes at a time
      const V gi = loadu<T>(gp + i), m0 = loadu<T>(mp + i);
      const V mi = m0 + w1 * (gi - m0);
      const V vi = loadu<T>(vp + i) * b2 + w2 * gi * gi;
      storeu<T>(mp + i, mi);
      storeu<T>(vp + i, vi);
      storeu<T>(pp + i, loadu<T>(pp + i) - step_size * mi / (vsqrt<T>(vi) * inv_bc2s + ep));
    }
    for (; i < i1; ++i) {
      const T gi = gp[i];
      const T mi = mp[i] + w1 * (gi - mp[i]);
      const T vi = vp[i] * b2 + w2 * gi * gi;
      mp[i] = mi;
      vp[i] = vi;
      pp[i] -= step_size * mi / (std::sqrt(vi) * inv_bc2s + ep);
    }
  });
}

void check_adam_lists(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs) {
  TORCH_CHECK(params.size() == grads.size() && params.size() == exp_avgs.size() && params.size() == exp_avg_sqs.size(),
              "adam: lists of different lengths");
  for (size_t k = 0; k < params.size(); ++k) {
    const at::Tensor& p = params[k];
    for (const at::Tensor* t : {&grads[k], &exp_avgs[k], &exp_avg_sqs[k]})
      TORCH_CHECK(p.device().is_cpu() && p.is_contiguous() && t->is_contiguous() && t->numel() == p.numel() &&
                      t->scalar_type() == p.scalar_type() && t->device().is_cpu(),
                  "adam: parameter, gradient and moments must be contiguous CPU tensors of one shape and dtype");
    TORCH_CHECK(p.scalar_type() == at::kFloat || p.scalar_type() == at::kDouble, "adam: float32 or float64 parameters");
  }
}

void adam_step_(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
                int64_t step, double lr, double beta1, double beta2, double eps, bool keras) {
  check_adam_lists(params, grads, exp_avgs, exp_avg_sqs);
  TORCH_CHECK(step >= 1, "adam_step_: step counts from 1");
  const AdamCoef coef(step, lr, beta1, beta2, eps, keras);
  for (size_t k = 0; k < params.size(); ++k) {
    const at::Tensor& p = params[k];
    AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "adam_step_", [&] {
      adam_update<scalar_t>(p.data_ptr<scalar_t>(), grads[k].data_ptr<scalar_t>(), exp_avgs[k].data_ptr<scalar_t>(),
                            exp_avg_sqs[k].data_ptr<scalar_t>(), p.numel(), coef);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The output layer and the loss of a training step in one call each way. Feature-major:
// h (S, B), weight (C, S), bias (C), target (B). Forward: logits = weight·h + bias, the mean
// cross-entropy over the batch, the softmax (saved for the backward) and the number of correct
// argmax predictions (first maximum, as torch.argmax). Backward: with G = (softmax − onehot)·g/B,
// grad_weight = G·hᵀ, grad_bias = Σ_b G, grad_h = weightᵀ·G. A few dozen small PyTorch operators
// (addmm, log-softmax, nll, argmax, their backward) cost far more dispatch than arithmetic here.
// Logits, softmax (into pp, (C, B)) and correct count; returns the summed cross-entropy.
template <typename T>
double head_forward_raw(const T* hp, int64_t S, int64_t B, const T* wp, const T* bp, int64_t C, const int64_t* yp,
                        T* pp, int64_t& hits) {
  constexpr int L = Vec<T>::L;
  // logits[c, :] = bias[c] + Σ_s weight[c, s] · h[s, :], eight classes × one vector of the
  // batch held in registers while s runs, so each h value is loaded once per eight classes
  using V = typename Vec<T>::type;
  int64_t b = 0;
  for (; b + L <= B; b += L) {
    for (int64_t c0 = 0; c0 < C; c0 += 8) {
      const int K = int(std::min<int64_t>(8, C - c0));
      V acc[8];
      for (int k = 0; k < 8; ++k) acc[k] = V{} + (k < K ? bp[c0 + k] : T(0));
      for (int64_t s = 0; s < S; ++s) {
        const V hv = loadu<T>(hp + s * B + b);
        const T* w = wp + c0 * S + s;
        if (K == 8) {
          for (int k = 0; k < 8; ++k) acc[k] += w[k * S] * hv;
        } else {
          for (int k = 0; k < K; ++k) acc[k] += w[k * S] * hv;
        }
      }
      for (int k = 0; k < K; ++k) storeu<T>(pp + (c0 + k) * B + b, acc[k]);
    }
  }
  for (; b < B; ++b)
    for (int64_t c = 0; c < C; ++c) {
      T acc = bp[c];
      for (int64_t s = 0; s < S; ++s) acc += wp[c * S + s] * hp[s * B + b];
      pp[c * B + b] = acc;
    }
  double total = 0;
  hits = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t y = yp[b];
    TORCH_CHECK(y >= 0 && y < C, "target ", y, " is not a class in [0, ", C, ")");
    int64_t best = 0;
    T top = pp[b];
    for (int64_t c = 1; c < C; ++c)
      if (pp[c * B + b] > top) top = pp[c * B + b], best = c;
    hits += best == y;
    T sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(pp[c * B + b] - top);
    const T lse = top + std::log(sum);
    total += double(lse - pp[y * B + b]);
    for (int64_t c = 0; c < C; ++c) pp[c * B + b] = std::exp(pp[c * B + b] - lse);
  }
  return total;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> head_forward(const at::Tensor& h, const at::Tensor& weight,
                                                            const at::Tensor& bias, const at::Tensor& target) {
  TORCH_CHECK(h.device().is_cpu() && h.dim() == 2 && h.is_contiguous(), "h must be a contiguous (S, B) CPU tensor");
  TORCH_CHECK(weight.dim() == 2 && weight.is_contiguous() && weight.size(1) == h.size(0) &&
                  weight.scalar_type() == h.scalar_type(), "weight must be contiguous (C, S) of h's dtype");
  TORCH_CHECK(bias.is_contiguous() && bias.numel() == weight.size(0) && bias.scalar_type() == h.scalar_type(),
              "bias must be contiguous (C,) of h's dtype");
  TORCH_CHECK(target.scalar_type() == at::kLong && target.is_contiguous() && target.numel() == h.size(1),
              "target must be int64 (B,)");
  const int64_t S = h.size(0), B = h.size(1), C = weight.size(0);
  auto probs = at::empty({C, B}, h.options());
  auto loss = at::empty({}, h.options());
  auto correct = at::empty({}, target.options());
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "head_forward", [&] {
    int64_t hits = 0;
    const double total = head_forward_raw<scalar_t>(h.data_ptr<scalar_t>(), S, B, weight.data_ptr<scalar_t>(),
                                                    bias.data_ptr<scalar_t>(), C, target.data_ptr<int64_t>(),
                                                    probs.data_ptr<scalar_t>(), hits);
    loss.fill_(total / double(std::max<int64_t>(B, 1)));
    correct.fill_(hits);
  });
  return {loss, probs, correct};
}

// Gradients of the mean loss scaled by grad_loss: G (C, B) is scratch (may alias probs), gh may be null.
template <typename T>
void head_backward_raw(T grad_loss, const T* probs, const int64_t* yp, const T* hp, int64_t S, int64_t B,
                       const T* wp, int64_t C, T* G, T* gwp, T* gbp, T* ghp) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  const T scale = grad_loss / T(std::max<int64_t>(B, 1));
  if (G != probs) std::copy(probs, probs + C * B, G);
  for (int64_t b = 0; b < B; ++b) G[yp[b] * B + b] -= T(1);
  for (int64_t k = 0; k < C * B; ++k) G[k] *= scale;
  for (int64_t c = 0; c < C; ++c) gbp[c] = row_sum<T>(G + c * B, B);
  // per hidden unit s, one pass over the batch: grad_weight[c, s] = ⟨G[c, :], h[s, :]⟩ (eight
  // classes' sums in registers) and grad_h[s, :] = Σ_c weight[c, s] · G[c, :]
  at::parallel_for(0, S, std::max<int64_t>(1, 4096 / std::max<int64_t>(C * B, 1)), [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const T* row = hp + s * B;
      T* dst = ghp != nullptr ? ghp + s * B : nullptr;
      if (dst != nullptr) std::fill(dst, dst + B, T(0));
      for (int64_t c0 = 0; c0 < C; c0 += 8) {
        const int K = int(std::min<int64_t>(8, C - c0));
        V acc[8];
        for (int k = 0; k < 8; ++k) acc[k] = V{};
        int64_t b = 0;
        for (; b + L <= B; b += L) {
          const V hv = loadu<T>(row + b);
          V gsum = V{};
          for (int k = 0; k < K; ++k) {
            const V gv = loadu<T>(G + (c0 + k) * B + b);
            acc[k] += gv * hv;
            gsum += wp[(c0 + k) * S + s] * gv;
          }
          if (dst != nullptr) storeu<T>(dst + b, loadu<T>(dst + b) + gsum);
        }
        for (int k = 0; k < K; ++k) {
          T sum = 0;
          for (int j = 0; j < L; ++j) sum += acc[k][j];
          const T* g = G + (c0 + k) * B;
          for (int64_t bb = b; bb < B; ++bb) sum += g[bb] * row[bb];
          gwp[(c0 + k) * S + s] = sum;
          if (dst != nullptr)
            for (int64_t bb = b; bb < B; ++bb) dst[bb] += wp[(c0 + k) * S + s] * g[bb];
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> head_backward(const at::Tensor& grad_loss, const at::Tensor& probs,
                                                             const at::Tensor& h, const at::Tensor& weight,
                                                             const at::Tensor& target, bool need_h) {
  const int64_t S = h.size(0), B = h.size(1), C = weight.size(0);
  TORCH_CHECK(probs.is_contiguous() && probs.size(0) == C && probs.size(1) == B, "saved softmax does not match");
  auto gw = at::empty({C, S}, h.options());
  auto gb = at::empty({C}, h.options());
  auto gh = need_h ? at::empty({S, B}, h.options()) : at::empty({0}, h.options());
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "head_backward", [&] {
    std::vector<scalar_t> G(C * B);
    head_backward_raw<scalar_t>(grad_loss.item<scalar_t>(), probs.data_ptr<scalar_t>(), target.data_ptr<int64_t>(),
                                h.data_ptr<scalar_t>(), S, B, weight.data_ptr<scalar_t>(), C, G.data(),
                                gw.data_ptr<scalar_t>(), gb.data_ptr<scalar_t>(),
                                need_h ? gh.data_ptr<scalar_t>() : nullptr);
  });
  return {gh, gw, gb};
}

// What train_steps and evaluate_dann both ask of their arguments: six parameters (w, bd, v, bs,
// W, b) of x's dtype, contiguous on the CPU, forming one dendro-somatic layer of D dendrites per
// soma and a (C, S) output layer; int64 labels, one per row of x.
void check_dann(const char* who, const at::Tensor& x, const at::Tensor& y, at::TensorList params,
                const at::Tensor& idx, const at::Tensor& off, int64_t D) {
  TORCH_CHECK(params.size() == 6, who, ": six parameters (w, bd, v, bs, W, b)");
  const at::Tensor &w = params[0], &bd = params[1], &v = params[2], &bs = params[3], &W = params[4], &bW = params[5];
  check_common(x, w, idx, off);
  for (const at::Tensor& p : params)
    TORCH_CHECK(p.scalar_type() == x.scalar_type() && p.is_contiguous() && p.device().is_cpu(), who,
                ": contiguous CPU parameters of x's dtype");
  const int64_t n_dend = off.numel(), S = bs.numel(), C = bW.numel();
  TORCH_CHECK(D > 0 && S * D == n_dend && bd.numel() == n_dend && v.numel() == n_dend && w.numel() == idx.numel() &&
                  W.dim() == 2 && W.size(0) == C && W.size(1) == S,
              who, ": layer sizes disagree");
  TORCH_CHECK(y.scalar_type() == at::kLong && y.is_contiguous() && y.numel() == x.size(0), who,
              ": labels must be int64, one per sample");
}

// ---------------------------------------------------------------------------------------------
// Whole training steps of a one-layer dANN (dendro-somatic layer → dense output → softmax
// cross-entropy → Adam), one after another without returning to Python: per step, the batch
// order[t·batch : (t+1)·batch] is gathered and transposed, then the same kernels as the
// step-by-step path run in the same order (so the parameters come out the same, bit for bit), and
// the batch's summed loss and correct count are added to loss_sum and correct. Buffers are
// allocated once per call. params: dendrite weights (nnz), dendrite biases, soma weights (n_dend),
// soma biases (S), output weight (C, S), output bias (C); the Adam moments in the same order.
void train_steps(const at::Tensor& x_train, const at::Tensor& y_train, const at::Tensor& order, int64_t batch,
                 at::TensorList params, at::TensorList exp_avgs, at::TensorList exp_avg_sqs, const at::Tensor& idx,
                 const at::Tensor& off, int64_t D, double slope, int64_t step0, double lr, double beta1,
                 double beta2, double eps, bool keras, const at::Tensor& loss_sum, const at::Tensor& correct) {
  check_dann("train_steps", x_train, y_train, params, idx, off, D);
  check_adam_lists(params, params, exp_avgs, exp_avg_sqs);
  const at::Tensor &w = params[0], &bd = params[1], &v = params[2], &bs = params[3], &W = params[4], &bW = params[5];
  const int64_t N = x_train.size(0), n_in = x_train.size(1), n_dend = off.numel(), nnz = idx.numel();
  const int64_t S = bs.numel(), C = bW.numel(), M = order.numel();
  TORCH_CHECK(order.scalar_type() == at::kLong && order.is_contiguous() && order.dim() == 1,
              "train_steps: order must be 1-D int64");
  TORCH_CHECK(loss_sum.numel() == 1 && loss_sum.scalar_type() == x_train.scalar_type() && correct.numel() == 1 &&
                  correct.scalar_type() == at::kLong, "train_steps: loss_sum (x's dtype) and correct (int64) scalars");
  TORCH_CHECK(batch > 0 && step0 >= 0, "train_steps: batch > 0, step0 >= 0");
  const int64_t Bmax = std::min(batch, std::max<int64_t>(M, 1));
  auto opts = x_train.options();
  auto xT = at::empty({n_in * Bmax}, opts), A = at::empty({n_dend * Bmax}, opts), out = at::empty({S * Bmax}, opts);
  auto probs = at::empty({C * Bmax}, opts), gh = at::empty({S * Bmax}, opts);
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : params) grads.push_back(at::empty({p.numel()}, opts));
  std::vector<int64_t> yb(Bmax);
  const int64_t* rows_all = order.data_ptr<int64_t>();
  const int64_t* y = y_train.data_ptr<int64_t>();
  for (int64_t k = 0; k < M; ++k)
    TORCH_CHECK(rows_all[k] >= 0 && rows_all[k] < N, "train_steps: sample ", rows_all[k], " not in [0, ", N, ")");
  AT_DISPATCH_FLOATING_TYPES(x_train.scalar_type(), "train_steps", [&] {
    using T = scalar_t;
    const T sl = static_cast<T>(slope);
    T* xt = xT.data_ptr<T>();
    T* Ap = A.data_ptr<T>();
    T* op = out.data_ptr<T>();
    T* pp = probs.data_ptr<T>();
    T* ghp = gh.data_ptr<T>();
    T* g[6];
    for (int k = 0; k < 6; ++k) g[k] = grads[k].data_ptr<T>();
    T ls = loss_sum.data_ptr<T>()[0];
    int64_t hits_total = correct.data_ptr<int64_t>()[0];
    for (int64_t b0 = 0, t = 0; b0 < M; b0 += batch, ++t) {
      const int64_t nb = std::min(batch, M - b0);
      const int64_t* rows = rows_all + b0;
      for (int64_t b = 0; b < nb; ++b) yb[b] = y[rows[b]];
      transpose_rows<T>(x_train.data_ptr<T>(), rows, nb, n_in, xt);
      layer_forward<T>(xt, n_in, nb, w.data_ptr<T>(), idx.data_ptr<int64_t>(), off.data_ptr<int64_t>(), n_dend, nnz,
                       bd.data_ptr<T>(), v.data_ptr<T>(), bs.data_ptr<T>(), S, D, sl, Ap, op);
      int64_t hits = 0;
      const double total = head_forward_raw<T>(op, S, nb, W.data_ptr<T>(), bW.data_ptr<T>(), C, yb.data(), pp, hits);
      const T loss = T(total / double(nb));
      head_backward_raw<T>(T(1), pp, yb.data(), op, S, nb, W.data_ptr<T>(), C, pp, g[4], g[5], ghp);
      layer_backward<T>(ghp, op, Ap, xt, nb, idx.data_ptr<int64_t>(), off.data_ptr<int64_t>(), n_dend, nnz,
                        v.data_ptr<T>(), S, D, sl, g[0], g[1], g[2], g[3], nullptr);
      const AdamCoef coef(step0 + t + 1, lr, beta1, beta2, eps, keras);
      for (int k = 0; k < 6; ++k)
        adam_update<T>(params[k].data_ptr<T>(), g[k], exp_avgs[k].data_ptr<T>(), exp_avg_sqs[k].data_ptr<T>(),
                       params[k].numel(), coef);
      ls = ls + T(nb) * loss;
      hits_total += hits;
    }
    loss_sum.data_ptr<T>()[0] = ls;
    correct.data_ptr<int64_t>()[0] = hits_total;
  });
}

// Evaluation of a one-layer dANN over a whole set, no gradients: Σ cross-entropy (in double) and
// the number of correct predictions, in batches of `batch` samples (x (N, n_in) row-major),
// with the forward kernels of a training step and buffers allocated once.
std::tuple<at::Tensor, at::Tensor> evaluate_dann(const at::Tensor& x, const at::Tensor& y, int64_t batch,
                                          at::TensorList params, const at::Tensor& idx, const at::Tensor& off,
                                          int64_t D, double slope) {
  check_dann("evaluate_dann", x, y, params, idx, off, D);
  const at::Tensor &w = params[0], &bd = params[1], &v = params[2], &bs = params[3], &W = params[4], &bW = params[5];
  const int64_t N = x.size(0), n_in = x.size(1), n_dend = off.numel(), nnz = idx.numel(), S = bs.numel(),
                C = bW.numel();
  TORCH_CHECK(batch > 0, "evaluate_dann: batch > 0");
  const int64_t Bmax = std::min(batch, std::max<int64_t>(N, 1));
  auto opts = x.options();
  auto xT = at::empty({n_in * Bmax}, opts), out = at::empty({S * Bmax}, opts), probs = at::empty({C * Bmax}, opts);
  double total = 0;
  int64_t hits_total = 0;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "evaluate_dann", [&] {
    using T = scalar_t;
    for (int64_t b0 = 0; b0 < N; b0 += batch) {
      const int64_t nb = std::min(batch, N - b0);
      transpose_rows<T>(x.data_ptr<T>() + b0 * n_in, nullptr, nb, n_in, xT.data_ptr<T>());
      layer_forward<T>(xT.data_ptr<T>(), n_in, nb, w.data_ptr<T>(), idx.data_ptr<int64_t>(), off.data_ptr<int64_t>(), n_dend,
                       nnz, bd.data_ptr<T>(), v.data_ptr<T>(), bs.data_ptr<T>(), S, D, static_cast<T>(slope), nullptr,
                       out.data_ptr<T>());
      int64_t hits = 0;
      total += head_forward_raw<T>(out.data_ptr<T>(), S, nb, W.data_ptr<T>(), bW.data_ptr<T>(), C,
                                   y.data_ptr<int64_t>() + b0, probs.data_ptr<T>(), hits);
      hits_total += hits;
    }
  });
  // 0-d tensors (a float64 sum and an int64 count), so the operator has a fake kernel like the others.
  auto total_t = at::empty({}, at::TensorOptions().dtype(at::kDouble));
  auto hits_t = at::empty({}, at::TensorOptions().dtype(at::kLong));
  *total_t.data_ptr<double>() = total;
  *hits_t.data_ptr<int64_t>() = hits_total;
  return {total_t, hits_t};
}


// The two operators modules call. They carry the layer's transposed wiring (transpose_blocked of
// its indices and offsets, made once when the layer is built) as inputs, so the registered
// autograd formula has everything the backward needs and no cache is consulted while tracing.
at::Tensor sparse_linear_t(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& indices,
                           const at::Tensor& offsets, const at::Tensor& t_starts, const at::Tensor& t_rows,
                           const at::Tensor& t_perm, const at::Tensor& t_fan_out, int64_t n_out, int64_t n_blocks) {
  TORCH_CHECK(t_starts.numel() == n_blocks * h.size(0) + 1 && t_rows.numel() == indices.numel() &&
                  t_perm.numel() == indices.numel() && t_fan_out.numel() == h.size(0) + 1,
              "sparse_linear_t: the transposed wiring does not match");
  return spmm_t(h, weight, indices, offsets, n_out);
}

std::tuple<at::Tensor, at::Tensor> dendritic_layer_t(const at::Tensor& x, const at::Tensor& weight,
                                                     const at::Tensor& indices, const at::Tensor& offsets,
                                                     const at::Tensor& t_starts, const at::Tensor& t_rows,
                                                     const at::Tensor& t_perm, const at::Tensor& t_fan_out,
                                                     int64_t n_blocks, const at::Tensor& bias_d,
                                                     const at::Tensor& weight_s, const at::Tensor& bias_s,
                                                     int64_t per_soma, double slope, bool keep) {
  TORCH_CHECK(t_starts.numel() == n_blocks * x.size(0) + 1 && t_rows.numel() == indices.numel() &&
                  t_perm.numel() == indices.numel() && t_fan_out.numel() == x.size(0) + 1,
              "dendritic_layer_t: the transposed wiring does not match");
  return dendritic_layer(x, weight, indices, offsets, bias_d, weight_s, bias_s, per_soma, slope, keep);
}


// ---------------------------------------------------------------------------------------------
// Autograd in C++: the two operators modules call while training, with their backward recorded
// by the C++ autograd engine instead of a Python formula. At a small batch the arithmetic of a
// step is a few microseconds and the Python around it (the formula, its setup, saving the inputs,
// the tables passed through Python) was most of the step. The forward and backward call the
// registered operators through the dispatcher, so fake tensors (torch.compile, opcheck) reach
// their fake kernels; registered as CompositeImplicitAutograd, tracing sees those operators.
// `batch_major`: x is (B, n_in) and the result (B, n_out) — the transposes happen here too.

template <typename F> c10::TypedOperatorHandle<F> handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<F>();
}

using LayerFwd = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, int64_t, double, bool);
using LayerBwd = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, int64_t, double, bool, const std::optional<at::Tensor>&);
using SpmmT = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t);
using SddmmT = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&);
using SpmmTT = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                          const at::Tensor&, const at::Tensor&, int64_t, int64_t);

const c10::TypedOperatorHandle<LayerFwd>& op_layer() {
  static const auto h = handle<LayerFwd>("dendritic::dendritic_layer");
  return h;
}
const c10::TypedOperatorHandle<LayerBwd>& op_layer_backward() {
  static const auto h = handle<LayerBwd>("dendritic::dendritic_layer_backward");
  return h;
}
const c10::TypedOperatorHandle<SpmmT>& op_spmm() {
  static const auto h = handle<SpmmT>("dendritic::spmm_t");
  return h;
}
const c10::TypedOperatorHandle<SddmmT>& op_sddmm() {
  static const auto h = handle<SddmmT>("dendritic::sddmm_t");
  return h;
}
const c10::TypedOperatorHandle<SpmmTT>& op_spmm_transposed() {
  static const auto h = handle<SpmmTT>("dendritic::spmm_t_transposed");
  return h;
}

// (n, B) feature-major → a fresh (B, n) tensor: never a view, so callers may write to it in place.
at::Tensor batch_major_copy(const at::Tensor& t) { return t.t().clone(at::MemoryFormat::Contiguous); }
// n_in of the input gradient (a guard on the size where shapes are symbolic).
int64_t rows_of(const at::Tensor& h) { return h.sym_size(0).guard_int(__FILE__, __LINE__); }
at::Tensor feature_major_of(const at::Tensor& x, bool batch_major) {
  return batch_major ? x.t().contiguous() : x.contiguous();
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct LayerFunction : public torch::autograd::Function<LayerFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias_d, const at::Tensor& weight_s, const at::Tensor& bias_s,
                            const at::Tensor& indices, const at::Tensor& offsets, const at::Tensor& t_starts,
                            const at::Tensor& t_rows, const at::Tensor& t_perm, const at::Tensor& t_fan_out,
                            int64_t n_blocks, int64_t per_soma, double slope, bool batch_major) {
    const at::Tensor h = feature_major_of(x, batch_major);
    auto [out, dendrites] = op_layer().call(h, weight, indices, offsets, bias_d, weight_s, bias_s, per_soma, slope, true);
    ctx->save_for_backward({h, weight, indices, offsets, t_starts, t_rows, t_perm, t_fan_out, weight_s, out, dendrites});
    ctx->saved_data["n_blocks"] = n_blocks;
    ctx->saved_data["per_soma"] = per_soma;
    ctx->saved_data["slope"] = slope;
    ctx->saved_data["batch_major"] = batch_major;
    return batch_major ? batch_major_copy(out) : out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &h = saved[0], &weight = saved[1], &out = saved[9];
    const bool batch_major = ctx->saved_data["batch_major"].toBool();
    at::Tensor g = grads[0].defined() ? grads[0].to(h.scalar_type()) : at::zeros_like(batch_major ? out.t() : out);
    g = feature_major_of(g, batch_major);
    const bool need_x = ctx->needs_input_grad(0);
    auto [gw, gbd, gv, gbs, pre] =
        op_layer_backward().call(g, out, saved[10], h, weight, saved[2], saved[3], saved[8],
                                 ctx->saved_data["per_soma"].toInt(), ctx->saved_data["slope"].toDouble(), need_x,
                                 std::nullopt);
    at::Tensor gx;
    if (need_x) {
      gx = op_spmm_transposed().call(pre, weight, saved[4], saved[5], saved[6], saved[7], rows_of(h),
                                     ctx->saved_data["n_blocks"].toInt());
      if (batch_major) gx = gx.t();
    }
    const at::Tensor none;
    return {gx, gw, gbd, gv, gbs, none, none, none, none, none, none, none, none, none, none};
  }
};

struct SparseFunction : public torch::autograd::Function<SparseFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& indices, const at::Tensor& offsets, const at::Tensor& t_starts,
                            const at::Tensor& t_rows, const at::Tensor& t_perm, const at::Tensor& t_fan_out,
                            int64_t n_out, int64_t n_blocks, bool batch_major) {
    const at::Tensor h = feature_major_of(x, batch_major);
    at::Tensor out = op_spmm().call(h, weight, indices, offsets, n_out);
    // An absent bias is no autograd input: the edges are then x, weight, indices, ...
    const bool has_bias = bias.has_value() && bias->defined();
    if (has_bias) out.add_(bias->unsqueeze(1));
    ctx->save_for_backward({h, weight, indices, offsets, t_starts, t_rows, t_perm, t_fan_out});
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["n_blocks"] = n_blocks;
    ctx->saved_data["batch_major"] = batch_major;
    return batch_major ? batch_major_copy(out) : out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &h = saved[0], &weight = saved[1];
    const bool batch_major = ctx->saved_data["batch_major"].toBool();
    const at::Tensor none;
    if (!grads[0].defined()) return {none, none, none, none, none, none, none, none, none, none, none, none};
    const at::Tensor g = feature_major_of(grads[0].to(h.scalar_type()), batch_major);
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      gx = op_spmm_transposed().call(g, weight, saved[4], saved[5], saved[6], saved[7], rows_of(h),
                                     ctx->saved_data["n_blocks"].toInt());
      if (batch_major) gx = gx.t();
    }
    if (ctx->needs_input_grad(1)) gw = op_sddmm().call(g, h, saved[2], saved[3]);
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) gb = g.sum(1);
    return {gx, gw, gb, none, none, none, none, none, none, none, none, none};
  }
};

// Whether autograd records a graph for these inputs; if not, the operators run without saving.
bool records(std::initializer_list<const at::Tensor*> inputs) {
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}

at::Tensor dendritic_layer_ad(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias_d,
                              const at::Tensor& weight_s, const at::Tensor& bias_s, const at::Tensor& indices,
                              const at::Tensor& offsets, const at::Tensor& t_starts, const at::Tensor& t_rows,
                              const at::Tensor& t_perm, const at::Tensor& t_fan_out, int64_t n_blocks,
                              int64_t per_soma, double slope, bool batch_major) {
  TORCH_CHECK(x.dim() == 2, "dendritic_layer_ad: x must be 2-D");
  if (!records({&x, &weight, &bias_d, &weight_s, &bias_s})) {
    const at::Tensor h = feature_major_of(x, batch_major);
    auto out = std::get<0>(op_layer().call(h, weight, indices, offsets, bias_d, weight_s, bias_s, per_soma, slope, false));
    return batch_major ? batch_major_copy(out) : out;
  }
  return LayerFunction::apply(x, weight, bias_d, weight_s, bias_s, indices, offsets, t_starts, t_rows, t_perm,
                              t_fan_out, n_blocks, per_soma, slope, batch_major);
}

at::Tensor sparse_linear_ad(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            const at::Tensor& indices, const at::Tensor& offsets, const at::Tensor& t_starts,
                            const at::Tensor& t_rows, const at::Tensor& t_perm, const at::Tensor& t_fan_out,
                            int64_t n_out, int64_t n_blocks, bool batch_major) {
  TORCH_CHECK(x.dim() == 2, "sparse_linear_ad: x must be 2-D");
  const at::Tensor b = bias.has_value() ? *bias : at::Tensor();
  if (!records({&x, &weight, &b})) {
    const at::Tensor h = feature_major_of(x, batch_major);
    at::Tensor out = op_spmm().call(h, weight, indices, offsets, n_out);
    if (b.defined()) out.add_(b.unsqueeze(1));
    return batch_major ? batch_major_copy(out) : out;
  }
  return SparseFunction::apply(x, weight, bias, indices, offsets, t_starts, t_rows, t_perm, t_fan_out, n_out, n_blocks,
                               batch_major);
}

// Class sums of rectified feature-major activations (the selectivity regulariser's class means,
// issue 23): out[k, n] = sum over samples b of class k of max(a[n, b], 0), one pass over a (the
// same as relu(a) @ one_hot(y), without the rectified copy). Each node is summed by one thread in
// sample order, so results do not depend on the thread count.
void check_class_sums(const at::Tensor& a, const at::Tensor& labels, int64_t n_classes) {
  TORCH_CHECK(a.device().is_cpu() && a.dim() == 2 && a.is_contiguous(),
              "activations must be a contiguous 2-D CPU tensor (nodes, batch)");
  TORCH_CHECK(labels.scalar_type() == at::kLong && labels.dim() == 1 && labels.is_contiguous() &&
                  labels.numel() == a.size(1), "labels must be contiguous int64, one per sample");
  TORCH_CHECK(n_classes >= 1, "n_classes must be positive");
  const int64_t* y = labels.data_ptr<int64_t>();
  for (int64_t b = 0; b < labels.numel(); ++b) TORCH_CHECK(y[b] >= 0 && y[b] < n_classes, "label out of range");
}

// Per class k, 0/1 masks of the batch's samples, vector by vector: masks[k · C + c] covers samples
// c·L … c·L + L − 1 (C = ⌈B / L⌉ vectors, the last one padded with zeros).
template <typename T>
std::vector<typename Vec<T>::type> class_masks(const int64_t* y, int64_t B, int64_t n_classes) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::L;
  const int64_t C = (B + L - 1) / L;
  std::vector<V> masks(static_cast<size_t>(n_classes * C), V{});
  for (int64_t b = 0; b < B; ++b) masks[y[b] * C + b / L][b % L] = T(1);
  return masks;
}

template <typename T> inline T hsum(typename Vec<T>::type v) {
  T total = T(0);
  for (int l = 0; l < Vec<T>::L; ++l) total += v[l];
  return total;
}

at::Tensor class_sums_t(const at::Tensor& a, const at::Tensor& labels, int64_t n_classes) {
  check_class_sums(a, labels, n_classes);
  const int64_t N = a.size(0), B = a.size(1);
  auto out = at::zeros({n_classes, N}, a.options());
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "class_sums_t", [&] {
    using V = typename Vec<scalar_t>::type;
    constexpr int L = Vec<scalar_t>::L;
    const int64_t C = (B + L - 1) / L;
    const std::vector<V> masks = class_masks<scalar_t>(labels.data_ptr<int64_t>(), B, n_classes);
    const scalar_t* src = a.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / std::max<int64_t>(B, 1)), [&](int64_t n0, int64_t n1) {
      std::vector<V> row(static_cast<size_t>(C)), acc(static_cast<size_t>(n_classes));
      for (int64_t n = n0; n < n1; ++n) {
        const scalar_t* r = src + n * B;
        for (int64_t c = 0; c < C; ++c) {  // max(a, 0), the tail zero-padded
          V v{};
          if ((c + 1) * L <= B) v = loadu<scalar_t>(r + c * L);
          else for (int64_t b = c * L; b < B; ++b) v[b - c * L] = r[b];
          row[c] = v > V{} ? v : V{};
        }
        for (int64_t k = 0; k < n_classes; ++k) {
          const V* m = masks.data() + k * C;
          V s{};
          for (int64_t c = 0; c < C; ++c) s += row[c] * m[c];
          acc[k] = s;
        }
        for (int64_t k = 0; k < n_classes; ++k) dst[k * N + n] = hsum<scalar_t>(acc[k]);
      }
    });
  });
  return out;
}

// Its backward: grad_a[n, b] = a[n, b] > 0 ? grad[y_b, n] : 0 (relu's subgradient at 0).
at::Tensor class_sums_t_backward(const at::Tensor& grad, const at::Tensor& a, const at::Tensor& labels) {
  const int64_t n_classes = grad.dim() == 2 ? grad.size(0) : 0;
  check_class_sums(a, labels, std::max<int64_t>(n_classes, 1));
  TORCH_CHECK(grad.device().is_cpu() && grad.dim() == 2 && grad.size(1) == a.size(0) &&
                  grad.scalar_type() == a.scalar_type(), "grad must be (classes, nodes) of the activations' dtype");
  const at::Tensor g = grad.contiguous();
  const int64_t N = a.size(0), B = a.size(1);
  auto out = at::empty_like(a);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "class_sums_t_backward", [&] {
    using V = typename Vec<scalar_t>::type;
    constexpr int L = Vec<scalar_t>::L;
    const int64_t C = (B + L - 1) / L;
    const std::vector<V> masks = class_masks<scalar_t>(labels.data_ptr<int64_t>(), B, n_classes);
    const scalar_t* src = a.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, N, std::max<int64_t>(1, 16384 / std::max<int64_t>(B, 1)), [&](int64_t n0, int64_t n1) {
      std::vector<V> column(static_cast<size_t>(n_classes));
      for (int64_t n = n0; n < n1; ++n) {
        for (int64_t k = 0; k < n_classes; ++k) column[k] = gp[k * N + n] + V{};  // broadcast
        const scalar_t* r = src + n * B;
        scalar_t* o = dst + n * B;
        for (int64_t c = 0; c < C; ++c) {
          V spread{};  // each sample's own class's gradient (the masks are 0/1: exact)
          for (int64_t k = 0; k < n_classes; ++k) spread += column[k] * masks[k * C + c];
          if ((c + 1) * L <= B) {
            const V v = loadu<scalar_t>(r + c * L);
            storeu<scalar_t>(o + c * L, v > V{} ? spread : V{});
          } else {
            for (int64_t b = c * L; b < B; ++b) o[b] = r[b] > scalar_t(0) ? spread[b - c * L] : scalar_t(0);
          }
        }
      }
    });
  });
  return out;
}

}  // namespace

// Denormal floats flushed to zero (flush-to-zero and denormals-are-zero) on the calling thread
// and on every thread of the OpenMP pool, or not: the setting is per thread, and
// torch.set_flush_denormal sets the caller's only, so half of a 2-thread product still went
// through the slow denormal path. Called from Python through ctypes (a setting, not a tensor
// operator). Returns the calling thread's previous setting: 1 on, 0 off, -1 unknown (not x86).
extern "C" int dendritic_flush_denormals(int on) {
#if defined(__SSE__)
  const int before = (_mm_getcsr() & 0x8040) == 0x8040 ? 1 : 0;  // FTZ (bit 15) and DAZ (bit 6)
#else
  const int before = -1;
#endif
  const bool flush = on != 0;
  at::globalContext().setFlushDenormal(flush);
#if defined(_OPENMP)
  // as many threads as the machine has cores at least, so that a pool grown later (a thread
  // count raised during training) finds its threads already set
#pragma omp parallel num_threads(std::max(at::get_num_threads(), omp_get_num_procs()))
  at::globalContext().setFlushDenormal(flush);
#endif
  return before;
}

// Schemas: what torch.compile, torch.export and the dispatcher know of each operator. Tensors
// marked (a!) are written in place. Activations are feature-major: (features, batch).
TORCH_LIBRARY(dendritic, m) {
  m.def("spmm_t(Tensor h, Tensor weight, Tensor indices, Tensor offsets, int n_out) -> Tensor");
  m.def("sddmm_t(Tensor grad_out, Tensor h, Tensor indices, Tensor offsets) -> Tensor");
  m.def("transpose_blocked(Tensor indices, Tensor offsets, int n_in, int block) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "spmm_t_transposed(Tensor grad_out, Tensor weight, Tensor starts, Tensor rows, Tensor perm, Tensor fan_out, "
      "int n_in, int n_blocks) -> Tensor");
  m.def(
      "dendritic_layer(Tensor x, Tensor weight, Tensor indices, Tensor offsets, Tensor bias_d, Tensor weight_s, "
      "Tensor bias_s, int per_soma, float slope, bool keep) -> (Tensor, Tensor)");
  m.def(
      "dendritic_layer_backward(Tensor grad_out, Tensor out, Tensor dendrites, Tensor x, Tensor weight, "
      "Tensor indices, Tensor offsets, Tensor weight_s, int per_soma, float slope, bool need_grad_x, "
      "Tensor? grad_dendrites=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "sparse_linear_t(Tensor h, Tensor weight, Tensor indices, Tensor offsets, Tensor t_starts, Tensor t_rows, "
      "Tensor t_perm, Tensor t_fan_out, int n_out, int n_blocks) -> Tensor");
  m.def(
      "dendritic_layer_t(Tensor x, Tensor weight, Tensor indices, Tensor offsets, Tensor t_starts, Tensor t_rows, "
      "Tensor t_perm, Tensor t_fan_out, int n_blocks, Tensor bias_d, Tensor weight_s, Tensor bias_s, int per_soma, "
      "float slope, bool keep) -> (Tensor, Tensor)");
  m.def(
      "dendritic_layer_ad(Tensor x, Tensor weight, Tensor bias_d, Tensor weight_s, Tensor bias_s, Tensor indices, "
      "Tensor offsets, Tensor t_starts, Tensor t_rows, Tensor t_perm, Tensor t_fan_out, int n_blocks, int per_soma, "
      "float slope, bool batch_major) -> Tensor");
  m.def(
      "sparse_linear_ad(Tensor x, Tensor weight, Tensor? bias, Tensor indices, Tensor offsets, Tensor t_starts, "
      "Tensor t_rows, Tensor t_perm, Tensor t_fan_out, int n_out, int n_blocks, bool batch_major) -> Tensor");
  m.def("transpose_2d(Tensor x) -> Tensor");
  m.def("class_sums_t(Tensor a, Tensor labels, int n_classes) -> Tensor");
  m.def("class_sums_t_backward(Tensor grad, Tensor a, Tensor labels) -> Tensor");
  m.def(
      "adam_step_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, int step, "
      "float lr, float beta1, float beta2, float eps, bool keras=False) -> ()");
  m.def("head_forward(Tensor h, Tensor weight, Tensor bias, Tensor target) -> (Tensor, Tensor, Tensor)");
  m.def(
      "head_backward(Tensor grad_loss, Tensor probs, Tensor h, Tensor weight, Tensor target, bool need_h) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "train_steps(Tensor x_train, Tensor y_train, Tensor order, int batch, Tensor(a!)[] params, "
      "Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, Tensor indices, Tensor offsets, int per_soma, float slope, "
      "int step0, float lr, float beta1, float beta2, float eps, bool keras, Tensor(d!) loss_sum, Tensor(e!) correct) "
      "-> ()");
  m.def(
      "evaluate_dann(Tensor x, Tensor y, int batch, Tensor[] params, Tensor indices, Tensor offsets, int per_soma, "
      "float slope) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(dendritic, CPU, m) {
  m.impl("spmm_t", &spmm_t);
  m.impl("sddmm_t", &sddmm_t);
  m.impl("transpose_blocked", &transpose_blocked);
  m.impl("spmm_t_transposed", &spmm_t_transposed);
  m.impl("dendritic_layer", &dendritic_layer);
  m.impl("dendritic_layer_backward", &dendritic_layer_backward);
  m.impl("sparse_linear_t", &sparse_linear_t);
  m.impl("dendritic_layer_t", &dendritic_layer_t);
  m.impl("transpose_2d", &transpose_2d);
  m.impl("class_sums_t", &class_sums_t);
  m.impl("class_sums_t_backward", &class_sums_t_backward);
  m.impl("adam_step_", &adam_step_);
  m.impl("head_forward", &head_forward);
  m.impl("head_backward", &head_backward);
  m.impl("train_steps", &train_steps);
  m.impl("evaluate_dann", &evaluate_dann);
}

// The autograd-in-C++ operators: composites of the operators above, differentiated by their
// torch::autograd::Function (CPU or fake tensors alike).
TORCH_LIBRARY_IMPL(dendritic, CompositeImplicitAutograd, m) {
  m.impl("dendritic_layer_ad", &dendritic_layer_ad);
  m.impl("sparse_linear_ad", &sparse_linear_ad);
}
