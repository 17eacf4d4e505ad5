// Explaining a condition's result for one event, node by node (the explain API and decision
// logs). Leaves are decided by the same function as in evaluation (EvaluateLeaf), so an
// explanation never disagrees with Evaluate.
#include <string>

#include "condition_internal.hpp"
#include "workflowd/common/utf8.hpp"

namespace workflowd::matching {
namespace condition_internal {

const char* TypeName(TypeClass t) {
  switch (t) {
    case TypeClass::kNull:
      return "null";
    case TypeClass::kBoolean:
      return "a boolean";
    case TypeClass::kNumber:
      return "a number";
    case TypeClass::kString:
      return "a string";
    case TypeClass::kArray:
      return "an array";
    case TypeClass::kObject:
      return "an object";
  }
  return "?";
}

constexpr size_t kMaxExplainedValueBytes = 1024;

json Summarize(const Actual& a) {
  if (!a.present) return nullptr;
  if (!a.node) {
    if (a.text.size() <= kMaxExplainedValueBytes) return std::string(a.text);
    return {{"truncated", true}, {"type", "string"}, {"bytes", a.text.size()}};
  }
  const std::string dumped = Dump(*a.node);
  if (dumped.size() <= kMaxExplainedValueBytes) return *a.node;
  return {{"truncated", true}, {"type", a.node->type_name()}, {"bytes", dumped.size()}};
}

std::string Short(const json& j) {
  std::string s = Dump(j);
  if (s.size() > 64) s = std::string(Utf8Prefix(s, 64)) + "...";
  return s;
}

std::string Short(const Actual& a) {
  if (a.node) return Short(*a.node);
  return Short(json(std::string(Utf8Prefix(a.text, 128))));
}

const char* OpSymbol(Op op) {
  switch (op) {
    case Op::kGt:
      return ">";
    case Op::kGte:
      return ">=";
    case Op::kLt:
      return "<";
    case Op::kLte:
      return "<=";
    default:
      return ToString(op);
  }
}

std::string Describe(Outcome o, const Node& n, const Actual& a) {
  switch (o) {
    case Outcome::kMatched:
      return a.present ? "matched" : "matched: field is missing";
    case Outcome::kMissing:
      return "field is missing";
    case Outcome::kPresent:
      return "field is present";
    case Outcome::kTypeMismatch: {
      std::string s = "type mismatch: field is ";
      s += TypeName(TypeOf(a));
      switch (n.op) {
        case Op::kStartsWith:
        case Op::kEndsWith:
        case Op::kRegex:
          s += ", op " + Quote(ToString(n.op)) + " needs a string";
          break;
        case Op::kContains:
          s += ", op \"contains\" needs an array, or a string with a string value";
          break;
        default:
          s += ", value is ";
          s += TypeName(n.operand->type);
          break;
      }
      return s;
    }
    case Outcome::kDifferent:
      return Short(a) + " is not equal to " + Short(n.operand->value);
    case Outcome::kEqual:
      return Short(a) + " is equal to " + Short(n.operand->value);
    case Outcome::kOrderFalse:
      return Short(a) + " is not " + OpSymbol(n.op) + " " + Short(n.operand->value);
    case Outcome::kNotMember:
      return Short(a) + " is not in the list";
    case Outcome::kMember:
      return Short(a) + " is in the list";
    case Outcome::kNotContained:
      return "does not contain " + Short(n.operand->value);
    case Outcome::kNoPrefix:
      return "does not start with " + Short(n.operand->value);
    case Outcome::kNoSuffix:
      return "does not end with " + Short(n.operand->value);
    case Outcome::kNoRegexMatch:
      return "does not match the regular expression " + Short(n.operand->value);
  }
  return "";
}

Explanation ExplainNode(const Node& n, const EventView& e) {
  Explanation x;
  x.kind = n.kind;
  x.path = n.path;
  switch (n.kind) {
    case Explanation::Kind::kAll:
    case Explanation::Kind::kAny: {
      size_t matched = 0;
      for (const auto& c : n.children) {
        x.children.push_back(ExplainNode(*c, e));
        if (x.children.back().matched) ++matched;
      }
      const size_t total = n.children.size();
      const std::string of = " of " + std::to_string(total) + " conditions ";
      if (n.kind == Explanation::Kind::kAll) {
        x.matched = matched == total;
        x.reason = total == 0  ? "no conditions"
                   : x.matched ? "all" + of.substr(3) + "matched"
                               : std::to_string(total - matched) + of + "failed";
      } else {
        x.matched = matched > 0;
        x.reason = x.matched ? std::to_string(matched) + of + "matched" : "none" + of + "matched";
      }
      break;
    }
    case Explanation::Kind::kNot:
      x.children.push_back(ExplainNode(*n.children.front(), e));
      x.matched = !x.children.front().matched;
      x.reason = x.matched ? "inner condition did not match" : "inner condition matched";
      break;
    case Explanation::Kind::kLeaf: {
      const Actual a = Resolve(n, e);
      const Outcome o = EvaluateLeaf(n, a);
      x.matched = o == Outcome::kMatched;
      x.reason = Describe(o, n, a);
      x.field = n.field;
      x.op = n.op;
      if (n.operand) x.expected = n.operand->value;
      x.present = a.present;
      x.actual = Summarize(a);
      break;
    }
  }
  return x;
}

}  // namespace condition_internal

Explanation Explain(const Condition& condition, const EventView& event) {
  return condition_internal::ExplainNode(*condition.impl_->root, event);
}

const Explanation* Explanation::FirstFailure() const {
  if (matched) return nullptr;
  switch (kind) {
    case Kind::kLeaf:
    case Kind::kNot:
      return this;
    case Kind::kAll:
    case Kind::kAny:
      for (const Explanation& c : children) {
        if (!c.matched) return c.FirstFailure();
      }
      return this;
  }
  return this;
}

const char* ToString(Explanation::Kind kind) {
  switch (kind) {
    case Explanation::Kind::kAll:
      return "all";
    case Explanation::Kind::kAny:
      return "any";
    case Explanation::Kind::kNot:
      return "not";
    case Explanation::Kind::kLeaf:
      return "leaf";
  }
  return "?";
}

nlohmann::json Explanation::ToJson() const {
  nlohmann::json out = {
      {"kind", ToString(kind)}, {"path", path}, {"matched", matched}, {"reason", reason}};
  if (kind == Kind::kLeaf) {
    out["field"] = field;
    out["op"] = ToString(op);
    if (expected) out["value"] = *expected;
    out["present"] = present;
    if (present) out["actual"] = actual;
  } else {
    nlohmann::json list = nlohmann::json::array();
    for (const Explanation& c : children) list.push_back(c.ToJson());
    out["children"] = std::move(list);
  }
  return out;
}

}  // namespace workflowd::matching
