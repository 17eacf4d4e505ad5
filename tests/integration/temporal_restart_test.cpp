// The Temporal provider across a restart of the real Temporal server (scripts/services.sh
// restart-temporal keeps its port and database): a run started before the restart finishes after
// it, once; a start repeated after the restart returns that same run; calls made while the server
// is down fail as retryable outages, never as something that would fail an execution for good.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "process.hpp"
#include "test_env.hpp"
#include "workflowd/providers/temporal/temporal_provider.hpp"

namespace workflowd::providers::temporal {
namespace {

using namespace std::chrono_literals;
using testing::RandomSuffix;
using testing::RequireEnv;

const std::string kServices = WORKFLOWD_SERVICES_SCRIPT;

void Services(const std::string& verb, const std::string& what) {
  auto [code, out] = testing::RunCommand({"/bin/bash", kServices, verb, what}, {}, 180s);
  ASSERT_EQ(code, 0) << kServices << " " << verb << " " << what << ":\n" << out;
}

TEST(TemporalRestart, ARunStartedBeforeAServerRestartFinishesOnceAfterIt) {
  Options o;
  o.address = RequireEnv("WORKFLOWD_TEMPORAL_ADDRESS");
  o.namespace_name = RequireEnv("WORKFLOWD_TEMPORAL_NAMESPACE");
  o.task_queue = RequireEnv("WORKFLOWD_TEMPORAL_TASK_QUEUE");
  o.rpc_attempts = 1;
  TemporalProvider provider(o, SystemClock::Instance());
  auto ctx = [] { return Context::Background().WithTimeout(10s); };
  WorkflowSpec spec;
  spec.workflow_id = "restart-" + RandomSuffix();
  spec.provider_type = "temporal";
  spec.name = "restart";
  spec.definition = Json::parse(R"({"steps": [
      {"id": "slow", "type": "assign_plan", "config": {"simulate": {"sleep_seconds": 3}}},
      {"id": "after", "type": "send_email", "config": {}, "depends_on": ["slow"]}]})");
  spec.retry_policy = RetryPolicy{3, 1.0, std::chrono::seconds(1), std::chrono::seconds(1)};
  // `stop temporal` stops the worker too: the step it was running is retried by the next worker
  // once its heartbeats stop.
  spec.provider_config = {{"temporal", {{"heartbeat_timeout_seconds", 2}}}};
  provider.CreateWorkflow(ctx(), spec);
  ExecutionInput in;
  in.execution_name = "e-" + RandomSuffix();
  in.input = {{"execution_id", in.execution_name}, {"event", {{"type", "customer.created"}}}};
  const auto first = provider.StartExecution(ctx(), spec.workflow_id, in);
  const std::string run =
      provider.GetExecutionStatus(ctx(), first.execution_id).metadata.at("run_id");

  Services("stop", "temporal");
  try {
    provider.GetExecutionStatus(Context::Background().WithTimeout(3s), first.execution_id);
    ADD_FAILURE() << "answered while the server is down";
  } catch (const ProviderError& e) {
    EXPECT_TRUE(e.Retryable()) << e.what();
  }
  Services("start", "temporal");

  const auto again = provider.StartExecution(ctx(), spec.workflow_id, in);
  EXPECT_EQ(again.execution_id, first.execution_id);
  ExecutionStatus s;
  for (auto until = std::chrono::steady_clock::now() + 90s;
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(250ms)) {
    try {
      s = provider.GetExecutionStatus(ctx(), first.execution_id);
    } catch (const ProviderError& e) {
      ASSERT_TRUE(e.Retryable()) << e.what();
      continue;
    }
    if (IsTerminal(s.state)) break;
  }
  ASSERT_EQ(s.state, ExecutionState::kSucceeded) << ToJson(s).dump(2);
  EXPECT_EQ(s.metadata.at("run_id"), run);  // the same run, not a second one
  int entered = 0;
  for (const auto& e : s.history) entered += e.type == "StateEntered" ? 1 : 0;
  EXPECT_EQ(entered, 2);  // each step scheduled once
}

}  // namespace
}  // namespace workflowd::providers::temporal
