// A list of {field path, message} problems, and the exception that carries one.
//
// Why a list and not a single message: a tenant who submits a workflow definition (or a condition
// through the REST API) should see every problem at once, each pinned to the JSON path that caused
// it ("trigger.conditions[1].any[0].op"), instead of fixing them one round trip at a time. The
// condition compiler, the definition validator and later the REST API (as the `details` of
// {"error":{"code","message","details"}}) all speak this one type, so a path produced deep inside
// the condition compiler reaches the user unchanged.
//
// It lives in matching/ because that is the lowest module that produces such errors; definitions/
// and api/ depend on matching/ anyway.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace workflowd::matching {

struct FieldError {
  // A JSON path into the submitted document: dotted keys and [index] for list elements, e.g.
  // "steps[2].depends_on[0]". Empty when the problem concerns the document as a whole.
  std::string field;
  std::string message;

  bool operator==(const FieldError&) const = default;
};

// Joins two path pieces: ("steps[1]", "id") -> "steps[1].id", ("steps", "[1]") -> "steps[1]",
// ("", "id") -> "id".
std::string JoinFieldPath(std::string_view prefix, std::string_view field);

// An ordered collection of problems, in the order they were found (deterministic for a given
// input).
class FieldErrors {
 public:
  FieldErrors() = default;

  void Add(std::string field, std::string message);
  // Appends `other`'s problems with every field prefixed by `prefix` (see JoinFieldPath).
  void Append(const FieldErrors& other, std::string_view prefix = {});

  bool empty() const noexcept { return items_.empty(); }
  size_t size() const noexcept { return items_.size(); }
  const std::vector<FieldError>& items() const noexcept { return items_; }
  std::vector<FieldError>::const_iterator begin() const noexcept { return items_.begin(); }
  std::vector<FieldError>::const_iterator end() const noexcept { return items_.end(); }

  // True when some problem is reported for exactly `field`.
  bool HasField(std::string_view field) const;

  // "field: message; field: message" (a problem without a field is just its message).
  std::string ToString() const;
  // [{"field": "...", "message": "..."}, ...], the `details` of an API error.
  nlohmann::json ToJson() const;

  bool operator==(const FieldErrors&) const = default;

 private:
  std::vector<FieldError> items_;
};

// Thrown by the throwing variants of the parsers and validators. what() is a one-line summary,
// prefixed by `context` when given (for example the file a definition was loaded from).
class ValidationError : public std::invalid_argument {
 public:
  explicit ValidationError(FieldErrors errors, std::string_view context = {});

  const FieldErrors& errors() const noexcept { return errors_; }

 private:
  FieldErrors errors_;
};

// The condition compiler's error is the shared type, so callers catch one thing.
using ConditionError = ValidationError;

}  // namespace workflowd::matching
