// The Provider interface every workflow engine implements. Every call carries a Context (deadline
// and cancellation) and reports failure by throwing ProviderError.
#pragma once

#include <string>

#include "workflowd/common/context.hpp"
#include "workflowd/providers/errors.hpp"
#include "workflowd/providers/types.hpp"

namespace workflowd::providers {

class Provider {
 public:
  virtual ~Provider() = default;

  // Unique, lowercase alphanumeric with hyphens, e.g. "mock", "step-functions", "temporal".
  virtual std::string Name() const = 0;

  // Idempotent: a second call with the same workflow id succeeds without changing anything.
  virtual CreateWorkflowResult CreateWorkflow(const Context& ctx, const WorkflowSpec& spec) = 0;

  // Returns at once; the execution runs asynchronously. Idempotent by execution name: starting a
  // name that already runs this workflow returns that execution instead of starting another.
  // Throws kWorkflowNotFound for an unknown workflow, kInvalidSpec for invalid input. The input is
  // the provider's to keep (callers move it in).
  virtual ExecutionResult StartExecution(const Context& ctx, const std::string& workflow_id,
                                         ExecutionInput input) = 0;

  // Throws kExecutionNotFound. Terminal states never change.
  virtual ExecutionStatus GetExecutionStatus(const Context& ctx,
                                             const std::string& execution_id) = 0;

  // Idempotent: stopping a stopped or finished execution succeeds and changes nothing.
  // Throws kExecutionNotFound.
  virtual void StopExecution(const Context& ctx, const std::string& execution_id,
                             const std::string& reason) = 0;

  // Idempotent: deleting an unknown workflow succeeds. May throw kFailedPrecondition when the
  // workflow has running executions.
  virtual void DeleteWorkflow(const Context& ctx, const std::string& workflow_id) = 0;

  // Provider-specific checks of definition and provider_config; creates nothing.
  // Throws kInvalidSpec describing every problem.
  virtual void Validate(const Context& ctx, const WorkflowSpec& spec) = 0;
};

}  // namespace workflowd::providers
