// The Temporal provider's mapping, without a server: payloads, run status, history, failures,
// gRPC errors, per-definition settings and the step-runner's input.
#include <gmock/gmock.h>
#include <google/protobuf/any.pb.h>
#include <gtest/gtest.h>

#include "google/rpc/status.pb.h"
#include "temporal/api/errordetails/v1/message.pb.h"
#include "workflowd/providers/temporal/mapping.hpp"
#include "workflowd/providers/temporal/options.hpp"

namespace workflowd::providers::temporal {
namespace {

using ::testing::HasSubstr;
namespace enums = api::enums::v1;
using History = google::protobuf::RepeatedPtrField<api::history::v1::HistoryEvent>;

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

WorkflowSpec Spec(Json steps, Json provider_config = nullptr) {
  WorkflowSpec s;
  s.workflow_id = "onboarding-v1";
  s.provider_type = "temporal";
  s.name = "Onboarding";
  s.definition = {{"steps", std::move(steps)}};
  s.provider_config = std::move(provider_config);
  s.retry_policy = RetryPolicy{3, 2.0, std::chrono::seconds(1), std::chrono::seconds(30)};
  return s;
}

api::history::v1::HistoryEvent& Add(History& h, enums::EventType type, int64_t seconds) {
  auto* e = h.Add();
  e->set_event_id(h.size());
  e->set_event_type(type);
  e->mutable_event_time()->set_seconds(seconds);
  return *e;
}

TEST(TemporalPayload, JsonRoundTripsAsJsonPlain) {
  const Json v = {{"a", 1}, {"b", {"x", "ü"}}};
  const auto p = JsonPayload(v);
  EXPECT_EQ(p.metadata().at("encoding"), "json/plain");
  EXPECT_EQ(p.data(), R"({"a":1,"b":["x","ü"]})");
  EXPECT_EQ(PayloadJson(p), v);
}

TEST(TemporalPayload, OtherEncodingsAreRefusedNamingTheEncoding) {
  api::common::v1::Payload p;
  (*p.mutable_metadata())["encoding"] = "binary/encrypted";
  p.set_data("xx");
  try {
    PayloadJson(p);
    FAIL() << "no error";
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal);
    EXPECT_THAT(e.what(), HasSubstr("binary/encrypted"));
  }
  (*p.mutable_metadata())["encoding"] = "binary/null";
  EXPECT_TRUE(PayloadJson(p).is_null());
  (*p.mutable_metadata())["encoding"] = "json/plain";
  p.set_data("{not json");
  EXPECT_THROW(PayloadJson(p), ProviderError);
}

TEST(TemporalStatus, EachRunStatusMapsToAState) {
  EXPECT_EQ(MapStatus(enums::WORKFLOW_EXECUTION_STATUS_RUNNING), ExecutionState::kRunning);
  EXPECT_EQ(MapStatus(enums::WORKFLOW_EXECUTION_STATUS_COMPLETED), ExecutionState::kSucceeded);
  EXPECT_EQ(MapStatus(enums::WORKFLOW_EXECUTION_STATUS_FAILED), ExecutionState::kFailed);
  EXPECT_EQ(MapStatus(enums::WORKFLOW_EXECUTION_STATUS_CANCELED), ExecutionState::kCancelled);
  EXPECT_EQ(MapStatus(enums::WORKFLOW_EXECUTION_STATUS_TERMINATED), ExecutionState::kCancelled);
  EXPECT_EQ(MapStatus(enums::WORKFLOW_EXECUTION_STATUS_TIMED_OUT), ExecutionState::kTimedOut);
  EXPECT_EQ(MapStatus(enums::WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW), ExecutionState::kRunning);
  EXPECT_EQ(MapStatus(enums::WORKFLOW_EXECUTION_STATUS_PAUSED), ExecutionState::kRunning);
}

TEST(TemporalSettings, DefaultsAndEveryKey) {
  std::vector<std::string> problems;
  auto s = ParseDefinitionSettings(nullptr, problems);
  EXPECT_TRUE(problems.empty());
  EXPECT_EQ(s.failed_result_field, "status");
  EXPECT_TRUE(ResultSaysFailed({{"status", "failed"}}, s));
  EXPECT_FALSE(ResultSaysFailed({{"status", "succeeded"}}, s));
  EXPECT_FALSE(ResultSaysFailed("a string result", s));

  s = ParseDefinitionSettings(
      {{"temporal",
        {{"namespace", "billing"},
         {"task_queue", "q2"},
         {"workflow_type", "Custom"},
         {"step_timeout_seconds", 60},
         {"heartbeat_timeout_seconds", 10},
         {"failed_result", {{"field", "outcome"}, {"values", {"partial", "error"}}}}}}},
      problems);
  EXPECT_TRUE(problems.empty()) << Join(problems);
  EXPECT_EQ(s.namespace_name, "billing");
  EXPECT_EQ(s.task_queue, "q2");
  EXPECT_EQ(s.workflow_type, "Custom");
  EXPECT_EQ(s.step_timeout, std::chrono::seconds(60));
  EXPECT_TRUE(ResultSaysFailed({{"outcome", "partial"}}, s));
  EXPECT_FALSE(ResultSaysFailed({{"status", "failed"}}, s));

  s = ParseDefinitionSettings({{"temporal", {{"failed_result", false}}}}, problems);
  EXPECT_TRUE(problems.empty());
  EXPECT_FALSE(ResultSaysFailed({{"status", "failed"}}, s));
}

TEST(TemporalSettings, EveryProblemIsNamed) {
  std::vector<std::string> problems;
  ParseDefinitionSettings({{"temporal",
                            {{"task_qeue", "x"},
                             {"namespace", ""},
                             {"step_timeout_seconds", 0},
                             {"failed_result", {{"values", Json::array()}}}}}},
                          problems);
  const std::string all = Join(problems);
  EXPECT_THAT(all, HasSubstr("provider_config.temporal.task_qeue: unknown key"));
  EXPECT_THAT(all, HasSubstr("provider_config.temporal.namespace: expected a non-empty string"));
  EXPECT_THAT(all, HasSubstr("provider_config.temporal.step_timeout_seconds: expected an integer"));
  EXPECT_THAT(all, HasSubstr("provider_config.temporal.failed_result.field"));
  EXPECT_THAT(all, HasSubstr("provider_config.temporal.failed_result.values"));
  problems.clear();
  ParseDefinitionSettings({{"temporal", "billing"}}, problems);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_THAT(problems[0], HasSubstr("expected an object"));
}

TEST(TemporalInput, StepsCarryRetryPoliciesTimeoutsAndWhetherTheirConditionHolds) {
  std::vector<std::string> problems;
  const auto spec = Spec(Json::parse(R"([
    {"id": "plan", "type": "assign_plan", "config": {"plan_id": "starter"}},
    {"id": "wallet", "type": "create_wallet", "config": {}, "depends_on": ["plan"],
     "retry_policy": {"max_attempts": 5, "initial_interval_seconds": 2, "backoff_coefficient": 1.5,
                      "max_interval_seconds": 20}},
    {"id": "email", "type": "send_email", "config": {}, "depends_on": ["wallet"],
     "condition": {"field": "data.customer.email", "op": "exists"}},
    {"id": "vip", "type": "grant_credits", "config": {},
     "condition": {"field": "data.customer.tier", "op": "eq", "value": "vip"}}])"),
                         {{"temporal", {{"step_timeout_seconds", 42}}}});
  const auto settings = ParseDefinitionSettings(spec.provider_config, problems);
  const auto plans = PlanSteps(spec, settings, problems);
  ASSERT_TRUE(problems.empty()) << Join(problems);
  ASSERT_EQ(plans.size(), 4u);
  const Json in = WorkflowInput(
      plans, {{"execution_id", "e1"},
              {"tenant_id", "acme"},
              {"environment_id", "prod"},
              {"definition_id", "onboarding"},
              {"definition_version", 3},
              {"attempt", 1},
              {"start_attempt", 2},
              {"event",
               {{"type", "customer.created"},
                {"data", {{"customer", {{"email", "a@example.com"}, {"tier", "basic"}}}}}}}});
  EXPECT_EQ(in["execution_id"], "e1");
  EXPECT_EQ(in["definition_version"], 3);
  EXPECT_EQ(in["context"]["start_attempt"], 2);
  EXPECT_EQ(in["event"]["type"], "customer.created");
  const Json& steps = in["steps"];
  EXPECT_EQ(steps[0]["retry_policy"]["maximum_attempts"], 3);  // the definition's
  EXPECT_EQ(steps[0]["retry_policy"]["maximum_interval_seconds"], 30);
  EXPECT_EQ(steps[1]["retry_policy"]["maximum_attempts"], 5);  // its own
  EXPECT_EQ(steps[1]["retry_policy"]["backoff_coefficient"], 1.5);
  EXPECT_EQ(steps[1]["depends_on"], Json::array({"plan"}));
  EXPECT_EQ(steps[0]["start_to_close_timeout_seconds"], 42);
  EXPECT_EQ(steps[0]["config"]["plan_id"], "starter");
  EXPECT_TRUE(steps[2]["run"].get<bool>());   // the email exists
  EXPECT_FALSE(steps[3]["run"].get<bool>());  // not a vip
  EXPECT_TRUE(steps[3].contains("skip_reason"));
}

