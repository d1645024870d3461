// deepdive's CPU causal attention for XLA (FFI handlers, fp32): forward and backward passes that
// never hold a T x T matrix, skip the masked upper triangle, and run their products in a CBLAS.
//
// Why: with XLA:CPU's own attention, the elementwise passes over the [B, H, T, T] scores and
// probabilities (mask, softmax, the transposed copies the backward products need) took more time
// than every matrix product of GPT-2 124M's training step together (T = 1024).
//
// Layout (see framework/kernels/cpu/attention.py): q [Q, T, D] and o, do, dq likewise; k, v, dk, dv
// [KV, T, D]; query head i uses key/value head i / (Q / KV) (grouped-query attention: the Q / KV
// query heads of one key/value head are consecutive). lse [Q, T] is each row's log-sum-exp of
// the scaled scores, saved by the forward pass for the backward pass.
//
// Both passes work on blocks of kBlock query rows: for rows r0..r1 only keys 0..r1 can be
// attended, so each block's scores S = scale * Q K^T are [rows, r1] (one sgemm), the softmax
// runs over each row's allowed keys, and P V (or the backward products) are sgemms again.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "blas.h"
#include "spin_pool.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using deepdive::Gemm;

namespace {

constexpr int64_t kBlock = 64;

// exp as straight-line arithmetic on 8 lanes at once (GCC/Clang vector extensions). std::exp is
// a libm call per element unless -ffast-math, and -ffast-math's finite-math assumption makes NaN
// and inf undefined, which the trainer's non-finite-loss stop relies on. Cephes' single-precision
// range reduction and polynomial (relative error < 2e-7 on the finite range); exp(NaN) = NaN,
// exp(x > 88) = +inf (true exp overflows at 88.72), exp(x < -87.34) = 0 (below FLT_MIN).
typedef float F8 __attribute__((vector_size(32)));
typedef int32_t I8 __attribute__((vector_size(32)));

inline F8 Exp8(F8 x) {
  const F8 hi = F8{} + 88.0f, lo = F8{} + -87.33654475f;
  F8 xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;  // NaN passes both clamps (comparisons with NaN are false)
  const F8 t = xc * 1.44269504088896341f + 0.5f;
  I8 n = __builtin_convertvector(t, I8);  // truncates toward zero: floor for t < 0 needs -1
  n -= (__builtin_convertvector(n, F8) > t) ? 1 : 0;
  n = (x == x) ? n : 0;  // NaN: keep the exponent defined (the result is NaN anyway)
  const F8 nf = __builtin_convertvector(n, F8);
  F8 r = xc - nf * 0.693359375f;  // ln 2 split in two for accuracy
  r = r - nf * -2.12194440e-4f;
  F8 poly = F8{} + 1.9875691500e-4f;
  poly = poly * r + 1.3981999507e-3f;
  poly = poly * r + 8.3334519073e-3f;
  poly = poly * r + 4.1665795894e-2f;
  poly = poly * r + 1.6666665459e-1f;
  poly = poly * r + 5.0000001201e-1f;
  poly = poly * r * r + r + 1.0f;
  F8 y = poly * reinterpret_cast<F8>((n + 127) << 23);
  y = x < lo ? F8{} : y;
  return x > hi ? F8{} + __builtin_inff() : y;
}

// max(s[0..count)), count >= 1, as std::max folds it (a NaN element is passed over; the exp of
// it is NaN, so a NaN score still reaches the output).
float RowMax(const float* s, int64_t count) {
  F8 m8 = F8{} + s[0];
  int64_t j = 0;
  for (; j + 8 <= count; j += 8) {
    F8 x;
    __builtin_memcpy(&x, s + j, sizeof x);
    m8 = m8 < x ? x : m8;
  }
  float m = m8[0];
  for (int lane = 1; lane < 8; ++lane) m = std::max(m, m8[lane]);
  for (; j < count; ++j) m = std::max(m, s[j]);
  return m;
}

// s[j] = exp(s[j] - shift) for j < count; returns their sum.
float ExpShifted(float* s, int64_t count, float shift) {
  F8 acc{};
  int64_t j = 0;
  for (; j + 8 <= count; j += 8) {
    F8 x;
    __builtin_memcpy(&x, s + j, sizeof x);
    x = Exp8(x - shift);
    __builtin_memcpy(s + j, &x, sizeof x);
    acc += x;
  }
  if (j < count) {  // the tail, through the same arithmetic (padding lanes give exp(-inf) = 0)
    F8 x = F8{} - __builtin_inff();
    for (int64_t i = j; i < count; ++i) x[i - j] = s[i];
    x = Exp8(x - shift);
    for (int64_t i = j; i < count; ++i) s[i] = x[i - j];
    acc += x;
  }
  float sum = 0.0f;
  for (int lane = 0; lane < 8; ++lane) sum += acc[lane];
  return sum;
}

struct Dims {
  int64_t q_heads, kv_heads, t, d, group, blocks;
};

ffi::Error CheckDims(ffi::Buffer<ffi::F32>& q, ffi::Buffer<ffi::F32>& k,
                     ffi::Buffer<ffi::F32>& v, Dims* dims) {
  if (!deepdive::BlasReady()) {
    return ffi::Error::Internal("deepdive cpu_attention: no BLAS was registered");
  }
  auto qd = q.dimensions(), kd = k.dimensions(), vd = v.dimensions();
  if (qd.size() != 3 || kd.size() != 3 || vd.size() != 3) {
    return ffi::Error::InvalidArgument("deepdive cpu_attention: q, k, v must be 3-D");
  }
  if (kd[0] != vd[0] || kd[1] != vd[1] || kd[2] != vd[2] || qd[1] != kd[1] || qd[2] != kd[2] ||
      kd[0] == 0 || qd[0] % kd[0] != 0) {
    return ffi::Error::InvalidArgument("deepdive cpu_attention: q, k, v shapes do not match");
  }
  *dims = Dims{qd[0], kd[0], qd[1], qd[2], qd[0] / kd[0], (qd[1] + kBlock - 1) / kBlock};
  return ffi::Error::Success();
}

float* Scratch(std::vector<float>& buffer, int64_t size) {
  if (static_cast<int64_t>(buffer.size()) < size) buffer.resize(size);
  return buffer.data();
}

// Row r of a block (absolute query position pos) may attend keys 0..pos: s[j] = exp(s[j] - shift)
// for j <= pos, zeros beyond pos up to width; returns the sum of the exponentials.
float CausalExp(float* s, int64_t pos, int64_t width, float shift) {
  const float sum = ExpShifted(s, pos + 1, shift);
  for (int64_t j = pos + 1; j < width; ++j) s[j] = 0.0f;
  return sum;
}

// Turns the scaled scores s[0..pos] into probabilities in place (zeros beyond pos, up to width)
// and returns the row's log-sum-exp.
float SoftmaxRow(float* s, int64_t pos, int64_t width) {
  const float m = RowMax(s, pos + 1);
  const float sum = CausalExp(s, pos, width, m);
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j <= pos; ++j) s[j] *= inv;
  return m + std::log(sum);
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                       ffi::Buffer<ffi::F32> v, ffi::ResultBuffer<ffi::F32> o,
                       ffi::ResultBuffer<ffi::F32> lse, float scale) {
  Dims n;
  if (auto err = CheckDims(q, k, v, &n); err.failure()) return err;
  const float *qp = q.typed_data(), *kp = k.typed_data(), *vp = v.typed_data();
  float *op = o->typed_data(), *lp = lse->typed_data();
  const int64_t head = n.t * n.d;
  // items: (query head, block), largest blocks first so the pool ends evenly
  deepdive::ParallelFor(pool, n.q_heads * n.blocks, [&](int64_t item) {
    thread_local std::vector<float> scores;
    const int64_t i = item % n.q_heads, blk = n.blocks - 1 - item / n.q_heads;
    const int64_t r0 = blk * kBlock, r1 = std::min(n.t, r0 + kBlock), rows = r1 - r0;
    const float* qi = qp + i * head + r0 * n.d;
    const float* kj = kp + (i / n.group) * head;
    const float* vj = vp + (i / n.group) * head;
    float* s = Scratch(scores, rows * r1);
    Gemm(false, true, rows, r1, n.d, scale, qi, n.d, kj, n.d, 0.0f, s, r1);  // [rows, r1]
    for (int64_t r = 0; r < rows; ++r) {
      lp[i * n.t + r0 + r] = SoftmaxRow(s + r * r1, r0 + r, r1);
    }
    Gemm(false, false, rows, n.d, r1, 1.0f, s, r1, vj, n.d, 0.0f, op + i * head + r0 * n.d, n.d);
  });
  return ffi::Error::Success();
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                        ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> o,
                        ffi::Buffer<ffi::F32> lse, ffi::Buffer<ffi::F32> d_o,
                        ffi::ResultBuffer<ffi::F32> dq, ffi::ResultBuffer<ffi::F32> dk,
                        ffi::ResultBuffer<ffi::F32> dv, float scale) {
  Dims n;
  if (auto err = CheckDims(q, k, v, &n); err.failure()) return err;
  const float *qp = q.typed_data(), *kp = k.typed_data(), *vp = v.typed_data();
  const float *outp = o.typed_data(), *lp = lse.typed_data(), *dop = d_o.typed_data();
  float *dqp = dq->typed_data(), *dkp = dk->typed_data(), *dvp = dv->typed_data();
  const int64_t head = n.t * n.d;
  // items: key/value heads; each owns its dk, dv and the dq of its group of query heads
  deepdive::ParallelFor(pool, n.kv_heads, [&](int64_t j) {
    thread_local std::vector<float> probs, dprobs;
    const float* kj = kp + j * head;
    const float* vj = vp + j * head;
    float* dkj = dkp + j * head;
    float* dvj = dvp + j * head;
    std::fill(dkj, dkj + head, 0.0f);
    std::fill(dvj, dvj + head, 0.0f);
    for (int64_t i = j * n.group; i < (j + 1) * n.group; ++i) {
      for (int64_t blk = 0; blk < n.blocks; ++blk) {
        const int64_t r0 = blk * kBlock, r1 = std::min(n.t, r0 + kBlock), rows = r1 - r0;
        const int64_t at = i * head + r0 * n.d;
        float* p = Scratch(probs, rows * r1);
        float* dp = Scratch(dprobs, rows * r1);
        Gemm(false, true, rows, r1, n.d, scale, qp + at, n.d, kj, n.d, 0.0f, p, r1);
        for (int64_t r = 0; r < rows; ++r) {  // the forward pass's probabilities, again
          CausalExp(p + r * r1, r0 + r, r1, lp[i * n.t + r0 + r]);
        }
        // dv[0:r1] += p^T do;  dp = do v[0:r1]^T
        Gemm(true, false, r1, n.d, rows, 1.0f, p, r1, dop + at, n.d, 1.0f, dvj, n.d);
        Gemm(false, true, rows, r1, n.d, 1.0f, dop + at, n.d, vj, n.d, 0.0f, dp, r1);
        for (int64_t r = 0; r < rows; ++r) {
          const float* dor = dop + at + r * n.d;
          const float* orow = outp + at + r * n.d;
          float delta = 0.0f;  // rowsum(do * o) = rowsum(p * dp)
#pragma omp simd reduction(+ : delta)
          for (int64_t c = 0; c < n.d; ++c) delta += dor[c] * orow[c];
          float* prow = p + r * r1;
          const float* dprow = dp + r * r1;
          for (int64_t c = 0; c < r1; ++c) prow[c] = prow[c] * (dprow[c] - delta) * scale;
        }
        // p now holds dS. dq = dS k[0:r1];  dk[0:r1] += dS^T q
        Gemm(false, false, rows, n.d, r1, 1.0f, p, r1, kj, n.d, 0.0f, dqp + at, n.d);
        Gemm(true, false, r1, n.d, rows, 1.0f, p, r1, qp + at, n.d, 1.0f, dkj, n.d);
      }
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DeepdiveCpuAttentionFwd, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(DeepdiveCpuAttentionBwd, BackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale"));

namespace {

// One decode step (one new query per row) against the KV cache, reading only the cache slots
// below `limit` (the slots written so far) instead of the whole fixed-size cache.
// q [BK, G, D] (the G query heads of key/value head bk), kt [BK, D, S] (keys transposed),
// v [BK, S, D], valid u8 [B, S] (slots this row may see), limit i32 [] -> o [BK, G, D].
ffi::Error DecodeImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> kt,
                      ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::U8> valid,
                      ffi::Buffer<ffi::S32> limit, ffi::ResultBuffer<ffi::F32> o, float scale) {
  auto qd = q.dimensions(), kd = kt.dimensions(), vd = v.dimensions(), md = valid.dimensions();
  if (qd.size() != 3 || kd.size() != 3 || vd.size() != 3 || md.size() != 2 || kd[0] != qd[0] ||
      vd[0] != qd[0] || kd[1] != qd[2] || vd[2] != qd[2] || vd[1] != kd[2] || md[1] != kd[2] ||
      md[0] == 0 || qd[0] % md[0] != 0) {
    return ffi::Error::InvalidArgument("deepdive cpu_attention decode: shapes do not match");
  }
  const int64_t bk = qd[0], g = qd[1], d = qd[2], s = kd[2], kv_per_row = bk / md[0];
  const int64_t n = std::min<int64_t>(std::max<int32_t>(limit.typed_data()[0], 0), s);
  const float *qp = q.typed_data(), *kp = kt.typed_data(), *vp = v.typed_data();
  const uint8_t* mp = valid.typed_data();
  float* op = o->typed_data();
  auto body = [&](int64_t item) {
    thread_local std::vector<float> buffer;
    float* scores = Scratch(buffer, g * n);
    const float* qi = qp + item * g * d;
    const float* ki = kp + item * d * s;
    const float* vi = vp + item * s * d;
    const uint8_t* mi = mp + (item / kv_per_row) * s;
    std::fill(scores, scores + g * n, 0.0f);
    for (int64_t c = 0; c < d; ++c) {  // scores[h, :] += q[h, c] * kt[c, :]
      const float* __restrict krow = ki + c * s;
      for (int64_t h = 0; h < g; ++h) {
        const float qc = qi[h * d + c] * scale;
        float* __restrict sh = scores + h * n;
        for (int64_t j = 0; j < n; ++j) sh[j] += qc * krow[j];
      }
    }
    for (int64_t h = 0; h < g; ++h) {
      float* sh = scores + h * n;
      float m = -3.0e38f;
      for (int64_t j = 0; j < n; ++j) m = mi[j] ? std::max(m, sh[j]) : m;
      for (int64_t j = 0; j < n; ++j) sh[j] = mi[j] ? sh[j] : -__builtin_inff();
      const float sum = ExpShifted(sh, n, m);  // masked slots: exp(-inf) = 0
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      float* __restrict out = op + (item * g + h) * d;
      std::fill(out, out + d, 0.0f);
      for (int64_t j = 0; j < n; ++j) {  // out += p[j] * v[j, :]
        const float pj = sh[j] * inv;
        if (pj == 0.0f) continue;
        const float* __restrict vrow = vi + j * d;
        for (int64_t c = 0; c < d; ++c) out[c] += pj * vrow[c];
      }
    }
  };
  // A tiny step (the first tokens of a small model) costs less than a hand-over to a helper.
  if (bk * g * n * d < (int64_t{1} << 14)) {
    for (int64_t item = 0; item < bk; ++item) body(item);
  } else {
    deepdive::SpinPool::Get(pool.num_threads()).Run(bk, body);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DeepdiveCpuAttentionDecode, DecodeImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale"));
