// Lifecycle decisions as plain functions: how a definition version becomes a provider workflow,
// how long to wait before the next start attempt or status poll, which provider errors are worth
// retrying, and how a provider's status maps onto step executions (a partial failure keeps the
// completed steps) and history. No I/O here: the dispatcher and the poller call these and persist
// the results.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/definitions/definition.hpp"
#include "workflowd/providers/errors.hpp"
#include "workflowd/providers/types.hpp"
#include "workflowd/store/lifecycle_repository.hpp"

namespace workflowd::lifecycle {

// A provider workflow id (^[a-z0-9-]{1,128}$) for one version of a definition: the definition id
// lowercased with other characters turned into '-', "-v<version>", and 8 hex digits of FNV-1a of
// the original id so that "wf_1" and "wf-1" do not collide.
std::string ProviderWorkflowId(const std::string& definition_id, int64_t version);

// The spec given to the provider for a definition version: steps in dependency order as the
// definition document, the definition's timeout, retry policy and provider_config.
providers::WorkflowSpec SpecFor(const definitions::WorkflowDefinition& definition);

// The input of an execution: ids, tenant x environment and the trigger event (`event`: the
// execution's trigger_event, or a copy of it).
providers::ExecutionInput InputFor(const store::ExecutionRecord& execution, nlohmann::json event);

// How long into a dispatch or poll round provider calls may still begin: a call begun then ends
// within the round's lease (`lease`; the config keeps it at least twice `call_timeout`).
std::chrono::milliseconds RoundCallBudget(std::chrono::milliseconds lease,
                                          std::chrono::milliseconds call_timeout);

// Delay before start attempt `attempts_made + 1`: initial * coefficient^(attempts_made - 1), capped
// at the maximum, with "equal jitter" (half fixed, half random: jitter01 in [0, 1)).
std::chrono::milliseconds StartRetryDelay(const definitions::RetryPolicy& policy, int attempts_made,
                                          double jitter01);

// True when another start attempt is allowed after `attempts_made` failed retryable attempts.
bool MayRetryStart(const definitions::RetryPolicy& policy, int attempts_made);

// Adaptive poll interval: a tenth of the execution's age, within [min, max] — fast while it is
// young, slower for long-running ones.
std::chrono::milliseconds PollInterval(std::chrono::milliseconds age, std::chrono::milliseconds min,
                                       std::chrono::milliseconds max);

// The next poll after a poll that failed with a retryable error (throttled, unavailable, deadline
// exceeded): four times the usual interval, at least two seconds, at most `max`.
std::chrono::milliseconds FailedPollInterval(std::chrono::milliseconds interval,
                                             std::chrono::milliseconds max);

// The interval after a poll that found an open execution unchanged (no new history) when its
// provider backs off while nothing happens (PollerOptions::back_off_while_unchanged): the usual
// `interval`, or `min` doubled for each poll made so far if longer, at most `max`. A run waiting
// on a long step is then polled ever more rarely; one that changes goes back to the usual rule.
std::chrono::milliseconds UnchangedPollInterval(std::chrono::milliseconds interval, int polls_made,
                                                std::chrono::milliseconds min,
                                                std::chrono::milliseconds max);

// {"code", "message", "retryable"} for storing a provider error.
nlohmann::json ErrorJson(const providers::ProviderError& error);

// A dispatch or poll task's failure that is not the provider's answer: the database, a stored
// definition that no longer loads, memory, or a bug. Such a failure is recorded on its execution
// like a provider error (never thrown out of a task: WorkerPool tasks must not throw).
struct InternalError {
  // The metric label: "database" (StoreError), "definition" (a stored definition or its
  // conditions no longer compile: ValidationError), "memory" (bad_alloc), "other".
  const char* kind = "other";
  std::string message;  // valid UTF-8 (ill-formed bytes replaced)
  // True when the same call may succeed later: the database was unreachable, memory ran out.
  bool retryable = false;
};

// The exception being handled, as an InternalError. Call only inside a catch block.
InternalError CurrentInternalError();

// {"code": "internal_error", "kind", "message", "retryable"} for storing an internal error.
nlohmann::json ErrorJson(const InternalError& error);

// Step executions derived from the provider's status: StateEntered/StateExited history events
// (details.state = step id) give running/completed with times. When the execution succeeded,
// unfinished steps are completed; when it failed, timed out or was cancelled, the step that was
// running failed (with the execution's error) and the ones never reached are skipped.
std::vector<store::StepRecord> DeriveSteps(const std::vector<std::string>& step_order,
                                           const providers::ExecutionStatus& status,
                                           const std::string& final_state);

// The provider's history as rows, seq = position, from position `from_seq` on (the entries
// stored earlier are left out).
std::vector<store::HistoryRecord> HistoryRows(const providers::ExecutionStatus& status,
                                              int from_seq = 0);

}  // namespace workflowd::lifecycle
