// Definition files: JSON or YAML text -> nlohmann::json -> WorkflowDefinition(s).
//
// YAML is converted by hand rather than through yaml-cpp's as<T>() guessing, because the result
// must be the JSON a tenant would have written: plain scalars follow the YAML 1.2 core schema
// (so `conversion_rate: 1.0` is a number and `country: US`, `answer: yes` are strings), quoted
// scalars are always strings.
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>

#include "workflowd/common/utf8.hpp"
#include "workflowd/definitions/definition.hpp"

namespace workflowd::definitions {
namespace {

using nlohmann::json;

// Aliases let a small YAML file expand into a huge tree ("billion laughs"); the conversion stops
// at this many nodes.
constexpr size_t kMaxYamlNodes = 200000;

struct DocumentTooDeep {};

bool EndsWith(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  // `suffix` is lowercase; the name may not be.
  return std::equal(suffix.rbegin(), suffix.rend(), s.rbegin(), [](char want, char have) {
    return std::tolower(static_cast<unsigned char>(have)) == want;
  });
}

bool LooksLikeJson(std::string_view text, std::string_view source_name) {
  if (EndsWith(source_name, ".json")) return true;
  if (EndsWith(source_name, ".yaml") || EndsWith(source_name, ".yml")) return false;
  const size_t first = text.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && (text[first] == '{' || text[first] == '[');
}

// Definitions are stored and served as JSON text, which must be UTF-8; a file in another encoding
// (Latin-1, UTF-16) is a problem at its first ill-formed byte. The problem gives the position
// only: the bytes themselves would make the report invalid UTF-8 too.
// A NUL character is a problem too: YAML does not allow it (it is not in YAML's printable set),
// a JSON text cannot hold it unescaped, and yaml-cpp turned one inside a key into an ill-formed
// byte that then reached the stored definition (found by the definition fuzzer).
bool CheckUtf8(std::string_view text, FieldErrors& errors) {
  size_t line = 1;
  size_t column = 1;  // in characters
  for (size_t i = 0; i < text.size();) {
    const size_t len = Utf8SequenceLength(text, i);
    const auto where = [&] {
      return "at line " + std::to_string(line) + ", column " + std::to_string(column) +
             " (byte offset " + std::to_string(i) + ")";
    };
    if (len == 0) {
      errors.Add("", "not valid UTF-8 " + where() + "; the file must be UTF-8");
      return false;
    }
    if (text[i] == '\0') {
      errors.Add("", "NUL character " + where() +
                         "; YAML and JSON files cannot contain one (write \\u0000 in a JSON "
                         "string)");
      return false;
    }
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += len;
  }
  return true;
}

// Parser messages may quote the input; only printable ASCII text of the parser's own goes into a
// problem, anything else is replaced by `fallback`.
std::string FixedText(std::string_view text, std::string_view fallback) {
  const bool printable = !text.empty() && std::all_of(text.begin(), text.end(),
                                                      [](char c) { return c >= 0x20 && c < 0x7f; });
  return std::string(printable ? text : fallback);
}

// "parse error at line 2, column 13: syntax error while parsing value - invalid literal" from
// nlohmann's message, without the input it quotes ("; last read: '...'", "number overflow
// parsing '...'").
std::string JsonErrorDescription(const json::exception& e) {
  if (dynamic_cast<const json::parse_error*>(&e) == nullptr) {
    return e.id == 406 ? "a number is out of range" : "cannot be parsed";
  }
  std::string_view message = e.what();
  // "[json.exception.parse_error.101] parse error at line 3, column 5: ..." -> drop the tag.
  if (const size_t end = message.find("] "); end != std::string_view::npos) {
    message.remove_prefix(end + 2);
  }
  const size_t colon = message.find(": ");
  std::string location = FixedText(message.substr(0, colon), "parse error");
  if (colon == std::string_view::npos) return location;
  std::string_view description = message.substr(colon + 2);
  description = description.substr(0, description.find("; last read: "));
  return location + ": " + FixedText(description, "syntax error");
}

json ParseJsonText(std::string_view text, FieldErrors& errors) {
  const json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxDocumentDepth) throw DocumentTooDeep{};
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), limit_depth, /*allow_exceptions=*/true,
                       /*ignore_comments=*/false);
  } catch (const DocumentTooDeep&) {
    errors.Add("", "JSON nested deeper than " + std::to_string(kMaxDocumentDepth) + " levels");
  } catch (const json::exception& e) {
    errors.Add("", "invalid JSON: " + JsonErrorDescription(e));
  }
  return json(json::value_t::discarded);
}

