#include "background_worker.hpp"

#include <spdlog/spdlog.h>

#include "workflowd/common/backoff.hpp"
#include "workflowd/store/errors.hpp"

namespace workflowd::daemon {

BackgroundWorker::BackgroundWorker(std::string name, std::function<bool()> round,
                                   std::chrono::milliseconds idle,
                                   std::chrono::milliseconds wake_gap)
    : name_(std::move(name)), round_(std::move(round)), idle_(idle), wake_gap_(wake_gap) {}

BackgroundWorker::~BackgroundWorker() { Stop(); }

void BackgroundWorker::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void BackgroundWorker::Stop() noexcept {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BackgroundWorker::Wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void BackgroundWorker::Loop() {
  // Waits `d`, or less when stopped or (idle waits only) woken; a woken wait still lasts until
  // `not_before`.
  using Clock = std::chrono::steady_clock;
  auto wait = [this](std::chrono::milliseconds d, bool wakeable = false,
                     Clock::time_point not_before = {}) {
    std::unique_lock lock(mu_);
    if (wakeable) ++idle_waits_;
    cv_.wait_for(lock, d, [&] { return stop_.load() || (wakeable && woken_); });
    if (wakeable && woken_) {
      cv_.wait_until(lock, not_before, [&] { return stop_.load(); });
      // Wakes that came during the gap are for the round about to start: it sees their work.
      woken_ = false;
    }
  };
  Backoff backoff(SteadyClock::System(), std::chrono::milliseconds(100),
                  std::chrono::milliseconds(5000));
  while (!stop_) {
    try {
      auto started = Clock::now();
      bool more = round_();
      if (!healthy_.exchange(true)) spdlog::info("{}: database is back", name_);
      backoff.Succeeded();
      if (!more) wait(idle_, true, started + wake_gap_);
    } catch (const store::StoreError& e) {
      if (healthy_.exchange(false))
        spdlog::error("{}: paused, database unavailable: {}", name_, e.what());
      wait(backoff.Failed());
    } catch (const std::exception& e) {
      // A bug or an unexpected answer: log it and keep the daemon serving the rest.
      spdlog::error("{}: round failed: {}", name_, e.what());
      wait(std::chrono::seconds(1));
    }
  }
}

}  // namespace workflowd::daemon
