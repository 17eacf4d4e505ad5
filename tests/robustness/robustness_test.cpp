// Under a steady stream of events with a known expected outcome, everything breaks on purpose: the
// daemon is killed with -9 at random points (at least 20 times), the Kafka broker is stopped and
// restarted, PostgreSQL is restarted, and the provider flaps (errors, timeouts, slowness). Then:
// every expected execution exists exactly once in its expected terminal state, nothing else
// exists, the dead-letter topic holds exactly the bad events, and the daemon is ready again
// without a manual step.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "daemon_harness.hpp"
#include "pipeline_events.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::DaemonHarness;
using testing::Json;
using testing::RunCommand;
using testing::Structured;
using testing::TestProducer;
using testing::TestRecord;

const std::string kBinary = WORKFLOWD_BINARY;
const std::string kServices = WORKFLOWD_SERVICES_SCRIPT;

void Services(const std::string& verb, const std::string& what = "") {
  std::vector<std::string> argv = {"/bin/bash", kServices, verb};
  if (!what.empty()) argv.push_back(what);
  auto [code, out] = RunCommand(argv, {}, 180s);
  ASSERT_EQ(code, 0) << kServices << " " << verb << " " << what << ":\n" << out;
}

std::string Definition(const std::string& id, const std::string& event, const std::string& mock) {
  return "  - id: " + id + "\n    tenant_id: tenant_a\n    environment_id: prod\n    name: " + id +
         "\n    trigger: {type: event, event_name: " + event + "}\n    steps:\n" +
         "      - {id: first, order: 1, type: assign_plan, config: {}}\n" +
         "      - {id: second, order: 2, type: send_email, config: {}, depends_on: [first]}\n" +
         "    retry_policy: {max_attempts: 20, initial_interval_seconds: 1, "
         "backoff_coefficient: 1.5, max_interval_seconds: 3}\n" +
         "    provider_config: {mock: " + mock + "}\n";
}

