// The trigger-condition language of workflow definitions (`trigger.conditions`,
// `steps[].condition`): a small, total, side-effect-free predicate over one event.
//
// Syntax (JSON):
//   leaf:   {"field": "data.customer.country", "op": "eq", "value": "US"}
//   groups: {"all": [cond, ...]}, {"any": [cond, ...]}, {"not": cond}
// A trigger's `conditions` list is an implicit "all" (ParseConditionList).
//
// Fields: the envelope attributes id, type, source, subject, tenant, environment, time; `data`
// (the whole payload) or `data.a.b.c` (a path into it; a numeric segment indexes an array, and is
// an ordinary key when the value there is an object); `headers.<name>` (a Kafka header, compared as
// a string; names are case-sensitive; with repeated headers the last one wins, like
// rd_kafka_header_get_last). An envelope attribute whose view is empty counts as missing
// (CloudEvents forbids empty values, and optional ones such as `subject` are simply absent).
//
// Why compile: a definition is checked once when it is stored and then evaluated against every
// event of its tenant x environment. Compiling splits paths, builds RE2 programs and `in` lookup
// sets once, so that evaluation is a walk over prepared nodes that never throws and does not
// allocate. A compiled Condition is immutable and safe to share between threads; identical
// conditions and regular expressions are compiled once and shared (see LiveCompiledConditions).
//
// Typed semantics (no implicit conversions, never an exception):
//   - Values are compared only within the same type: null, boolean, number, string. A string "5"
//     is not equal to the number 5; a comparison across types is simply false (so `ne` is true).
//   - Numbers compare numerically across integer and floating representations (1 == 1.0), exactly
//     (no rounding of large integers). NaN (only possible in programmatic data) equals nothing.
//   - Strings compare by bytes (lexicographic, unsigned) for gt/gte/lt/lte. When BOTH sides are
//     strings that parse as RFC 3339 timestamps, they compare as instants instead, for every
//     comparing op (eq, ne, gt, gte, lt, lte, in, not_in): "2024-01-01T01:00:00+01:00" eq
//     "2024-01-01T00:00:00Z" is true.
//   - Booleans and null support eq / ne / in / not_in only (ordered ops take a number or string).
//   - Arrays and objects in the event are never equal to a scalar; `contains` looks inside arrays.
//   - A missing field (absent key, index out of range, path through a non-container, absent header,
//     empty envelope attribute, no payload) makes every op false EXCEPT not_exists, ne and not_in,
//     which are true: they are the negations of exists, eq and in, and "country ne US" should match
//     an event that has no country. A JSON null is present: exists is true and eq null matches.
//   - Ops: eq, ne; gt, gte, lt, lte (number or string value); in, not_in (non-empty array of
//     scalars; membership uses eq); exists, not_exists (no value); contains (string value:
//     substring of a string field; any scalar value: some element of an array field equals it);
//     starts_with, ends_with (string value, string field); regex (RE2 syntax, PARTIAL match, so
//     anchor with ^ and $ to match the whole field; string fields only).
//
// Limits, checked at compile time: nesting depth 16 (the implicit "all" of a list counts as one
// level), 256 leaves, 16 KiB per serialized `value`.
#pragma once

#include <cstddef>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "workflowd/matching/field_errors.hpp"

namespace workflowd::matching {

inline constexpr int kMaxConditionDepth = 16;
inline constexpr size_t kMaxConditionLeaves = 256;
inline constexpr size_t kMaxConditionValueBytes = size_t{16} * 1024;

enum class Op {
  kEq,
  kNe,
  kGt,
  kGte,
  kLt,
  kLte,
  kIn,
  kNotIn,
  kExists,
  kNotExists,
  kContains,
  kStartsWith,
  kEndsWith,
  kRegex,
};

// "eq", "not_in", ...
const char* ToString(Op op);
std::optional<Op> OpFromString(std::string_view name);
// "eq, ne, gt, ..." for error messages.
const std::string& ValidOpNames();

// A Kafka header as the consumer sees it.
struct Header {
  std::string_view name;
  std::string_view value;
};

// The event as the condition sees it: non-owning views into the consumer's decoded envelope, so
// filling one costs no copies. Everything must outlive the Evaluate/Explain call.
struct EventView {
  std::string_view id;
  std::string_view type;
  std::string_view source;
  std::string_view subject;
  std::string_view tenant;
  std::string_view environment;
  std::string_view time;
  const nlohmann::json* data = nullptr;  // the payload; nullptr when the event has none
  std::span<const Header> headers;
};

struct Explanation;

// A compiled condition. Immutable; share it through ConditionPtr.
class Condition {
 public:
  struct Impl;  // defined in condition.cpp