TEST(TemporalInput, AStepWithoutIdOrWithABadConditionIsAProblem) {
  std::vector<std::string> problems;
  PlanSteps(Spec(Json::parse(R"([{"type": "assign_plan"},
      {"id": "b", "type": "send_email", "condition": {"field": "data.x", "op": "equals"}}])")),
            {}, problems);
  const std::string all = Join(problems);
  EXPECT_THAT(all, HasSubstr("definition.steps[0]: expected a step with an id and a type"));
  EXPECT_THAT(all, HasSubstr("definition.steps[1].condition"));
  problems.clear();
  PlanSteps(Spec(Json::array()), {}, problems);
  EXPECT_THAT(Join(problems), HasSubstr("definition.steps"));
}

TEST(TemporalHistory, ActivitiesBecomeStepEventsAndALongerHistoryOnlyAppends) {
  History h;
  Add(h, enums::EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, 100)
      .mutable_workflow_execution_started_event_attributes()
      ->mutable_workflow_type()
      ->set_name("WorkflowdStepRunner");
  Add(h, enums::EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, 100);
  auto& sched = Add(h, enums::EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, 101);
  sched.mutable_activity_task_scheduled_event_attributes()->set_activity_id("plan");
  sched.mutable_activity_task_scheduled_event_attributes()->mutable_activity_type()->set_name(
      "assign_plan");
  auto& started = Add(h, enums::EVENT_TYPE_ACTIVITY_TASK_STARTED, 102);
  started.mutable_activity_task_started_event_attributes()->set_scheduled_event_id(
      sched.event_id());
  started.mutable_activity_task_started_event_attributes()->set_attempt(2);
  const auto prefix = MapHistory(h);

  auto& done = Add(h, enums::EVENT_TYPE_ACTIVITY_TASK_COMPLETED, 103);
  done.mutable_activity_task_completed_event_attributes()->set_scheduled_event_id(sched.event_id());
  *done.mutable_activity_task_completed_event_attributes()->mutable_result()->add_payloads() =
      JsonPayload({{"plan_id", "starter"}});
  auto& failed = Add(h, enums::EVENT_TYPE_ACTIVITY_TASK_FAILED, 104);
  failed.mutable_activity_task_failed_event_attributes()->set_scheduled_event_id(999);  // unknown
  failed.mutable_activity_task_failed_event_attributes()->mutable_failure()->set_message("boom");
  auto& end = Add(h, enums::EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, 105);
  *end.mutable_workflow_execution_completed_event_attributes()->mutable_result()->add_payloads() =
      JsonPayload({{"status", "succeeded"},
                   {"steps",
                    {{"plan", {{"status", "completed"}}},
                     {"email", {{"status", "skipped"}, {"reason", "condition"}}},
                     {"wallet", {{"status", "failed"}, {"error", "refused"}}}}}});
  const auto all = MapHistory(h);

  ASSERT_EQ(prefix.size(), 3u);
  ASSERT_GT(all.size(), prefix.size());
  for (size_t i = 0; i < prefix.size(); ++i) EXPECT_EQ(all[i], prefix[i]) << i;
  std::vector<std::string> types;
  for (const auto& e : all) types.push_back(e.type);
  EXPECT_EQ(types, (std::vector<std::string>{"ExecutionStarted", "StateEntered",
                                             "StepAttemptStarted", "StateExited", "StateFailed",
                                             "StateSkipped", "StateFailed", "ExecutionCompleted"}));
  EXPECT_EQ(all[1].details["state"], "plan");
  EXPECT_EQ(all[1].details["step_type"], "assign_plan");
  EXPECT_EQ(all[1].timestamp, ToTimePoint(sched.event_time()));
  EXPECT_EQ(all[2].details["attempt"], 2);
  EXPECT_EQ(all[3].details["state"], "plan");
  EXPECT_EQ(all[3].details["result"]["plan_id"], "starter");
  EXPECT_EQ(all[4].details["state"], "");  // a step it cannot name stays unnamed
  EXPECT_EQ(all[4].details["error"]["message"], "boom");
  EXPECT_EQ(all[5].details["state"], "email");
  EXPECT_EQ(all[6].details["state"], "wallet");  // reported failure in its result
  EXPECT_EQ(all[6].details["error"]["code"], "StepReportedFailure");
  EXPECT_EQ(all[6].details["error"]["message"], "refused");
}

