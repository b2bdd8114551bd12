#include "thread-pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define STEPWISE_PAUSE() _mm_pause()
#else
#define STEPWISE_PAUSE() std::this_thread::yield()
#endif

namespace stepwise {
namespace {

// How long an idle worker polls for the next job before it sleeps. Kernels of one forward pass
// follow each other within microseconds; between steps the engine may pause for milliseconds.
constexpr auto kSpin = std::chrono::microseconds(200);

}  // namespace

ThreadPool::ThreadPool(int threads) : size_(threads < 1 ? 1 : threads) {
  threads_.reserve(static_cast<size_t>(size_ - 1));
  for (int t = 1; t < size_; t++) threads_.emplace_back([this, t] { workerLoop(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  for (auto& th : threads_) th.join();
}

void ThreadPool::work(int tid) {
  for (;;) {
    const int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
    if (t >= ntasks_) return;
    fn_(ctx_, t, tid);
  }
}

void ThreadPool::run(int64_t ntasks, TaskFn fn, void* ctx) {
  fn_ = fn;
  ctx_ = ctx;
  ntasks_ = ntasks;
  next_.store(0, std::memory_order_relaxed);
  pending_.store(size_ - 1, std::memory_order_relaxed);
  // seq_cst increment, then seq_cst read of sleepers_: pairs with the worker's increment of
  // sleepers_ followed by its read of generation_, so one of the two always sees the other.
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  work(0);
  // Wait for every worker to leave this job before the caller's task state goes out of scope.
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0) {
    if (++spins < 4096) {
      STEPWISE_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::workerLoop(int tid) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    if (gen == seen) {
      const auto deadline = std::chrono::steady_clock::now() + kSpin;
      int spins = 0;
      while ((gen = generation_.load(std::memory_order_acquire)) == seen) {
        STEPWISE_PAUSE();
        if (++spins % 256 == 0 && std::chrono::steady_clock::now() > deadline) {
          std::unique_lock<std::mutex> lock(mu_);
          sleepers_.fetch_add(1);
          cv_.wait(lock, [&] { return generation_.load() != seen; });
          sleepers_.fetch_sub(1);
        }
      }
    }
    if (stop_.load()) return;
    seen = gen;
    work(tid);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace stepwise