  explicit Condition(std::unique_ptr<const Impl> impl);
  ~Condition();
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  // The JSON it was compiled from (a condition object, or the list given to ParseConditionList).
  const nlohmann::json& source() const;
  // The path it was compiled at, e.g. "trigger.conditions"; explanations use it.
  const std::string& path() const;
  size_t leaf_count() const;
  // The paths below the event's `data` the condition reads, each a list of member names (sorted,
  // unique; "data.customer.country" is {"customer", "country"}; an index into an array is a name
  // too, "data.items.0.sku" is {"items", "0", "sku"}), or nullptr when it reads `data` as a whole.
  // An event decoder may build only the members on these paths, each path's last value whole and
  // any value that is not an object where a path goes on whole too: the condition's result is the
  // same.
  const std::vector<std::vector<std::string>>* data_paths() const;

 private:
  // NOLINTNEXTLINE(bugprone-exception-escape): see Evaluate below.
  friend bool Evaluate(const Condition& condition, const EventView& event) noexcept;
  friend Explanation Explain(const Condition& condition, const EventView& event);

  std::unique_ptr<const Impl> impl_;
};

using ConditionPtr = std::shared_ptr<const Condition>;

// Compiles one condition object. `path` names it in errors and explanations
// ("trigger.conditions[1]" gives errors like "trigger.conditions[1].any[0].op: unknown op ...").
// The first form throws ConditionError listing every problem; the second appends them to `errors`
// and returns nullptr when there was any.
ConditionPtr ParseCondition(const nlohmann::json& json, std::string path);
ConditionPtr ParseCondition(const nlohmann::json& json, std::string path, FieldErrors& errors);

// Compiles a list of conditions that must all hold (a trigger's `conditions`). Element i is
// reported as "<path>[i]". An empty list compiles to a condition that always holds.
ConditionPtr ParseConditionList(const nlohmann::json& list, std::string path);
ConditionPtr ParseConditionList(const nlohmann::json& list, std::string path, FieldErrors& errors);

// Compiled conditions are shared: compiling the same source (equal serialized JSON) at the same
// path while an earlier compilation of it is still alive returns that same Condition, and every
// regex leaf with the same pattern uses one compiled RE2, across all conditions. Definitions
// cloned over many tenants thus cost one compiled condition, however many tenants have them.
// How many distinct compiled conditions and regular expressions are alive (tests, diagnostics).
struct CompiledConditionCounts {
  size_t conditions = 0;
  size_t regexes = 0;
};
CompiledConditionCounts LiveCompiledConditions();

// True when the event satisfies the condition. Never throws, does not allocate.
// (bugprone-exception-escape sees json accessors that throw on a type mismatch; each one runs only
// behind a type check of the value, or on an operand whose type was checked at compile time.)
// NOLINTNEXTLINE(bugprone-exception-escape)
bool Evaluate(const Condition& condition, const EventView& event) noexcept;

// Evaluate for an optional condition: no condition (nullptr) always matches.
// NOLINTNEXTLINE(bugprone-exception-escape): see Evaluate.
inline bool Matches(const Condition* condition, const EventView& event) noexcept {
  return condition == nullptr || Evaluate(*condition, event);
}

// Why a condition did or did not match, node by node, for the explain API and decision logs.
// Unlike Evaluate, Explain visits every child of a group (no short-circuit) so the answer shows
// each clause; the overall result is always the same as Evaluate's.
struct Explanation {
  enum class Kind { kAll, kAny, kNot, kLeaf };

  Kind kind = Kind::kLeaf;
  std::string path;  // e.g. "trigger.conditions[1].any[0]"
  bool matched = false;
  // Human-readable reason: for a leaf "field is missing", "type mismatch: field is a string, value
  // is a number", "5 is not > 10", ...; for a group a count such as "1 of 3 conditions failed".
  std::string reason;

  // Leaf only.
  std::string field;
  Op op = Op::kEq;
  std::optional<nlohmann::json> expected;  // the condition's value; nullopt for exists/not_exists
  bool present = false;                    // whether the field exists in the event
  // The event's value when present. Values whose serialization exceeds 1 KiB are replaced by
  // {"truncated": true, "type": ..., "bytes": N} to keep explanations small.
  nlohmann::json actual;

  std::vector<Explanation> children;  // groups only

  // The leaf (or `not` node) that decided a failed result: the first failing child of an `all`,
  // the first child of an `any` (all failed), or a `not` whose inner condition matched. nullptr
  // when matched.
  const Explanation* FirstFailure() const;

  nlohmann::json ToJson() const;
};

Explanation Explain(const Condition& condition, const EventView& event);

// Helpers for the Explanation JSON.
const char* ToString(Explanation::Kind kind);

}  // namespace workflowd::matching
