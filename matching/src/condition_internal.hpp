// The compiled form of a condition, shared by the three parts of the condition language's
// implementation: compilation (condition_compile.cpp) builds it, evaluation
// (condition_evaluate.cpp) walks it for every event, explanation (condition_explain.cpp) walks it
// again to say why. Private to matching/.
#pragma once

#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/matching/condition.hpp"

namespace workflowd::matching {
namespace condition_internal {

using nlohmann::json;

enum class FieldKind {
  kId,
  kType,
  kSource,
  kSubject,
  kTenant,
  kEnvironment,
  kTime,
  kData,
  kHeader,
};

enum class TypeClass { kNull, kBoolean, kNumber, kString, kArray, kObject };

struct PathSegment {
  std::string key;
  size_t index = 0;
  bool is_index = false;  // the key is a canonical non-negative integer
};

// The condition's value with what can be prepared at compile time.
struct Operand {
  json value;
  TypeClass type = TypeClass::kNull;
  std::optional<TimePoint> instant;  // set when the value is a string that parses as RFC 3339
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// The value of a field in one event: a payload node, or the text of an envelope attribute or
// header.
struct Actual {
  bool present = false;
  const json* node = nullptr;  // payload values
  std::string_view text;       // envelope attributes and headers, when node == nullptr
};

TypeClass TypeOfJson(const json& j);

inline TypeClass TypeOf(const Actual& a) {
  return a.node ? TypeOfJson(*a.node) : TypeClass::kString;
}

inline std::string_view StringOf(const Actual& a) {
  return a.node ? std::string_view{a.node->get_ref<const std::string&>()} : a.text;
}

// The `in` / `not_in` list, prepared for lookups with the same semantics as CompareEqual.
// Numbers are kept by exact value: integral values (from integers or integral floats) in ints_ or
// big_uints_, everything else in doubles_, so 1 and 1.0 are one member and 2^53+1 stays distinct
// from 2^53.
class MemberSet {
 public:
  void Insert(const json& v) {
    switch (TypeOfJson(v)) {
      case TypeClass::kNull:
        has_null_ = true;
        break;
      case TypeClass::kBoolean:
        (v.get<bool>() ? has_true_ : has_false_) = true;
        break;
      case TypeClass::kNumber:
        InsertNumber(v);
        break;
      case TypeClass::kString: {
        const std::string& s = v.get_ref<const std::string&>();
        strings_.insert(s);
        if (const std::optional<TimePoint> t = ParseRfc3339(s)) instants_.push_back(*t);
        break;
      }
      case TypeClass::kArray:
      case TypeClass::kObject:
        break;  // rejected by the compiler
    }
  }

  void Finish() { std::sort(instants_.begin(), instants_.end()); }

  bool Contains(const Actual& a) const {
    switch (TypeOf(a)) {
      case TypeClass::kNull:
        return has_null_;
      case TypeClass::kBoolean:
        return a.node->get<bool>() ? has_true_ : has_false_;
      case TypeClass::kNumber:
        return ContainsNumber(*a.node);
      case TypeClass::kString: {
        const std::string_view s = StringOf(a);
        if (strings_.find(s) != strings_.end()) return true;
        if (instants_.empty()) return false;
        const std::optional<TimePoint> t = ParseRfc3339(s);
        return t && std::binary_search(instants_.begin(), instants_.end(), *t);
      }
      case TypeClass::kArray:
      case TypeClass::kObject:
        return false;
    }
    return false;
  }

 private:
  static constexpr double kTwo63 = 9223372036854775808.0;
  static constexpr double kTwo64 = 18446744073709551616.0;

  void InsertNumber(const json& v) {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        ints_.insert(static_cast<int64_t>(u));
      } else {
        big_uints_.insert(u);
      }
    } else if (v.is_number_integer()) {
      ints_.insert(v.get<int64_t>());
    } else {
      const double d = v.get<double>();
      if (std::isnan(d)) return;
      if (d == std::trunc(d) && d >= -kTwo63 && d < kTwo63) {
        ints_.insert(static_cast<int64_t>(d));
      } else if (d == std::trunc(d) && d >= 0 && d < kTwo64) {
        big_uints_.insert(static_cast<uint64_t>(d));
      } else {
        doubles_.insert(d);
      }
    }
  }