bool AllOf(std::string_view s, bool (*pred)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), pred);
}
bool IsDec(char c) { return c >= '0' && c <= '9'; }
bool IsOct(char c) { return c >= '0' && c <= '7'; }
bool IsHex(char c) { return IsDec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool IsCoreFloat(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  const size_t int_start = i;
  while (i < s.size() && IsDec(s[i])) ++i;
  const bool has_int = i > int_start;
  bool has_frac = false;
  if (i < s.size() && s[i] == '.') {
    ++i;
    const size_t frac_start = i;
    while (i < s.size() && IsDec(s[i])) ++i;
    has_frac = i > frac_start;
  }
  if (!has_int && !has_frac) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    const size_t exp_start = i;
    while (i < s.size() && IsDec(s[i])) ++i;
    if (i == exp_start) return false;
  }
  return i == s.size();
}

std::optional<json> ParseCoreInt(std::string_view s) {
  bool negative = false;
  std::string_view digits = s;
  if (!digits.empty() && (digits.front() == '-' || digits.front() == '+')) {
    negative = digits.front() == '-';
    digits.remove_prefix(1);
  }
  if (!AllOf(digits, IsDec)) return std::nullopt;
  if (negative) {
    int64_t v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && p == s.data() + s.size()) return json(v);
  } else {
    uint64_t v = 0;
    const auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec == std::errc() && p == digits.data() + digits.size()) return json(v);
  }
  return std::nullopt;  // out of range: falls through to float
}

std::optional<json> ParseRadixInt(std::string_view s, int base) {
  uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec == std::errc() && p == s.data() + s.size()) return json(v);
  return std::nullopt;
}

std::optional<json> ParseFloat(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  double v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return json(v);
}

