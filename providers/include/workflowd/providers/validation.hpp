// Structural validation of the provider types (ids, names, sizes), done by the Manager before any
// provider sees a request.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "workflowd/providers/types.hpp"

namespace workflowd::providers {

// Size limits of the provider types (ids, names, inputs).
inline constexpr size_t kMaxWorkflowIdBytes = 128;
inline constexpr size_t kMaxExecutionNameBytes = 128;
inline constexpr size_t kMaxNameBytes = 256;
inline constexpr size_t kMaxDescriptionBytes = 1024;
inline constexpr size_t kMaxDefinitionBytes = size_t{256} * 1024;
inline constexpr size_t kMaxInputBytes = size_t{256} * 1024;
inline constexpr size_t kMaxOutputBytes = size_t{256} * 1024;
inline constexpr size_t kMaxTags = 50;
inline constexpr size_t kMaxTagBytes = 128;

// ^[a-z0-9-]{1,128}$
bool IsValidWorkflowId(std::string_view id);
// ^[a-zA-Z0-9-_]{1,128}$
bool IsValidExecutionName(std::string_view name);
// Provider names: lowercase alphanumeric words joined by single hyphens.
bool IsValidProviderName(std::string_view name);

// The length of `j.dump()` (compact, UTF-8 passed through), computed without building the text:
// the size limits are checked on every start, where serializing a large input twice (the Manager
// and the provider each validate it) cost more than the provider call itself. Stops counting as
// soon as the length exceeds `stop_above` and then returns some value > `stop_above`. Strings
// are counted byte by byte as nlohmann's serializer escapes them; a string that is not valid
// UTF-8 (which dump() would refuse) is counted as if it were. Tested against dump() in
// tests/unit/provider_types_test.cpp.
size_t SerializedSize(const Json& j, size_t stop_above = static_cast<size_t>(-1));

// Each returns every problem found, as "field: problem" (empty when valid).
std::vector<std::string> WorkflowSpecProblems(const WorkflowSpec& spec);
std::vector<std::string> ExecutionInputProblems(const ExecutionInput& input);

// Throw ProviderError(kInvalidSpec) listing every problem.
void ValidateWorkflowSpec(const WorkflowSpec& spec);
void ValidateExecutionInput(const ExecutionInput& input);

}  // namespace workflowd::providers
