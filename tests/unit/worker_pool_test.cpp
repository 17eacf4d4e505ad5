// WorkerPool when an iteration throws: the process survives, every other iteration still runs,
// and the caller gets the exception only once no pool thread can still call the function (issue
// 19: a dispatch or poll task that threw used to end the daemon with std::terminate).
#include "workflowd/common/worker_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace workflowd {
namespace {

using namespace std::chrono_literals;

TEST(WorkerPoolFailures, AThrowingIterationIsRethrownToTheCallerAfterAllFinished) {
  WorkerPool pool(4);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::atomic<int>> hits(23);
    std::atomic<int> running{0};
    try {
      pool.ParallelFor(hits.size(), [&](size_t i) {
        ++running;
        hits[i].fetch_add(1);
        if (i % 5 == 0) {
          --running;
          throw std::runtime_error("iteration " + std::to_string(i));
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        --running;
      });
      FAIL() << "round " << round << ": the exception was lost";
    } catch (const std::runtime_error& e) {
      // Nothing may still be running once ParallelFor has given up control.
      EXPECT_EQ(running.load(), 0) << "round " << round;
      EXPECT_EQ(std::string(e.what()).rfind("iteration ", 0), 0u) << e.what();
    }
    for (auto& h : hits) ASSERT_EQ(h.load(), 1) << "round " << round;
  }
  // The pool is still usable afterwards.
  std::atomic<int> after{0};
  pool.ParallelFor(10, [&](size_t) { ++after; });
  EXPECT_EQ(after.load(), 10);
}

TEST(WorkerPoolFailures, ANonStandardExceptionOnAPoolThreadDoesNotEndTheProcess) {
  WorkerPool pool(3);
  std::atomic<int> hits{0};
  // The first iterations wait for each other (at most 2 s), so that pool threads, not only the
  // caller, run throwing iterations.
  EXPECT_THROW(
      pool.ParallelFor(6,
                       [&](size_t) {
                         ++hits;
                         auto until = std::chrono::steady_clock::now() + 2s;
                         while (hits.load() < 3 && std::chrono::steady_clock::now() < until)
                           std::this_thread::yield();
                         throw 42;
                       }),
      int);
  EXPECT_EQ(hits.load(), 6);
}

TEST(WorkerPoolFailures, SingleThreadedPoolRunsTheRestAndRethrows) {
  WorkerPool pool(1);
  std::vector<int> hits(4, 0);
  EXPECT_THROW(pool.ParallelFor(hits.size(),
                                [&](size_t i) {
                                  ++hits[i];
                                  if (i == 1) throw std::bad_alloc();
                                }),
               std::bad_alloc);
  EXPECT_EQ(hits, (std::vector<int>{1, 1, 1, 1}));
}

}  // namespace
}  // namespace workflowd
