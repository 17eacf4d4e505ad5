// The running daemon's /metrics, after it consumed, matched and dead-lettered real events and ran
// an execution to its end on the mock provider (after one failed start), is checked by
// Prometheus' own linter (`promtool check metrics`, Debian package `prometheus`; a missing
// promtool fails the test), and every metric that deploy/monitoring/metrics.txt marks "exported"
// (used by the Grafana dashboard and the alert rules) is really there, while the "upcoming" ones
// are not yet (so the list is kept honest when they arrive).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "daemon_harness.hpp"
#include "pipeline_events.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::DaemonHarness;
using testing::DefinitionYaml;
using testing::RandomSuffix;
using testing::RunCommand;
using testing::Structured;
using testing::TestProducer;
using testing::TestRecord;

const std::string kBinary = WORKFLOWD_BINARY;
const std::string kMetricsList =
    std::string(WORKFLOWD_SOURCE_DIR) + "/deploy/monitoring/metrics.txt";

// metric name -> "exported" | "sparse" | "upcoming"
std::map<std::string, std::string> LoadMetricsList() {
  std::ifstream in(kMetricsList);
  EXPECT_TRUE(in.good()) << "cannot read " << kMetricsList;
  std::map<std::string, std::string> list;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string name, status;
    if (!(fields >> name >> status) || name[0] == '#') continue;
    list[name] = status;
  }
  return list;
}

// The metric families of an exposition (from its # TYPE lines).
std::set<std::string> Families(const std::string& exposition) {
  std::set<std::string> out;
  std::istringstream in(exposition);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string hash, type, name;
    if (fields >> hash >> type >> name && hash == "#" && type == "TYPE") out.insert(name);
  }
  return out;
}

TEST(MetricsLintE2E, LiveMetricsPassPromtoolAndCoverTheDashboard) {
  DaemonHarness h(kBinary,
                  "dispatch: {lease: 3s, call_timeout: 1s, idle_interval: 50ms}\n"
                  "poll: {min_interval: 100ms, max_interval: 1s}\n");
  // The mock provider fails the first start (provider errors, a retried dispatch attempt), then
  // the execution runs and succeeds (transitions, start latency, duration).
  h.ApplyDefinitions(
      "definitions:\n" + DefinitionYaml("onboarding", "tenant_a", "prod", "customer.created") +
      "    provider: mock\n"
      "    provider_config: {mock: {outcome: succeed, delay: 100ms, start_failures: 1}}\n");
  auto daemon = h.Start();
  TestProducer producer(h.brokers());
  producer.Produce(h.topic(), Structured("m-1", "tenant_a", "prod", "customer.created", {}));
  producer.Produce(h.topic(), Structured("m-2", "tenant_a", "prod", "customer.deleted", {}));
  producer.Produce(h.topic(), TestRecord{std::string("bad"), std::string("{not json"), {}});
  producer.Flush();
  ASSERT_EQ(
      h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status = 'succeeded'", 1, 90s),
      1)
      << daemon->Output();
  const std::string dead = "workflowd_events_dead_lettered_total{reason=\"not_json\"}";
  for (int i = 0; i < 100 && h.Metric(dead) < 1; ++i) std::this_thread::sleep_for(100ms);
  ASSERT_GE(h.Metric(dead), 1) << daemon->Output();
  // The lag gauge is filled on scrape once partitions are assigned and positions known.
  for (int i = 0;
       i < 100 && h.Get("/metrics").second.find("workflowd_consumer_lag{") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(100ms);
  }

  // Execution counts by state are sampled every few seconds.
  for (int i = 0;
       i < 150 && h.Get("/metrics").second.find("workflowd_executions{") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(100ms);
  }

  auto [status, exposition] = h.Get("/metrics");
  ASSERT_EQ(status, 200);

  // Prometheus' linter on the live exposition (promtool reads stdin).
  std::string path = ::testing::TempDir() + "/workflowd-metrics-" + RandomSuffix() + ".txt";
  std::ofstream(path) << exposition;
  auto [which, where] = RunCommand({"/bin/sh", "-c", "command -v promtool"});
  ASSERT_EQ(which, 0) << "promtool not found on PATH: install Debian's prometheus package "
                         "(scripts/install-deps.sh does)";
  auto [code, lint] = RunCommand({"/bin/sh", "-c", "promtool check metrics < '" + path + "'"});
  std::remove(path.c_str());
  EXPECT_EQ(code, 0) << "promtool check metrics:\n" << lint << "\n/metrics was:\n" << exposition;
  EXPECT_EQ(lint.find("workflowd_"), std::string::npos) << "promtool check metrics:\n" << lint;

  // The dashboard and alert rules' metrics (deploy/monitoring/metrics.txt) against reality.
  auto families = Families(exposition);
  auto list = LoadMetricsList();
  ASSERT_FALSE(list.empty()) << kMetricsList;
  for (const auto& [name, state] : list) {
    if (state == "sparse") continue;  // its series appear only in situations not created here
    if (state == "exported") {
      EXPECT_TRUE(families.count(name))
          << name << " is marked exported in deploy/monitoring/metrics.txt and used by the "
          << "dashboard/alerts, but the daemon does not export it";
    } else {
      EXPECT_FALSE(families.count(name))
          << name << " is exported now: mark it \"exported\" in deploy/monitoring/metrics.txt";
    }
  }

  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(20s), 0) << daemon->Output();
}

}  // namespace
}  // namespace workflowd
