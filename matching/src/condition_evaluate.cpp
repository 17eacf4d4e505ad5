// Evaluating a compiled condition against one event: typed comparisons, `in` lookups, field
// resolution and the walk over the compiled nodes. Never throws, does not allocate.
#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>

#include "condition_internal.hpp"

namespace workflowd::matching {
namespace condition_internal {

TypeClass TypeOfJson(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      return TypeClass::kNull;
    case json::value_t::boolean:
      return TypeClass::kBoolean;
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return TypeClass::kNumber;
    case json::value_t::string:
      return TypeClass::kString;
    case json::value_t::array:
    case json::value_t::binary:
      return TypeClass::kArray;
    case json::value_t::object:
      return TypeClass::kObject;
  }
  return TypeClass::kNull;
}

template <typename T>
int Sign(T x, T y) {
  return (x > y) - (x < y);
}

long double ToLongDouble(const json& j) {
  if (j.is_number_unsigned()) return static_cast<long double>(j.get<uint64_t>());
  if (j.is_number_integer()) return static_cast<long double>(j.get<int64_t>());
  return static_cast<long double>(j.get<double>());
}

// Exact numeric comparison across nlohmann's three number representations. On x86-64 a long
// double holds every int64, uint64 and double exactly, so mixed comparisons do not round.
std::optional<int> CompareNumbers(const json& a, const json& b) {
  if (!a.is_number_float() && !b.is_number_float()) {
    const bool au = a.is_number_unsigned();
    const bool bu = b.is_number_unsigned();
    if (au && bu) return Sign(a.get<uint64_t>(), b.get<uint64_t>());
    if (!au && !bu) return Sign(a.get<int64_t>(), b.get<int64_t>());
    if (au) {
      const int64_t y = b.get<int64_t>();
      if (y < 0) return 1;
      return Sign(a.get<uint64_t>(), static_cast<uint64_t>(y));
    }
    const int64_t x = a.get<int64_t>();
    if (x < 0) return -1;
    return Sign(static_cast<uint64_t>(x), b.get<uint64_t>());
  }
  const long double x = ToLongDouble(a);
  const long double y = ToLongDouble(b);
  if (std::isnan(x) || std::isnan(y)) return std::nullopt;
  return Sign(x, y);
}

enum class Equality { kEqual, kDifferent, kTypeMismatch };

bool StringMatchesOperand(std::string_view s, const Operand& v) {
  if (s == v.value.get_ref<const std::string&>()) return true;
  if (!v.instant) return false;
  const std::optional<TimePoint> t = ParseRfc3339(s);
  return t && *t == *v.instant;
}

Equality CompareEqual(const Actual& a, const Operand& v) {
  const TypeClass t = TypeOf(a);
  if (t != v.type) return Equality::kTypeMismatch;
  bool equal = false;
  switch (t) {
    case TypeClass::kNull:
      equal = true;
      break;
    case TypeClass::kBoolean:
      equal = a.node->get<bool>() == v.value.get<bool>();
      break;
    case TypeClass::kNumber: {
      const std::optional<int> c = CompareNumbers(*a.node, v.value);
      equal = c && *c == 0;
      break;
    }
    case TypeClass::kString:
      equal = StringMatchesOperand(StringOf(a), v);
      break;
    case TypeClass::kArray:
    case TypeClass::kObject:
      equal = false;  // operands are scalars, so this is unreachable
      break;
  }
  return equal ? Equality::kEqual : Equality::kDifferent;
}

// Ordering for gt/gte/lt/lte; nullopt when the two cannot be ordered.
std::optional<int> CompareOrder(const Actual& a, const Operand& v) {
  const TypeClass t = TypeOf(a);
  if (t != v.type) return std::nullopt;
  if (t == TypeClass::kNumber) return CompareNumbers(*a.node, v.value);
  if (t != TypeClass::kString) return std::nullopt;
  const std::string_view s = StringOf(a);
  if (v.instant) {
    if (const std::optional<TimePoint> ts = ParseRfc3339(s)) return Sign(*ts, *v.instant);
  }
  const int c = s.compare(v.value.get_ref<const std::string&>());
  return (c > 0) - (c < 0);
}

Actual Attribute(std::string_view v) {
  Actual a;
  if (!v.empty()) {
    a.present = true;
    a.text = v;
  }
  return a;
}

Actual Resolve(const Node& n, const EventView& e) {
  switch (n.field_kind) {
    case FieldKind::kId:
      return Attribute(e.id);
    case FieldKind::kType:
      return Attribute(e.type);
    case FieldKind::kSource:
      return Attribute(e.source);
    case FieldKind::kSubject:
      return Attribute(e.subject);
    case FieldKind::kTenant:
      return Attribute(e.tenant);
    case FieldKind::kEnvironment:
      return Attribute(e.environment);
    case FieldKind::kTime:
      return Attribute(e.time);
    case FieldKind::kHeader: {
      Actual a;
      for (auto it = e.headers.rbegin(); it != e.headers.rend(); ++it) {
        if (it->name == n.header_name) {
          a.present = true;
          a.text = it->value;
          break;
        }
      }
      return a;
    }
    case FieldKind::kData: {
      const json* cur = e.data;
      if (cur == nullptr) return Actual{};
      for (const PathSegment& s : n.segments) {
        if (cur->is_object()) {
          const auto it = cur->find(s.key);
          if (it == cur->end()) return Actual{};
          cur = &*it;
        } else if (cur->is_array() && s.is_index) {
          if (s.index >= cur->size()) return Actual{};
          cur = &(*cur)[s.index];
        } else {
          return Actual{};
        }
      }
      Actual a;
      a.present = true;
      a.node = cur;
      return a;
    }
  }
  return Actual{};
}

bool OrderHolds(Op op, int c) {
  switch (op) {
    case Op::kGt:
      return c > 0;
    case Op::kGte:
      return c >= 0;
    case Op::kLt:
      return c < 0;
    case Op::kLte:
      return c <= 0;
    default:
      return false;
  }
}

Outcome EvaluateLeaf(const Node& n, const Actual& a) {
  if (!a.present) {
    switch (n.op) {
      case Op::kNotExists:
      case Op::kNe:
      case Op::kNotIn:
        return Outcome::kMatched;
      default:
        return Outcome::kMissing;
    }
  }
  switch (n.op) {
    case Op::kExists:
      return Outcome::kMatched;
    case Op::kNotExists:
      return Outcome::kPresent;
    case Op::kEq:
      switch (CompareEqual(a, *n.operand)) {
        case Equality::kEqual:
          return Outcome::kMatched;
        case Equality::kDifferent:
          return Outcome::kDifferent;
        case Equality::kTypeMismatch:
          return Outcome::kTypeMismatch;
      }
      return Outcome::kDifferent;
    case Op::kNe:
      return CompareEqual(a, *n.operand) == Equality::kEqual ? Outcome::kEqual : Outcome::kMatched;
    case Op::kGt:
    case Op::kGte:
    case Op::kLt:
    case Op::kLte: {
      const std::optional<int> c = CompareOrder(a, *n.operand);
      if (!c) return Outcome::kTypeMismatch;
      return OrderHolds(n.op, *c) ? Outcome::kMatched : Outcome::kOrderFalse;
    }
    case Op::kIn:
      return n.members->Contains(a) ? Outcome::kMatched : Outcome::kNotMember;
    case Op::kNotIn:
      return n.members->Contains(a) ? Outcome::kMember : Outcome::kMatched;
    case Op::kContains: {
      const TypeClass t = TypeOf(a);
      if (t == TypeClass::kArray) {
        for (const json& element : *a.node) {
          Actual e;
          e.present = true;
          e.node = &element;
          if (CompareEqual(e, *n.operand) == Equality::kEqual) return Outcome::kMatched;
        }
        return Outcome::kNotContained;
      }
      if (t == TypeClass::kString && n.operand->type == TypeClass::kString) {
        return StringOf(a).find(n.operand->value.get_ref<const std::string&>()) !=
                       std::string_view::npos
                   ? Outcome::kMatched
                   : Outcome::kNotContained;
      }
      return Outcome::kTypeMismatch;
    }
    case Op::kStartsWith:
    case Op::kEndsWith: {
      if (TypeOf(a) != TypeClass::kString) return Outcome::kTypeMismatch;
      const std::string_view s = StringOf(a);
      const std::string& v = n.operand->value.get_ref<const std::string&>();
      if (n.op == Op::kStartsWith) return s.starts_with(v) ? Outcome::kMatched : Outcome::kNoPrefix;
      return s.ends_with(v) ? Outcome::kMatched : Outcome::kNoSuffix;
    }
    case Op::kRegex:
      if (TypeOf(a) != TypeClass::kString) return Outcome::kTypeMismatch;
      return RE2::PartialMatch(StringOf(a), *n.regex) ? Outcome::kMatched : Outcome::kNoRegexMatch;
  }
  return Outcome::kMissing;
}

bool EvaluateNode(const Node& n, const EventView& e) {
  switch (n.kind) {
    case Explanation::Kind::kAll:
      for (const auto& c : n.children) {
        if (!EvaluateNode(*c, e)) return false;
      }
      return true;
    case Explanation::Kind::kAny:
      for (const auto& c : n.children) {
        if (EvaluateNode(*c, e)) return true;
      }
      return false;
    case Explanation::Kind::kNot:
      return !EvaluateNode(*n.children.front(), e);
    case Explanation::Kind::kLeaf:
      return EvaluateLeaf(n, Resolve(n, e)) == Outcome::kMatched;
  }
  return false;
}

}  // namespace condition_internal

// NOLINTNEXTLINE(bugprone-exception-escape): see the declaration.
bool Evaluate(const Condition& condition, const EventView& event) noexcept {
  return condition_internal::EvaluateNode(*condition.impl_->root, event);
}

}  // namespace workflowd::matching
