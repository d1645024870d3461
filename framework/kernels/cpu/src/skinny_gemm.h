// Products of a few rows (M <= kMaxRows) against a large weight: the decode step's products.
//
// Why not the BLAS: a general sgemm packs the weight into a buffer before it computes, so for
// M = 8 rows it moves every weight byte three times; these kernels read the weight once, straight
// from where it lies, keeping all M rows' partial sums in registers. At M = 8 the products are
// then as fast as at M = 1: bound by reading the weight from memory.
//
// Two layouts (row-major, fp32):
//   NN: y[M, n0:n1] = x[M, K] @ w[K, n0:n1]      (w stored [K, N], ldw = N)
//   NT: y[M, n0:n1] = x[M, K] @ w[n0:n1, K]^T    (w stored [N, K], ldw = K; a tied head)
// NN walks the weight in panels of a few rows, one register block of columns after the other,
// so each row of the panel is read in ascending addresses (what hardware prefetchers follow);
// the partial sums are kept in y between panels. NT takes a few weight rows at a time and
// reduces each row's vector sums at the end. Either way MR rows times RegisterBlock(MR) vectors
// (or weight rows) of partial sums fill the registers.

#ifndef DEEPDIVE_KERNELS_SKINNY_GEMM_H_
#define DEEPDIVE_KERNELS_SKINNY_GEMM_H_

#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace deepdive {
namespace skinny {

#if defined(__AVX512F__)
constexpr int kLanes = 16;     // floats per vector register
constexpr int kAccRegs = 24;   // registers for partial sums (of 32)
#else
constexpr int kLanes = 8;      // AVX2 (or whatever the compiler makes of 32-byte vectors)
constexpr int kAccRegs = 12;   // of 16
#endif
constexpr int kMaxRows = 8;
// NN panel height: enough rows that loading and storing the partial sums is cheap, few enough
// that the panel's rows stream well (one row can be a new 4 KB page each).
constexpr int64_t PanelNN(int rows) { return rows < 8 ? 4 * rows : 32; }
constexpr int64_t kAheadNN = 2;  // NN: prefetch the columns this many register blocks ahead
constexpr int64_t kAheadNT = 2;  // NT: prefetch the weight rows this many blocks ahead

typedef float Vec __attribute__((vector_size(kLanes * 4)));
typedef float VecU __attribute__((vector_size(kLanes * 4), aligned(4)));  // unaligned access

inline Vec Load(const float* p) { return *reinterpret_cast<const VecU*>(p); }
inline void Store(float* p, Vec v) { *reinterpret_cast<VecU*>(p) = v; }
inline Vec Splat(float x) { return Vec{} + x; }
inline float Sum(Vec v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps(static_cast<__m512>(v));
#else
  float s = 0.0f;
#pragma GCC unroll 16
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
#endif
}

// Vectors of columns (NN) or weight rows (NT) per register block for `rows` rows of x.
constexpr int RegisterBlock(int rows) {
  return kAccRegs / rows < 1 ? 1 : (kAccRegs / rows > 8 ? 8 : kAccRegs / rows);
}

// y[MR, n:n+NV*kLanes] (+)= x[MR, k0:k1] @ w[k0:k1, n:n+NV*kLanes]
template <int MR, int NV>
inline void BlockNN(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y,
                    int64_t ldy, int64_t n, int64_t k0, int64_t k1) {
  Vec acc[MR][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = k0 == 0 ? Vec{} : Load(y + m * ldy + n + v * kLanes);
  }
  for (int64_t k = k0; k < k1; ++k) {
    const float* row = w + k * ldw + n;
    Vec wv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      if (MR > 1) __builtin_prefetch(row + (kAheadNN * NV + v) * kLanes);  // columns ahead
      wv[v] = Load(row + v * kLanes);
    }
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const Vec xm = Splat(x[m * ldx + k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[m][v] += xm * wv[v];
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) Store(y + m * ldy + n + v * kLanes, acc[m][v]);
  }
}

template <int MR>
void NN(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
        int64_t k_total, int64_t n0, int64_t n1) {
  constexpr int NV = RegisterBlock(MR);
  constexpr int64_t wide = NV * kLanes;
  constexpr int64_t panel = PanelNN(MR);
  for (int64_t k0 = 0; k0 < k_total; k0 += panel) {
    const int64_t k1 = k0 + panel < k_total ? k0 + panel : k_total;
    int64_t n = n0;
    for (; n + wide <= n1; n += wide) BlockNN<MR, NV>(x, ldx, w, ldw, y, ldy, n, k0, k1);
    for (; n + kLanes <= n1; n += kLanes) BlockNN<MR, 1>(x, ldx, w, ldw, y, ldy, n, k0, k1);
    for (; n < n1; ++n) {  // the last few columns
      for (int m = 0; m < MR; ++m) {
        float s = k0 == 0 ? 0.0f : y[m * ldy + n];
        for (int64_t k = k0; k < k1; ++k) s += x[m * ldx + k] * w[k * ldw + n];
        y[m * ldy + n] = s;
      }
    }
  }
}

// y[MR, n:n+NR] = x[MR, :] @ w[n:n+NR, :]^T
template <int MR, int NR>
inline void BlockNT(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y,
                    int64_t ldy, int64_t n, int64_t k_total) {
  Vec acc[MR][NR];
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) acc[m][r] = Vec{};
  }
  const float* ahead = w + (n + kAheadNT * NR) * ldw;  // rows read kAheadNT blocks from now
  int64_t k = 0;
  for (; k + kLanes <= k_total; k += kLanes) {
    Vec wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      __builtin_prefetch(ahead + r * ldw + k);  // past the end is harmless: only a hint
      wv[r] = Load(w + (n + r) * ldw + k);
    }
#pragma GCC unroll 8
    for (int m = 0; m < MR; ++m) {
      const Vec xm = Load(x + m * ldx + k);
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[m][r] += xm * wv[r];
    }
  }
  for (int m = 0; m < MR; ++m) {
    for (int r = 0; r < NR; ++r) {
      float s = Sum(acc[m][r]);
      for (int64_t kk = k; kk < k_total; ++kk) s += x[m * ldx + kk] * w[(n + r) * ldw + kk];
      y[m * ldy + n + r] = s;
    }
  }
}

template <int MR>
void NT(const float* x, int64_t ldx, const float* w, int64_t ldw, float* y, int64_t ldy,
        int64_t k_total, int64_t n0, int64_t n1) {
  constexpr int NR = RegisterBlock(MR);
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) BlockNT<MR, NR>(x, ldx, w, ldw, y, ldy, n, k_total);
  for (; n < n1; ++n) BlockNT<MR, 1>(x, ldx, w, ldw, y, ldy, n, k_total);
}

using Kernel = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t,
                        int64_t, int64_t);

// The kernel for `rows` (1..kMaxRows) rows.
inline Kernel Pick(bool transposed, int64_t rows) {
  static constexpr Kernel kNN[kMaxRows] = {NN<1>, NN<2>, NN<3>, NN<4>,
                                           NN<5>, NN<6>, NN<7>, NN<8>};
  static constexpr Kernel kNT[kMaxRows] = {NT<1>, NT<2>, NT<3>, NT<4>,
                                           NT<5>, NT<6>, NT<7>, NT<8>};
  return (transposed ? kNT : kNN)[rows - 1];
}

}  // namespace skinny
}  // namespace deepdive

#endif  // DEEPDIVE_KERNELS_SKINNY_GEMM_H_