TEST(TemporalFailure, TheCauseChainNamesTheStepAndKeepsTheStack) {
  api::failure::v1::Failure f;
  f.set_message("step wallet (create_wallet) failed: simulated");
  f.mutable_application_failure_info()->set_type("StepFailed");
  auto* activity = f.mutable_cause();
  activity->set_message("Activity task failed");
  activity->mutable_activity_failure_info()->set_activity_id("wallet");
  auto* app = activity->mutable_cause();
  app->set_message("simulated failure of step wallet");
  app->mutable_application_failure_info()->set_type("SimulatedFailure");
  app->set_stack_trace("  File \"activities.py\", line 10");
  const ExecutionError e = ErrorFromFailure(f);
  EXPECT_EQ(e.code, "StepFailed");
  EXPECT_EQ(e.message, "step wallet (create_wallet) failed: simulated");
  EXPECT_EQ(e.failed_at, "wallet");
  EXPECT_THAT(e.cause, HasSubstr("SimulatedFailure: simulated failure of step wallet"));
  EXPECT_THAT(e.cause, HasSubstr("activities.py"));

  const ExecutionError r = ErrorFromFailedResult(
      {{"status", "failed"}, {"failed_step", "email"}, {"error", "mailbox full"}});
  EXPECT_EQ(r.code, "WorkflowReportedFailure");
  EXPECT_EQ(r.message, "mailbox full");
  EXPECT_EQ(r.failed_at, "email");
}