bool IsNullWord(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

class YamlConverter {
 public:
  explicit YamlConverter(FieldErrors& errors) : errors_(errors) {}

  json Convert(const YAML::Node& node, const std::string& path, int depth) {
    if (++nodes_ > kMaxYamlNodes) {
      if (!too_many_reported_) {
        errors_.Add(
            "", "YAML document expands to more than " + std::to_string(kMaxYamlNodes) + " nodes");
        too_many_reported_ = true;
      }
      return nullptr;
    }
    if (depth > kMaxDocumentDepth) {
      errors_.Add(path,
                  At(node) + "nested deeper than " + std::to_string(kMaxDocumentDepth) + " levels");
      return nullptr;
    }
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        // A quoted "null" is a Scalar, so Null only comes from plain null words or emptiness.
        return nullptr;
      case YAML::NodeType::Scalar:
        return Scalar(node, path);
      case YAML::NodeType::Sequence: {
        json out = json::array();
        size_t i = 0;
        for (const YAML::Node& element : node) {
          out.push_back(Convert(element, path + "[" + std::to_string(i++) + "]", depth + 1));
        }
        return out;
      }
      case YAML::NodeType::Map: {
        json out = json::object();
        for (const auto& pair : node) {
          const YAML::Node& key = pair.first;
          if (!key.IsScalar()) {
            errors_.Add(path, At(key) + "mapping keys must be plain strings");
            continue;
          }
          const std::string& name = key.Scalar();
          if (!IsValidUtf8(name)) {  // defense in depth: the input was checked (CheckUtf8)
            errors_.Add(path, At(key) + "a mapping key is not valid UTF-8 after YAML decoding");
            continue;
          }
          const std::string child_path = matching::JoinFieldPath(path, name);
          if (out.contains(name)) {
            errors_.Add(child_path, At(key) + "duplicate key " + json(name).dump());
            continue;
          }
          out[name] = Convert(pair.second, child_path, depth + 1);
        }
        return out;
      }
    }
    return nullptr;
  }

 private:
  static std::string At(const YAML::Node& node) {
    const YAML::Mark mark = node.Mark();
    if (mark.is_null()) return "";
    return "line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1) +
           ": ";
  }

  json Scalar(const YAML::Node& node, const std::string& path) {
    const std::string& tag = node.Tag();
    const std::string& value = node.Scalar();
    if (!IsValidUtf8(value)) {  // defense in depth: the input was checked (CheckUtf8)
      errors_.Add(path, At(node) + "a value is not valid UTF-8 after YAML decoding");
      return nullptr;
    }
    // "!" marks a non-plain (quoted, literal or folded) scalar: always a string.
    if (tag == "!" || tag == "tag:yaml.org,2002:str") return value;
    const bool plain = tag == "?" || tag.empty();
    if (!plain && tag != "tag:yaml.org,2002:int" && tag != "tag:yaml.org,2002:float" &&
        tag != "tag:yaml.org,2002:bool" && tag != "tag:yaml.org,2002:null") {
      errors_.Add(path, At(node) + "unsupported YAML tag " + json(tag).dump());
      return nullptr;
    }
    const std::string_view s = value;
    if (IsNullWord(s) && (plain || tag == "tag:yaml.org,2002:null")) return nullptr;
    if ((plain || tag == "tag:yaml.org,2002:bool")) {
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    if (plain || tag == "tag:yaml.org,2002:int" || tag == "tag:yaml.org,2002:float") {
      if (std::optional<json> v = ParseCoreInt(s)) return *v;
      if (s.starts_with("0o") && AllOf(s.substr(2), IsOct)) {
        if (std::optional<json> v = ParseRadixInt(s.substr(2), 8)) return *v;
      }
      if (s.starts_with("0x") && AllOf(s.substr(2), IsHex)) {
        if (std::optional<json> v = ParseRadixInt(s.substr(2), 16)) return *v;
      }
      if (IsCoreFloat(s)) {
        if (std::optional<json> v = ParseFloat(s)) return *v;
      }
      std::string lower(s);
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (lower == ".inf" || lower == "+.inf" || lower == "-.inf" || lower == ".nan") {
        errors_.Add(path, At(node) + "infinity and NaN cannot be represented in JSON");
        return nullptr;
      }
    }
    if (!plain) {
      errors_.Add(path, At(node) + json(value).dump() + " is not a valid " + tag.substr(18));
      return nullptr;
    }
    return value;
  }

  FieldErrors& errors_;
  size_t nodes_ = 0;
  bool too_many_reported_ = false;
};

// Counts the documents of a YAML stream, up to kMaxYamlDocuments. Nothing is built.
class YamlDocumentCounter : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  YAML::Mark start;
};

// More documents than this are "several" without looking further.
constexpr int kMaxYamlDocuments = 8;

std::string YamlPosition(const YAML::Mark& mark) {
  if (mark.is_null()) return "";
  return "line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1) +
         ": ";
}

// yaml-cpp's message without the input some of them quote ("unknown escape character: <c>",
// "invalid unicode: <hex>", "bad YAML version: <v>"): its own text ends before ": ".
std::string YamlErrorDescription(const YAML::Exception& e) {
  const std::string_view message = e.msg;
  return FixedText(message.substr(0, message.find(": ")), "syntax error");
}

