// The provider types: workflow specs, execution inputs, results and statuses, with JSON round
// trips that use the framework's field names (durations as "30m", "1s"; times as RFC 3339).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "workflowd/common/clock.hpp"

namespace workflowd::providers {

using Json = nlohmann::json;
using Tags = std::map<std::string, std::string>;

enum class ExecutionState {
  kPending,
  kRunning,
  kSucceeded,
  kFailed,
  kTimedOut,
  kCancelled,
};

std::string_view ToString(ExecutionState state);
std::optional<ExecutionState> ParseExecutionState(std::string_view text);
// succeeded, failed, timed_out and cancelled: such a state never changes again.
bool IsTerminal(ExecutionState state);
// The allowed state transitions (pending -> running -> terminal; pending may also end directly,
// e.g. cancelled before it started). Staying in the same state is allowed.
bool IsAllowedTransition(ExecutionState from, ExecutionState to);

struct RetryPolicy {
  int max_attempts = 0;  // 0: a single attempt, no retries
  double backoff_rate = 2.0;
  std::chrono::nanoseconds initial_interval{std::chrono::seconds(1)};
  std::chrono::nanoseconds max_interval{std::chrono::seconds(60)};

  bool operator==(const RetryPolicy&) const = default;
};

struct WorkflowSpec {
  std::string workflow_id;
  std::string provider_type;
  std::string name;
  std::string description;
  Json definition;                      // provider-specific; null means absent
  std::chrono::nanoseconds timeout{0};  // zero: provider default
  std::optional<RetryPolicy> retry_policy;
  Tags tags;
  Json provider_config;  // provider-specific; null means absent

  bool operator==(const WorkflowSpec&) const = default;
};

// A read-only JSON document whose copies share one tree. An execution's input is reported by every
// status call and may be large (a whole trigger event): a provider keeps it once and hands out
// shares instead of deep copies. Compares by value; empty means null.
class SharedJson {
 public:
  SharedJson() = default;
  SharedJson(Json value)  // NOLINT(google-explicit-constructor): a document converts as is
      : value_(value.is_null() ? nullptr : std::make_shared<const Json>(std::move(value))) {}

  const Json& get() const { return value_ ? *value_ : Null(); }
  bool operator==(const SharedJson& other) const { return get() == other.get(); }

 private:
  static const Json& Null();
  std::shared_ptr<const Json> value_;
};

struct ExecutionInput {
  std::string execution_name;  // empty: the provider generates one
  Json input;
  Tags tags;

  bool operator==(const ExecutionInput&) const = default;
};

struct CreateWorkflowResult {
  std::string workflow_id;
  std::string provider_type;
  std::map<std::string, std::string> resource_ids;
  TimePoint created_at;
  std::string message;

  bool operator==(const CreateWorkflowResult&) const = default;
};

struct ExecutionResult {
  std::string execution_id;
  std::string workflow_id;
  std::string provider_type;
  ExecutionState state = ExecutionState::kPending;
  TimePoint started_at;
  std::string message;

  bool operator==(const ExecutionResult&) const = default;
};

struct ExecutionError {
  std::string code;
  std::string message;
  std::string cause;
  std::string failed_at;

  bool operator==(const ExecutionError&) const = default;
};

struct ExecutionEvent {
  TimePoint timestamp;
  std::string type;  // ExecutionStarted, StateEntered, StateExited, ExecutionSucceeded, ...
  Json details;

  bool operator==(const ExecutionEvent&) const = default;
};

struct ExecutionStatus {
  std::string execution_id;
  std::string workflow_id;
  std::string provider_type;
  ExecutionState state = ExecutionState::kPending;
  TimePoint start_time;
  std::optional<TimePoint> stop_time;
  SharedJson input;
  Json output;  // null when absent
  std::optional<ExecutionError> error;
  std::vector<ExecutionEvent> history;
  std::map<std::string, std::string> metadata;

  bool operator==(const ExecutionStatus&) const = default;
};

// JSON conversion. The *FromJson functions throw ProviderError(kInvalidSpec) naming the field and
// what was expected when the document does not have the right shape.
Json ToJson(const RetryPolicy& v);
Json ToJson(const WorkflowSpec& v);
Json ToJson(const ExecutionInput& v);
Json ToJson(const CreateWorkflowResult& v);
Json ToJson(const ExecutionResult& v);
Json ToJson(const ExecutionError& v);
Json ToJson(const ExecutionEvent& v);
Json ToJson(const ExecutionStatus& v);

RetryPolicy RetryPolicyFromJson(const Json& j);
WorkflowSpec WorkflowSpecFromJson(const Json& j);
ExecutionInput ExecutionInputFromJson(const Json& j);
CreateWorkflowResult CreateWorkflowResultFromJson(const Json& j);
ExecutionResult ExecutionResultFromJson(const Json& j);
ExecutionError ExecutionErrorFromJson(const Json& j);
ExecutionEvent ExecutionEventFromJson(const Json& j);
ExecutionStatus ExecutionStatusFromJson(const Json& j);

}  // namespace workflowd::providers
