// Structural validation of seed 002, done by the Manager before any provider sees a request.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "workflowd/providers/types.hpp"

namespace workflowd::providers {

// Size limits of seed 002.
inline constexpr size_t kMaxWorkflowIdBytes = 128;
inline constexpr size_t kMaxExecutionNameBytes = 128;
inline constexpr size_t kMaxNameBytes = 256;
inline constexpr size_t kMaxDescriptionBytes = 1024;
inline constexpr size_t kMaxDefinitionBytes = 256 * 1024;
inline constexpr size_t kMaxInputBytes = 256 * 1024;
inline constexpr size_t kMaxOutputBytes = 256 * 1024;
inline constexpr size_t kMaxTags = 50;
inline constexpr size_t kMaxTagBytes = 128;

// ^[a-z0-9-]{1,128}$
bool IsValidWorkflowId(std::string_view id);
// ^[a-zA-Z0-9-_]{1,128}$
bool IsValidExecutionName(std::string_view name);
// Provider names (seed 001): lowercase alphanumeric words joined by single hyphens.
bool IsValidProviderName(std::string_view name);

// Each returns every problem found, as "field: problem" (empty when valid).
std::vector<std::string> WorkflowSpecProblems(const WorkflowSpec& spec);
std::vector<std::string> ExecutionInputProblems(const ExecutionInput& input);

// Throw ProviderError(kInvalidSpec) listing every problem.
void ValidateWorkflowSpec(const WorkflowSpec& spec);
void ValidateExecutionInput(const ExecutionInput& input);

}  // namespace workflowd::providers
