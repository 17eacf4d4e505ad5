// Provider types: JSON round trips with the framework's field names, state rules, validation and
// size limits.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "workflowd/common/timefmt.hpp"
#include "workflowd/providers/errors.hpp"
#include "workflowd/providers/types.hpp"
#include "workflowd/providers/validation.hpp"

namespace workflowd::providers {
namespace {

using namespace std::chrono_literals;

// The provider framework's WorkflowSpec example, verbatim.
constexpr const char* kSeedSpec = R"({
  "workflow_id": "tenant-provisioning",
  "provider_type": "step-functions",
  "name": "Tenant Provisioning Workflow",
  "description": "Provisions compute and database for new tenant",
  "definition": {
    "Comment": "Tenant provisioning state machine",
    "StartAt": "ProvisionCompute",
    "States": {
      "ProvisionCompute": {"Type": "Task", "Resource": "arn:aws:lambda:...", "Next": "ConfigureDatabase"},
      "ConfigureDatabase": {"Type": "Task", "Resource": "arn:aws:lambda:...", "End": true}
    }
  },
  "timeout": "30m",
  "retry_policy": {"max_attempts": 3, "backoff_rate": 2.0, "initial_interval": "1s", "max_interval": "60s"},
  "tags": {"environment": "production", "team": "platform"}
})";

// The provider framework's ExecutionStatus example, verbatim.
constexpr const char* kSeedStatus = R"({
  "execution_id": "exec-abc123",
  "workflow_id": "tenant-provisioning",
  "provider_type": "step-functions",
  "state": "succeeded",
  "start_time": "2026-01-30T10:00:00Z",
  "stop_time": "2026-01-30T10:05:00Z",
  "input": {"tenant_id": "tenant-123", "image": "app:v1.0.0"},
  "output": {"compute_id": "ecs-task-123", "database_id": "rds-instance-456"},
  "history": [
    {"timestamp": "2026-01-30T10:00:00Z", "type": "ExecutionStarted", "details": {}},
    {"timestamp": "2026-01-30T10:02:00Z", "type": "StateEntered", "details": {"state": "ProvisionCompute"}},
    {"timestamp": "2026-01-30T10:04:00Z", "type": "StateEntered", "details": {"state": "ConfigureDatabase"}},
    {"timestamp": "2026-01-30T10:05:00Z", "type": "ExecutionSucceeded", "details": {}}
  ]
})";

TEST(WorkflowSpecJson, ParsesSeedExample) {
  auto spec = WorkflowSpecFromJson(Json::parse(kSeedSpec));
  EXPECT_EQ(spec.workflow_id, "tenant-provisioning");
  EXPECT_EQ(spec.provider_type, "step-functions");
  EXPECT_EQ(spec.timeout, 30min);
  ASSERT_TRUE(spec.retry_policy.has_value());
  EXPECT_EQ(spec.retry_policy->max_attempts, 3);
  EXPECT_DOUBLE_EQ(spec.retry_policy->backoff_rate, 2.0);
  EXPECT_EQ(spec.retry_policy->initial_interval, 1s);
  EXPECT_EQ(spec.retry_policy->max_interval, 60s);
  EXPECT_EQ(spec.tags.at("team"), "platform");
  EXPECT_EQ(spec.definition["StartAt"], "ProvisionCompute");
  EXPECT_NO_THROW(ValidateWorkflowSpec(spec));
}

TEST(WorkflowSpecJson, RoundTripsWithSeedFieldNames) {
  auto spec = WorkflowSpecFromJson(Json::parse(kSeedSpec));
  Json out = ToJson(spec);
  EXPECT_EQ(out["timeout"], "30m");
  EXPECT_EQ(out["retry_policy"]["initial_interval"], "1s");
  EXPECT_EQ(out["retry_policy"]["max_interval"], "1m");  // 60s, written compactly
  EXPECT_FALSE(out.contains("provider_config"));
  EXPECT_EQ(WorkflowSpecFromJson(out), spec);
}

TEST(WorkflowSpecJson, NamesTheBadField) {
  auto j = Json::parse(kSeedSpec);
  j["timeout"] = "thirty minutes";
  try {
    WorkflowSpecFromJson(j);
    FAIL() << "expected an error";
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidSpec);
    EXPECT_NE(std::string(e.what()).find("timeout"), std::string::npos) << e.what();
  }
  j = Json::parse(kSeedSpec);
  j["retry_policy"]["max_attempts"] = "three";
  EXPECT_THROW(WorkflowSpecFromJson(j), ProviderError);
  EXPECT_THROW(WorkflowSpecFromJson(Json::array()), ProviderError);
}

