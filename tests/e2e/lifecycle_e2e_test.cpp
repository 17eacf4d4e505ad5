// The execution lifecycle end to end: events on the real Kafka become executions that the built
// daemon starts on the mock provider and follows to a terminal state in the real PostgreSQL, also
// with two daemons side by side and one of them killed.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <thread>

#include "daemon_harness.hpp"
#include "pipeline_events.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::DaemonHarness;
using testing::Json;
using testing::RandomSuffix;
using testing::Structured;
using testing::TestProducer;

const std::string kBinary = WORKFLOWD_BINARY;

std::string LifecycleConfig(const std::string& start_log) {
  return "dispatch: {lease: 3s, call_timeout: 1s, idle_interval: 50ms}\n"
         "poll: {min_interval: 100ms, max_interval: 1s}\n"
         "providers: {mock: {start_log: " +
         start_log + "}}\n";
}

std::string Definition(const std::string& id, const std::string& event, const std::string& mock,
                       int timeout_seconds = 600, const std::string& retry_policy = "") {
  return "  - id: " + id + "\n    tenant_id: tenant_a\n    environment_id: prod\n    name: " + id +
         "\n    trigger: {type: event, event_name: " + event +
         "}\n    steps:\n"
         "      - {id: assign_plan, order: 1, type: assign_plan, config: {}}\n"
         "      - {id: create_wallet, order: 2, type: create_wallet, config: {}, depends_on: "
         "[assign_plan]}\n"
         "      - {id: send_email, order: 3, type: send_email, config: {}, depends_on: "
         "[create_wallet]}\n"
         "    timeout_seconds: " +
         std::to_string(timeout_seconds) +
         "\n    provider: mock\n    provider_config: {mock: " + mock + "}\n" +
         (retry_policy.empty() ? "" : "    retry_policy: " + retry_policy + "\n");
}

std::map<std::string, int> StartCounts(const std::string& path) {
  std::map<std::string, int> counts;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) ++counts[line];
  return counts;
}

TEST(LifecycleE2E, EventsRunToTheirTerminalStatesWithSteps) {
  std::string start_log = ::testing::TempDir() + "/starts-" + RandomSuffix();
  DaemonHarness h(kBinary, LifecycleConfig(start_log));
  h.ApplyDefinitions(
      "definitions:\n" +
      Definition("ok", "order.placed", "{outcome: succeed, delay: 300ms, output: {done: true}}") +
      Definition(
          "broken", "order.failed",
          "{outcome: fail, error: {code: Wallet.Down, message: down, failed_at: create_wallet}}") +
      Definition("stuck", "order.stuck", "{outcome: run_until_stopped}", /*timeout_seconds=*/2));
  TestProducer producer(h.brokers());
  for (int i = 0; i < 5; ++i) {
    producer.Produce(h.topic(),
                     Structured("ok-" + std::to_string(i), "tenant_a", "prod", "order.placed", {}));
  }
  producer.Produce(h.topic(), Structured("bad-1", "tenant_a", "prod", "order.failed", {}));
  producer.Produce(h.topic(), Structured("stuck-1", "tenant_a", "prod", "order.stuck", {}));
  producer.Flush();
  auto daemon = h.Start();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status IN "
                           "('succeeded', 'failed', 'timed_out', 'cancelled')",
                           7, 60s),
            7)
      << daemon->Output();
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions WHERE workflow_id = 'ok' AND "
                    "status = 'succeeded' AND output->>'done' = 'true'"),
            5);
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions WHERE workflow_id = 'broken' AND "
                    "status = 'failed' AND error->>'code' = 'Wallet.Down'"),
            1);
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions WHERE workflow_id = 'stuck' AND "
                    "status = 'timed_out'"),
            1);
  auto steps = h.Query(
      "SELECT s.step_id, s.status FROM step_executions s JOIN workflow_executions e ON e.id = "
      "s.execution_id WHERE e.workflow_id = 'broken' ORDER BY s.step_id");
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_EQ(steps[0][0].as<std::string>() + "=" + steps[0][1].as<std::string>(),
            "assign_plan=completed");
  EXPECT_EQ(steps[1][0].as<std::string>() + "=" + steps[1][1].as<std::string>(),
            "create_wallet=failed");
  EXPECT_EQ(steps[2][0].as<std::string>() + "=" + steps[2][1].as<std::string>(),
            "send_email=skipped");
  EXPECT_EQ(h.Count("SELECT count(*) FROM step_executions WHERE status = 'completed'"), 5 * 3 + 1);
  EXPECT_GT(h.Count("SELECT count(*) FROM execution_history"), 0);
  EXPECT_EQ(h.BrokenHistories(), 0);
  EXPECT_EQ(h.BrokenReferences(), 0);
  EXPECT_EQ(
      h.Metric("workflowd_execution_transitions_total{provider=\"mock\",state=\"succeeded\"}"), 5);
  EXPECT_EQ(
      h.Metric("workflowd_execution_transitions_total{provider=\"mock\",state=\"timed_out\"}"), 1);
  EXPECT_EQ(h.Metric("workflowd_execution_timeouts_total"), 1);
  for (const auto& [name, count] : StartCounts(start_log)) EXPECT_EQ(count, 1) << name;
  EXPECT_EQ(StartCounts(start_log).size(), 7u);
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(20s), 0);
  std::remove(start_log.c_str());
}

