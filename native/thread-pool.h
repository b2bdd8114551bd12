// A persistent pool of worker threads for the kernels. The calling thread is worker 0 and takes
// part in every job, so `threads = 2` means the caller plus one pool thread.
//
// A job is a number of independent tasks. Each thread owns a contiguous block of them (thread t
// the t-th of `size` equal blocks) and takes its own first, then helps with the others' blocks, so
// a core that is busy elsewhere does not hold the others up. Owning a block keeps data on one core
// from kernel to kernel: the row-wise kernels split rows into contiguous tasks, so the rows a
// thread writes in one kernel (an add, a GEMM's row share) are mostly the rows it reads in the
// next (an rmsnorm), from its own cache. Results never depend on which thread ran a task: kernels
// split work over output features, heads or rows, never over a reduction.
//
// The caller waits for the job's tasks, not for every worker: on a machine shared with other
// processes a worker may not get a core for milliseconds, and the caller then simply does its
// share. A worker only touches a job after registering (active_) while that job is still open,
// and the caller closes the job and waits for registered workers to leave before returning.
//
// Workers spin briefly between jobs (a forward pass issues kernels back to back, microseconds
// apart) and then sleep on a condition variable, so an idle engine costs no CPU.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace stepwise {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  /** Runs fn(task, threadIndex) for task = 0..ntasks-1 across the pool; returns when all are done. */
  template <class F>
  void parallelFor(int64_t ntasks, F&& fn) {
    if (ntasks <= 0) return;
    if (size_ == 1 || ntasks == 1) {
      for (int64_t t = 0; t < ntasks; t++) fn(t, 0);
      return;
    }
    using Fn = std::remove_reference_t<F>;
    run(ntasks, [](void* ctx, int64_t task, int tid) { (*static_cast<Fn*>(ctx))(task, tid); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using TaskFn = void (*)(void* ctx, int64_t task, int tid);
  void run(int64_t ntasks, TaskFn fn, void* ctx);
  void work(int tid);
  void workerLoop(int tid);

  const int size_;
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t ntasks_ = 0;
  // Each counter on its own cache line: every task claim writes a block's next, and a line shared
  // with another block's, with what the caller spins on (done_) or what workers poll (generation_)
  // bounced between the cores per task.
  struct alignas(64) TaskBlock {
    std::atomic<int64_t> next{0};
    int64_t end = 0;
  };
  std::vector<TaskBlock> blocks_;  // one per thread
  alignas(64) std::atomic<int64_t> done_{0};    // tasks finished in the current job
  alignas(64) std::atomic<int> active_{0};      // workers inside the current job
  alignas(64) std::atomic<uint64_t> generation_{0};  // odd while a job is open
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
};

}  // namespace stepwise
