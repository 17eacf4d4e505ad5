#include "workflowd/matching/condition.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "workflowd/common/clock.hpp"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/common/utf8.hpp"

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

TypeClass TypeOf(const Actual& a) { return a.node ? TypeOfJson(*a.node) : TypeClass::kString; }

std::string_view StringOf(const Actual& a) {
  return a.node ? std::string_view{a.node->get_ref<const std::string&>()} : a.text;
}

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

// ---- Compilation ----

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

constexpr std::array<std::pair<std::string_view, FieldKind>, 7> kAttributes = {{
    {"id", FieldKind::kId},
    {"type", FieldKind::kType},
    {"source", FieldKind::kSource},
    {"subject", FieldKind::kSubject},
    {"tenant", FieldKind::kTenant},
    {"environment", FieldKind::kEnvironment},
    {"time", FieldKind::kTime},
}};

constexpr std::string_view kValidFields =
    "id, type, source, subject, tenant, environment, time, data, data.<path>, headers.<name>";

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

bool IsScalar(const json& j) { return !j.is_array() && !j.is_object() && !j.is_binary(); }

// Canonical non-negative integer ("0", "12"; not "012", "-1", "+1").
bool ParseIndex(std::string_view s, size_t& out) {
  if (s.empty() || (s.size() > 1 && s.front() == '0')) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// A process-wide table of immutable compiled objects by key, holding them weakly: whoever asks
// for a key that is still alive somewhere gets the same object, and an object is freed as soon as
// its last user drops it. Compiled conditions and regular expressions are immutable and safe to
// share between threads, and tenants' definitions repeat the same ones over and over (cloned
// definitions, the same e-mail pattern in many tenants), so sharing them keeps the memory of the
// matching index proportional to the distinct conditions rather than to the definitions, and the
// evaluation of many definitions touches the same few hot objects.
template <typename T>
class Interner {
 public:
  std::shared_ptr<const T> Find(const std::string& key) {
    std::lock_guard lock(mu_);
    const auto it = map_.find(key);
    return it == map_.end() ? nullptr : it->second.lock();
  }

  // Stores `value` under `key` unless a live object is already there; returns the one to use.
  std::shared_ptr<const T> Insert(std::string key, std::shared_ptr<const T> value) {
    std::lock_guard lock(mu_);
    auto [it, inserted] = map_.try_emplace(std::move(key));
    if (!inserted) {
      if (auto existing = it->second.lock()) return existing;
    }
    it->second = value;
    if (map_.size() >= sweep_at_) {
      std::erase_if(map_, [](const auto& kv) { return kv.second.expired(); });
      sweep_at_ = std::max(kMinSweep, 2 * map_.size());
    }
    return value;
  }

  size_t LiveCount() {
    std::lock_guard lock(mu_);
    return static_cast<size_t>(std::count_if(map_.begin(), map_.end(),
                                             [](const auto& kv) { return !kv.second.expired(); }));
  }

 private:
  static constexpr size_t kMinSweep = 1024;
  std::mutex mu_;
  std::unordered_map<std::string, std::weak_ptr<const T>> map_;
  size_t sweep_at_ = kMinSweep;
};

Interner<RE2>& RegexInterner() {
  static auto* const interner = new Interner<RE2>;  // never destroyed: used until exit
  return *interner;
}

// The compiled RE2 for `pattern`, shared with every other leaf using the same pattern (one RE2
// holds its program and a lazily built DFA, kilobytes each). nullptr and `error` set when the
// pattern is invalid.
std::shared_ptr<const RE2> SharedRegex(const std::string& pattern, std::string& error) {
  if (auto re = RegexInterner().Find(pattern)) return re;
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_shared<const RE2>(pattern, options);
  if (!re->ok()) {
    error = re->error();
    return nullptr;
  }
  return RegexInterner().Insert(pattern, std::move(re));
}

class Compiler {
 public:
  explicit Compiler(FieldErrors& errors) : errors_(errors) {}

  size_t leaves() const { return leaves_; }

  std::unique_ptr<Node> Compile(const json& j, const std::string& path, int depth) {
    if (depth > kMaxConditionDepth) {
      errors_.Add(path, "conditions are nested deeper than " + std::to_string(kMaxConditionDepth) +
                            " levels");
      return nullptr;
    }
    if (!j.is_object()) {
      errors_.Add(path,
                  "must be an object: a leaf {\"field\", \"op\", \"value\"} or a group "
                  "{\"all\": [...]}, {\"any\": [...]} or {\"not\": {...}}");
      return nullptr;
    }
    const bool has_leaf_keys = j.contains("field") || j.contains("op") || j.contains("value");
    int groups = 0;
    const char* group_key = nullptr;
    for (const char* key : {"all", "any", "not"}) {
      if (j.contains(key)) {
        ++groups;
        group_key = key;
      }
    }
    if (groups == 0 && !has_leaf_keys) {
      if (j.empty()) {
        errors_.Add(path,
                    "empty condition: expected \"field\" and \"op\", or one of \"all\", "
                    "\"any\", \"not\"");
      }
      for (const auto& [key, unused] : j.items()) {
        errors_.Add(JoinFieldPath(path, key),
                    "unknown key " + Quote(key) +
                        "; a condition is a leaf {\"field\", \"op\", \"value\"} or a group "
                        "{\"all\"}, {\"any\"}, {\"not\"}");
      }
      return nullptr;
    }
    if (groups > 1 || (groups == 1 && has_leaf_keys)) {
      errors_.Add(path,
                  "a condition is either a leaf {\"field\", \"op\", \"value\"} or exactly one of "
                  "\"all\", \"any\", \"not\"; this one mixes them");
      return nullptr;
    }
    if (groups == 1) return CompileGroup(j, group_key, path, depth);
    return CompileLeaf(j, path);
  }

  // The implicit "all" of a trigger's condition list.
  std::unique_ptr<Node> CompileList(const json& list, const std::string& path) {
    if (!list.is_array()) {
      errors_.Add(path, "must be a list of conditions");
      return nullptr;
    }
    auto node = std::make_unique<Node>();
    node->kind = Explanation::Kind::kAll;
    node->path = path;
    bool ok = true;
    for (size_t i = 0; i < list.size(); ++i) {
      auto child = Compile(list[i], path + "[" + std::to_string(i) + "]", 2);
      if (child) {
        node->children.push_back(std::move(child));
      } else {
        ok = false;
      }
    }
    return ok ? std::move(node) : nullptr;
  }

 private:
  std::unique_ptr<Node> CompileGroup(const json& j, const std::string& key, const std::string& path,
                                     int depth) {
    bool ok = true;
    for (const auto& [k, unused] : j.items()) {
      if (k != key) {
        errors_.Add(JoinFieldPath(path, k), "unknown key " + Quote(k) + " next to " + Quote(key) +
                                                "; a group has exactly one key");
        ok = false;
      }
    }
    const json& body = j.at(key);
    const std::string body_path = JoinFieldPath(path, key);
    auto node = std::make_unique<Node>();
    node->path = path;
    if (key == "not") {
      node->kind = Explanation::Kind::kNot;
      auto child = Compile(body, body_path, depth + 1);
      if (!child) return nullptr;
      node->children.push_back(std::move(child));
      return ok ? std::move(node) : nullptr;
    }
    node->kind = key == "all" ? Explanation::Kind::kAll : Explanation::Kind::kAny;
    if (!body.is_array() || body.empty()) {
      errors_.Add(body_path, "must be a non-empty list of conditions");
      return nullptr;
    }
    for (size_t i = 0; i < body.size(); ++i) {
      auto child = Compile(body[i], body_path + "[" + std::to_string(i) + "]", depth + 1);
      if (child) {
        node->children.push_back(std::move(child));
      } else {
        ok = false;
      }
    }
    return ok ? std::move(node) : nullptr;
  }

  std::unique_ptr<Node> CompileLeaf(const json& j, const std::string& path) {
    ++leaves_;
    const size_t errors_before = errors_.size();
    auto node = std::make_unique<Node>();
    node->kind = Explanation::Kind::kLeaf;
    node->path = path;
    for (const auto& [key, unused] : j.items()) {
      if (key != "field" && key != "op" && key != "value") {
        errors_.Add(JoinFieldPath(path, key),
                    "unknown key " + Quote(key) +
                        "; a leaf condition has only \"field\", \"op\" and \"value\"");
      }
    }

    const std::string field_path = JoinFieldPath(path, "field");
    const auto field_it = j.find("field");
    if (field_it == j.end()) {
      errors_.Add(field_path, "required; one of " + std::string(kValidFields));
    } else if (!field_it->is_string()) {
      errors_.Add(field_path, "must be a string; one of " + std::string(kValidFields));
    } else {
      CompileField(field_it->get<std::string>(), field_path, *node);
    }

    const std::string op_path = JoinFieldPath(path, "op");
    const auto op_it = j.find("op");
    std::optional<Op> op;
    if (op_it == j.end()) {
      errors_.Add(op_path, "required; valid ops: " + ValidOpNames());
    } else if (!op_it->is_string()) {
      errors_.Add(op_path, "must be a string; valid ops: " + ValidOpNames());
    } else {
      op = OpFromString(op_it->get_ref<const std::string&>());
      if (!op) {
        errors_.Add(op_path, "unknown op " + Quote(op_it->get_ref<const std::string&>()) +
                                 "; valid ops: " + ValidOpNames());
      }
    }
    if (op) {
      node->op = *op;
      const auto value_it = j.find("value");
      CompileValue(value_it == j.end() ? nullptr : &*value_it, JoinFieldPath(path, "value"), *node);
    }
    if (errors_.size() != errors_before) return nullptr;
    return node;
  }

  void CompileField(const std::string& field, const std::string& field_path, Node& node) {
    node.field = field;
    for (const auto& [name, kind] : kAttributes) {
      if (field == name) {
        node.field_kind = kind;
        return;
      }
    }
    if (field == "data") {
      node.field_kind = FieldKind::kData;
      return;
    }
    const std::string_view f(field);
    if (f.starts_with("data.")) {
      node.field_kind = FieldKind::kData;
      std::string_view rest = f.substr(5);
      while (true) {
        const size_t dot = rest.find('.');
        const std::string_view segment = rest.substr(0, dot);
        if (segment.empty()) {
          errors_.Add(field_path, "empty path segment in " + Quote(field) +
                                      " (expected data.<key>.<key>..., e.g. data.items.0.sku)");
          return;
        }
        PathSegment s;
        s.key = std::string(segment);
        s.is_index = ParseIndex(segment, s.index);
        node.segments.push_back(std::move(s));
        if (dot == std::string_view::npos) break;
        rest = rest.substr(dot + 1);
      }
      return;
    }
    if (f.starts_with("headers.") && f.size() > 8) {
      node.field_kind = FieldKind::kHeader;
      node.header_name = field.substr(8);
      return;
    }
    errors_.Add(field_path,
                "unknown field " + Quote(field) + "; expected one of " + std::string(kValidFields));
  }

  void CompileValue(const json* value, const std::string& value_path, Node& node) {
    const std::string op_name = Quote(ToString(node.op));
    if (node.op == Op::kExists || node.op == Op::kNotExists) {
      if (value) errors_.Add(value_path, "op " + op_name + " takes no value");
      return;
    }
    if (!value) {
      errors_.Add(value_path, "required for op " + op_name);
      return;
    }
    switch (node.op) {
      case Op::kEq:
      case Op::kNe:
      case Op::kContains:
        if (!IsScalar(*value)) {
          errors_.Add(value_path, "must be a string, number, boolean or null for op " + op_name);
          return;
        }
        break;
      case Op::kGt:
      case Op::kGte:
      case Op::kLt:
      case Op::kLte:
        if (!value->is_number() && !value->is_string()) {
          errors_.Add(value_path, "must be a number or a string for op " + op_name);
          return;
        }
        break;
      case Op::kIn:
      case Op::kNotIn: {
        if (!value->is_array() || value->empty()) {
          errors_.Add(value_path, "must be a non-empty array for op " + op_name);
          return;
        }
        bool ok = true;
        for (size_t i = 0; i < value->size(); ++i) {
          if (!IsScalar((*value)[i])) {
            errors_.Add(value_path + "[" + std::to_string(i) + "]",
                        "must be a string, number, boolean or null");
            ok = false;
          }
        }
        if (!ok) return;
        break;
      }
      case Op::kStartsWith:
      case Op::kEndsWith:
      case Op::kRegex:
        if (!value->is_string()) {
          errors_.Add(value_path, "must be a string for op " + op_name);
          return;
        }
        break;
      case Op::kExists:
      case Op::kNotExists:
        break;
    }
    const size_t bytes = Dump(*value).size();
    if (bytes > kMaxConditionValueBytes) {
      errors_.Add(value_path, "too large: " + std::to_string(bytes) +
                                  " bytes serialized, at most " +
                                  std::to_string(kMaxConditionValueBytes));
      return;
    }
    if (node.op == Op::kIn || node.op == Op::kNotIn) {
      node.members = std::make_unique<MemberSet>();
      for (const json& v : *value) node.members->Insert(v);
      node.members->Finish();
    }
    if (node.op == Op::kRegex) {
      std::string error;
      node.regex = SharedRegex(value->get_ref<const std::string&>(), error);
      if (!node.regex) {
        errors_.Add(value_path, "invalid regular expression (RE2 syntax): " + error);
        return;
      }
    }
    Operand operand;
    operand.value = *value;
    operand.type = TypeOfJson(*value);
    if (value->is_string()) operand.instant = ParseRfc3339(value->get_ref<const std::string&>());
    node.operand = std::move(operand);
  }

  FieldErrors& errors_;
  size_t leaves_ = 0;
};

// ---- Explanation ----

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

using condition_internal::Compiler;
using condition_internal::Node;

struct Condition::Impl {
  // The source, serialized (compact: a parsed JSON tree is several times larger). source() parses
  // it back on first use; only explanations of the source, tests and tools ask for it. Empty when
  // the source could not be serialized faithfully; `source` is then set from the start.
  std::string source_text;
  mutable std::once_flag source_once;
  mutable nlohmann::json source;
  std::string path;
  size_t leaf_count = 0;
  std::unique_ptr<const Node> root;
  bool reads_whole_data = false;
  std::vector<std::vector<std::string>> data_paths;  // see Condition::data_paths()
};

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

namespace {

condition_internal::Interner<Condition>& ConditionInterner() {
  static auto* const interner = new condition_internal::Interner<Condition>;  // never destroyed
  return *interner;
}

// Whether serializing `j` loses information (non-finite numbers serialize as null).
bool HasNonFinite(const nlohmann::json& j) {
  if (j.is_number_float()) return !std::isfinite(j.get<double>());
  if (j.is_array() || j.is_object()) {
    for (const auto& element : j) {
      if (HasNonFinite(element)) return true;
    }
  }
  return false;
}

// Conditions nest at most kMaxConditionDepth levels of one or two JSON levels each (a `not`
// object; an `all` / `any` object and its array), a leaf holds scalars or one array of them and a
// list of conditions adds one level: JSON nested deeper is no valid condition.
constexpr int kMaxConditionJsonDepth = 2 * kMaxConditionDepth + 4;

// Whether `j` nests deeper than `limit` levels (a scalar is one). Iterative: hostile depth cannot
// overflow the stack here.
bool NestedDeeperThan(const nlohmann::json& j, int limit) {
  std::vector<std::pair<const nlohmann::json*, int>> todo = {{&j, 1}};
  while (!todo.empty()) {
    const auto [node, depth] = todo.back();
    todo.pop_back();
    if (depth > limit) return true;
    if (node->is_array() || node->is_object()) {
      for (const auto& child : *node) todo.emplace_back(&child, depth + 1);
    }
  }
  return false;
}

// The serialized source, or "" when it cannot be serialized faithfully (invalid UTF-8 in a
// string, non-finite numbers: only possible in programmatic JSON), or when it is nested deeper
// than any valid condition: the compiler rejects it without recursing below kMaxConditionDepth,
// while HasNonFinite and dump() would recurse once per level (a stack overflow under
// AddressSanitizer at 5,000 levels, in ConditionParse.DepthLimit).
std::string SourceText(const nlohmann::json& source) {
  if (NestedDeeperThan(source, kMaxConditionJsonDepth) || HasNonFinite(source)) return "";
  try {
    return source.dump();
  } catch (const nlohmann::json::exception&) {
    return "";
  }
}

// Interning key: what was compiled (a condition or a list), at which path, from which source.
// Equal keys compile to equal conditions, so they can share one.
std::string InternKey(char kind, const std::string& path, const std::string& source_text) {
  std::string key;
  key.reserve(path.size() + source_text.size() + 2);
  key.push_back(kind);
  key.append(path);
  key.push_back('\0');
  key.append(source_text);
  return key;
}

ConditionPtr Finish(const nlohmann::json& source, std::string source_text, std::string path,
                    size_t errors_before, FieldErrors& errors, Compiler& compiler,
                    std::unique_ptr<Node> root) {
  if (compiler.leaves() > kMaxConditionLeaves) {
    errors.Add(path, "too many leaf conditions: " + std::to_string(compiler.leaves()) +
                         ", at most " + std::to_string(kMaxConditionLeaves));
  }
  if (!root || errors.size() != errors_before) return nullptr;
  auto impl = std::make_unique<Condition::Impl>();
  if (source_text.empty()) {
    impl->source = source;
  } else {
    impl->source_text = std::move(source_text);
  }
  impl->path = std::move(path);
  impl->leaf_count = compiler.leaves();
  impl->root = std::move(root);
  // Which paths below `data` the leaves read.
  std::vector<const Node*> todo = {impl->root.get()};
  while (!todo.empty()) {
    const Node* n = todo.back();
    todo.pop_back();
    for (const auto& child : n->children) todo.push_back(child.get());
    if (n->kind != Explanation::Kind::kLeaf ||
        n->field_kind != condition_internal::FieldKind::kData)
      continue;
    if (n->segments.empty()) {
      impl->reads_whole_data = true;
    } else {
      std::vector<std::string>& keys = impl->data_paths.emplace_back();
      for (const condition_internal::PathSegment& segment : n->segments) {
        keys.push_back(segment.key);
      }
    }
  }
  std::sort(impl->data_paths.begin(), impl->data_paths.end());
  impl->data_paths.erase(std::unique(impl->data_paths.begin(), impl->data_paths.end()),
                         impl->data_paths.end());
  return std::make_shared<const Condition>(std::move(impl));
}

// Compiles `json` (a condition, or a list when kind == 'L') or returns the live compiled
// condition with the same kind, path and source.
ConditionPtr CompileShared(char kind, const nlohmann::json& json, std::string path,
                           FieldErrors& errors) {
  std::string text = SourceText(json);
  std::string key;
  if (!text.empty()) {
    key = InternKey(kind, path, text);
    if (ConditionPtr shared = ConditionInterner().Find(key)) return shared;
  }
  const size_t before = errors.size();
  Compiler compiler(errors);
  auto root = kind == 'L' ? compiler.CompileList(json, path) : compiler.Compile(json, path, 1);
  ConditionPtr c =
      Finish(json, std::move(text), std::move(path), before, errors, compiler, std::move(root));
  if (!c || key.empty()) return c;
  return ConditionInterner().Insert(std::move(key), std::move(c));
}

}  // namespace

ConditionPtr ParseCondition(const nlohmann::json& json, std::string path, FieldErrors& errors) {
  return CompileShared('C', json, std::move(path), errors);
}

ConditionPtr ParseCondition(const nlohmann::json& json, std::string path) {
  FieldErrors errors;
  ConditionPtr c = ParseCondition(json, std::move(path), errors);
  if (!c) throw ConditionError(std::move(errors), "invalid condition");
  return c;
}

ConditionPtr ParseConditionList(const nlohmann::json& list, std::string path, FieldErrors& errors) {
  return CompileShared('L', list, std::move(path), errors);
}

ConditionPtr ParseConditionList(const nlohmann::json& list, std::string path) {
  FieldErrors errors;
  ConditionPtr c = ParseConditionList(list, std::move(path), errors);
  if (!c) throw ConditionError(std::move(errors), "invalid conditions");
  return c;
}

CompiledConditionCounts LiveCompiledConditions() {
  return {ConditionInterner().LiveCount(), condition_internal::RegexInterner().LiveCount()};
}

// NOLINTNEXTLINE(bugprone-exception-escape): see the declaration.
bool Evaluate(const Condition& condition, const EventView& event) noexcept {
  return condition_internal::EvaluateNode(*condition.impl_->root, event);
}

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
