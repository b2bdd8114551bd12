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

ThreadPool::ThreadPool(int threads) : size_(threads < 1 ? 1 : threads), blocks_(static_cast<size_t>(size_)) {
  threads_.reserve(static_cast<size_t>(size_ - 1));
  for (int t = 1; t < size_; t++) threads_.emplace_back([this, t] { workerLoop(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  for (auto& th : threads_) th.join();
}

void ThreadPool::work(int tid) {
  // Finished tasks are reported once, on leaving: the caller spins on done_, so an increment per
  // task would pull its line away from the spinning core every few microseconds.
  int64_t finished = 0;
  for (int k = 0; k < size_; k++) {  // its own block, then the others'
    TaskBlock& b = blocks_[static_cast<size_t>((tid + k) % size_)];
    for (;;) {
      const int64_t t = b.next.fetch_add(1, std::memory_order_relaxed);
      if (t >= b.end) break;
      fn_(ctx_, t, tid);
      finished++;
    }
  }
  if (finished > 0) done_.fetch_add(finished, std::memory_order_release);
}

namespace {

template <class Pred>
void spinUntil(Pred ready) {
  for (int spins = 0; !ready(); spins++) {
    if (spins < 4096) {
      STEPWISE_PAUSE();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace

void ThreadPool::run(int64_t ntasks, TaskFn fn, void* ctx) {
  fn_ = fn;
  ctx_ = ctx;
  ntasks_ = ntasks;
  for (int b = 0; b < size_; b++) {
    blocks_[static_cast<size_t>(b)].next.store(ntasks * b / size_, std::memory_order_relaxed);
    blocks_[static_cast<size_t>(b)].end = ntasks * (b + 1) / size_;
  }
  done_.store(0, std::memory_order_relaxed);
  // Open the job (generation becomes odd). seq_cst, then a seq_cst read of sleepers_: pairs with
  // a worker's increment of sleepers_ followed by its read of generation_, so one of the two always
  // sees the other and no wake-up is lost.
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_all();
  }
  work(0);
  spinUntil([&] { return done_.load(std::memory_order_acquire) == ntasks_; });
  // Close it, then wait for workers that registered in time to step out (they find no task left).
  // A worker registering after the close sees the new generation and backs off untouched.
  generation_.fetch_add(1);
  spinUntil([&] { return active_.load() == 0; });
}

void ThreadPool::workerLoop(int tid) {
  uint64_t seen = 0;
  const auto jobWaiting = [&](uint64_t g) { return (g & 1) != 0 && g != seen; };
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    if (!jobWaiting(gen) && !stop_.load()) {
      const auto deadline = std::chrono::steady_clock::now() + kSpin;
      int spins = 0;
      while (!jobWaiting(gen = generation_.load(std::memory_order_acquire)) && !stop_.load()) {
        STEPWISE_PAUSE();
        if (++spins % 256 == 0 && std::chrono::steady_clock::now() > deadline) {
          std::unique_lock<std::mutex> lock(mu_);
          sleepers_.fetch_add(1);
          cv_.wait(lock, [&] { return jobWaiting(generation_.load()) || stop_.load(); });
          sleepers_.fetch_sub(1);
        }
      }
    }
    if (stop_.load()) return;
    seen = gen;
    active_.fetch_add(1);
    if (generation_.load() == gen) work(tid);  // else the job closed before we registered
    active_.fetch_sub(1);
  }
}

}  // namespace stepwise
