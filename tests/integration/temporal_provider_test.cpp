// The Temporal provider against the real Temporal dev server and the step-runner worker
// (workers/temporal), both started by scripts/services.sh.
#include "workflowd/providers/temporal/temporal_provider.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "process.hpp"
#include "test_env.hpp"

namespace workflowd::providers::temporal {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using testing::RandomSuffix;
using testing::RequireEnv;

Options ServerOptions() {
  Options o;
  o.address = RequireEnv("WORKFLOWD_TEMPORAL_ADDRESS");
  o.namespace_name = RequireEnv("WORKFLOWD_TEMPORAL_NAMESPACE");
  o.task_queue = RequireEnv("WORKFLOWD_TEMPORAL_TASK_QUEUE");
  o.cancel_grace = 30s;
  return o;
}

Json Step(const std::string& id, const std::string& type, Json config = Json::object(),
          const std::vector<std::string>& depends_on = {}) {
  Json s = {{"id", id}, {"type", type}, {"config", std::move(config)}};
  if (!depends_on.empty()) s["depends_on"] = depends_on;
  return s;
}

WorkflowSpec Spec(Json steps, Json provider_config = nullptr) {
  WorkflowSpec s;
  s.workflow_id = "wf-" + RandomSuffix();
  s.provider_type = "temporal";
  s.name = "Onboarding";
  s.definition = {{"definition_id", "onboarding"},
                  {"version", 1},
                  {"tenant_id", "acme"},
                  {"environment_id", "prod"},
                  {"steps", std::move(steps)}};
  s.timeout = 300s;
  // One quick retry of each step (1 s apart) unless a step says otherwise.
  s.retry_policy = RetryPolicy{2, 1.0, 1s, 1s};
  s.provider_config = std::move(provider_config);
  return s;
}

ExecutionInput Input(const std::string& name, Json data = Json::object()) {
  ExecutionInput in;
  in.execution_name = name;
  in.input = {{"execution_id", name},
              {"tenant_id", "acme"},
              {"environment_id", "prod"},
              {"definition_id", "onboarding"},
              {"definition_version", 1},
              {"attempt", 1},
              {"start_attempt", 1},
              {"event",
               {{"id", "ev-" + name},
                {"type", "customer.created"},
                {"tenant", "acme"},
                {"environment", "prod"},
                {"data", std::move(data)}}}};
  return in;
}

class TemporalProviderTest : public ::testing::Test {
 protected:
  void SetUp() override { provider_ = std::make_unique<TemporalProvider>(ServerOptions(), clock_); }

  Context Ctx() const { return Context::Background().WithTimeout(20s); }

  // Polls until the run is terminal (the worker runs it in real time).
  ExecutionStatus WaitTerminal(const std::string& execution_id, std::chrono::seconds limit = 90s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto s = provider_->GetExecutionStatus(Ctx(), execution_id);
      if (IsTerminal(s.state) || std::chrono::steady_clock::now() > until) return s;
      std::this_thread::sleep_for(200ms);
    }
  }

  // Polls until some step event of `type` appears (the run got that far).
  void WaitForEvent(const std::string& execution_id, const std::string& type) {
    const auto until = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < until) {
      for (const auto& e : provider_->GetExecutionStatus(Ctx(), execution_id).history) {
        if (e.type == type) return;
      }
      std::this_thread::sleep_for(100ms);
    }
    FAIL() << "no " << type << " event in " << execution_id;
  }

  static std::vector<std::string> Types(const ExecutionStatus& s) {
    std::vector<std::string> out;
    for (const auto& e : s.history) out.push_back(e.type);
    return out;
  }

  static std::string RunOf(const ExecutionResult& r) {
    auto at = r.message.find("(run ");
    return at == std::string::npos ? "" : r.message.substr(at + 5, r.message.size() - at - 6);
  }

  static const ExecutionEvent* Find(const ExecutionStatus& s, const std::string& type,
                                    const std::string& step) {
    for (const auto& e : s.history) {
      if (e.type == type && e.details.value("state", "") == step) return &e;
    }
    return nullptr;
  }

  SystemClock& clock_ = SystemClock::Instance();
  std::unique_ptr<TemporalProvider> provider_;
};