TEST(ExecutionStatusJson, RoundTripsSeedExample) {
  auto status = ExecutionStatusFromJson(Json::parse(kSeedStatus));
  EXPECT_EQ(status.state, ExecutionState::kSucceeded);
  EXPECT_EQ(status.start_time, *ParseRfc3339("2026-01-30T10:00:00Z"));
  ASSERT_TRUE(status.stop_time.has_value());
  EXPECT_EQ(*status.stop_time - status.start_time, 5min);
  ASSERT_EQ(status.history.size(), 4u);
  EXPECT_EQ(status.history[1].details["state"], "ProvisionCompute");
  EXPECT_FALSE(status.error.has_value());
  EXPECT_EQ(ToJson(status), Json::parse(kSeedStatus));
  EXPECT_EQ(ExecutionStatusFromJson(ToJson(status)), status);
}

TEST(ExecutionStatusJson, ErrorAndUnknownState) {
  auto j = Json::parse(kSeedStatus);
  j["state"] = "failed";
  j["error"] = {
      {"code", "States.TaskFailed"}, {"message", "boom"}, {"failed_at", "ProvisionCompute"}};
  auto status = ExecutionStatusFromJson(j);
  ASSERT_TRUE(status.error.has_value());
  EXPECT_EQ(status.error->failed_at, "ProvisionCompute");
  EXPECT_EQ(ToJson(status)["error"]["code"], "States.TaskFailed");
  j["state"] = "exploded";
  EXPECT_THROW(ExecutionStatusFromJson(j), ProviderError);
}

TEST(ResultsJson, RoundTrip) {
  TimePoint t = *ParseRfc3339("2026-01-30T10:00:00Z");
  CreateWorkflowResult c{"wf-1", "mock", {{"arn", "arn:aws:states:x"}}, t, "created"};
  EXPECT_EQ(CreateWorkflowResultFromJson(ToJson(c)), c);
  ExecutionResult r{"exec-1", "wf-1", "mock", ExecutionState::kRunning, t, ""};
  EXPECT_EQ(ToJson(r)["state"], "running");
  EXPECT_EQ(ExecutionResultFromJson(ToJson(r)), r);
  ExecutionInput in{"tenant-123-provision", Json{{"tenantID", "tenant-123"}}, {{"k", "v"}}};
  EXPECT_EQ(ExecutionInputFromJson(ToJson(in)), in);
}

TEST(ExecutionState, TerminalStatesNeverChange) {
  const ExecutionState all[] = {ExecutionState::kPending,   ExecutionState::kRunning,
                                ExecutionState::kSucceeded, ExecutionState::kFailed,
                                ExecutionState::kTimedOut,  ExecutionState::kCancelled};
  for (auto from : all) {
    EXPECT_EQ(ParseExecutionState(ToString(from)), from);
    for (auto to : all) {
      bool allowed = IsAllowedTransition(from, to);
      if (IsTerminal(from)) {
        EXPECT_EQ(allowed, from == to) << ToString(from) << "->" << ToString(to);
      }
    }
  }
  EXPECT_TRUE(IsAllowedTransition(ExecutionState::kPending, ExecutionState::kRunning));
  EXPECT_TRUE(IsAllowedTransition(ExecutionState::kRunning, ExecutionState::kTimedOut));
  EXPECT_FALSE(IsAllowedTransition(ExecutionState::kRunning, ExecutionState::kPending));
  EXPECT_EQ(ToString(ExecutionState::kTimedOut), "timed_out");
}

TEST(Validation, Patterns) {
  EXPECT_TRUE(IsValidWorkflowId("tenant-provisioning"));
  EXPECT_TRUE(IsValidWorkflowId("data-migration-v2"));
  EXPECT_TRUE(IsValidWorkflowId(std::string(128, 'a')));
  EXPECT_FALSE(IsValidWorkflowId(std::string(129, 'a')));
  EXPECT_FALSE(IsValidWorkflowId(""));
  EXPECT_FALSE(IsValidWorkflowId("Tenant"));
  EXPECT_FALSE(IsValidWorkflowId("tenant_provisioning"));
  EXPECT_TRUE(IsValidExecutionName("tenant-123_Provision"));
  EXPECT_FALSE(IsValidExecutionName("a b"));
  EXPECT_FALSE(IsValidExecutionName(std::string(129, 'x')));
  EXPECT_TRUE(IsValidProviderName("step-functions"));
  EXPECT_FALSE(IsValidProviderName("Step-Functions"));
  EXPECT_FALSE(IsValidProviderName("-mock"));
  EXPECT_FALSE(IsValidProviderName("a--b"));
}

