#include "json_document.hpp"

#include <algorithm>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include "base64.hpp"
#include "workflowd/common/utf8.hpp"

namespace workflowd::decoding::detail {

using nlohmann::json;

namespace {

// Maximum nesting of arrays/objects, by a scan that skips strings. Stops counting past `limit`.
size_t JsonDepth(std::string_view text, size_t limit) {
  size_t depth = 0;
  size_t max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) {
        max_depth = depth;
        if (max_depth > limit) return max_depth;
      }
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return max_depth;
}

// Parses `text` (BOM already stripped) with nlohmann's parser. `what` names it in details
// ("value", "data_base64"). nlohmann's parser validates UTF-8 inside strings; its messages quote
// input, so only the position goes into the detail.
std::optional<Failure> ParseJsonWithNlohmann(std::string_view text, size_t max_depth,
                                             std::string_view what, json& out) {
  if (JsonDepth(text, max_depth) > max_depth) {
    return Failure{DeadLetterReason::kTooDeep, std::string(what) + ": JSON nested deeper than " +
                                                   std::to_string(max_depth) + " levels"};
  }
  try {
    out = json::parse(text.begin(), text.end());
    return std::nullopt;
  } catch (const json::parse_error& e) {
    const std::string message = e.what();
    std::string detail = std::string(what) + ": not valid JSON (";
    if (message.find("UTF-8") != std::string::npos) {
      detail += "invalid UTF-8";
    } else if (e.byte > text.size()) {
      detail += "unexpected end of input, truncated?";
    } else {
      detail += "syntax error";
    }
    detail += " at byte " + std::to_string(e.byte) + ")";
    if (!text.empty() && text[0] == '\0') {
      detail +=
          "; starts with a zero byte like Schema Registry framing (Avro/Protobuf are not "
          "supported)";
    }
    return Failure{DeadLetterReason::kNotJson, std::move(detail)};
  } catch (const json::out_of_range&) {
    return Failure{DeadLetterReason::kNotJson, std::string(what) + ": a JSON number is too large"};
  } catch (const json::exception& e) {
    return Failure{DeadLetterReason::kNotJson,
                   std::string(what) + ": not valid JSON (error " + std::to_string(e.id) + ")"};
  }
}

// True when JSON text `text` holds the escape \u0000 (a NUL character in a string or a member
// name), which PostgreSQL refuses in jsonb (SQLSTATE 22P05). An escape is real when the run of
// backslashes that ends right before its "u" is odd ("\\u0000" is a backslash and "u0000").
// JSON has no other way to spell NUL: a raw zero byte inside a string is not valid JSON.
bool HasNulEscape(std::string_view text) {
  // Scanned for every record: memchr for backslashes (seldom in JSON, and SIMD in glibc), then a
  // look at what follows each run of them.
  const char* p = text.data();
  const char* const end = p + text.size();
  while ((p = static_cast<const char*>(memchr(p, '\\', static_cast<size_t>(end - p)))) != nullptr) {
    const char* run = p;
    while (p < end && *p == '\\') ++p;
    if ((p - run) % 2 == 1 && end - p >= 5 && memcmp(p, "u0000", 5) == 0) return true;
  }
  return false;
}

// Builds the members of the object `element` on `paths` (sorted; each at least depth + 1 long, all
// agreeing in their first `depth` names), like ToJson but leaving out what no path reaches: a
// member a path ends at, or that is not an object where the path goes on, is built whole. Of a
// repeated name the last value counts, as in ToJson. Sorted paths keep those sharing a name at
// `depth` next to each other, so each level walks its own slice of them without allocating.
void ToJsonOnPaths(dom::element element, json& out, std::span<const std::vector<std::string>> paths,
                   size_t depth) {
  out = json::object();
  auto& object = out.get_ref<json::object_t&>();
  const dom::object fields = element.get_object().value_unsafe();
  for (const dom::key_value_pair field : fields) {
    size_t first = 0;
    while (first < paths.size() && paths[first][depth] != field.key) ++first;
    if (first == paths.size()) continue;
    size_t last = first;
    bool whole = false;
    while (last < paths.size() && paths[last][depth] == field.key) {
      whole = whole || paths[last].size() == depth + 1;
      ++last;
    }
    json& slot = object[std::string(field.key)];
    if (whole || field.value.type() != dom::element_type::OBJECT) {
      ToJson(field.value, slot);
    } else {
      ToJsonOnPaths(field.value, slot, paths.subspan(first, last - first), depth + 1);
    }
  }
}

// A member of an object; nullopt when absent. Of a repeated name the last value counts, as in
// nlohmann::json (which the decoder used before).
std::optional<dom::element> FindMember(dom::object object, std::string_view name) {
  std::optional<dom::element> found;
  for (const dom::key_value_pair field : object) {
    if (field.key == name) found = field.value;
  }
  return found;
}

}  // namespace

Parsers& ThreadParsers() {
  thread_local Parsers parsers;
  return parsers;
}

Failure NulFailure(std::string_view what) {
  return Failure{
      DeadLetterReason::kNulCharacter,
      std::string(what) + ": holds a NUL character (\\u0000), which PostgreSQL cannot store"};
}

