// A small pool of helper threads that spin between jobs, for the many short kernels of a decode
// step (dozens of 20-200 us products per token).
//
// Why not XLA's intra-op pool: handing a task to it wakes a sleeping thread each time, and that
// wake-up is a large share of a 50 us product; the caller then waits for the late helper or does
// all the work alone. These helpers spin for kSpinNs after each job (so the next product of the
// same step finds them awake) and then sleep, so an idle process costs nothing.
//
// Semantics: Run(n, body) calls body(0..n-1) once each, on the caller and the helpers, and returns
// when all calls have returned. Items are claimed from a shared counter, so a late or absent
// helper never blocks progress: the caller claims whatever is left. One job runs at a time; a
// caller that finds the pool busy (another thread's job) runs its items alone. After fork() the
// child gets a fresh pool (the parent's threads do not exist there).

#ifndef DEEPDIVE_KERNELS_SPIN_POOL_H_
#define DEEPDIVE_KERNELS_SPIN_POOL_H_

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define DEEPDIVE_PAUSE() _mm_pause()
#else
#define DEEPDIVE_PAUSE() std::this_thread::yield()
#endif

namespace deepdive {

class SpinPool {
 public:
  // The process's pool with `threads` workers in all (the caller counts as one).
  static SpinPool& Get(int threads) {
    static std::once_flag once;
    std::call_once(once, [] { pthread_atfork(nullptr, nullptr, [] { instance_ = nullptr; }); });
    SpinPool* pool = instance_.load(std::memory_order_acquire);
    if (pool == nullptr) {
      std::lock_guard<std::mutex> lock(CreateMutex());
      pool = instance_.load(std::memory_order_acquire);
      if (pool == nullptr) {
        pool = new SpinPool(threads);  // lives as long as the process (threads are detached)
        instance_.store(pool, std::memory_order_release);
      }
    }
    return *pool;
  }

  int threads() const { return helpers_ + 1; }

  template <typename Body>
  void Run(int64_t n, const Body& body) {
    if (n <= 0) return;
    std::unique_lock<std::mutex> busy(run_mu_, std::try_to_lock);
    if (n == 1 || helpers_ == 0 || !busy.owns_lock()) {
      for (int64_t i = 0; i < n; ++i) body(i);
      return;
    }
    Job job;
    job.n = n;
    job.context = &body;
    job.call = [](const void* context, int64_t i) { (*static_cast<const Body*>(context))(i); };
    job_.store(&job, std::memory_order_seq_cst);
    epoch_.fetch_add(1, std::memory_order_seq_cst);  // odd: a job is open
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(sleep_mu_);
      sleep_cv_.notify_all();
    }
    job.Work();
    while (job.done.load(std::memory_order_acquire) < n) DEEPDIVE_PAUSE();
    epoch_.fetch_add(1, std::memory_order_seq_cst);  // even: closed, no helper may enter now
    while (inside_.load(std::memory_order_seq_cst) > 0) DEEPDIVE_PAUSE();
  }

 private:
  static constexpr int64_t kSpinNs = 300000;  // about the gap between two decode steps' products

  struct Job {
    int64_t n = 0;
    const void* context = nullptr;
    void (*call)(const void*, int64_t) = nullptr;
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    void Work() {
      for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
        call(context, i);
        done.fetch_add(1, std::memory_order_release);
      }
    }
  };

  explicit SpinPool(int threads) : helpers_(threads > 1 ? threads - 1 : 0) {
    for (int i = 0; i < helpers_; ++i) std::thread([this] { Loop(); }).detach();
  }

  static std::mutex& CreateMutex() {
    static std::mutex* mu = new std::mutex;
    return *mu;
  }

  bool Open(uint64_t seen) const {
    const uint64_t e = epoch_.load(std::memory_order_seq_cst);
    return (e & 1) && e != seen;
  }

  void Loop() {
    uint64_t seen = 0;
    for (;;) {
      const auto began = std::chrono::steady_clock::now();
      int polls = 0;
      while (!Open(seen)) {
        DEEPDIVE_PAUSE();
        if (++polls % 64 == 0 && std::chrono::steady_clock::now() - began >
                                     std::chrono::nanoseconds(kSpinNs)) {
          std::unique_lock<std::mutex> lock(sleep_mu_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          sleep_cv_.wait(lock, [&] { return Open(seen); });
          sleepers_.fetch_sub(1, std::memory_order_seq_cst);
          break;
        }
      }
      const uint64_t e = epoch_.load(std::memory_order_seq_cst);
      inside_.fetch_add(1, std::memory_order_seq_cst);
      if (epoch_.load(std::memory_order_seq_cst) == e && (e & 1)) {
        job_.load(std::memory_order_seq_cst)->Work();  // the job is open: it cannot go away
      }
      inside_.fetch_sub(1, std::memory_order_seq_cst);
      seen = e;
    }
  }

  inline static std::atomic<SpinPool*> instance_{nullptr};
  const int helpers_;
  std::mutex run_mu_;
  std::atomic<uint64_t> epoch_{0};
  std::atomic<Job*> job_{nullptr};
  std::atomic<int> inside_{0};
  std::atomic<int> sleepers_{0};
  std::mutex sleep_mu_;
  std::condition_variable sleep_cv_;
};

}  // namespace deepdive

#endif  // DEEPDIVE_KERNELS_SPIN_POOL_H_