WorkflowSpec ValidSpec() { return WorkflowSpecFromJson(Json::parse(kSeedSpec)); }

bool HasProblem(const std::vector<std::string>& problems, const std::string& field) {
  for (const auto& p : problems) {
    if (p.rfind(field + ":", 0) == 0) return true;
  }
  return false;
}

TEST(Validation, WorkflowSpecRules) {
  EXPECT_TRUE(WorkflowSpecProblems(ValidSpec()).empty());
  auto s = ValidSpec();
  s.workflow_id = "Bad_ID";
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "workflow_id"));
  s = ValidSpec();
  s.provider_type.clear();
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "provider_type"));
  s = ValidSpec();
  s.name.clear();
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "name"));
  s.name = std::string(257, 'n');
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "name"));
  s = ValidSpec();
  s.description = std::string(1025, 'd');
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "description"));
  s = ValidSpec();
  s.definition = nullptr;
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "definition"));
  s.definition = Json::object();
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "definition"));
  s.definition = Json{{"blob", std::string(kMaxDefinitionBytes, 'x')}};
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "definition"));
  s = ValidSpec();
  s.timeout = -1s;
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "timeout"));
  s.timeout = 0s;  // zero: provider default
  EXPECT_TRUE(WorkflowSpecProblems(s).empty());
  s.retry_policy->backoff_rate = 0.5;
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "retry_policy.backoff_rate"));
  s = ValidSpec();
  s.retry_policy->max_interval = 100ms;
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "retry_policy.max_interval"));
  s = ValidSpec();
  for (int i = 0; i < 51; ++i) s.tags["k" + std::to_string(i)] = "v";
  EXPECT_TRUE(HasProblem(WorkflowSpecProblems(s), "tags"));
  s = ValidSpec();
  s.tags["k"] = std::string(129, 'v');
  EXPECT_FALSE(WorkflowSpecProblems(s).empty());
}

TEST(Validation, ReportsEveryProblemAtOnce) {
  WorkflowSpec s;  // everything missing
  auto problems = WorkflowSpecProblems(s);
  EXPECT_TRUE(HasProblem(problems, "workflow_id"));
  EXPECT_TRUE(HasProblem(problems, "provider_type"));
  EXPECT_TRUE(HasProblem(problems, "name"));
  EXPECT_TRUE(HasProblem(problems, "definition"));
  try {
    ValidateWorkflowSpec(s);
    FAIL();
  } catch (const ProviderError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidSpec);
    EXPECT_FALSE(e.Retryable());
  }
}

TEST(Validation, ExecutionInputRules) {
  ExecutionInput in{"tenant-123-provision", Json{{"a", 1}}, {}};
  EXPECT_TRUE(ExecutionInputProblems(in).empty());
  in.execution_name = "";  // optional: the provider generates one
  EXPECT_TRUE(ExecutionInputProblems(in).empty());
  in.execution_name = "has space";
  EXPECT_TRUE(HasProblem(ExecutionInputProblems(in), "execution_name"));
  in.execution_name = "ok";
  in.input = nullptr;
  EXPECT_TRUE(HasProblem(ExecutionInputProblems(in), "input"));
  in.input = 42;
  EXPECT_TRUE(HasProblem(ExecutionInputProblems(in), "input"));
  in.input = Json::array({1, 2});
  EXPECT_TRUE(ExecutionInputProblems(in).empty());
  in.input = Json{{"blob", std::string(kMaxInputBytes, 'x')}};
  EXPECT_TRUE(HasProblem(ExecutionInputProblems(in), "input"));
}

TEST(Validation, InputSizeLimitIsExact) {
  // {"blob":"..."} is 11 bytes around the string's contents.
  ExecutionInput in{"ok", Json{{"blob", std::string(kMaxInputBytes - 11, 'x')}}, {}};
  ASSERT_EQ(in.input.dump().size(), kMaxInputBytes);
  EXPECT_TRUE(ExecutionInputProblems(in).empty());
  in.input["blob"] = std::string(kMaxInputBytes - 12, 'x') + "\n";  // escaped: one byte more
  ASSERT_EQ(in.input.dump().size(), kMaxInputBytes + 1);
  EXPECT_TRUE(HasProblem(ExecutionInputProblems(in), "input"));
}