TEST_F(TemporalProviderTest, AnEventsStepsRunAsADagAndTheRunSucceedsWithItsStepsInTheHistory) {
  auto spec = Spec(
      {Step("plan", "assign_plan", {{"plan_id", "starter"}}),
       Step("wallet", "create_wallet", {{"currency", "USD"}}, {"plan"}),
       Step("credits", "grant_credits", {{"amount", 100}}, {"plan"}),
       Step("email", "send_email", {{"template", "welcome"}}, {"wallet", "credits"}),
       Json{{"id", "vip"},
            {"type", "create_entitlement"},
            {"config", Json::object()},
            {"condition", {{"field", "data.customer.tier"}, {"op", "eq"}, {"value", "vip"}}}}});
  const auto created = provider_->CreateWorkflow(Ctx(), spec);
  EXPECT_EQ(created.resource_ids.at("workflow_type"), "WorkflowdStepRunner");
  EXPECT_EQ(created.resource_ids.at("namespace"), provider_->options().namespace_name);
  const std::string name = "e-" + RandomSuffix();
  const auto r = provider_->StartExecution(Ctx(), spec.workflow_id,
                                           Input(name, {{"customer", {{"tier", "basic"}}}}));
  EXPECT_EQ(r.execution_id, provider_->options().namespace_name + "/" + name + "/" + RunOf(r));
  EXPECT_EQ(r.state, ExecutionState::kRunning);
  EXPECT_FALSE(RunOf(r).empty()) << r.message;

  const auto s = WaitTerminal(r.execution_id);
  ASSERT_EQ(s.state, ExecutionState::kSucceeded) << ToJson(s).dump(2);
  EXPECT_EQ(s.workflow_id, spec.workflow_id);
  EXPECT_EQ(s.output["status"], "succeeded");
  EXPECT_EQ(s.output["steps"]["plan"]["status"], "completed");
  EXPECT_EQ(s.output["steps"]["vip"]["status"], "skipped");
  EXPECT_EQ(s.input.get()["event"]["type"], "customer.created");
  EXPECT_EQ(s.metadata.at("run_id"), RunOf(r));
  ASSERT_TRUE(s.stop_time.has_value());
  EXPECT_LE(s.start_time, *s.stop_time);
  EXPECT_EQ(Types(s).front(), "ExecutionStarted");
  EXPECT_EQ(Types(s).back(), "ExecutionCompleted");
  for (const char* step : {"plan", "wallet", "credits", "email"}) {
    const auto* entered = Find(s, "StateEntered", step);
    const auto* exited = Find(s, "StateExited", step);
    ASSERT_NE(entered, nullptr) << step;
    ASSERT_NE(exited, nullptr) << step;
    EXPECT_LE(entered->timestamp, exited->timestamp) << step;
  }
  ASSERT_NE(Find(s, "StateSkipped", "vip"), nullptr);
  EXPECT_EQ(Find(s, "StateEntered", "vip"), nullptr);
  // depends_on: the email waited for both of its dependencies.
  EXPECT_GE(Find(s, "StateEntered", "email")->timestamp,
            Find(s, "StateExited", "wallet")->timestamp);
  EXPECT_GE(Find(s, "StateEntered", "email")->timestamp,
            Find(s, "StateExited", "credits")->timestamp);
  EXPECT_EQ(Find(s, "StateExited", "plan")->details["result"]["plan_id"], "starter");
}

TEST_F(TemporalProviderTest, ARepeatedStartReturnsTheSameRunWhileRunningAndAfterItClosed) {
  auto spec = Spec({Step("slow", "assign_plan", {{"simulate", {{"sleep_seconds", 2}}}})});
  provider_->CreateWorkflow(Ctx(), spec);
  const std::string name = "e-" + RandomSuffix();
  const auto first = provider_->StartExecution(Ctx(), spec.workflow_id, Input(name));
  const auto again = provider_->StartExecution(Ctx(), spec.workflow_id, Input(name));
  // The server answers a repeated request id with the run it made (our request id is derived
  // from the execution name, so every replica and every retry sends the same one).
  EXPECT_FALSE(RunOf(first).empty());
  EXPECT_EQ(RunOf(again), RunOf(first));
  ASSERT_EQ(WaitTerminal(first.execution_id).state, ExecutionState::kSucceeded);
  const auto late = provider_->StartExecution(Ctx(), spec.workflow_id, Input(name));
  EXPECT_EQ(RunOf(late), RunOf(first));
  EXPECT_EQ(late.execution_id, first.execution_id);
}

