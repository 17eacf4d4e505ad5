// A fixed set of threads running posted tasks in order of posting: the server's handlers run on
// lanes, so that a lane's slow handlers never delay another lane's.
#pragma once

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace workflowd::http {

class WorkLane {
 public:
  explicit WorkLane(std::size_t threads) : thread_count_(std::max<std::size_t>(1, threads)) {}
  WorkLane(const WorkLane&) = delete;
  WorkLane& operator=(const WorkLane&) = delete;
  ~WorkLane() { Stop(); }

  void Start() {
    for (std::size_t i = 0; i < thread_count_; ++i) threads_.emplace_back([this] { Run(); });
  }
  void Post(std::function<void()> task) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }
  // Drops the tasks not started and waits for the running ones.
  void Stop() noexcept {
    std::deque<std::function<void()>> dropped;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      dropped.swap(tasks_);
    }
    cv_.notify_all();
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
    threads_.clear();
  }

 private:
  void Run() noexcept {
    while (true) {
      std::function<void()> task;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
        if (stopping_) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      try {
        task();
      } catch (const std::exception& e) {
        spdlog::error("http: a request task failed: {}", e.what());
      } catch (...) {
        spdlog::error("http: a request task failed with an unknown exception");
      }
    }
  }

  const std::size_t thread_count_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;  // last: joined before the state they use goes
};

}  // namespace workflowd::http
