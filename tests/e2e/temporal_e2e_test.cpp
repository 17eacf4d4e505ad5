// The daemon end to end with `provider: temporal`: events on the real Kafka become workflow runs
// on the real Temporal dev server, run by the step-runner worker (workers/temporal), and their
// steps and final states come back into the real PostgreSQL; with two replicas, one killed with
// -9 while it dispatches, nothing is started twice.
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "daemon_harness.hpp"
#include "pipeline_events.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::DaemonHarness;
using testing::Json;
using testing::RandomSuffix;
using testing::RequireEnv;
using testing::Structured;
using testing::TestProducer;

const std::string kBinary = WORKFLOWD_BINARY;

std::string TemporalConfig() {
  return "dispatch: {lease: 10s, call_timeout: 5s, idle_interval: 50ms}\n"
         "poll: {min_interval: 100ms, max_interval: 1s}\n"
         "providers:\n  temporal:\n    address: " +
         RequireEnv("WORKFLOWD_TEMPORAL_ADDRESS") +
         "\n    namespace: " + RequireEnv("WORKFLOWD_TEMPORAL_NAMESPACE") +
         "\n    task_queue: " + RequireEnv("WORKFLOWD_TEMPORAL_TASK_QUEUE") + "\n";
}

// Three steps: plan, then wallet (its config given), then an email when the customer has one.
std::string Definition(const std::string& id, const std::string& event,
                       const std::string& wallet_config) {
  return "  - id: " + id + "\n    tenant_id: tenant_a\n    environment_id: prod\n    name: " + id +
         "\n    trigger: {type: event, event_name: " + event +
         "}\n    steps:\n"
         "      - {id: assign_plan, order: 1, type: assign_plan, config: {plan_id: starter}}\n"
         "      - {id: create_wallet, order: 2, type: create_wallet, config: " +
         wallet_config +
         ", depends_on: [assign_plan]}\n"
         "      - {id: send_email, order: 3, type: send_email, config: {template: welcome}, "
         "depends_on: [create_wallet], condition: {field: data.customer.email, op: exists}}\n"
         "    retry_policy: {max_attempts: 2, initial_interval_seconds: 1, max_interval_seconds: "
         "1}\n"
         "    provider: temporal\n";
}

std::string Steps(DaemonHarness& h, const std::string& trigger_event_id) {
  std::string out;
  for (const auto& row :
       h.Query("SELECT s.step_id, s.status, s.started_at IS NOT NULL, s.completed_at IS NOT NULL "
               "FROM step_executions s JOIN workflow_executions e ON e.id = s.execution_id WHERE "
               "e.trigger_event_id = '" +
               trigger_event_id + "' ORDER BY s.step_id")) {
    out += row[0].as<std::string>() + "=" + row[1].as<std::string>() +
           (row[2].as<bool>() ? "+started" : "") + (row[3].as<bool>() ? "+completed" : "") + " ";
  }
  return out;
}