TEST_F(TemporalProviderTest, AnotherReplicaStartingTheSameExecutionGetsTheSameRun) {
  auto spec = Spec({Step("plan", "assign_plan")});
  provider_->CreateWorkflow(Ctx(), spec);
  const std::string name = "e-" + RandomSuffix();
  const auto r = provider_->StartExecution(Ctx(), spec.workflow_id, Input(name));
  ASSERT_EQ(WaitTerminal(r.execution_id).state, ExecutionState::kSucceeded);
  // Another provider instance with another identity still derives the same request id: same run.
  Options other = ServerOptions();
  other.identity = "another-replica";
  TemporalProvider replica(other, clock_);
  replica.CreateWorkflow(Ctx(), spec);
  EXPECT_EQ(RunOf(replica.StartExecution(Ctx(), spec.workflow_id, Input(name))), RunOf(r));
}

TEST_F(TemporalProviderTest, StopCancelsTheRunAndIsIdempotent) {
  auto spec = Spec({Step("slow", "assign_plan", {{"simulate", {{"sleep_seconds", 120}}}}),
                    Step("after", "send_email", Json::object(), {"slow"})},
                   {{"temporal", {{"heartbeat_timeout_seconds", 5}}}});
  provider_->CreateWorkflow(Ctx(), spec);
  const auto r = provider_->StartExecution(Ctx(), spec.workflow_id, Input("e-" + RandomSuffix()));
  WaitForEvent(r.execution_id, "StateEntered");
  provider_->StopExecution(Ctx(), r.execution_id, "cancelled by operator");
  const auto s = WaitTerminal(r.execution_id);
  EXPECT_EQ(s.state, ExecutionState::kCancelled) << ToJson(s).dump(2);
  ASSERT_TRUE(s.error.has_value());
  EXPECT_EQ(s.error->code, "Cancelled");
  EXPECT_EQ(Find(s, "StateEntered", "after"), nullptr);
  const auto types = Types(s);
  EXPECT_NE(std::find(types.begin(), types.end(), "ExecutionCancelRequested"), types.end());
  EXPECT_NO_THROW(provider_->StopExecution(Ctx(), r.execution_id, "again"));
  EXPECT_EQ(provider_->GetExecutionStatus(Ctx(), r.execution_id).state, ExecutionState::kCancelled);
}

TEST_F(TemporalProviderTest, WithoutAGraceAStopTerminatesTheRun) {
  Options o = ServerOptions();
  o.cancel_grace = 0ms;
  TemporalProvider provider(o, clock_);
  auto spec = Spec({Step("slow", "assign_plan", {{"simulate", {{"sleep_seconds", 120}}}})});
  provider.CreateWorkflow(Ctx(), spec);
  const auto r = provider.StartExecution(Ctx(), spec.workflow_id, Input("e-" + RandomSuffix()));
  provider.StopExecution(Ctx(), r.execution_id, "deadline passed");
  const auto s = provider.GetExecutionStatus(Ctx(), r.execution_id);
  EXPECT_EQ(s.state, ExecutionState::kCancelled);
  ASSERT_TRUE(s.error.has_value());
  EXPECT_EQ(s.error->code, "Terminated");
  EXPECT_THAT(s.error->message, HasSubstr("deadline passed"));
}

