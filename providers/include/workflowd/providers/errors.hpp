// The error taxonomy of the provider framework plus the transport conditions every
// engine client meets. Callers branch on code() and Retryable(), never on message text.
#pragma once

#include <stdexcept>
#include <string>

#include "workflowd/common/context.hpp"

namespace workflowd::providers {

enum class ErrorCode {
  kProviderNotFound,    // no provider registered under that name
  kProviderConflict,    // a provider with that name is already registered
  kInvalidSpec,         // spec, definition or input rejected by validation
  kWorkflowNotFound,    // the workflow id is unknown to the engine
  kExecutionNotFound,   // the execution id is unknown to the engine
  kExecutionFailed,     // the engine reports the execution could not run
  kAlreadyExists,       // an execution name is taken by a different workflow or input
  kFailedPrecondition,  // the operation is refused in the current state (e.g. running executions)
  kUnavailable,         // engine unreachable or answered with a server error
  kThrottled,           // engine asked us to slow down
  kDeadlineExceeded,    // the call's deadline passed
  kCancelled,           // the call's context was cancelled
  kInternal,            // a bug or an unexpected answer
};

const char* ToString(ErrorCode code);

// True for conditions that may clear by themselves: retry with backoff.
bool IsRetryable(ErrorCode code);

class ProviderError : public std::runtime_error {
 public:
  ProviderError(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}

  ErrorCode code() const noexcept { return code_; }
  bool Retryable() const noexcept { return IsRetryable(code_); }

 private:
  ErrorCode code_;
};

// Throws kCancelled / kDeadlineExceeded when the context has ended; `what` names the operation.
void ThrowIfDone(const Context& ctx, const std::string& what);

}  // namespace workflowd::providers
