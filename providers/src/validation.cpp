#include "workflowd/providers/validation.hpp"

#include "workflowd/providers/errors.hpp"

namespace workflowd::providers {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

void CheckTags(const Tags& tags, std::vector<std::string>& problems) {
  if (tags.size() > kMaxTags) {
    problems.push_back("tags: at most " + std::to_string(kMaxTags) + " tags are allowed, got " +
                       std::to_string(tags.size()));
  }
  for (const auto& [k, v] : tags) {
    if (k.empty()) problems.push_back("tags: a tag key must not be empty");
    if (k.size() > kMaxTagBytes) {
      problems.push_back("tags." + k.substr(0, 32) + "...: key longer than " +
                         std::to_string(kMaxTagBytes) + " bytes");
    }
    if (v.size() > kMaxTagBytes) {
      problems.push_back("tags." + k + ": value longer than " + std::to_string(kMaxTagBytes) +
                         " bytes");
    }
  }
}

void Throw(const std::vector<std::string>& problems, const std::string& what) {
  std::string message = "invalid " + what + ": ";
  for (size_t i = 0; i < problems.size(); ++i) {
    if (i > 0) message += "; ";
    message += problems[i];
  }
  throw ProviderError(ErrorCode::kInvalidSpec, message);
}

// The length of a JSON string literal as nlohmann's serializer writes it (ensure_ascii off): two
// quotes; \b \t \n \f \r \" \\ take two bytes, other control characters six (\u00XX).
size_t EscapedStringSize(std::string_view s) {
  size_t n = 2 + s.size();
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\' || c == '\b' || c == '\t' || c == '\n' || c == '\f' || c == '\r') {
      n += 1;
    } else if (c < 0x20) {
      n += 5;
    }
  }
  return n;
}

}  // namespace

bool IsValidWorkflowId(std::string_view id) {
  if (id.empty() || id.size() > kMaxWorkflowIdBytes) return false;
  for (char c : id) {
    if (!IsLowerAlnum(c) && c != '-') return false;
  }
  return true;
}

bool IsValidExecutionName(std::string_view name) {
  if (name.empty() || name.size() > kMaxExecutionNameBytes) return false;
  for (char c : name) {
    if (!IsAlnum(c) && c != '-' && c != '_') return false;
  }
  return true;
}

bool IsValidProviderName(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '-' || name.back() == '-') return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] == '-') {
      if (name[i - 1] == '-') return false;
    } else if (!IsLowerAlnum(name[i])) {
      return false;
    }
  }
  return true;
}

std::vector<std::string> WorkflowSpecProblems(const WorkflowSpec& spec) {
  std::vector<std::string> p;
  if (!IsValidWorkflowId(spec.workflow_id)) {
    p.push_back("workflow_id: \"" + spec.workflow_id.substr(0, 140) +
                "\" must match ^[a-z0-9-]{1,128}$ (lowercase letters, digits and hyphens)");
  }
  if (spec.provider_type.empty()) p.push_back("provider_type: must not be empty");
  if (spec.name.empty()) p.push_back("name: must not be empty");
  if (spec.name.size() > kMaxNameBytes) {
    p.push_back("name: longer than " + std::to_string(kMaxNameBytes) + " bytes");
  }
  if (spec.description.size() > kMaxDescriptionBytes) {
    p.push_back("description: longer than " + std::to_string(kMaxDescriptionBytes) + " bytes");
  }
  if (spec.definition.is_null()) {
    p.push_back("definition: must be a non-empty JSON document");
  } else if ((spec.definition.is_object() || spec.definition.is_array() ||
              spec.definition.is_string()) &&
             spec.definition.empty()) {
    p.push_back("definition: must not be empty");
  } else if (SerializedSize(spec.definition, kMaxDefinitionBytes) > kMaxDefinitionBytes) {
    p.push_back("definition: larger than " + std::to_string(kMaxDefinitionBytes) + " bytes");
  }
  if (spec.timeout.count() < 0) p.push_back("timeout: must be greater than zero when set");
  if (spec.retry_policy) {
    const auto& r = *spec.retry_policy;
    if (r.max_attempts < 0) p.push_back("retry_policy.max_attempts: must be >= 0");
    if (!(r.backoff_rate >= 1.0)) p.push_back("retry_policy.backoff_rate: must be >= 1.0");
    if (r.initial_interval.count() <= 0) {
      p.push_back("retry_policy.initial_interval: must be greater than zero");
    }
    if (r.max_interval < r.initial_interval) {
      p.push_back("retry_policy.max_interval: must be >= initial_interval");
    }
  }
  CheckTags(spec.tags, p);
  return p;
}