TEST_F(TemporalProviderTest, AStepFailingBeyondItsRetriesFailsTheRunNamingTheStep) {
  auto spec = Spec({Step("plan", "assign_plan"),
                    Step("wallet", "create_wallet", {{"simulate", {{"fail", true}}}}, {"plan"}),
                    Step("email", "send_email", Json::object(), {"wallet"})});
  provider_->CreateWorkflow(Ctx(), spec);
  const auto r = provider_->StartExecution(Ctx(), spec.workflow_id, Input("e-" + RandomSuffix()));
  const auto s = WaitTerminal(r.execution_id);
  ASSERT_EQ(s.state, ExecutionState::kFailed) << ToJson(s).dump(2);
  ASSERT_TRUE(s.error.has_value());
  EXPECT_EQ(s.error->code, "StepFailed");
  EXPECT_THAT(s.error->message, HasSubstr("wallet"));
  EXPECT_THAT(s.error->cause, HasSubstr("simulated failure of step wallet"));
  EXPECT_EQ(s.error->failed_at, "wallet");
  const auto* failed = Find(s, "StateFailed", "wallet");
  ASSERT_NE(failed, nullptr);
  EXPECT_THAT(failed->details["error"]["cause"].get<std::string>(), HasSubstr("simulated failure"));
  const auto* attempt = Find(s, "StepAttemptStarted", "wallet");
  ASSERT_NE(attempt, nullptr);
  EXPECT_EQ(attempt->details["attempt"], 2);  // the definition's retry policy: 2 attempts
  EXPECT_NE(Find(s, "StateExited", "plan"), nullptr);
  EXPECT_EQ(Find(s, "StateEntered", "email"), nullptr);
}

TEST_F(TemporalProviderTest, ARunThatCompletesReportingFailureIsFailedUnlessTheRuleIsOff) {
  for (const bool rule_on : {true, false}) {
    auto spec =
        Spec({Step("email", "send_email", {{"simulate", {{"report_failure", "mailbox full"}}}})},
             rule_on ? Json(nullptr) : Json{{"temporal", {{"failed_result", false}}}});
    provider_->CreateWorkflow(Ctx(), spec);
    const auto r = provider_->StartExecution(Ctx(), spec.workflow_id, Input("e-" + RandomSuffix()));
    const auto s = WaitTerminal(r.execution_id);
    EXPECT_EQ(s.output["status"], "failed");
    if (rule_on) {
      ASSERT_EQ(s.state, ExecutionState::kFailed) << ToJson(s).dump(2);
      ASSERT_TRUE(s.error.has_value());
      EXPECT_EQ(s.error->code, "WorkflowReportedFailure");
      EXPECT_THAT(s.error->message, HasSubstr("mailbox full"));
      EXPECT_EQ(s.error->failed_at, "email");
      const auto* step = Find(s, "StateFailed", "email");
      ASSERT_NE(step, nullptr);  // the step that reported it, though its activity completed
      EXPECT_EQ(step->details["error"]["message"], "mailbox full");
    } else {
      EXPECT_EQ(s.state, ExecutionState::kSucceeded);
      EXPECT_FALSE(s.error.has_value());
    }
  }
}

TEST_F(TemporalProviderTest, ARunTerminatedByAnOperatorFailedAndTheCacheNeverHidesItsEnd) {
  auto spec = Spec({Step("slow", "assign_plan", {{"simulate", {{"sleep_seconds", 120}}}})});
  provider_->CreateWorkflow(Ctx(), spec);
  const std::string name = "e-" + RandomSuffix();
  const auto r = provider_->StartExecution(Ctx(), spec.workflow_id, Input(name));
  WaitForEvent(r.execution_id, "StateEntered");
  // Two polls of the open run: the second is answered from the last status (history unchanged).
  EXPECT_EQ(provider_->GetExecutionStatus(Ctx(), r.execution_id).state, ExecutionState::kRunning);
  EXPECT_EQ(provider_->GetExecutionStatus(Ctx(), r.execution_id).state, ExecutionState::kRunning);
  auto [code, out] = testing::RunCommand(
      {RequireEnv("WORKFLOWD_TEMPORAL_CLI"), "workflow", "terminate", "--address",
       provider_->options().address, "--namespace", provider_->options().namespace_name,
       "--workflow-id", name, "--reason", "operator cleanup"},
      {}, 30s);
  ASSERT_EQ(code, 0) << out;
  const auto s = provider_->GetExecutionStatus(Ctx(), r.execution_id);
  EXPECT_EQ(s.state, ExecutionState::kFailed);
  ASSERT_TRUE(s.error.has_value());
  EXPECT_EQ(s.error->code, "Terminated");
  EXPECT_THAT(s.error->message, HasSubstr("operator cleanup"));
}

