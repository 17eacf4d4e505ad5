// The Manager facade of the provider framework: structural validation, provider Validate before
// CreateWorkflow, routing by provider name, and one log line per operation.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "workflowd/providers/registry.hpp"

namespace spdlog {
class logger;
}

namespace workflowd::providers {

class Manager {
 public:
  // `logger` may be null: the default spdlog logger is used.
  explicit Manager(std::shared_ptr<Registry> registry,
                   std::shared_ptr<spdlog::logger> logger = nullptr);

  // Structural validation and the provider's own Validate, creating nothing.
  void ValidateWorkflow(const Context& ctx, const WorkflowSpec& spec) const;
  CreateWorkflowResult CreateWorkflow(const Context& ctx, const WorkflowSpec& spec) const;
  ExecutionResult StartExecution(const Context& ctx, const std::string& provider_type,
                                 const std::string& workflow_id, ExecutionInput input) const;
  ExecutionStatus GetExecutionStatus(const Context& ctx, const std::string& provider_type,
                                     const std::string& execution_id) const;
  void StopExecution(const Context& ctx, const std::string& provider_type,
                     const std::string& execution_id, const std::string& reason) const;
  void DeleteWorkflow(const Context& ctx, const std::string& provider_type,
                      const std::string& workflow_id) const;
  std::vector<std::string> ListProviders() const;

  const Registry& registry() const { return *registry_; }

 private:
  std::shared_ptr<Provider> Route(const Context& ctx, const std::string& provider_type,
                                  const char* operation) const;

  std::shared_ptr<Registry> registry_;
  std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace workflowd::providers