TEST(Robustness, NothingLostNothingDoubledWhateverBreaks) {
  int chaos_seconds = 40;
  // Read before any thread starts; nothing calls setenv.
  if (const char* s = std::getenv("WORKFLOWD_ROBUSTNESS_SECONDS"))  // NOLINT(concurrency-mt-unsafe)
    chaos_seconds = std::atoi(s);
  DaemonHarness h(kBinary,
                  "dispatch: {lease: 4s, call_timeout: 1s, idle_interval: 50ms}\n"
                  "poll: {min_interval: 100ms, max_interval: 1s}\n"
                  "database: {connect_timeout: 2s}\n"
                  "shutdown_timeout: 10s\n");
  h.ApplyDefinitions(
      "definitions:\n" + Definition("steady", "order.placed", "{outcome: succeed, delay: 200ms}") +
      Definition("flaky", "order.placed",
                 "{outcome: succeed, start_failures: 2, start_timeouts: 1, latency: 20ms}") +
      Definition("doomed", "order.cancelled",
                 "{outcome: fail, error: {code: Boom, message: expected, failed_at: second}}"));

  // What must exist at the end: (definition, event) -> terminal state; and the bad records.
  std::map<std::string, std::string> expected;
  std::set<std::string> bad_values;
  std::atomic<bool> feeding{true};
  std::atomic<int> produced{0};
  std::mutex expected_mu;
  std::thread feeder([&] {
    TestProducer producer(h.brokers());
    std::mt19937 rng(7);
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(chaos_seconds);
    for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
      std::string id = "evt-" + std::to_string(i);
      int kind = static_cast<int>(rng() % 10);
      std::lock_guard lock(expected_mu);
      if (kind < 6) {
        producer.Produce(h.topic(), Structured(id, "tenant_a", "prod", "order.placed", {{"n", i}}));
        expected["steady<-" + id] = "succeeded";
        expected["flaky<-" + id] = "succeeded";
      } else if (kind < 8) {
        producer.Produce(h.topic(), Structured(id, "tenant_a", "prod", "order.cancelled", {}));
        expected["doomed<-" + id] = "failed";
      } else if (kind < 9) {
        producer.Produce(h.topic(),
                         Structured(id, "tenant_a", "dev", "order.placed", {}));  // no match
      } else {
        std::string value = "{\"broken\": " + std::to_string(i);  // truncated JSON
        producer.Produce(h.topic(), TestRecord{"k", value, {}});
        bad_values.insert(value);
      }
      ++produced;
      std::this_thread::sleep_for(20ms);
    }
    producer.Flush();
    feeding = false;
  });

  // Chaos: kill -9 the daemon again and again; in between, take Kafka and PostgreSQL away.
  std::mt19937 rng(12345);
  int kills = 0;
  bool kafka_done = false, postgres_done = false;
  auto started = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::steady_clock::now() - started; };
  while (feeding || kills < 20) {
    auto daemon = h.Start();
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 1500));
    if (!kafka_done && elapsed() > std::chrono::seconds(chaos_seconds) / 3) {
      Services("stop", "kafka");
      std::this_thread::sleep_for(3s);
      Services("start", "kafka");
      kafka_done = true;
    } else if (!postgres_done && elapsed() > std::chrono::seconds(chaos_seconds) * 2 / 3) {
      Services("restart-postgres");
      postgres_done = true;
    }
    daemon->Signal(SIGKILL);
    daemon->Wait(10s);
    ++kills;
    if (kills > 200) break;
  }
  feeder.join();
  EXPECT_GE(kills, 20);
  EXPECT_TRUE(kafka_done);
  EXPECT_TRUE(postgres_done);

  // Recovery without a manual step: one more start, then everything settles.
  auto daemon = h.Start();
  int want = static_cast<int>(expected.size());
  int settled = h.WaitForCount(
      "SELECT count(*) FROM workflow_executions WHERE status IN ('succeeded', 'failed', "
      "'timed_out', 'cancelled')",
      want, 180s);
  EXPECT_EQ(settled, want) << "after " << kills << " kills, " << produced << " events";

  std::map<std::string, std::string> actual;
  for (const auto& row :
       h.Query("SELECT workflow_id, trigger_event_id, status FROM workflow_executions")) {
    std::string key = row[0].as<std::string>() + "<-" + row[1].as<std::string>();
    EXPECT_TRUE(actual.emplace(key, row[2].as<std::string>()).second) << key << " doubled";
  }
  size_t wrong = 0;
  for (const auto& [key, state] : expected) {
    auto it = actual.find(key);
    if (it == actual.end() || it->second != state) {
      if (++wrong <= 10) {
        ADD_FAILURE() << key << ": expected " << state << ", got "
                      << (it == actual.end() ? "nothing" : it->second);
      }
    }
  }
  for (const auto& [key, state] : actual) {
    EXPECT_TRUE(expected.contains(key)) << "unexpected execution " << key;
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(actual.size(), expected.size());
  EXPECT_EQ(h.BrokenReferences(), 0);
  EXPECT_EQ(h.BrokenHistories(), 0);

  // The dead-letter topic holds exactly the bad records (at-least-once: a crash between the dead
  // letter and the offset commit may write one twice; the source coordinates identify it).
  auto dead = testing::ReadTopic(h.brokers(), h.dlq_topic(), bad_values.size() * 3, 20s);
  std::set<std::string> dead_values;
  std::set<std::string> dead_sources;
  for (const auto& d : dead) {
    EXPECT_EQ(d.Header("workflowd_dlq_reason"), "not_json");
    dead_values.insert(d.value.value_or(""));
    dead_sources.insert(d.Header("workflowd_source_partition").value_or("") + "/" +
                        d.Header("workflowd_source_offset").value_or(""));
  }
  EXPECT_EQ(dead_values, bad_values);
  EXPECT_EQ(dead_sources.size(), bad_values.size());
  std::cout << "robustness: " << produced << " events, " << expected.size()
            << " executions expected, " << kills << " kills, " << dead.size()
            << " dead letters for " << bad_values.size() << " bad records\n";

  for (int i = 0; i < 300 && h.Get("/readyz").first != 200; ++i) std::this_thread::sleep_for(100ms);
  auto [ready, body] = h.Get("/readyz");
  EXPECT_EQ(ready, 200) << body;
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(30s), 0) << daemon->Output();
}

}  // namespace
}  // namespace workflowd
