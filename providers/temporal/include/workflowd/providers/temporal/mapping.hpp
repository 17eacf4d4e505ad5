// What a Temporal run means in the provider framework's terms, as pure functions over Temporal's
// API messages (unit-tested without a server): payloads <-> JSON, run status -> execution state,
// history events -> execution events and step timings, failures -> errors, gRPC status -> error
// codes, and the workflow input the step-runner worker receives.
#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "temporal/api/common/v1/message.pb.h"
#include "temporal/api/enums/v1/workflow.pb.h"
#include "temporal/api/failure/v1/message.pb.h"
#include "temporal/api/history/v1/message.pb.h"
#include "workflowd/matching/condition.hpp"
#include "workflowd/providers/errors.hpp"
#include "workflowd/providers/types.hpp"

namespace workflowd::providers::temporal {

namespace api = ::temporal::api;

// A definition's own settings, from provider_config.temporal (all optional).
struct DefinitionSettings {
  std::string namespace_name;                 // empty: the provider's
  std::string task_queue;                     // empty: the provider's
  std::string workflow_type;                  // empty: the provider's
  std::chrono::seconds step_timeout{300};     // each step's activity start-to-close timeout
  std::chrono::seconds heartbeat_timeout{0};  // 0: none
  // A run that completed but whose result has `failed_result.field` equal to one of
  // `failed_result.values` failed (workflows that report partial failure in their result).
  // Empty field: the rule is off, every completed run succeeded.
  std::string failed_result_field = "status";
  std::vector<Json> failed_result_values = {"failed"};
};

// Parses provider_config (the whole object; its "temporal" member is read). Problems are appended
// as "provider_config.temporal.<key>: problem"; unknown keys are problems.
DefinitionSettings ParseDefinitionSettings(const Json& provider_config,
                                           std::vector<std::string>& problems);

// A step of a definition as the worker receives it, with its condition compiled.
struct StepPlan {
  Json step;                         // id, type, name, config, depends_on, retry_policy, timeouts
  matching::ConditionPtr condition;  // null: always runs
};

// The steps of spec.definition (SpecFor's form), with the definition's retry policy as the default
// of each step's, and the timeouts of `settings`. Problems are appended as
// "definition.steps[i]...: problem".
std::vector<StepPlan> PlanSteps(const WorkflowSpec& spec, const DefinitionSettings& settings,
                                std::vector<std::string>& problems);

// The single argument of the step-runner workflow: the execution's input (execution_id,
// tenant_id, environment_id, definition_id, definition_version, event, and attempt/start_attempt
// under "context") plus the steps, each with "run": whether its condition holds for the event.
Json WorkflowInput(const std::vector<StepPlan>& steps, Json input);

// Whether an optional step condition holds for a trigger event document (as workflowd stores it:
// id, type, source, subject, tenant, environment, time, data; no headers).
bool StepConditionHolds(const matching::Condition* condition, const Json& trigger_event);

// JSON <-> Payload with encoding json/plain (compact UTF-8 JSON), the SDKs' default converter.
api::common::v1::Payload JsonPayload(const Json& value);
// binary/null is null; json/plain is parsed. Throws ProviderError(kInternal) for any other
// encoding (a codec or converter workflowd cannot read) or JSON that does not parse.
Json PayloadJson(const api::common::v1::Payload& payload);
// The first payload of a list; null when there is none.
Json FirstPayloadJson(const api::common::v1::Payloads& payloads);

// RUNNING (and PAUSED) -> running, COMPLETED -> succeeded, FAILED -> failed, CANCELED and
// TERMINATED -> cancelled, TIMED_OUT -> timed_out. CONTINUED_AS_NEW is running: the chain goes on
// in a newer run, which a description without a run id follows.
ExecutionState MapStatus(api::enums::v1::WorkflowExecutionStatus status);

// Whether a completed run's result reports failure under `settings`' rule.
bool ResultSaysFailed(const Json& result, const DefinitionSettings& settings);

// The error of a run that reported failure in its completed result.
ExecutionError ErrorFromFailedResult(const Json& result);

// A Temporal failure as an error: code = the application failure's type (or the failure kind:
// TimeoutFailure, CanceledFailure, ...), message, cause = the chain of causes (with the innermost
// stack trace), failed_at = the step (activity id) when an activity failed.
ExecutionError ErrorFromFailure(const api::failure::v1::Failure& failure);

// The history of a run as execution events, in order; a longer history of the same run maps to
// the same events followed by more. Workflow-task and other bookkeeping events are left out.
// Steps: ActivityTaskScheduled -> StateEntered {state: activity id = step id}, ...Started ->
// StepAttemptStarted, ...Completed -> StateExited, ...Failed/TimedOut/Canceled -> StateFailed
// {error}; the run's own events -> ExecutionStarted, ExecutionCompleted, ExecutionFailed, ...
// A completed run whose result lists skipped steps gets StateSkipped for each before its end, and
// StateFailed for each step that reported failure (its activity completed with {ok: false}).
std::vector<ExecutionEvent> MapHistory(
    const google::protobuf::RepeatedPtrField<api::history::v1::HistoryEvent>& events);

TimePoint ToTimePoint(const google::protobuf::Timestamp& t);

// A failed RPC as a ProviderError. What no execution can get past until the cluster or its setup
// is fixed is an outage (kUnavailable: executions wait, none fails): UNAVAILABLE, ABORTED,
// INTERNAL, UNKNOWN, DATA_LOSS, CANCELLED (never ours), UNIMPLEMENTED, UNAUTHENTICATED,
// PERMISSION_DENIED, an unknown namespace, unregistered search attributes, a namespace failing
// over. RESOURCE_EXHAUSTED -> kThrottled (a message too large -> kInvalidSpec);
// DEADLINE_EXCEEDED -> kDeadlineExceeded; INVALID_ARGUMENT -> kInvalidSpec; NOT_FOUND ->
// `not_found`; ALREADY_EXISTS -> kAlreadyExists; FAILED_PRECONDITION -> kFailedPrecondition;
// others kInternal. The message names the operation, the target and the server's words, with a
// hint for the usual causes.
ProviderError ErrorFromStatus(const grpc::Status& status, const std::string& operation,
                              const std::string& target, ErrorCode not_found);

// The type names of the google.rpc.Status details of an error (e.g.
// "temporal.api.errordetails.v1.NamespaceNotFoundFailure").
std::vector<std::string> ErrorDetailTypes(const grpc::Status& status);

// For ALREADY_EXISTS of a start: the start request id and run id of the run that holds the
// workflow id, when the server said so.
struct AlreadyStarted {
  std::string start_request_id;
  std::string run_id;
};
std::optional<AlreadyStarted> AlreadyStartedOf(const grpc::Status& status);

}  // namespace workflowd::providers::temporal