grpc::Status WithDetail(grpc::StatusCode code, const std::string& message,
                        const google::protobuf::Message& detail) {
  google::rpc::Status s;
  s.set_code(static_cast<int>(code));
  s.set_message(message);
  s.add_details()->PackFrom(detail);
  return {code, message, s.SerializeAsString()};
}

TEST(TemporalErrors, CodesMapToRetryableOrNotWithAHint) {
  auto code = [](grpc::StatusCode c, ErrorCode not_found = ErrorCode::kExecutionNotFound) {
    return ErrorFromStatus(grpc::Status(c, "said"), "describe", "default/e1", not_found).code();
  };
  EXPECT_EQ(code(grpc::StatusCode::UNAVAILABLE), ErrorCode::kUnavailable);
  EXPECT_EQ(code(grpc::StatusCode::UNAUTHENTICATED), ErrorCode::kUnavailable);
  EXPECT_EQ(code(grpc::StatusCode::RESOURCE_EXHAUSTED), ErrorCode::kThrottled);
  EXPECT_EQ(code(grpc::StatusCode::DEADLINE_EXCEEDED), ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(code(grpc::StatusCode::INVALID_ARGUMENT), ErrorCode::kInvalidSpec);
  EXPECT_EQ(code(grpc::StatusCode::NOT_FOUND), ErrorCode::kExecutionNotFound);
  EXPECT_EQ(code(grpc::StatusCode::NOT_FOUND, ErrorCode::kWorkflowNotFound),
            ErrorCode::kWorkflowNotFound);
  EXPECT_EQ(code(grpc::StatusCode::ALREADY_EXISTS), ErrorCode::kAlreadyExists);
  EXPECT_EQ(code(grpc::StatusCode::UNIMPLEMENTED), ErrorCode::kUnavailable);
  EXPECT_EQ(code(grpc::StatusCode::CANCELLED), ErrorCode::kUnavailable);  // never ours
  EXPECT_EQ(code(grpc::StatusCode::FAILED_PRECONDITION), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(code(grpc::StatusCode::OUT_OF_RANGE), ErrorCode::kInternal);
  EXPECT_EQ(ErrorFromStatus(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                         "grpc: received message larger than max"),
                            "start", "default/e1", ErrorCode::kWorkflowNotFound)
                .code(),
            ErrorCode::kInvalidSpec);

  const auto e = ErrorFromStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"),
                                 "start", "default/e1", ErrorCode::kWorkflowNotFound);
  EXPECT_THAT(e.what(), HasSubstr("temporal start (default/e1)"));
  EXPECT_THAT(e.what(), HasSubstr("connection refused"));

  api::errordetails::v1::NamespaceNotFoundFailure nf;
  nf.set_namespace_("nope");
  const auto ns =
      ErrorFromStatus(WithDetail(grpc::StatusCode::NOT_FOUND, "Namespace nope is not found.", nf),
                      "start", "nope/e1", ErrorCode::kWorkflowNotFound);
  EXPECT_EQ(ns.code(), ErrorCode::kUnavailable);  // waits for the configuration to be fixed
  EXPECT_THAT(ns.what(), HasSubstr("providers.temporal.namespace"));
  EXPECT_EQ(ErrorDetailTypes(WithDetail(grpc::StatusCode::NOT_FOUND, "x", nf)),
            std::vector<std::string>{"temporal.api.errordetails.v1.NamespaceNotFoundFailure"});

  const auto sa = ErrorFromStatus(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                               "Namespace default has no mapping defined for "
                                               "search attribute WorkflowdTenant"),
                                  "start", "default/e1", ErrorCode::kWorkflowNotFound);
  EXPECT_THAT(sa.what(), HasSubstr("providers.temporal.search_attributes: false"));
  EXPECT_EQ(sa.code(), ErrorCode::kUnavailable);  // the cluster's setup: executions wait
}

