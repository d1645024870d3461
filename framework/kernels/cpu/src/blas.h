// Shared by deepdive's CPU kernels: the CBLAS entry point handed over from Python, and a
// parallel-for over XLA's intra-op thread pool.
//
// The BLAS is not linked: Python resolves a CBLAS `sgemm` (by default a private, single-threaded
// copy of the OpenBLAS that numpy ships) and passes the function pointer to deepdive_set_blas().
// Parallelism comes from XLA's own thread pool (and, for the short kernels of a decode step, from
// spin_pool.h), so no second set of spinning BLAS threads competes for the cores.

#ifndef DEEPDIVE_KERNELS_BLAS_H_
#define DEEPDIVE_KERNELS_BLAS_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace deepdive {

// CBLAS enums (cblas.h): row-major order, no-transpose, transpose.
constexpr int kRowMajor = 101;
constexpr int kNoTrans = 111;
constexpr int kTrans = 112;

// Integer width of the BLAS interface: 64 for ILP64 builds (numpy's scipy_openblas64), 32 else.
using Sgemm64 = void (*)(int, int, int, int64_t, int64_t, int64_t, float, const float*, int64_t,
                         const float*, int64_t, float, float*, int64_t);
using Sgemm32 = void (*)(int, int, int, int32_t, int32_t, int32_t, float, const float*, int32_t,
                         const float*, int32_t, float, float*, int32_t);

inline void* g_sgemm = nullptr;
inline int g_int_bits = 64;

inline bool BlasReady() { return g_sgemm != nullptr; }

// c = alpha op(a) op(b) + beta c, row-major, with explicit leading dimensions.
inline void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  const int opa = ta ? kTrans : kNoTrans, opb = tb ? kTrans : kNoTrans;
  if (g_int_bits == 64) {
    reinterpret_cast<Sgemm64>(g_sgemm)(kRowMajor, opa, opb, m, n, k, alpha, a, lda, b, ldb, beta,
                                       c, ldc);
  } else {
    using I = int32_t;
    reinterpret_cast<Sgemm32>(g_sgemm)(kRowMajor, opa, opb, I(m), I(n), I(k), alpha, a, I(lda), b,
                                       I(ldb), beta, c, I(ldc));
  }
}

// Runs body(0..n-1) on the calling thread and on helpers scheduled on XLA's pool. Work items are
// claimed from a shared counter; the caller waits only for items a helper has already claimed
// (and is running), so two kernels waiting on each other's helpers cannot deadlock a busy pool.
inline void ParallelFor(xla::ffi::ThreadPool& pool, int64_t n,
                        std::function<void(int64_t)> body) {
  if (n <= 0) return;
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  if (helpers <= 0) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  struct State {
    std::function<void(int64_t)> body;
    int64_t n;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> finished{0};
    std::mutex mu;
    std::condition_variable cv;
    void Work() {
      for (int64_t i; (i = next.fetch_add(1)) < n;) {
        body(i);
        if (finished.fetch_add(1) + 1 == n) {
          std::lock_guard<std::mutex> lock(mu);
          cv.notify_all();
        }
      }
    }
  };
  auto state = std::make_shared<State>();
  state->body = std::move(body);
  state->n = n;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([state] { state->Work(); });
  state->Work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->finished.load() == state->n; });
}

}  // namespace deepdive

#endif  // DEEPDIVE_KERNELS_BLAS_H_
