#include "workflowd/common/worker_pool.hpp"

#include <utility>

namespace workflowd {

WorkerPool::WorkerPool(size_t threads) {
  for (size_t i = 1; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void WorkerPool::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (threads_.empty() || n == 1) {
    std::exception_ptr first;
    for (size_t i = 0; i < n; ++i) {
      try {
        fn(i);
      } catch (...) {
        if (!first) first = std::current_exception();
      }
    }
    if (first) std::rethrow_exception(first);
    return;
  }
  std::unique_lock lock(mu_);
  fn_ = &fn;
  next_ = 0;
  total_ = n;
  finished_ = 0;
  error_ = nullptr;
  ++generation_;
  cv_.notify_all();
  // The caller works too.
  while (next_ < total_) {
    size_t i = next_++;
    lock.unlock();
    RunOne(fn, i);
    lock.lock();
    ++finished_;
  }
  // Returning (or throwing) before every iteration has finished would leave workers calling a
  // function the caller is about to destroy.
  done_cv_.wait(lock, [&] { return finished_ == total_; });
  fn_ = nullptr;
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void WorkerPool::RunOne(const std::function<void(size_t)>& fn, size_t i) noexcept {
  try {
    fn(i);
  } catch (...) {
    // An exception escaping a worker thread would end the process: keep the first one for the
    // caller instead.
    std::lock_guard lock(mu_);
    if (!error_) error_ = std::current_exception();
  }
}

void WorkerPool::Work() {
  std::unique_lock lock(mu_);
  uint64_t seen = 0;
  while (true) {
    cv_.wait(lock,
             [&] { return stop_ || (fn_ != nullptr && generation_ != seen && next_ < total_); });
    if (stop_) return;
    seen = generation_;
    while (fn_ != nullptr && next_ < total_) {
      size_t i = next_++;
      const auto* fn = fn_;
      lock.unlock();
      RunOne(*fn, i);
      lock.lock();
      if (++finished_ == total_) done_cv_.notify_all();
    }
  }
}

}  // namespace workflowd
