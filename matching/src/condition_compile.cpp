// Compiling conditions: checking a condition's JSON (every problem reported with its path) and
// building the compiled nodes, and sharing identical compiled conditions and regular expressions.
#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "condition_internal.hpp"

namespace workflowd::matching {
namespace condition_internal {

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

}  // namespace condition_internal

using condition_internal::Compiler;
using condition_internal::Node;

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

}  // namespace workflowd::matching
