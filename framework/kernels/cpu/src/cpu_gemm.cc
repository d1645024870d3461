// deepdive's CPU matrix product for XLA: an XLA FFI handler that calls a CBLAS sgemm, or for
// products of at most 8 rows (decoding) the kernels of skinny_gemm.h.
//
// Why: XLA:CPU's own dot kernels are slower than an optimised BLAS on the shapes of small-model
// training (the tied LM head), and a transposed operand makes XLA materialise a transposed copy
// first; CBLAS takes the transposition as a flag. A BLAS product is split into one block of rows
// (or, when skinny, of columns) per thread of XLA's pool; a decode product into contiguous
// stretches of the weight over the helpers of spin_pool.h.
//
// Contract (see framework/kernels/cpu/gemm.py): c[M, N] = op(a) @ op(b), fp32, row-major, where
// op(a) = a ([M, K]) or a^T (a stored [K, M]) and op(b) = b ([K, N]) or b^T (b stored [N, K]).
// Leading dimensions of a and b beyond the last two are not allowed (callers flatten).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "blas.h"
#include "skinny_gemm.h"
#include "spin_pool.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using deepdive::Gemm;

namespace {

struct Problem {
  bool trans_a, trans_b;
  int64_t m, n, k;
  const float* a;  // stored [M, K] (or [K, M] when trans_a)
  const float* b;  // stored [K, N] (or [N, K] when trans_b)
  float* c;        // [M, N]
  int64_t chunks;
  bool split_rows;  // chunks over M (else over N)
};

// Computes chunk i of the output: a block of rows, or of columns, of c.
void RunChunk(const Problem& p, int64_t i) {
  const int64_t total = p.split_rows ? p.m : p.n;
  const int64_t lo = total * i / p.chunks, hi = total * (i + 1) / p.chunks;
  if (hi <= lo) return;
  const int64_t lda = p.trans_a ? p.m : p.k, ldb = p.trans_b ? p.k : p.n;
  if (p.split_rows) {
    const float* a = p.trans_a ? p.a + lo : p.a + lo * lda;
    Gemm(p.trans_a, p.trans_b, hi - lo, p.n, p.k, 1.0f, a, lda, p.b, ldb, 0.0f, p.c + lo * p.n,
         p.n);
    return;
  }
  const float* b = p.trans_b ? p.b + lo * ldb : p.b + lo;
  Gemm(p.trans_a, p.trans_b, p.m, hi - lo, p.k, 1.0f, p.a, lda, b, ldb, 0.0f, p.c + lo, p.n);
}

// A product of at most skinny::kMaxRows rows (see skinny_gemm.h), over the spinning helpers of
// SpinPool. Each chunk reads one contiguous stretch of the weight, the access pattern memory
// streams fastest: a block of rows of a transposed weight [N, K] (a block of outputs), or a
// block of rows of a weight [K, N] (a partial sum over K, the partial sums added at the end).
void RunSkinny(const Problem& p, int64_t threads) {
  const auto kernel = deepdive::skinny::Pick(p.trans_b, p.m);
  const int64_t weight_bytes = 4 * p.n * p.k;
  constexpr int64_t kChunkBytes = 256 << 10;  // below this a chunk is not worth a hand-over
  const int64_t chunks = std::clamp<int64_t>(weight_bytes / kChunkBytes, 1, threads);
  auto& pool = deepdive::SpinPool::Get(static_cast<int>(threads));
  if (p.trans_b) {
    pool.Run(chunks, [&](int64_t i) {
      const int64_t lo = p.n * i / chunks, hi = p.n * (i + 1) / chunks;
      if (hi > lo) kernel(p.a, p.k, p.b, p.k, p.c, p.n, p.k, lo, hi);
    });
    return;
  }
  thread_local std::vector<float> partial;  // the caller's: chunk i > 0 sums into block i - 1
  const int64_t size = p.m * p.n;
  const int64_t needed = (chunks - 1) * size;
  if (static_cast<int64_t>(partial.size()) < needed) partial.resize(needed);
  float* const scratch = partial.data();  // (a helper thread would see its own `partial`)
  pool.Run(chunks, [&](int64_t i) {
    const int64_t lo = p.k * i / chunks, hi = p.k * (i + 1) / chunks;
    float* out = i == 0 ? p.c : scratch + (i - 1) * size;
    if (hi > lo) {
      kernel(p.a + lo, p.k, p.b + lo * p.n, p.n, out, p.n, hi - lo, 0, p.n);
    } else {
      std::fill(out, out + size, 0.0f);
    }
  });
  for (int64_t i = 1; i < chunks; ++i) {
    const float* add = scratch + (i - 1) * size;
    for (int64_t j = 0; j < size; ++j) p.c[j] += add[j];
  }
}

ffi::Error GemmImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                    ffi::ResultBuffer<ffi::F32> c, bool trans_a, bool trans_b) {
  if (!deepdive::BlasReady()) {
    return ffi::Error::Internal("deepdive cpu_gemm: no BLAS was registered");
  }
  auto ad = a.dimensions();
  auto bd = b.dimensions();
  if (ad.size() != 2 || bd.size() != 2) {
    return ffi::Error::InvalidArgument("deepdive cpu_gemm: operands must be 2-D");
  }
  Problem p;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.m = trans_a ? ad[1] : ad[0];
  p.k = trans_a ? ad[0] : ad[1];
  p.n = trans_b ? bd[0] : bd[1];
  if ((trans_b ? bd[1] : bd[0]) != p.k) {
    return ffi::Error::InvalidArgument("deepdive cpu_gemm: contracting dimensions differ");
  }
  p.a = a.typed_data();
  p.b = b.typed_data();
  p.c = c->typed_data();
  if (p.m == 0 || p.n == 0) return ffi::Error::Success();
  if (p.k == 0) {
    std::fill(p.c, p.c + p.m * p.n, 0.0f);
    return ffi::Error::Success();
  }
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  if (!p.trans_a && p.m <= deepdive::skinny::kMaxRows) {
    RunSkinny(p, threads);
    return ffi::Error::Success();
  }
  // Small products are not worth a second thread; skinny ones split over N.
  p.chunks = 2.0 * p.m * p.n * p.k < 2e6 ? 1 : threads;
  p.split_rows = p.m >= 64 * p.chunks;
  deepdive::ParallelFor(pool, p.chunks, [&p](int64_t i) { RunChunk(p, i); });
  return ffi::Error::Success();
}

// A materialisation point: the output aliases the input (XLA gives both the same buffer, so
// nothing is copied), but as a custom call it is a fusion boundary: XLA computes the operand once
// instead of re-fusing its elementwise producers into every consumer.
ffi::Error MaterializeImpl(ffi::AnyBuffer in, ffi::Result<ffi::AnyBuffer> out) {
  if (in.untyped_data() != out->untyped_data()) {
    std::memcpy(out->untyped_data(), in.untyped_data(), in.size_bytes());
  }
  return ffi::Error::Success();
}

}  // namespace

extern "C" void deepdive_set_blas(void* sgemm, int int_bits) {
  deepdive::g_sgemm = sgemm;
  deepdive::g_int_bits = int_bits;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(DeepdiveCpuGemm, GemmImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("trans_a")
                                  .Attr<bool>("trans_b"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(DeepdiveCpuMaterialize, MaterializeImpl,
                              ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().Ret<ffi::AnyBuffer>());