// The mock engine down for the daemon's first seconds (providers.mock.outages): the starts made
// during the outage fail as unavailable and are retried, and every execution starts, once, after
// it.
TEST(LifecycleE2E, StartsDuringAnEngineOutageAreRetriedAfterIt) {
  std::string start_log = ::testing::TempDir() + "/starts-" + RandomSuffix();
  DaemonHarness h(kBinary,
                  "dispatch: {lease: 3s, call_timeout: 1s, idle_interval: 50ms}\n"
                  "poll: {min_interval: 100ms, max_interval: 1s}\n"
                  "providers: {mock: {start_log: " +
                      start_log + ", outages: [{after: 0s, duration: 5s, mode: unavailable}]}}\n");
  // Retries every 0.5 to 1 s, up to 20 attempts: enough to outlast the outage.
  h.ApplyDefinitions("definitions:\n" +
                     Definition("ok", "order.placed", "{outcome: succeed}", 600,
                                "{max_attempts: 20, initial_interval_seconds: 1, "
                                "backoff_coefficient: 1.0, max_interval_seconds: 1}"));
  TestProducer producer(h.brokers());
  for (int i = 0; i < 5; ++i) {
    producer.Produce(h.topic(),
                     Structured("ok-" + std::to_string(i), "tenant_a", "prod", "order.placed", {}));
  }
  producer.Flush();
  auto daemon = h.Start();
  EXPECT_TRUE(daemon->WaitForOutput("the mock provider misbehaves on purpose", 10s))
      << daemon->Output();
  EXPECT_NE(daemon->Output().find("outage unavailable at +0s for 5s"), std::string::npos);
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE workflow_id = 'ok' AND "
                           "status = 'succeeded'",
                           5, 60s),
            5)
      << daemon->Output();
  // The outage was met: starts failed as unavailable before the ones that went through.
  EXPECT_GT(h.Metric("workflowd_provider_errors_total{provider=\"mock\",operation=\"start_"
                     "execution\",code=\"unavailable\"}"),
            0)
      << h.Get("/metrics").second;
  for (const auto& [name, count] : StartCounts(start_log)) EXPECT_EQ(count, 1) << name;
  EXPECT_EQ(StartCounts(start_log).size(), 5u);
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(20s), 0);
  std::remove(start_log.c_str());
}

