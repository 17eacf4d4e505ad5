#include "workflowd/providers/errors.hpp"

namespace workflowd::providers {

const char* ToString(ErrorCode code) {
  switch (code) {
    case ErrorCode::kProviderNotFound:
      return "provider_not_found";
    case ErrorCode::kProviderConflict:
      return "provider_conflict";
    case ErrorCode::kInvalidSpec:
      return "invalid_spec";
    case ErrorCode::kWorkflowNotFound:
      return "workflow_not_found";
    case ErrorCode::kExecutionNotFound:
      return "execution_not_found";
    case ErrorCode::kExecutionFailed:
      return "execution_failed";
    case ErrorCode::kAlreadyExists:
      return "already_exists";
    case ErrorCode::kFailedPrecondition:
      return "failed_precondition";
    case ErrorCode::kUnavailable:
      return "unavailable";
    case ErrorCode::kThrottled:
      return "throttled";
    case ErrorCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

bool IsRetryable(ErrorCode code) {
  switch (code) {
    case ErrorCode::kUnavailable:
    case ErrorCode::kThrottled:
    case ErrorCode::kDeadlineExceeded:
      return true;
    default:
      return false;
  }
}

void ThrowIfDone(const Context& ctx, const std::string& what) {
  switch (ctx.State()) {
    case ContextState::kActive:
      return;
    case ContextState::kCancelled:
      throw ProviderError(ErrorCode::kCancelled, what + ": context cancelled");
    case ContextState::kDeadlineExceeded:
      throw ProviderError(ErrorCode::kDeadlineExceeded, what + ": deadline exceeded");
  }
}

}  // namespace workflowd::providers
