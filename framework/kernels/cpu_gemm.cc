// deepdive's CPU matrix product for XLA: an XLA FFI handler that calls a CBLAS sgemm/sgemv.
//
// Why: XLA:CPU's own dot kernels are slower than an optimised BLAS on the shapes of small-model
// training (the tied LM head) and decoding (skinny M = 1..8 products), and a transposed operand
// makes XLA materialise a transposed copy first; CBLAS takes the transposition as a flag.
// The BLAS is not linked here: Python resolves a CBLAS `sgemm`/`sgemv` (by default a private,
// single-threaded copy of the OpenBLAS that numpy ships) and hands the function pointers over
// with deepdive_set_blas(). Parallelism comes from XLA's own intra-op thread pool (a product is
// split into one block of rows or columns per pool thread), so no second set of spinning BLAS
// threads competes with XLA's for the cores.
//
// Contract (see framework/cpu_gemm.py): c[M, N] = op(a) @ op(b), fp32, row-major, where
// op(a) = a ([M, K]) or a^T (a stored [K, M]) and op(b) = b ([K, N]) or b^T (b stored [N, K]).
// Leading dimensions of a and b beyond the last two are not allowed (callers flatten).

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// CBLAS enums (cblas.h): row-major order, no-transpose, transpose.
constexpr int kRowMajor = 101;
constexpr int kNoTrans = 111;
constexpr int kTrans = 112;

// Integer width of the BLAS interface: 64 for ILP64 builds (numpy's scipy_openblas64), 32 else.
using Sgemm64 = void (*)(int, int, int, int64_t, int64_t, int64_t, float, const float*, int64_t,
                         const float*, int64_t, float, float*, int64_t);
using Sgemv64 = void (*)(int, int, int64_t, int64_t, float, const float*, int64_t, const float*,
                         int64_t, float, float*, int64_t);
using Sgemm32 = void (*)(int, int, int, int32_t, int32_t, int32_t, float, const float*, int32_t,
                         const float*, int32_t, float, float*, int32_t);
using Sgemv32 = void (*)(int, int, int32_t, int32_t, float, const float*, int32_t, const float*,
                         int32_t, float, float*, int32_t);

void* g_sgemm = nullptr;
void* g_sgemv = nullptr;
int g_int_bits = 64;

void Gemm(int ta, int tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
          const float* b, int64_t ldb, float* c, int64_t ldc) {
  if (g_int_bits == 64) {
    reinterpret_cast<Sgemm64>(g_sgemm)(kRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c,
                                       ldc);
  } else {
    reinterpret_cast<Sgemm32>(g_sgemm)(kRowMajor, ta, tb, static_cast<int32_t>(m),
                                       static_cast<int32_t>(n), static_cast<int32_t>(k), 1.0f, a,
                                       static_cast<int32_t>(lda), b, static_cast<int32_t>(ldb),
                                       0.0f, c, static_cast<int32_t>(ldc));
  }
}

// y = op(mat) x, mat row-major [rows, cols] with leading dimension ld.
void Gemv(int trans, int64_t rows, int64_t cols, const float* mat, int64_t ld, const float* x,
          float* y) {
  if (g_int_bits == 64) {
    reinterpret_cast<Sgemv64>(g_sgemv)(kRowMajor, trans, rows, cols, 1.0f, mat, ld, x, 1, 0.0f,
                                       y, 1);
  } else {
    reinterpret_cast<Sgemv32>(g_sgemv)(kRowMajor, trans, static_cast<int32_t>(rows),
                                       static_cast<int32_t>(cols), 1.0f, mat,
                                       static_cast<int32_t>(ld), x, 1, 0.0f, y, 1);
  }
}

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
    Gemm(p.trans_a ? kTrans : kNoTrans, p.trans_b ? kTrans : kNoTrans, hi - lo, p.n, p.k, a, lda,
         p.b, ldb, p.c + lo * p.n, p.n);
    return;
  }
  const float* b = p.trans_b ? p.b + lo * ldb : p.b + lo;
  if (p.m == 1 && !p.trans_a) {
    if (p.trans_b) {
      Gemv(kNoTrans, hi - lo, p.k, b, ldb, p.a, p.c + lo);  // rows lo..hi of b [N, K]
    } else {
      Gemv(kTrans, p.k, hi - lo, b, ldb, p.a, p.c + lo);  // columns lo..hi of b [K, N]
    }
    return;
  }
  Gemm(p.trans_a ? kTrans : kNoTrans, p.trans_b ? kTrans : kNoTrans, p.m, hi - lo, p.k, p.a,
       lda, b, ldb, p.c + lo, p.n);
}

// Chunks are claimed from a shared counter by the calling thread and by helpers scheduled on
// XLA's pool; the caller waits only for chunks a helper has already claimed (and is running),
// so two products waiting on each other's helpers cannot deadlock a busy pool.
struct Shared {
  Problem problem;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> finished{0};
  std::mutex mu;
  std::condition_variable cv;

  void Work() {
    for (int64_t i; (i = next.fetch_add(1)) < problem.chunks;) {
      RunChunk(problem, i);
      if (finished.fetch_add(1) + 1 == problem.chunks) {
        std::lock_guard<std::mutex> lock(mu);
        cv.notify_all();
      }
    }
  }
};

ffi::Error GemmImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                    ffi::ResultBuffer<ffi::F32> c, bool trans_a, bool trans_b) {
  if (g_sgemm == nullptr || g_sgemv == nullptr) {
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
    for (int64_t i = 0; i < p.m * p.n; ++i) p.c[i] = 0.0f;
    return ffi::Error::Success();
  }
  // Small products are not worth a second thread; skinny ones (decode) split over N.
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const double flops = 2.0 * p.m * p.n * p.k;
  p.chunks = flops < 2e6 ? 1 : threads;
  p.split_rows = p.m >= 64 * p.chunks;
  if (p.chunks == 1) {
    RunChunk(p, 0);
    return ffi::Error::Success();
  }
  auto shared = std::make_shared<Shared>();
  shared->problem = p;
  for (int64_t i = 1; i < p.chunks; ++i) {
    pool.Schedule([shared] { shared->Work(); });
  }
  shared->Work();
  std::unique_lock<std::mutex> lock(shared->mu);
  shared->cv.wait(lock, [&] { return shared->finished.load() == p.chunks; });
  return ffi::Error::Success();
}

}  // namespace

extern "C" void deepdive_set_blas(void* sgemm, void* sgemv, int int_bits) {
  g_sgemm = sgemm;
  g_sgemv = sgemv;
  g_int_bits = int_bits;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(DeepdiveCpuGemm, GemmImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("trans_a")
                                  .Attr<bool>("trans_b"));
