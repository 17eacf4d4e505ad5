// The admin endpoint of the running daemon (issue 19): the consumer lag series follow the
// partitions the replica holds now, and scrapes during a shutdown do not stop it from ending well.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "daemon_harness.hpp"
#include "pipeline_events.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::DaemonHarness;
using testing::Structured;
using testing::TestProducer;

const std::string kBinary = WORKFLOWD_BINARY;

// The `partition` label values of the workflowd_consumer_lag series on `port`'s /metrics.
std::set<std::string> LagPartitions(DaemonHarness& h, int port) {
  std::set<std::string> partitions;
  std::istringstream in(h.Get("/metrics", port).second);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("workflowd_consumer_lag{", 0) != 0) continue;
    const std::size_t at = line.find("partition=\"");
    if (at == std::string::npos) continue;
    partitions.insert(line.substr(at + 11, line.find('"', at + 11) - at - 11));
  }
  return partitions;
}

// Two replicas in one group: when the second takes partitions away from the first, the first
// stops exporting their lag (a frozen series kept `max by (topic, partition)` alerts firing).
TEST(AdminE2E, LagSeriesOfRevokedPartitionsDisappear) {
  DaemonHarness h(kBinary);
  auto a = h.Start();
  const int port_a = h.admin_port();
  TestProducer producer(h.brokers());
  // Records in every partition of the (auto-created, 4-partition) topic: a replica knows the lag
  // of a partition once it consumed from it.
  auto produce_everywhere = [&](const std::string& prefix) {
    for (int i = 0; i < 40; ++i) {
      producer.Produce(h.topic(), Structured(prefix + std::to_string(i), "tenant_a", "prod",
                                             "nobody.listens", {}));
    }
    producer.Flush();
  };
  produce_everywhere("first-");
  std::set<std::string> before;
  for (int i = 0; i < 300 && before.size() < 4; ++i) {
    std::this_thread::sleep_for(100ms);
    before = LagPartitions(h, port_a);
  }
  ASSERT_EQ(before.size(), 4u) << a->Output();

  auto b = h.Start();
  const int port_b = h.admin_port();
  ASSERT_NE(port_a, port_b);
  ASSERT_TRUE(b->WaitForOutput("kafka partitions assigned", 30s)) << b->Output();
  produce_everywhere("second-");
  // The rebalance leaves A with part of the partitions: its other series go away, and B exports
  // the ones it took.
  std::set<std::string> left, taken;
  for (int i = 0; i < 300; ++i) {
    left = LagPartitions(h, port_a);
    taken = LagPartitions(h, port_b);
    if (left.size() < 4 && !taken.empty() && left.size() + taken.size() == 4) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_LT(left.size(), 4u) << "replica A still exports the lag of partitions it gave away\n"
                             << a->Output();
  EXPECT_FALSE(taken.empty()) << b->Output();
  EXPECT_EQ(left.size() + taken.size(), 4u);
  for (const std::string& p : taken) EXPECT_EQ(left.count(p), 0u) << "partition " << p;

  // Scrapes while A shuts down (its consumer closes under them): A still exits cleanly.
  std::atomic<bool> done{false};
  std::atomic<int> scrapes{0};
  std::thread scraper([&] {
    while (!done) {
      if (h.Get("/metrics", port_a).first == 200) ++scrapes;
    }
  });
  for (int i = 0; i < 100 && scrapes < 5; ++i) std::this_thread::sleep_for(10ms);
  a->Signal(SIGTERM);
  const int a_exit = a->Wait(30s);
  done = true;
  scraper.join();
  EXPECT_EQ(a_exit, 0) << a->Output();
  EXPECT_GE(scrapes.load(), 5);
  b->Signal(SIGTERM);
  EXPECT_EQ(b->Wait(30s), 0) << b->Output();
}

}  // namespace
}  // namespace workflowd