TEST(TemporalErrors, AlreadyStartedCarriesTheRequestIdOfTheRunThatHoldsTheId) {
  api::errordetails::v1::WorkflowExecutionAlreadyStartedFailure f;
  f.set_start_request_id("workflowd-start-e1");
  f.set_run_id("run-1");
  const auto got = AlreadyStartedOf(WithDetail(grpc::StatusCode::ALREADY_EXISTS, "exists", f));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->start_request_id, "workflowd-start-e1");
  EXPECT_EQ(got->run_id, "run-1");
  EXPECT_FALSE(AlreadyStartedOf(grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "no details")));
}

TEST(TemporalOptions, ProblemsNameTheOption) {
  Options o;
  EXPECT_TRUE(OptionsProblems(o).empty());  // no address: the provider is off
  o.address = "temporal.internal";
  o.api_key = "secret";
  o.tls.cert_file = "client.pem";
  o.rpc_attempts = 0;
  const std::string all = Join(OptionsProblems(o));
  EXPECT_THAT(all, HasSubstr("providers.temporal.address: \"temporal.internal\" has no port"));
  EXPECT_THAT(all, HasSubstr("cert_file and key_file go together"));
  EXPECT_THAT(all, HasSubstr("rpc.attempts"));
  o = Options{};
  o.address = "127.0.0.1:7233";
  o.api_key = "secret";
  EXPECT_THAT(Join(OptionsProblems(o)), HasSubstr("an API key is only sent over TLS"));
}

}  // namespace
}  // namespace workflowd::providers::temporal