TEST(TemporalE2E, EventsBecomeRunsWhoseStepsAndFinalStatesComeBackIntoPostgres) {
  DaemonHarness h(kBinary, TemporalConfig());
  const std::string suffix = RandomSuffix();
  h.ApplyDefinitions("definitions:\n" +
                     Definition("onboard-" + suffix, "customer.created", "{currency: USD}") +
                     Definition("broken-" + suffix, "customer.broken", "{simulate: {fail: true}}") +
                     Definition("partial-" + suffix, "customer.partial",
                                "{simulate: {report_failure: wallet service refused}}"));
  TestProducer producer(h.brokers());
  const Json with_email = {{"customer", {{"email", "a@example.com"}}}};
  producer.Produce(h.topic(),
                   Structured("ok-1", "tenant_a", "prod", "customer.created", with_email));
  producer.Produce(h.topic(), Structured("ok-2", "tenant_a", "prod", "customer.created",
                                         {{"customer", {{"name", "no email"}}}}));
  producer.Produce(h.topic(),
                   Structured("broken-1", "tenant_a", "prod", "customer.broken", with_email));
  producer.Produce(h.topic(),
                   Structured("partial-1", "tenant_a", "prod", "customer.partial", with_email));
  producer.Flush();
  auto daemon = h.Start();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status IN "
                           "('succeeded', 'failed', 'timed_out', 'cancelled')",
                           4, 90s),
            4)
      << daemon->Output();
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions WHERE status = 'succeeded' AND "
                    "output->>'status' = 'succeeded' AND provider = 'temporal' AND "
                    "provider_execution_id LIKE '" +
                    RequireEnv("WORKFLOWD_TEMPORAL_NAMESPACE") + "/' || id::text || '/%'"),
            2);
  EXPECT_EQ(Steps(h, "ok-1"),
            "assign_plan=completed+started+completed create_wallet=completed+started+completed "
            "send_email=completed+started+completed ");
  // No email: the step's condition does not hold, the worker skips it.
  EXPECT_EQ(Steps(h, "ok-2"),
            "assign_plan=completed+started+completed create_wallet=completed+started+completed "
            "send_email=skipped ");
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions WHERE trigger_event_id = "
                    "'broken-1' AND status = 'failed' AND error->>'code' = 'StepFailed' AND "
                    "error->>'failed_at' = 'create_wallet'"),
            1);
  EXPECT_EQ(Steps(h, "broken-1"),
            "assign_plan=completed+started+completed create_wallet=failed+started+completed "
            "send_email=skipped ");
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions WHERE trigger_event_id = "
                    "'partial-1' AND status = 'failed' AND error->>'code' = "
                    "'WorkflowReportedFailure' AND error->>'message' = 'wallet service refused'"),
            1);
  // The wallet step completed its activity but reported failure: failed, and what depends on it
  // never ran.
  EXPECT_EQ(Steps(h, "partial-1"),
            "assign_plan=completed+started+completed create_wallet=failed+started+completed "
            "send_email=skipped ");
  EXPECT_EQ(h.Count("SELECT count(*) FROM step_executions s JOIN workflow_executions e ON e.id = "
                    "s.execution_id WHERE e.trigger_event_id = 'ok-1' AND s.step_id = "
                    "'assign_plan' AND s.output->>'plan_id' = 'starter'"),
            1);
  EXPECT_GT(h.Count("SELECT count(*) FROM execution_history WHERE event_type = 'StateEntered'"), 0);
  EXPECT_EQ(h.BrokenHistories(), 0);
  EXPECT_EQ(h.Metric("workflowd_execution_transitions_total{provider=\"temporal\",state="
                     "\"succeeded\"}"),
            2);
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(20s), 0);
}

// Runs of a definition in Temporal (its visibility store), by the search attribute workflowd sets.
int RunsOf(const std::string& definition_id) {
  auto [code, out] = testing::RunCommand({RequireEnv("WORKFLOWD_TEMPORAL_CLI"), "workflow", "count",
                                          "--address", RequireEnv("WORKFLOWD_TEMPORAL_ADDRESS"),
                                          "--namespace", RequireEnv("WORKFLOWD_TEMPORAL_NAMESPACE"),
                                          "--query", "WorkflowdDefinition='" + definition_id + "'"},
                                         {}, 30s);
  EXPECT_EQ(code, 0) << out;
  auto at = out.find("Total:");
  return at == std::string::npos ? -1 : std::stoi(out.substr(at + 6));
}

TEST(TemporalE2E, AReplicaKilledWhileDispatchingStartsNothingTwice) {
  DaemonHarness h(kBinary, TemporalConfig());
  const std::string id = "kill-" + RandomSuffix();
  h.ApplyDefinitions("definitions:\n" + Definition(id, "order.placed", "{}"));
  auto a = h.Start();
  auto b = h.Start();
  TestProducer producer(h.brokers());
  producer.Produce(h.topic(), Structured("warm-up", "tenant_a", "prod", "nobody.listens", {}));
  producer.Flush();
  ASSERT_TRUE(b->WaitForOutput("kafka partitions assigned", 30s)) << b->Output();
  constexpr int kEvents = 120;
  std::thread feeder([&] {
    TestProducer p(h.brokers());
    for (int i = 0; i < kEvents; ++i) {
      p.Produce(h.topic(),
                Structured("k-" + std::to_string(i), "tenant_a", "prod", "order.placed", {}));
      if (i % 20 == 0) std::this_thread::sleep_for(100ms);
    }
    p.Flush();
  });
  // Killed once it has started some, while events still flow.
  h.WaitForCount("SELECT least(count(*), 1) FROM workflow_executions WHERE status <> 'pending'", 1,
                 60s);
  a->Signal(SIGKILL);
  a->Wait(10s);
  feeder.join();
  auto a2 = h.Start();
  EXPECT_EQ(h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status = 'succeeded'",
                           kEvents, 120s),
            kEvents)
      << b->Output();
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions"), kEvents);
  // One run per execution in Temporal: visibility is updated asynchronously, so wait until it
  // counts them all, then check it counts no more.
  int runs = 0;
  for (auto until = std::chrono::steady_clock::now() + 30s;
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(500ms)) {
    runs = RunsOf(id);
    if (runs >= kEvents) break;
  }
  EXPECT_EQ(runs, kEvents);
  for (auto* d : {b.get(), a2.get()}) {
    d->Signal(SIGTERM);
    EXPECT_EQ(d->Wait(20s), 0);
  }
}

}  // namespace
}  // namespace workflowd
