#include "workflowd/providers/manager.hpp"

#include <spdlog/spdlog.h>

#include "workflowd/providers/validation.hpp"

namespace workflowd::providers {
namespace {

// Runs `op`, logging a failure at debug with its code; the error is rethrown unchanged. The
// caller reports it with its own context (the execution, the tenant, what happens next): logged
// here too at warn, an engine throttling thousands of calls a second wrote every failure twice.
template <typename Fn>
auto Logged(spdlog::logger& log, const char* operation, const std::string& provider,
            const std::string& subject, Fn&& op) {
  try {
    return op();
  } catch (const ProviderError& e) {
    log.debug("provider {} failed: provider={} subject={} code={} retryable={} error={}", operation,
              provider, subject, ToString(e.code()), e.Retryable(), e.what());
    throw;
  }
}

}  // namespace

Manager::Manager(std::shared_ptr<Registry> registry, std::shared_ptr<spdlog::logger> logger)
    : registry_(std::move(registry)),
      logger_(logger ? std::move(logger) : spdlog::default_logger()) {}

std::shared_ptr<Provider> Manager::Route(const Context& ctx, const std::string& provider_type,
                                         const char* operation) const {
  ThrowIfDone(ctx, operation);
  return registry_->Get(provider_type);
}

void Manager::ValidateWorkflow(const Context& ctx, const WorkflowSpec& spec) const {
  ValidateWorkflowSpec(spec);
  auto provider = Route(ctx, spec.provider_type, "validate workflow");
  Logged(*logger_, "validate", spec.provider_type, spec.workflow_id,
         [&] { provider->Validate(ctx, spec); });
}

CreateWorkflowResult Manager::CreateWorkflow(const Context& ctx, const WorkflowSpec& spec) const {
  ValidateWorkflowSpec(spec);
  auto provider = Route(ctx, spec.provider_type, "create workflow");
  return Logged(*logger_, "create_workflow", spec.provider_type, spec.workflow_id, [&] {
    provider->Validate(ctx, spec);
    auto result = provider->CreateWorkflow(ctx, spec);
    logger_->info("workflow created: provider={} workflow_id={} message={}", spec.provider_type,
                  spec.workflow_id, result.message);
    return result;
  });
}

ExecutionResult Manager::StartExecution(const Context& ctx, const std::string& provider_type,
                                        const std::string& workflow_id,
                                        ExecutionInput input) const {
  ValidateExecutionInput(input);
  auto provider = Route(ctx, provider_type, "start execution");
  return Logged(*logger_, "start_execution", provider_type, workflow_id, [&] {
    auto result = provider->StartExecution(ctx, workflow_id, std::move(input));
    logger_->debug("execution started: provider={} workflow_id={} execution_id={} state={}",
                   provider_type, workflow_id, result.execution_id, ToString(result.state));
    return result;
  });
}

ExecutionStatus Manager::GetExecutionStatus(const Context& ctx, const std::string& provider_type,
                                            const std::string& execution_id) const {
  auto provider = Route(ctx, provider_type, "get execution status");
  return Logged(*logger_, "get_execution_status", provider_type, execution_id,
                [&] { return provider->GetExecutionStatus(ctx, execution_id); });
}

void Manager::StopExecution(const Context& ctx, const std::string& provider_type,
                            const std::string& execution_id, const std::string& reason) const {
  auto provider = Route(ctx, provider_type, "stop execution");
  Logged(*logger_, "stop_execution", provider_type, execution_id, [&] {
    provider->StopExecution(ctx, execution_id, reason);
    logger_->info("execution stopped: provider={} execution_id={} reason={}", provider_type,
                  execution_id, reason);
  });
}

void Manager::DeleteWorkflow(const Context& ctx, const std::string& provider_type,
                             const std::string& workflow_id) const {
  auto provider = Route(ctx, provider_type, "delete workflow");
  Logged(*logger_, "delete_workflow", provider_type, workflow_id, [&] {
    provider->DeleteWorkflow(ctx, workflow_id);
    logger_->info("workflow deleted: provider={} workflow_id={}", provider_type, workflow_id);
  });
}

std::vector<std::string> Manager::ListProviders() const { return registry_->List(); }

}  // namespace workflowd::providers
