// Operations on executions and definitions that a user asks for (the REST API and the CLI):
// cancel, retry, and deleting a definition that still has running executions (refused unless
// forced, which cancels them). Every call is scoped to a tenant x environment; something outside it
// is reported as not found.
#pragma once

#include <stdexcept>
#include <string>

#include "workflowd/common/clock.hpp"
#include "workflowd/providers/manager.hpp"
#include "workflowd/store/database.hpp"

namespace workflowd::lifecycle {

class OperationError : public std::runtime_error {
 public:
  enum class Kind { kNotFound, kConflict, kUnavailable };
  OperationError(Kind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

struct CancelResult {
  std::string status;    // the execution's status afterwards
  bool changed = false;  // false: it was already finished (cancel is idempotent)
};

struct DeleteResult {
  size_t cancelled_executions = 0;
};

class ExecutionOperations {
 public:
  ExecutionOperations(store::Database& db, const providers::Manager& manager, const Clock& clock);

  // Pending: cancelled at once. Running: StopExecution at the provider with `reason`, then
  // cancelled. Finished: unchanged. An execution a dispatch or poll round holds under its lease
  // (being started or polled right now) is cancelled once that round has recorded its outcome
  // (then acting on the state it wrote: a start is stopped at the provider, a terminal state the
  // poll found stands) or its lease has expired: neither the round's answer nor the cancel is
  // lost. Throws OperationError (kNotFound, kUnavailable, also when a round still holds the
  // execution after a minute).
  CancelResult Cancel(const std::string& tenant, const std::string& environment,
                      const std::string& execution_id, const std::string& reason);

  // A new pending attempt of a failed, timed_out or cancelled execution, linked to it by retry_of.
  // Returns the new execution id. Throws kNotFound, or kConflict when it is not retryable.
  std::string Retry(const std::string& tenant, const std::string& environment,
                    const std::string& execution_id);

  // Refuses (kConflict, naming how many) while the definition has pending or running executions,
  // unless `force`: then cancels them first. The definition is then marked deleted and disabled;
  // its executions and versions are kept for the record.
  DeleteResult DeleteDefinition(const std::string& tenant, const std::string& environment,
                                const std::string& definition_id, bool force,
                                const std::string& actor);

 private:
  store::Database& db_;
  const providers::Manager& manager_;
  const Clock& clock_;
};

}  // namespace workflowd::lifecycle