// Failures have the reason and detail of ParseJsonWithNlohmann.
//
// simdjson's depth limit d admits non-empty containers nested at most d - 1 levels (and empty ones
// d levels): with d = max_depth everything it accepts is within max_depth, and a document at
// exactly max_depth levels fails with DEPTH_ERROR and goes the slow way (rare: 64 levels by
// default).
std::optional<Failure> ParseJson(dom::parser& parser, std::string& reparse_buffer,
                                 std::string_view text, size_t max_depth, std::string_view what,
                                 dom::element& out) {
  // Checked on the text of every JSON document an event is decoded from (the value, a
  // data_base64 holding JSON), so no string or member name of an accepted event holds NUL.
  if (HasNulEscape(text)) {
    json probe;  // invalid JSON stays not_json: only valid JSON with a NUL is nul_character
    if (auto failure = ParseJsonWithNlohmann(text, max_depth, what, probe)) return failure;
    return NulFailure(what);
  }
  simdjson::error_code error = simdjson::SUCCESS;
  if (parser.max_depth() != max_depth || parser.capacity() == 0) {
    error = parser.allocate(std::max({text.size(), parser.capacity(), size_t{4096}}), max_depth);
  }
  if (!error) {
    // parse() copies the text into the parser's padded buffer (reused between records).
    error = parser.parse(text.data(), text.size()).get(out);
    if (!error) return std::nullopt;
  }
  json document;
  if (auto failure = ParseJsonWithNlohmann(text, max_depth, what, document)) return failure;
  // nlohmann accepts it: a document at exactly max_depth levels, or an integer beyond 64 bits
  // (nlohmann keeps it as floating point, and so does its rendering, which simdjson reads to the
  // same value). One more level for this document; the next parse resets the limit.
  reparse_buffer = document.dump();
  if (parser.allocate(std::max(reparse_buffer.size(), parser.capacity()), max_depth + 1) ||
      parser.parse(reparse_buffer.data(), reparse_buffer.size()).get(out)) {
    return Failure{DeadLetterReason::kInternal,
                   std::string(what) + ": the JSON parsers disagree about this document"};
  }
  return std::nullopt;
}

const char* JsonTypeName(dom::element element) {
  switch (element.type()) {
    case dom::element_type::NULL_VALUE:
      return "null";
    case dom::element_type::OBJECT:
      return "object";
    case dom::element_type::ARRAY:
      return "array";
    case dom::element_type::STRING:
      return "string";
    case dom::element_type::BOOL:
      return "boolean";
    case dom::element_type::INT64:
    case dom::element_type::UINT64:
      return "integer";
    case dom::element_type::DOUBLE:
      return "number";
  }
  return "unknown";
}

void ToJson(dom::element element, json& out) {
  switch (element.type()) {
    case dom::element_type::NULL_VALUE:
      out = nullptr;
      return;
    case dom::element_type::OBJECT: {
      out = json::object();
      auto& object = out.get_ref<json::object_t&>();
      // A named copy: value_unsafe() refers into the temporary result.
      const dom::object fields = element.get_object().value_unsafe();
      for (const dom::key_value_pair field : fields) {
        ToJson(field.value, object[std::string(field.key)]);
      }
      return;
    }
    case dom::element_type::ARRAY: {
      out = json::array();
      auto& array = out.get_ref<json::array_t&>();
      const dom::array items = element.get_array().value_unsafe();
      array.reserve(items.size());
      for (const dom::element item : items) ToJson(item, array.emplace_back());
      return;
    }
    case dom::element_type::STRING:
      out = std::string(StringOf(element));
      return;
    case dom::element_type::BOOL:
      out = element.get_bool().value_unsafe();
      return;
    case dom::element_type::INT64: {
      const int64_t value = element.get_int64().value_unsafe();
      if (value >= 0) {
        out = static_cast<uint64_t>(value);
      } else {
        out = value;
      }
      return;
    }
    case dom::element_type::UINT64:
      out = element.get_uint64().value_unsafe();
      return;
    case dom::element_type::DOUBLE:
      out = element.get_double().value_unsafe();
      return;
  }
}

void BuildJsonData(dom::element data, const DataNeed& need, Envelope& envelope) {
  if (need.kind == DataNeed::Kind::kNone) return;
  if (need.kind == DataNeed::Kind::kMembers && data.type() == dom::element_type::OBJECT) {
    // Only the asked-for paths, with the same rules as ToJson (the last of a repeated name
    // wins). An empty path asks for the whole payload; sorted, it comes first.
    if (need.paths.empty() || !need.paths.front().empty()) {
      ToJsonOnPaths(data, envelope.data, need.paths, 0);
      envelope.data_partial = true;
      return;
    }
  }
  ToJson(data, envelope.data);
}

void BuildBytesData(std::string_view bytes, const std::string_view* base64, const DataNeed& need,
                    Envelope& envelope) {
  if (need.kind == DataNeed::Kind::kNone) return;
  // Text with a zero byte would be a JSON string holding NUL, which PostgreSQL cannot store:
  // such bytes are carried as base64 like any other binary payload.
  if (IsValidUtf8(bytes) && bytes.find('\0') == std::string_view::npos) {
    envelope.data = std::string(bytes);
  } else {
    envelope.data = base64 != nullptr ? std::string(*base64) : EncodeBase64(bytes);
    envelope.data_is_base64 = true;
  }
}

std::optional<dom::element> Lookup(dom::element root, std::string_view path) {
  dom::element node = root;
  if (path.empty()) return node;
  while (true) {
    const size_t dot = path.find('.');
    const std::string_view segment = path.substr(0, dot);
    if (node.is_object()) {
      const std::optional<dom::element> member =
          FindMember(node.get_object().value_unsafe(), segment);
      if (!member) return std::nullopt;
      node = *member;
    } else if (node.is_array()) {
      if (segment.empty() || segment.size() > 9) return std::nullopt;
      size_t index = 0;
      for (char c : segment) {
        if (c < '0' || c > '9') return std::nullopt;
        index = index * 10 + static_cast<size_t>(c - '0');
      }
      if (node.at(index).get(node)) return std::nullopt;  // INDEX_OUT_OF_BOUNDS
    } else {
      return std::nullopt;
    }
    if (dot == std::string_view::npos) return node;
    path.remove_prefix(dot + 1);
  }
}

}  // namespace workflowd::decoding::detail