// Two daemons in one consumer group on one database: every execution is started exactly once and
// both share the polling; then one is killed with -9 mid-flight and nothing is lost.
TEST(LifecycleE2E, TwoReplicasShareTheWorkAndSurviveAKill) {
  std::string start_log = ::testing::TempDir() + "/starts-" + RandomSuffix();
  DaemonHarness h(kBinary, LifecycleConfig(start_log));
  h.ApplyDefinitions("definitions:\n" +
                     Definition("ok", "order.placed", "{outcome: succeed, delay: 500ms}"));
  auto a = h.Start();
  int port_a = h.admin_port();
  auto b = h.Start();
  int port_b = h.admin_port();
  ASSERT_NE(port_a, port_b);
  TestProducer producer(h.brokers());
  // The topic exists and both replicas hold partitions before the first phase: a replica starts
  // the executions of the events it consumed at once (offered rounds), so the work is shared
  // through the partitions (the other replica's fair rounds find nothing left to start).
  producer.Produce(h.topic(), Structured("warm-up", "tenant_a", "prod", "nobody.listens", {}));
  producer.Flush();
  ASSERT_TRUE(b->WaitForOutput("kafka partitions assigned", 30s)) << b->Output();
  constexpr int kFirst = 300;
  for (int i = 0; i < kFirst; ++i) {
    producer.Produce(h.topic(),
                     Structured("p1-" + std::to_string(i), "tenant_a", "prod", "order.placed", {}));
    if (i % 50 == 0) std::this_thread::sleep_for(100ms);
  }
  producer.Flush();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status = 'succeeded'",
                           kFirst, 90s),
            kFirst);
  auto counts = StartCounts(start_log);
  EXPECT_EQ(counts.size(), static_cast<size_t>(kFirst));
  for (const auto& [name, count] : counts) ASSERT_EQ(count, 1) << name << " started twice";
  // Both replicas did part of the work: starts follow the partitions each consumed, polls are
  // shared through the rounds' leases. Which replica polls what depends on timing (a busy
  // poller keeps taking what becomes due while an idle one sleeps), so the share is asserted over
  // starts and polls together.
  auto metric = [&](const std::string& sample, int port) {
    return std::max(0.0, h.Metric(sample, port));  // -1: no such sample yet
  };
  std::string polled =
      "workflowd_execution_transitions_total{provider=\"mock\",state=\"succeeded\"}";
  std::string started = "workflowd_dispatch_attempts_total{result=\"started\"}";
  auto tail = [](const std::string& out) {
    return out.size() > 4000 ? out.substr(out.size() - 4000) : out;
  };
  EXPECT_EQ(metric(polled, port_a) + metric(polled, port_b), kFirst);
  EXPECT_EQ(metric(started, port_a) + metric(started, port_b), kFirst);
  EXPECT_GT(metric(polled, port_a) + metric(started, port_a), 0) << "replica A's log ends:\n"
                                                                 << tail(a->Output());
  EXPECT_GT(metric(polled, port_b) + metric(started, port_b), 0) << "replica B's log ends:\n"
                                                                 << tail(b->Output());

  // Phase 2: kill -9 replica A while events flow, then bring it back.
  constexpr int kSecond = 300;
  std::thread feeder([&] {
    TestProducer p(h.brokers());
    for (int i = 0; i < kSecond; ++i) {
      p.Produce(h.topic(),
                Structured("p2-" + std::to_string(i), "tenant_a", "prod", "order.placed", {}));
      if (i % 30 == 0) std::this_thread::sleep_for(100ms);
    }
    p.Flush();
  });
  // Killed once the second phase's executions are being written, while events still flow.
  h.WaitForCount(
      "SELECT least(count(*), 1) FROM workflow_executions WHERE trigger_event_id LIKE 'p2-%'", 1,
      30s);
  a->Signal(SIGKILL);
  a->Wait(10s);
  feeder.join();
  auto a2 = h.Start();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status = 'succeeded'",
                           kFirst + kSecond, 120s),
            kFirst + kSecond);
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions"), kFirst + kSecond);
  counts = StartCounts(start_log);
  EXPECT_EQ(counts.size(), static_cast<size_t>(kFirst + kSecond));  // every execution started
  for (auto* d : {b.get(), a2.get()}) {
    d->Signal(SIGTERM);
    EXPECT_EQ(d->Wait(20s), 0);
  }
  std::remove(start_log.c_str());
}

// A definition of `tenant` whose executions succeed 300 ms after their start.
std::string OutageDefinition(const std::string& tenant) {
  return "  - id: ok-" + tenant + "\n    tenant_id: " + tenant +
         "\n    environment_id: prod\n    name: ok\n"
         "    trigger: {type: event, event_name: order.placed}\n"
         "    steps:\n      - {id: grant, order: 1, type: grant_credits, config: {}}\n"
         "    provider: mock\n    provider_config: {mock: {outcome: succeed, delay: 300ms}}\n";
}