  bool ContainsNumber(const json& v) const {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return ints_.count(static_cast<int64_t>(u)) > 0;
      }
      return big_uints_.count(u) > 0;
    }
    if (v.is_number_integer()) return ints_.count(v.get<int64_t>()) > 0;
    const double d = v.get<double>();
    if (std::isnan(d)) return false;
    if (d == std::trunc(d) && d >= -kTwo63 && d < kTwo63) {
      return ints_.count(static_cast<int64_t>(d)) > 0;
    }
    if (d == std::trunc(d) && d >= 0 && d < kTwo64) {
      return big_uints_.count(static_cast<uint64_t>(d)) > 0;
    }
    return doubles_.count(d) > 0;
  }

  std::unordered_set<std::string, StringHash, std::equal_to<>> strings_;
  std::vector<TimePoint> instants_;  // sorted
  std::unordered_set<int64_t> ints_;
  std::unordered_set<uint64_t> big_uints_;  // above INT64_MAX
  std::unordered_set<double> doubles_;      // non-integral or beyond the integer ranges
  bool has_null_ = false;
  bool has_true_ = false;
  bool has_false_ = false;
};

struct Node {
  Explanation::Kind kind = Explanation::Kind::kLeaf;
  std::string path;
  std::vector<std::unique_ptr<const Node>> children;  // all/any: n >= 0, not: 1

  // Leaf only.
  std::string field;
  FieldKind field_kind = FieldKind::kData;
  std::vector<PathSegment> segments;  // kData: the path below `data`
  std::string header_name;            // kHeader
  Op op = Op::kEq;
  std::optional<Operand> operand;    // absent for exists / not_exists
  std::shared_ptr<const RE2> regex;  // shared by every leaf with the same pattern (SharedRegex)
  std::unique_ptr<MemberSet> members;
};

// Why a leaf did or did not match. One function computes it for both Evaluate and Explain, so the
// explanation can never disagree with the decision.
enum class Outcome {
  kMatched,
  kMissing,       // field absent, op needs it
  kPresent,       // not_exists on a present field
  kTypeMismatch,  // eq / ordered / string ops across types
  kDifferent,     // eq on different values
  kEqual,         // ne on equal values
  kOrderFalse,    // gt/gte/lt/lte comparison false
  kNotMember,     // in
  kMember,        // not_in
  kNotContained,  // contains
  kNoPrefix,      // starts_with
  kNoSuffix,      // ends_with
  kNoRegexMatch,  // regex
};

// Helpers the messages of compilation and explanation share (condition.cpp).
// `s` in double quotes, cut to its first 64 bytes (on a UTF-8 boundary) with "..." when longer.
std::string Quote(std::string_view s);
// Compact JSON; invalid UTF-8 replaced (never throws).
std::string Dump(const json& j);

// Evaluation (condition_evaluate.cpp). The field of leaf `n` in event `e`.
Actual Resolve(const Node& n, const EventView& e);
// Why the leaf does or does not match the field's value `a` (Evaluate and Explain both use it).
Outcome EvaluateLeaf(const Node& n, const Actual& a);
bool EvaluateNode(const Node& n, const EventView& e);

// Explanation (condition_explain.cpp).
Explanation ExplainNode(const Node& n, const EventView& e);

}  // namespace condition_internal

struct Condition::Impl {
  // The source, serialized (compact: a parsed JSON tree is several times larger). source() parses
  // it back on first use; only explanations of the source, tests and tools ask for it. Empty when
  // the source could not be serialized faithfully; `source` is then set from the start.
  std::string source_text;
  mutable std::once_flag source_once;
  mutable nlohmann::json source;
  std::string path;
  size_t leaf_count = 0;
  std::unique_ptr<const condition_internal::Node> root;
  bool reads_whole_data = false;
  std::vector<std::vector<std::string>> data_paths;  // see Condition::data_paths()
};

}  // namespace workflowd::matching