// A random document of every JSON type, with strings drawn from bytes that the serializer escapes
// (quotes, backslashes, every control character), plain ASCII and multi-byte UTF-8.
Json RandomDocument(std::mt19937_64& rng, int depth) {
  auto pick = [&](uint64_t n) { return rng() % n; };
  auto random_string = [&] {
    static const std::vector<std::string> pieces = {
        "a", "Z", " ", "\"", "\\", "/", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
        "{", "}", ":", ","};
    std::string s;
    const auto n = pick(12);
    for (uint64_t i = 0; i < n; ++i) {
      if (pick(4) == 0) {
        s += static_cast<char>(pick(0x20));  // a control character, NUL included
      } else {
        s += pieces[pick(pieces.size())];
      }
    }
    return s;
  };
  const auto kind = depth >= 4 ? pick(7) : pick(9);
  switch (kind) {
    case 0:
      return nullptr;
    case 1:
      return pick(2) == 0;
    case 2: {
      static const int64_t ints[] = {0,
                                     -1,
                                     9,
                                     10,
                                     -10,
                                     99,
                                     100,
                                     std::numeric_limits<int64_t>::min(),
                                     std::numeric_limits<int64_t>::max()};
      return pick(2) ? Json(ints[pick(9)]) : Json(static_cast<int64_t>(rng()));
    }
    case 3:
      return pick(2) ? Json(std::numeric_limits<uint64_t>::max())
                     : Json(static_cast<uint64_t>(rng()));
    case 4: {
      static const double doubles[] = {0.0,     -0.0,    0.1,  1.5,           -2.25, 1e300,
                                       -1e-300, 3.14159, 1e21, 123456789.125, NAN,   INFINITY};
      return pick(2) ? Json(doubles[pick(12)])
                     : Json(std::ldexp(static_cast<double>(rng() >> 11),
                                       static_cast<int>(pick(80)) - 40));
    }
    case 5:
    case 6:
      return random_string();
    case 7: {
      Json a = Json::array();
      for (auto n = pick(5); n > 0; --n) a.push_back(RandomDocument(rng, depth + 1));
      return a;
    }
    default: {
      Json o = Json::object();
      for (auto n = pick(5); n > 0; --n) o[random_string()] = RandomDocument(rng, depth + 1);
      return o;
    }
  }
}

TEST(Validation, SerializedSizeAgreesWithDump) {
  std::mt19937_64 rng(20261206);
  for (int i = 0; i < 20000; ++i) {
    const Json doc = RandomDocument(rng, 0);
    const size_t expected = doc.dump().size();
    ASSERT_EQ(SerializedSize(doc), expected) << doc.dump();
    // With a limit: exact up to it, and above it once the document is larger.
    const size_t limit = rng() % (expected + 2);
    const size_t bounded = SerializedSize(doc, limit);
    if (expected <= limit) {
      ASSERT_EQ(bounded, expected) << doc.dump();
    } else {
      ASSERT_GT(bounded, limit) << doc.dump();
    }
  }
}

TEST(SharedJsonType, SharesOneTreeAndComparesByValue) {
  SharedJson a(Json{{"event", {{"id", "e1"}}}});
  SharedJson b = a;  // NOLINT(performance-unnecessary-copy-initialization): the copy is tested
  EXPECT_EQ(&a.get(), &b.get());  // a share, not a copy
  EXPECT_EQ(a, SharedJson(Json{{"event", {{"id", "e1"}}}}));
  EXPECT_FALSE(a == SharedJson(Json{{"event", {{"id", "e2"}}}}));
  EXPECT_TRUE(SharedJson().get().is_null());
  EXPECT_EQ(SharedJson(), SharedJson(nullptr));
}

TEST(Errors, RetryableClassification) {
  EXPECT_TRUE(ProviderError(ErrorCode::kUnavailable, "x").Retryable());
  EXPECT_TRUE(ProviderError(ErrorCode::kThrottled, "x").Retryable());
  EXPECT_TRUE(ProviderError(ErrorCode::kDeadlineExceeded, "x").Retryable());
  for (auto code :
       {ErrorCode::kProviderNotFound, ErrorCode::kProviderConflict, ErrorCode::kInvalidSpec,
        ErrorCode::kWorkflowNotFound, ErrorCode::kExecutionNotFound, ErrorCode::kExecutionFailed,
        ErrorCode::kAlreadyExists, ErrorCode::kFailedPrecondition, ErrorCode::kCancelled,
        ErrorCode::kInternal}) {
    EXPECT_FALSE(IsRetryable(code)) << ToString(code);
  }
  EXPECT_STREQ(ToString(ErrorCode::kProviderNotFound), "provider_not_found");
}

}  // namespace
}  // namespace workflowd::providers
