// A gmock Provider for tests of the registry and manager (our own logic only).
#pragma once

#include <gmock/gmock.h>

#include "workflowd/providers/provider.hpp"

namespace workflowd::providers::testing {

class RecordingProvider : public Provider {
 public:
  explicit RecordingProvider(std::string name) : name_(std::move(name)) {}
  std::string Name() const override { return name_; }
  MOCK_METHOD(CreateWorkflowResult, CreateWorkflow, (const Context&, const WorkflowSpec&),
              (override));
  MOCK_METHOD(ExecutionResult, StartExecution, (const Context&, const std::string&, ExecutionInput),
              (override));
  MOCK_METHOD(ExecutionStatus, GetExecutionStatus, (const Context&, const std::string&),
              (override));
  MOCK_METHOD(void, StopExecution, (const Context&, const std::string&, const std::string&),
              (override));
  MOCK_METHOD(void, DeleteWorkflow, (const Context&, const std::string&), (override));
  MOCK_METHOD(void, Validate, (const Context&, const WorkflowSpec&), (override));

 private:
  std::string name_;
};

}  // namespace workflowd::providers::testing
