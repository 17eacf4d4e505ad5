#include "workflowd/matching/field_errors.hpp"

#include <utility>

#include "workflowd/common/utf8.hpp"

namespace workflowd::matching {
namespace {

std::string Summary(const FieldErrors& errors, std::string_view context) {
  std::string out;
  if (!context.empty()) {
    out.append(context);
    out += ": ";
  }
  out += errors.size() == 1 ? "1 problem: " : std::to_string(errors.size()) + " problems: ";
  out += errors.ToString();
  return out;
}

}  // namespace

std::string JoinFieldPath(std::string_view prefix, std::string_view field) {
  if (prefix.empty()) return std::string(field);
  if (field.empty()) return std::string(prefix);
  std::string out(prefix);
  if (field.front() != '[') out += '.';
  out.append(field);
  return out;
}

void FieldErrors::Add(std::string field, std::string message) {
  // Keys and values of the input reach these texts, and a parser may hand back bytes that are not
  // UTF-8 even from valid UTF-8 input (yaml-cpp returned a key holding a NUL with 0xA0 in its
  // place). Problems are printed, logged and serialized as JSON: they are made valid here, once
  // for every caller.
  if (!IsValidUtf8(field)) field = SanitizeUtf8(field);
  if (!IsValidUtf8(message)) message = SanitizeUtf8(message);
  items_.push_back(FieldError{std::move(field), std::move(message)});
}

void FieldErrors::Append(const FieldErrors& other, std::string_view prefix) {
  for (const FieldError& e : other.items_) {
    items_.push_back(FieldError{JoinFieldPath(prefix, e.field), e.message});
  }
}

bool FieldErrors::HasField(std::string_view field) const {
  for (const FieldError& e : items_) {
    if (e.field == field) return true;
  }
  return false;
}

std::string FieldErrors::ToString() const {
  std::string out;
  for (const FieldError& e : items_) {
    if (!out.empty()) out += "; ";
    if (!e.field.empty()) {
      out += e.field;
      out += ": ";
    }
    out += e.message;
  }
  return out;
}

nlohmann::json FieldErrors::ToJson() const {
  nlohmann::json out = nlohmann::json::array();
  for (const FieldError& e : items_) {
    out.push_back({{"field", e.field}, {"message", e.message}});
  }
  return out;
}

ValidationError::ValidationError(FieldErrors errors, std::string_view context)
    : std::invalid_argument(Summary(errors, context)), errors_(std::move(errors)) {}

}  // namespace workflowd::matching