json ParseYamlText(std::string_view text, FieldErrors& errors) {
  const std::string input(text);
  YAML::Node document;
  try {
    // The documents are counted with a bounded loop: yaml-cpp's parser does not advance past a
    // stray flow indicator (",\n" at the top level) and reports an empty document there again and
    // again, so YAML::LoadAll never ends on such input.
    std::istringstream stream(input);
    YAML::Parser parser(stream);
    YamlDocumentCounter counter;
    int documents = 0;
    std::optional<YAML::Mark> previous_start;
    while (documents < kMaxYamlDocuments && parser.HandleNextDocument(counter)) {
      if (previous_start && previous_start->pos == counter.start.pos) {
        errors.Add("", "invalid YAML: " + YamlPosition(counter.start) + "unexpected character");
        return json(json::value_t::discarded);
      }
      previous_start = counter.start;
      ++documents;
    }
    if (documents != 1) {
      errors.Add("", documents == 0
                         ? "empty document"
                         : "several YAML documents; put the definitions in one list instead");
      return json(json::value_t::discarded);
    }
    document = YAML::Load(input);  // the one document
  } catch (const YAML::Exception& e) {
    errors.Add("", "invalid YAML: " + YamlPosition(e.mark) + YamlErrorDescription(e));
    return json(json::value_t::discarded);
  }
  YamlConverter converter(errors);
  const size_t before = errors.size();
  json out = converter.Convert(document, "", 1);
  if (errors.size() != before) return json(json::value_t::discarded);
  return out;
}

}  // namespace

std::vector<WorkflowDefinition> DefinitionsFromYamlOrJson(std::string_view text,
                                                          std::string_view source_name) {
  return DefinitionsFromYamlOrJson(text, source_name, LoadOptions{});
}

std::vector<WorkflowDefinition> DefinitionsFromYamlOrJson(std::string_view text,
                                                          std::string_view source_name,
                                                          const LoadOptions& options) {
  FieldErrors errors;
  if (!CheckUtf8(text, errors)) throw ValidationError(std::move(errors), source_name);
  const json document =
      LooksLikeJson(text, source_name) ? ParseJsonText(text, errors) : ParseYamlText(text, errors);
  if (!errors.empty()) throw ValidationError(std::move(errors), source_name);

  // (element, path prefix used in errors)
  std::vector<std::pair<const json*, std::string>> items;
  if (document.is_array()) {
    for (size_t i = 0; i < document.size(); ++i) {
      items.emplace_back(&document[i], "[" + std::to_string(i) + "]");
    }
  } else if (document.is_object() && document.contains("definitions")) {
    for (const auto& [key, unused] : document.items()) {
      if (key != "definitions") {
        errors.Add(key, "unknown key " + json(key).dump() +
                            "; a file of definitions has only the key \"definitions\"");
      }
    }
    const json& list = document.at("definitions");
    if (!list.is_array()) {
      errors.Add("definitions", "must be a list of workflow definitions");
    } else {
      for (size_t i = 0; i < list.size(); ++i) {
        items.emplace_back(&list[i], "definitions[" + std::to_string(i) + "]");
      }
    }
  } else if (document.is_object()) {
    items.emplace_back(&document, "");
  } else {
    errors.Add("",
               "expected a workflow definition object, a list of them, or "
               "{\"definitions\": [...]}");
  }

  std::vector<WorkflowDefinition> definitions;
  std::map<std::tuple<std::string, std::string, std::string>, std::string> seen_ids;
  for (const auto& [item, prefix] : items) {
    FieldErrors item_errors;
    const json* source = item;
    json with_default;
    if (!options.default_provider.empty() && item->is_object()) {
      const auto provider = item->find("provider");
      if (provider == item->end() || provider->is_null()) {
        with_default = *item;
        with_default["provider"] = options.default_provider;
        source = &with_default;
      }
    }
    WorkflowDefinition d = DefinitionFromJson(*source, item_errors);
    errors.Append(item_errors, prefix);
    if (item_errors.empty() && d.id) {
      const auto [it, inserted] =
          seen_ids.emplace(std::make_tuple(d.tenant_id, d.environment_id, *d.id), prefix);
      if (!inserted) {
        errors.Add(matching::JoinFieldPath(prefix, "id"), "duplicate definition id " +
                                                              json(*d.id).dump() +
                                                              " for this tenant and "
                                                              "environment (also " +
                                                              it->second + ")");
      }
    }
    definitions.push_back(std::move(d));
  }
  if (!errors.empty()) throw ValidationError(std::move(errors), source_name);
  return definitions;
}

}  // namespace workflowd::definitions
