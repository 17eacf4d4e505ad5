// Micro-benchmark of the metric updates hot paths make: Counter::Inc and Gauge::Set/Inc through a
// cached child reference, Histogram::Observe with the default latency buckets, a labelled lookup
// (Family::WithLabels) followed by Inc, and one Serialize() of a daemon-sized registry. Prints
// nanoseconds per operation, the best of --rounds rounds (this VM's speed swings within seconds).
//
//   cmake --build build --target metrics_registry_bench
//   build/metrics/metrics_registry_bench [--rounds N] [--threads T]
//
// With --threads T > 1 the update rows run on T threads at once on the same child (contention).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "workflowd/metrics/registry.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using workflowd::metrics::Registry;

constexpr int kOperations = 2'000'000;

// Runs `op(i)` kOperations times on each of `threads` threads; returns ns per operation per thread.
template <typename Op>
double NanosPerOperation(int threads, const Op& op) {
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(threads));
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&op] {
      for (int i = 0; i < kOperations; ++i) op(i);
    });
  }
  for (std::thread& worker : workers) worker.join();
  const std::chrono::duration<double, std::nano> elapsed = Clock::now() - start;
  return elapsed.count() / kOperations;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  int threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--rounds") {
      rounds = std::atoi(argv[i + 1]);
    } else if (flag == "--threads") {
      threads = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: %s [--rounds N] [--threads T]\n", argv[0]);
      return 2;
    }
  }

  Registry registry;
  auto& counter = registry.AddCounter("bench_events_total", "h", {"tenant", "environment"})
                      .WithLabels({"tenant_0042", "prod"});
  auto& lookups = registry.AddCounter("bench_lookups_total", "h", {"tenant", "environment"});
  for (int t = 0; t < 100; ++t) lookups.WithLabels({"tenant_" + std::to_string(t), "prod"});
  auto& gauge = registry.AddGauge("bench_in_flight", "h", {"tenant"}).WithLabels({"tenant_0042"});
  auto& histogram =
      registry.AddHistogram("bench_seconds", "h", workflowd::metrics::DefaultLatencyBuckets());
  // A daemon-sized exposition: 30 families of a few children, 4 histograms.
  for (int f = 0; f < 30; ++f) {
    auto& family = registry.AddCounter("bench_family_" + std::to_string(f) + "_total", "Help.",
                                       {"provider", "state"});
    for (int c = 0; c < 6; ++c) family.WithLabels({"mock", "state" + std::to_string(c)}).Inc(c);
  }
  for (int f = 0; f < 4; ++f) {
    registry
        .AddHistogram("bench_latency_" + std::to_string(f) + "_seconds", "Help.", {"provider"},
                      workflowd::metrics::DefaultLatencyBuckets())
        .WithLabels({"mock"})
        .Observe(0.01 * f);
  }
  const std::vector<std::string> key = {"tenant_57", "prod"};

  struct Row {
    const char* name;
    double best = 1e300;
  };
  std::vector<Row> rows = {{"Counter::Inc (cached child)"},
                           {"Gauge::Inc + Dec (cached child)"},
                           {"Gauge::Set (cached child)"},
                           {"Histogram::Observe (15 buckets)"},
                           {"Family::WithLabels (2 labels, 100 children) + Inc"},
                           {"Registry::Serialize (37 families, 287 series), per call"}};
  for (int r = 0; r < rounds; ++r) {
    rows[0].best = std::min(rows[0].best, NanosPerOperation(threads, [&](int) { counter.Inc(); }));
    rows[1].best = std::min(rows[1].best, NanosPerOperation(threads, [&](int) {
                              gauge.Inc();
                              gauge.Dec();
                            }));
    rows[2].best =
        std::min(rows[2].best,
                 NanosPerOperation(threads, [&](int i) { gauge.Set(static_cast<double>(i)); }));
    rows[3].best = std::min(rows[3].best, NanosPerOperation(threads, [&](int i) {
                              histogram.Observe(static_cast<double>(i % 1000) * 0.001);
                            }));
    rows[4].best = std::min(
        rows[4].best, NanosPerOperation(threads, [&](int) { lookups.WithLabels(key).Inc(); }));
    const auto start = Clock::now();
    constexpr int kScrapes = 200;
    std::size_t bytes = 0;
    for (int i = 0; i < kScrapes; ++i) bytes += registry.Serialize().size();
    const std::chrono::duration<double, std::nano> elapsed = Clock::now() - start;
    rows[5].best = std::min(rows[5].best, elapsed.count() / kScrapes);
    if (bytes == 0) return 1;
  }
  std::printf("threads: %d, best of %d rounds of %d operations per thread\n", threads, rounds,
              kOperations);
  for (const Row& row : rows) std::printf("%-58s %12.1f ns\n", row.name, row.best);
  return 0;
}
