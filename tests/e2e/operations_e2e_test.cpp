// Operations through the CLI of the built binary: show, cancel, retry an execution and delete a
// definition with running executions (refused, or cancelled with force), scoped to a tenant x
// environment.
#include <gtest/gtest.h>
#include <signal.h>

#include "daemon_harness.hpp"
#include "pipeline_events.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;
using testing::DaemonHarness;
using testing::DefinitionYaml;
using testing::Json;
using testing::Structured;
using testing::TestProducer;

const std::string kBinary = WORKFLOWD_BINARY;

TEST(OperationsE2E, CancelRetryShowAndDeleteThroughTheCli) {
  DaemonHarness h(kBinary,
                  "dispatch: {lease: 3s, call_timeout: 1s, idle_interval: 50ms}\n"
                  "poll: {min_interval: 100ms, max_interval: 1s}\n");
  h.ApplyDefinitions(
      "definitions:\n"
      "  - id: hang\n    tenant_id: tenant_a\n    environment_id: prod\n    name: hang\n"
      "    trigger: {type: event, event_name: order.placed}\n"
      "    steps: [{id: s1, order: 1, type: assign_plan, config: {}}]\n"
      "    provider_config: {mock: {outcome: run_until_stopped}}\n");
  TestProducer producer(h.brokers());
  producer.Produce(h.topic(), Structured("e1", "tenant_a", "prod", "order.placed", {}));
  producer.Produce(h.topic(), Structured("e2", "tenant_a", "prod", "order.placed", {}));
  producer.Flush();
  auto daemon = h.Start();
  ASSERT_EQ(
      h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status = 'running'", 2, 60s),
      2);
  ASSERT_EQ(h.WaitForCount("SELECT count(*) FROM step_executions", 2, 30s), 2);  // polled once
  std::string id = h.Query("SELECT id FROM workflow_executions WHERE trigger_event_id = 'e1'")[0][0]
                       .as<std::string>();

  auto [code, out] =
      h.Cli({"executions", "show", id, "--tenant", "tenant_a", "--environment", "prod"});
  ASSERT_EQ(code, 0) << out;
  auto shown = Json::parse(out.substr(out.find('{')));
  EXPECT_EQ(shown["status"], "running");
  EXPECT_EQ(shown["step_executions"][0]["step_id"], "s1");

  // Another tenant sees nothing (exit 3, "not found").
  std::tie(code, out) =
      h.Cli({"executions", "cancel", id, "--tenant", "tenant_b", "--environment", "prod"});
  EXPECT_EQ(code, 3) << out;
  EXPECT_NE(out.find("not found"), std::string::npos) << out;

  std::tie(code, out) = h.Cli({"executions", "cancel", id, "--tenant", "tenant_a", "--environment",
                               "prod", "--reason", "customer churned"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("cancelled"), std::string::npos) << out;
  std::tie(code, out) =
      h.Cli({"executions", "cancel", id, "--tenant", "tenant_a", "--environment", "prod"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("(unchanged)"), std::string::npos) << out;

  std::tie(code, out) =
      h.Cli({"executions", "retry", id, "--tenant", "tenant_a", "--environment", "prod"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(h.Count("SELECT count(*) FROM workflow_executions WHERE retry_of = '" + id +
                    "' AND attempt = 2"),
            1);
  EXPECT_EQ(
      h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status = 'running'", 2, 60s),
      2);  // e2 and the retry

  std::tie(code, out) =
      h.Cli({"definitions", "delete", "hang", "--tenant", "tenant_a", "--environment", "prod"});
  EXPECT_EQ(code, 3) << out;
  EXPECT_NE(out.find("2 pending or running"), std::string::npos) << out;
  std::tie(code, out) = h.Cli({"definitions", "delete", "hang", "--tenant", "tenant_a",
                               "--environment", "prod", "--force"});
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("2 execution(s) cancelled"), std::string::npos) << out;
  EXPECT_EQ(
      h.Count("SELECT count(*) FROM workflow_executions WHERE status IN ('pending', 'running')"),
      0);
  EXPECT_EQ(
      h.Count("SELECT count(*) FROM workflow_definitions WHERE id = 'hang' AND status = 'deleted'"),
      1);
  for (int i = 0; i < 100 && h.Metric("workflowd_definitions_loaded") != 0; ++i)
    std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.Metric("workflowd_definitions_loaded"), 0);
  daemon->Signal(SIGTERM);
  EXPECT_EQ(daemon->Wait(20s), 0);
}

// An execution parked during its engine's outage (pending, its start's error saying so) is shown
// as parked.
TEST(OperationsE2E, ShowSaysAnExecutionIsParked) {
  DaemonHarness h(kBinary, "dispatch: {enabled: false}\n");
  h.ApplyDefinitions(
      "definitions:\n"
      "  - id: parked\n    tenant_id: tenant_a\n    environment_id: prod\n    name: parked\n"
      "    trigger: {type: event, event_name: order.placed}\n"
      "    steps: [{id: s1, order: 1, type: assign_plan, config: {}}]\n");
  TestProducer producer(h.brokers());
  producer.Produce(h.topic(), Structured("e1", "tenant_a", "prod", "order.placed", {}));
  producer.Flush();
  auto daemon = h.Start();
  ASSERT_EQ(
      h.WaitForCount("SELECT count(*) FROM workflow_executions WHERE status = 'pending'", 1, 60s),
      1);
  std::string id = h.Query("SELECT id FROM workflow_executions WHERE trigger_event_id = 'e1'")[0][0]
                       .as<std::string>();
  auto [code, out] =
      h.Cli({"executions", "show", id, "--tenant", "tenant_a", "--environment", "prod"});
  ASSERT_EQ(code, 0) << out;
  EXPECT_FALSE(Json::parse(out.substr(out.find('{'))).contains("parked")) << out;
  h.Exec(
      "UPDATE workflow_executions SET error = '{\"code\": \"engine_unavailable\", \"parked\": "
      "true, \"provider\": \"mock\"}' WHERE id = '" +
      id + "'");
  std::tie(code, out) =
      h.Cli({"executions", "show", id, "--tenant", "tenant_a", "--environment", "prod"});
  ASSERT_EQ(code, 0) << out;
  auto shown = Json::parse(out.substr(out.find('{')));
  EXPECT_EQ(shown["status"], "pending");
  EXPECT_EQ(shown["parked"], true);
  EXPECT_NE(shown["status_detail"].get<std::string>().find("parked: waiting for provider mock"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace workflowd