TEST_F(TemporalProviderTest, UnknownWorkflowsAndExecutionsAreNotFound) {
  try {
    provider_->StartExecution(Ctx(), "never-created", Input("e-" + RandomSuffix()));
    FAIL() << "started";
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kWorkflowNotFound);
  }
  try {
    provider_->GetExecutionStatus(Ctx(), provider_->options().namespace_name + "/no-such-run");
    FAIL() << "found";
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kExecutionNotFound);
  }
  EXPECT_THROW(provider_->StopExecution(Ctx(), "no-such-run", "x"), ProviderError);
}

TEST_F(TemporalProviderTest, AnUnknownNamespaceIsAnOutageNamingTheSetting) {
  Options o = ServerOptions();
  o.namespace_name = "no-such-namespace-" + RandomSuffix();
  TemporalProvider provider(o, clock_);
  auto spec = Spec({Step("plan", "assign_plan")});
  provider.CreateWorkflow(Ctx(), spec);
  try {
    provider.StartExecution(Ctx(), spec.workflow_id, Input("e-" + RandomSuffix()));
    FAIL() << "started";
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);  // executions wait; none fails for it
    EXPECT_THAT(e.what(), HasSubstr(o.namespace_name));
    EXPECT_THAT(e.what(), HasSubstr("providers.temporal.namespace"));
  }
}

TEST_F(TemporalProviderTest, NothingListeningIsUnavailableWithinTheCallersDeadline) {
  Options o = ServerOptions();
  o.address = "127.0.0.1:1";  // nothing listens on port 1
  o.rpc_attempts = 3;
  o.rpc_initial_backoff = 50ms;
  TemporalProvider provider(o, clock_);
  auto spec = Spec({Step("plan", "assign_plan")});
  provider.CreateWorkflow(Ctx(), spec);
  const auto began = std::chrono::steady_clock::now();
  try {
    provider.StartExecution(Context::Background().WithTimeout(5s), spec.workflow_id,
                            Input("e-" + RandomSuffix()));
    FAIL() << "started";
  } catch (const ProviderError& e) {
    EXPECT_TRUE(e.code() == ErrorCode::kUnavailable || e.code() == ErrorCode::kDeadlineExceeded)
        << ToString(e.code()) << " " << e.what();
    EXPECT_TRUE(e.Retryable());
    EXPECT_THAT(e.what(), HasSubstr("127.0.0.1:1"));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - began, 6s);
}

TEST_F(TemporalProviderTest, TlsToAPlaintextServerFailsNamingTls) {
  Options o = ServerOptions();
  o.tls.enabled = true;
  TemporalProvider provider(o, clock_);
  try {
    provider.CheckReachable(Context::Background().WithTimeout(5s));
    FAIL() << "reached";
  } catch (const ProviderError& e) {
    EXPECT_TRUE(e.Retryable()) << e.what();
    EXPECT_THAT(e.what(), HasSubstr("TLS"));
  }
  o.tls.ca_file = "/nonexistent/ca.pem";
  try {
    TemporalProvider bad(o, clock_);
    FAIL() << "built";
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidSpec);
    EXPECT_THAT(e.what(), HasSubstr("providers.temporal.tls.ca_file"));
    EXPECT_THAT(e.what(), HasSubstr("/nonexistent/ca.pem"));
  }
}

TEST_F(TemporalProviderTest, ValidateRefusesBadProviderConfigWithoutCallingTheServer) {
  auto spec = Spec({Step("plan", "assign_plan")}, {{"temporal", {{"task_queue", 7}}}});
  try {
    provider_->Validate(Ctx(), spec);
    FAIL() << "valid";
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidSpec);
    EXPECT_THAT(e.what(), HasSubstr("provider_config.temporal.task_queue"));
  }
  EXPECT_THROW(provider_->CreateWorkflow(Ctx(), spec), ProviderError);
}

}  // namespace
}  // namespace workflowd::providers::temporal
