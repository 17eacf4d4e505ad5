// BackgroundWorker: a round that leaves work runs again at once; idle waits end early on Wake()
// (new work) and on Stop().
#include "background_worker.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace workflowd::daemon {
namespace {

using namespace std::chrono_literals;

// Waits (up to `limit`) until `done()`.
template <typename Done>
bool Eventually(Done done, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// Waits (up to `limit`) until `rounds` reaches `want`.
bool ReachesRounds(const std::atomic<int>& rounds, int want, std::chrono::milliseconds limit) {
  return Eventually([&] { return rounds.load() >= want; }, limit);
}

// Waits (up to `limit`) until the worker began its `want`th idle wait: the positive signal that
// it went idle, after which no round may start without a wake (the idle interval is an hour).
bool GoesIdle(const BackgroundWorker& worker, uint64_t want, std::chrono::milliseconds limit) {
  return Eventually([&] { return worker.IdleWaits() >= want; }, limit);
}

TEST(BackgroundWorker, WakeEndsTheIdleWait) {
  std::atomic<int> rounds{0};
  // An idle interval far longer than the test: only Wake() can start the next rounds.
  BackgroundWorker worker(
      "test",
      [&] {
        ++rounds;
        return false;  // nothing more waiting: idle
      },
      1h);
  worker.Start();
  ASSERT_TRUE(GoesIdle(worker, 1, 30s));
  EXPECT_EQ(rounds.load(), 1);  // idle after one round: no round without a wake
  worker.Wake();
  ASSERT_TRUE(ReachesRounds(rounds, 2, 30s));
  ASSERT_TRUE(GoesIdle(worker, 2, 30s));
  worker.Wake();
  ASSERT_TRUE(ReachesRounds(rounds, 3, 30s));
  ASSERT_TRUE(GoesIdle(worker, 3, 30s));
  worker.Stop();                // returns although the idle wait has an hour left
  EXPECT_EQ(rounds.load(), 3);  // one round per wake
  EXPECT_EQ(worker.IdleWaits(), 3u);
}

TEST(BackgroundWorker, AWakeDuringARoundIsNotLost) {
  std::atomic<int> rounds{0};
  std::atomic<bool> release{false};
  BackgroundWorker* self = nullptr;
  BackgroundWorker worker(
      "test",
      [&] {
        if (rounds++ == 0) {
          self->Wake();  // work arrives while the first round still runs
          while (!release) std::this_thread::sleep_for(1ms);
        }
        return false;
      },
      1h);
  self = &worker;
  worker.Start();
  release = true;
  ASSERT_TRUE(ReachesRounds(rounds, 2, 30s));  // the next wait ended at once
  ASSERT_TRUE(GoesIdle(worker, 2, 30s));
  EXPECT_EQ(rounds.load(), 2);  // and only that wait
  worker.Stop();
  EXPECT_EQ(rounds.load(), 2);
}

TEST(BackgroundWorker, ARoundThatLeavesWorkRunsAgainAtOnce) {
  std::atomic<int> rounds{0};
  BackgroundWorker worker(
      "test",
      [&] {
        return ++rounds < 3;  // two full batches, then all taken
      },
      1h);
  worker.Start();
  ASSERT_TRUE(GoesIdle(worker, 1, 30s));
  EXPECT_EQ(rounds.load(), 3);  // no wait between them; the third took all there was: idle
  worker.Wake();
  ASSERT_TRUE(ReachesRounds(rounds, 4, 30s));
  worker.Stop();
}

TEST(BackgroundWorker, WakesFasterThanTheGapAreGatheredIntoOneRound) {
  std::atomic<int> rounds{0};
  std::vector<std::chrono::steady_clock::time_point> starts(3);
  BackgroundWorker worker(
      "test",
      [&] {
        int i = rounds.load();
        if (i < 3) starts[static_cast<size_t>(i)] = std::chrono::steady_clock::now();
        ++rounds;
        return false;
      },
      1h, 200ms);
  worker.Start();
  ASSERT_TRUE(ReachesRounds(rounds, 1, 30s));
  for (int i = 0; i < 5; ++i) worker.Wake();  // five wakes at once: one round
  ASSERT_TRUE(ReachesRounds(rounds, 2, 30s));
  EXPECT_GE(starts[1] - starts[0], 200ms);  // not before the gap
  ASSERT_TRUE(GoesIdle(worker, 2, 30s));
  EXPECT_EQ(rounds.load(), 2);
  worker.Stop();
  EXPECT_EQ(rounds.load(), 2);
}

}  // namespace
}  // namespace workflowd::daemon