namespace {

size_t DecimalDigits(uint64_t v) {
  size_t n = 1;
  while (v >= 10) {
    v /= 10;
    ++n;
  }
  return n;
}

// Adds the serialized length of `j` to `total`; false once `total` exceeds `stop_above`.
bool AddSerializedSize(const Json& j, size_t stop_above, size_t& total) {
  switch (j.type()) {
    case Json::value_t::null:
    case Json::value_t::discarded:
    case Json::value_t::binary:
    case Json::value_t::number_float:
      // Rare or short: the serializer's own text (floats: shortest round trip, or "null").
      total += j.dump().size();
      break;
    case Json::value_t::boolean:
      total += j.get<bool>() ? 4 : 5;
      break;
    case Json::value_t::number_integer: {
      const auto v = j.get<int64_t>();
      total += v < 0 ? 1 + DecimalDigits(0 - static_cast<uint64_t>(v))
                     : DecimalDigits(static_cast<uint64_t>(v));
      break;
    }
    case Json::value_t::number_unsigned:
      total += DecimalDigits(j.get<uint64_t>());
      break;
    case Json::value_t::string:
      total += EscapedStringSize(j.get_ref<const std::string&>());
      break;
    case Json::value_t::array:
      total += j.empty() ? 2 : 1 + j.size();  // brackets and the commas between elements
      for (const auto& element : j) {
        if (!AddSerializedSize(element, stop_above, total)) return false;
      }
      break;
    case Json::value_t::object:
      total += j.empty() ? 2 : 1 + 2 * j.size();  // braces, a colon each, commas between
      for (const auto& [key, value] : j.items()) {
        total += EscapedStringSize(key);
        if (!AddSerializedSize(value, stop_above, total)) return false;
      }
      break;
  }
  return total <= stop_above;
}

}  // namespace

size_t SerializedSize(const Json& j, size_t stop_above) {
  size_t total = 0;
  AddSerializedSize(j, stop_above, total);
  return total;
}

std::vector<std::string> ExecutionInputProblems(const ExecutionInput& input) {
  std::vector<std::string> p;
  if (!input.execution_name.empty() && !IsValidExecutionName(input.execution_name)) {
    p.push_back("execution_name: \"" + input.execution_name.substr(0, 140) +
                "\" must match ^[a-zA-Z0-9-_]{1,128}$");
  }
  if (input.input.is_null()) {
    p.push_back("input: must be a JSON object or array");
  } else if (!input.input.is_object() && !input.input.is_array()) {
    p.push_back("input: must be a JSON object or array, got " +
                std::string(input.input.type_name()));
  } else if (SerializedSize(input.input, kMaxInputBytes) > kMaxInputBytes) {
    p.push_back("input: larger than " + std::to_string(kMaxInputBytes) + " bytes");
  }
  CheckTags(input.tags, p);
  return p;
}

void ValidateWorkflowSpec(const WorkflowSpec& spec) {
  auto problems = WorkflowSpecProblems(spec);
  if (!problems.empty()) Throw(problems, "workflow spec");
}

void ValidateExecutionInput(const ExecutionInput& input) {
  auto problems = ExecutionInputProblems(input);
  if (!problems.empty()) Throw(problems, "execution input");
}

}  // namespace workflowd::providers