// Two daemons against a slow engine that goes down in the middle: the mock provider answers in
// 200 ms with a 5 % long tail of 5 s and is unavailable for 30 s while events keep coming. Every
// execution is started exactly once, none fails because of the outage (its executions are parked,
// not failed), and the backlog the outage left drains in fair order.
TEST(LifecycleE2E, TwoReplicasRideOutAnEngineOutageAndDrainFairly) {
  const std::string start_log = ::testing::TempDir() + "/starts-" + RandomSuffix();
  // The outage begins 25 s after each daemon starts (their engines' clocks): the events of the
  // first phase are done by then.
  DaemonHarness h(
      kBinary,
      "dispatch: {lease: 20s, call_timeout: 8s, idle_interval: 50ms, "
      "per_scope_limit: 10}\n"
      "poll: {min_interval: 200ms, max_interval: 2s}\n"
      "providers:\n"
      "  mock:\n"
      "    start_log: " +
          start_log +
          "\n"
          "    latency: {distribution: long_tail, base: 200ms, tail: 5s, "
          "tail_ratio: 0.05}\n"
          "    outages: [{after: 25s, duration: 30s, mode: unavailable}]\n"
          "    max_in_flight: 32\n"
          "    breaker: {failure_threshold: 3, failure_window: 500ms, open_interval: 2s, "
          "drain_rate: 10, drain_ramp: 5s}\n");
  h.ApplyDefinitions("definitions:\n" + OutageDefinition("tenant_a") +
                     OutageDefinition("tenant_b"));
  auto a = h.Start();
  const int port_a = h.admin_port();
  auto b = h.Start();
  const int port_b = h.admin_port();
  // Both engines are down from 25 s to 55 s after their daemon started (B started last).
  const auto outage_from = std::chrono::steady_clock::now() + 25s;
  TestProducer producer(h.brokers());

  // Phase 1, the engine up: 40 executions run to success.
  for (int i = 0; i < 40; ++i) {
    producer.Produce(h.topic(),
                     Structured("up-" + std::to_string(i), i % 2 ? "tenant_a" : "tenant_b", "prod",
                                "order.placed", {}));
  }
  producer.Flush();
  ASSERT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status = 'succeeded'",
                           40, 60s),
            40)
      << a->Output();
  ASSERT_LT(std::chrono::steady_clock::now(), outage_from) << "phase 1 ran into the outage";
  std::this_thread::sleep_until(outage_from + 1s);

  // Phase 2, the engine down: tenant_a's 100 events first, then tenant_b's 20. In arrival order
  // tenant_b's would start last; in fair order they are spread over the first rounds after it.
  for (int i = 0; i < 100; ++i) {
    producer.Produce(h.topic(), Structured("down-a-" + std::to_string(i), "tenant_a", "prod",
                                           "order.placed", {}));
  }
  producer.Flush();
  for (int i = 0; i < 20; ++i) {
    producer.Produce(h.topic(), Structured("down-b-" + std::to_string(i), "tenant_b", "prod",
                                           "order.placed", {}));
  }
  producer.Flush();
  // The first starts fail: a replica's breaker opens.
  auto open = [&](int port) {
    return h.Metric("workflowd_provider_circuit_state{provider=\"mock\",state=\"open\"}", port) ==
           1;
  };
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!open(port_a) && !open(port_b) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(open(port_a) || open(port_b)) << a->Output();
  // The outage shows in that replica's readiness (the engine is down for 30 s: its breaker is open
  // or probing, not closed, for a while yet).
  const bool a_closed =
      h.Metric("workflowd_provider_circuit_state{provider=\"mock\",state=\"closed\"}", port_a) == 1;
  const auto [ready_status, ready_body] = h.Get("/readyz", a_closed ? port_b : port_a);
  EXPECT_EQ(ready_status, 503) << ready_body;
  EXPECT_NE(ready_body.find("providers"), std::string::npos) << ready_body;
  EXPECT_NE(ready_body.find("mock: "), std::string::npos) << ready_body;
  EXPECT_EQ(ready_body.find("mock: closed"), std::string::npos) << ready_body;
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status = 'succeeded'",
                           160, 120s),
            160)
      << "replica A:\n"
      << a->Output() << "\nreplica B:\n"
      << b->Output();
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions WHERE status <> 'succeeded'"), 0);

  // Exactly once: one successful start per execution reached the engine.
  const auto counts = StartCounts(start_log);
  EXPECT_EQ(counts.size(), 160u);
  for (const auto& [name, count] : counts) EXPECT_EQ(count, 1) << name << " started twice";

  // Fair order: among the first 40 outage executions to start, tenant_b's are many. In arrival
  // order there would be none (tenant_b's events came after tenant_a's 100); a perfectly even
  // drain gives all 20, and two replicas draining on their own breakers, with retries and probes
  // moved back, gave 11 to 20 in the runs so far.
  const int first_b = h.Count(
      "SELECT count(*) FROM (SELECT tenant_id FROM workflow_executions WHERE trigger_event_id LIKE "
      "'down-%' ORDER BY started_at LIMIT 40) s WHERE tenant_id = 'tenant_b'");
  EXPECT_GE(first_b, 8);

  // The outage was seen and ridden out: executions parked, the breaker probed and closed again.
  auto sum = [&](const std::string& sample) {
    return std::max(0.0, h.Metric(sample, port_a)) + std::max(0.0, h.Metric(sample, port_b));
  };
  EXPECT_GT(sum("workflowd_lifecycle_parked_total{provider=\"mock\"}"), 0);
  EXPECT_EQ(sum("workflowd_provider_circuit_state{provider=\"mock\",state=\"closed\"}"), 2);
  for (auto* d : {a.get(), b.get()}) {
    d->Signal(SIGTERM);
    EXPECT_EQ(d->Wait(30s), 0);
  }
  std::remove(start_log.c_str());
}

}  // namespace
}  // namespace workflowd
