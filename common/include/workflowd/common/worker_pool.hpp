// A fixed set of threads running the iterations of ParallelFor: bounded concurrency for provider
// calls without creating threads per batch.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace workflowd {

class WorkerPool {
 public:
  explicit WorkerPool(size_t threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Runs fn(0) .. fn(n - 1) on the pool's threads and the caller's, returning when all are done.
  // `fn` should handle its own failures: when it throws anyway, the other iterations still run,
  // and once all have finished ParallelFor rethrows the first exception (never on a pool thread,
  // never while a pool thread may still call `fn`). One ParallelFor at a time per pool.
  void ParallelFor(size_t n, const std::function<void(size_t)>& fn);

  size_t size() const { return threads_.size() + 1; }

 private:
  void Work();
  void RunOne(const std::function<void(size_t)>& fn, size_t i) noexcept;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t next_ = 0;
  size_t total_ = 0;
  size_t finished_ = 0;
  uint64_t generation_ = 0;
  std::exception_ptr error_;  // the first exception of the current ParallelFor
  bool stop_ = false;
  std::vector<std::thread> threads_;  // last: joined before the state above goes away
};

}  // namespace workflowd
