// The Condition type and the names of the ops. The language is implemented in three parts that
// share the compiled form (condition_internal.hpp): compilation (condition_compile.cpp),
// evaluation (condition_evaluate.cpp) and explanation (condition_explain.cpp).
#include <array>
#include <string>
#include <utility>

#include "condition_internal.hpp"
#include "workflowd/common/utf8.hpp"

namespace workflowd::matching {
namespace condition_internal {

constexpr std::array<std::pair<std::string_view, Op>, 14> kOps = {{
    {"eq", Op::kEq},
    {"ne", Op::kNe},
    {"gt", Op::kGt},
    {"gte", Op::kGte},
    {"lt", Op::kLt},
    {"lte", Op::kLte},
    {"in", Op::kIn},
    {"not_in", Op::kNotIn},
    {"exists", Op::kExists},
    {"not_exists", Op::kNotExists},
    {"contains", Op::kContains},
    {"starts_with", Op::kStartsWith},
    {"ends_with", Op::kEndsWith},
    {"regex", Op::kRegex},
}};

std::string Quote(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  if (s.size() > kMax) {
    out.append(Utf8Prefix(s, kMax));
    out += "...";
  } else {
    out.append(s);
  }
  out += '"';
  return out;
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace condition_internal

Condition::Condition(std::unique_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Condition::~Condition() = default;

const nlohmann::json& Condition::source() const {
  std::call_once(impl_->source_once, [this] {
    if (!impl_->source_text.empty()) impl_->source = nlohmann::json::parse(impl_->source_text);
  });
  return impl_->source;
}
const std::string& Condition::path() const { return impl_->path; }
const std::vector<std::vector<std::string>>* Condition::data_paths() const {
  return impl_->reads_whole_data ? nullptr : &impl_->data_paths;
}
size_t Condition::leaf_count() const { return impl_->leaf_count; }

const char* ToString(Op op) {
  for (const auto& [name, value] : condition_internal::kOps) {
    if (value == op) return name.data();
  }
  return "?";
}

std::optional<Op> OpFromString(std::string_view name) {
  for (const auto& [n, value] : condition_internal::kOps) {
    if (n == name) return value;
  }
  return std::nullopt;
}

const std::string& ValidOpNames() {
  static const std::string* const kNames = [] {
    auto* s = new std::string;
    for (const auto& [name, unused] : condition_internal::kOps) {
      if (!s->empty()) *s += ", ";
      s->append(name);
    }
    return s;
  }();
  return *kNames;
}

}  // namespace workflowd::matching
