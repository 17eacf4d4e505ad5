#include "workflowd/consumers/envelope.hpp"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <string>
#include <utility>

#include "workflowd/common/timefmt.hpp"
#include "workflowd/common/utf8.hpp"

namespace workflowd::consumers {
namespace {

using nlohmann::json;

constexpr std::string_view kBom = "\xEF\xBB\xBF";
constexpr size_t kMaxIdBytes = 256;
constexpr size_t kMaxTypeBytes = 255;
constexpr size_t kMaxNameInDetail = 64;
// The years whose instants fit TimePoint (int64 nanoseconds: 1677-09-21 .. 2262-04-11), with a
// margin so that any UTC offset stays inside.
constexpr int kMinYear = 1678;
constexpr int kMaxYear = 2261;
// Epoch milliseconds inside the same range.
constexpr int64_t kMaxAbsEpochMs = 9'000'000'000'000;

constexpr std::array kReasons = {
    DeadLetterReason::kEmptyValue,
    DeadLetterReason::kTooLarge,
    DeadLetterReason::kNotJson,
    DeadLetterReason::kNotObject,
    DeadLetterReason::kTooDeep,
    DeadLetterReason::kUnknownFormat,
    DeadLetterReason::kUnsupportedSpecversion,
    DeadLetterReason::kMissingId,
    DeadLetterReason::kMissingType,
    DeadLetterReason::kMissingSource,
    DeadLetterReason::kMissingTenant,
    DeadLetterReason::kMissingEnvironment,
    DeadLetterReason::kWrongType,
    DeadLetterReason::kInvalidTime,
    DeadLetterReason::kInvalidAttribute,
    DeadLetterReason::kInvalidData,
    DeadLetterReason::kDuplicateHeader,
    DeadLetterReason::kNulCharacter,
    DeadLetterReason::kDatabaseRejected,
    DeadLetterReason::kInternal,
};

// ---------------------------------------------------------------------------------------------
// Bytes and text

char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

bool IsCloudEventsHeader(std::string_view key) { return StartsWithIgnoreCase(key, "ce_"); }

bool IsContentTypeHeader(std::string_view key) { return EqualsIgnoreCase(key, "content-type"); }

// C0 controls, DEL, and C1 controls (U+0080..U+009F, encoded C2 80..C2 9F). Assumes valid UTF-8.
bool HasControlCharacters(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) return true;
    if (c == 0xC2 && i + 1 < s.size()) {
      const auto next = static_cast<unsigned char>(s[i + 1]);
      if (next >= 0x80 && next <= 0x9F) return true;
    }
  }
  return false;
}

bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$
bool IsValidScopeName(std::string_view s) {
  if (s.empty() || s.size() > 128 || !IsAsciiAlnum(s[0])) return false;
  for (char c : s.substr(1)) {
    if (!IsAsciiAlnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

// CloudEvents attribute names: lowercase ASCII letters and digits.
bool IsValidAttributeName(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

// A name taken from the input, safe and short for a detail message: printable ASCII kept, other
// bytes as \xNN, cut at kMaxNameInDetail bytes.
std::string QuoteName(std::string_view name) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "'";
  for (size_t i = 0; i < name.size() && i < kMaxNameInDetail; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7F && c != '\'' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  if (name.size() > kMaxNameInDetail) out += "...";
  out += '\'';
  return out;
}

std::string_view StripBom(std::string_view s) {
  if (s.substr(0, kBom.size()) == kBom) s.remove_prefix(kBom.size());
  return s;
}

// The media type of a content type, lowercased, without parameters or surrounding spaces.
std::string MediaType(std::string_view content_type) {
  const size_t semicolon = content_type.find(';');
  std::string_view media = content_type.substr(0, semicolon);
  while (!media.empty() && (media.front() == ' ' || media.front() == '\t')) media.remove_prefix(1);
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.remove_suffix(1);
  std::string out(media);
  for (char& c : out) c = LowerAscii(c);
  return out;
}

// application/json, text/json, and any */*+json.
bool IsJsonContentType(std::string_view content_type) {
  const std::string media = MediaType(content_type);
  if (media == "application/json" || media == "text/json") return true;
  const size_t slash = media.find('/');
  return slash != std::string::npos && media.size() > slash + 1 + 5 && media.ends_with("+json");
}

// ---------------------------------------------------------------------------------------------
// Base64 (RFC 4648, standard alphabet)

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Padding optional; no whitespace. nullopt when malformed.
std::optional<std::string> DecodeBase64(std::string_view text) {
  size_t padding = 0;
  while (!text.empty() && text.back() == '=' && padding < 2) {
    text.remove_suffix(1);
    ++padding;
  }
  if (text.size() % 4 == 1) return std::nullopt;
  if (padding > 0 && (text.size() + padding) % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t bits = 0;
  int bit_count = 0;
  for (char c : text) {
    const int v = Base64Value(c);
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<uint32_t>(v);
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      out += static_cast<char>((bits >> bit_count) & 0xFF);
    }
  }
  return out;
}

std::string EncodeBase64(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t n = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += kBase64Alphabet[(n >> 18) & 63];
    out += kBase64Alphabet[(n >> 12) & 63];
    out += kBase64Alphabet[(n >> 6) & 63];
    out += kBase64Alphabet[n & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t n = static_cast<unsigned char>(bytes[i]) << 16;
    if (rest == 2) n |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += kBase64Alphabet[(n >> 18) & 63];
    out += kBase64Alphabet[(n >> 12) & 63];
    out += rest == 2 ? kBase64Alphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON
//
// Records are parsed with simdjson's DOM parser (validates the whole document, UTF-8 included,
// about 20x faster than building an nlohmann::json), attributes are read from its elements, and
// an nlohmann::json is built only for the data of events somebody wants (conditions and
// trigger_event need it). When simdjson rejects a document, nlohmann's parser decides instead:
// it gives the reason and detail records always got, and it accepts the few documents simdjson
// does not (integers beyond 64 bits, which nlohmann keeps as floating point).

namespace dom = simdjson::dom;

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

struct Failure {
  DeadLetterReason reason = DeadLetterReason::kNone;
  std::string detail;
};

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

// One per thread and per kind of document, reused so that their buffers are allocated once, not
// per record: the record's value, and a document inside it (decoded data_base64).
struct Parsers {
  dom::parser value;
  dom::parser inner;
  std::string reparse_buffer;
};

Parsers& ThreadParsers() {
  thread_local Parsers parsers;
  return parsers;
}

// A record's data as found, not built yet (StagedDecoder): valid while the parsers that produced
// it are not used again.
struct PendingData {
  enum class Kind { kNone, kJson, kBytes };
  Kind kind = Kind::kNone;
  dom::element json;        // kJson: in the decoder's parsers
  std::string bytes;        // kBytes: copied (it may be a decoded temporary)
  std::string_view base64;  // kBytes from data_base64: its text, in the parsed document
  bool has_base64 = false;

  void Clear() {
    kind = Kind::kNone;
    has_base64 = false;
  }
};

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

Failure NulFailure(std::string_view what) {
  return Failure{
      DeadLetterReason::kNulCharacter,
      std::string(what) + ": holds a NUL character (\\u0000), which PostgreSQL cannot store"};
}

// Parses `text` (BOM already stripped) into `out`, valid until the next parse with `parser`. Fails
// with the reason and detail of ParseJsonWithNlohmann, so too_deep beyond `max_depth` levels.
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

std::string_view StringOf(dom::element element) { return element.get_string().value_unsafe(); }

// The same nlohmann::json that nlohmann's parser builds from the element's text: non-negative
// integers are unsigned, and of a repeated member name the last value wins.
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

// JSON data (already validated by its parse) into `envelope`, as much as `need` asks for.
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

// Non-JSON data: a JSON string of the bytes when they are UTF-8, else their base64 (reusing
// `base64` when the caller has it). Nothing when `need` asks for none.
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

// A member of an object; nullopt when absent. Of a repeated name the last value counts, as in
// nlohmann::json (which the decoder used before).
std::optional<dom::element> FindMember(dom::object object, std::string_view name) {
  std::optional<dom::element> found;
  for (const dom::key_value_pair field : object) {
    if (field.key == name) found = field.value;
  }
  return found;
}

// A present, non-null value (CloudEvents: null means unset).
const dom::element* NonNull(const std::optional<dom::element>& value) {
  return value && !value->is_null() ? &*value : nullptr;
}

// Walks a dotted path ("meta.tenant", "items.0.sku"); nullopt when absent. An empty path is the
// root. A numeric segment indexes an array; on an object it is an ordinary key.
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

// ---------------------------------------------------------------------------------------------
// Time

std::optional<TimePoint> ParseEventTime(std::string_view text) {
  // ParseRfc3339 computes in int64 nanoseconds; keep the year inside that range first.
  if (text.size() < 4) return std::nullopt;
  int year = 0;
  for (size_t i = 0; i < 4; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    year = year * 10 + (text[i] - '0');
  }
  if (year < kMinYear || year > kMaxYear) return std::nullopt;
  return ParseRfc3339(text);
}

// ---------------------------------------------------------------------------------------------
// The decoder

// The members of a structured CloudEvent, from one pass over the object. Of a repeated name the
// last value counts (see FindMember).
struct StructuredMembers {
  std::optional<dom::element> specversion, id, source, type, subject, time, datacontenttype, data,
      data_base64, tenant, environment;
  // The other members by name, in nlohmann::json's order (bytewise), which decides which of
  // several bad extension attributes the detail names.
  std::map<std::string_view, dom::element> others;
};

// An envelope emptied for the next record in place, keeping the buffers of its strings and of its
// headers vector (each would be an allocation per record otherwise). Every field ends up as in a
// new Envelope.
void ResetForReuse(Envelope& e) {
  e.id.clear();
  e.type.clear();
  e.source.clear();
  e.subject.clear();
  e.tenant.clear();
  e.environment.clear();
  e.time.reset();
  e.time_text.clear();
  e.data = nullptr;
  e.data_is_base64 = false;
  e.data_partial = false;
  e.data_content_type.clear();
  e.headers.clear();
  e.format = EnvelopeFormat::kCloudEventsStructured;  // Envelope's default
  e.extensions.clear();
}

class RecordDecoder {
 public:
  // Decodes into `envelope`, which must be empty (new or ResetForReuse), parsing with `parsers`.
  // With `pending`, the data is not built but left there (for StagedDecoder::BuildData) and
  // `wants_data` is not asked.
  RecordDecoder(const RawRecord& record, const DecoderConfig& config,
                const std::function<DataNeed(const Envelope&)>* wants_data, Parsers& parsers,
                PendingData* pending, Envelope& envelope)
      : record_(record),
        config_(config),
        wants_data_(wants_data),
        parsers_(parsers),
        pending_(pending),
        envelope_(envelope) {}

  // False with failure() set when the record is a dead letter.
  bool Run() { return Decode(); }
  Failure& failure() { return failure_; }

 private:
  bool Fail(DeadLetterReason reason, std::string detail) {
    failure_ = Failure{reason, std::move(detail)};
    return false;
  }
  bool Fail(Failure failure) {
    failure_ = std::move(failure);
    return false;
  }

  // Asked once everything but the data is decoded and validated.
  DataNeed WantsData() const {
    return wants_data_ == nullptr ? DataNeed{} : (*wants_data_)(envelope_);
  }

  bool Decode() {
    if (!CheckSize()) return false;
    const bool cloud_events_allowed = config_.mode != DecoderConfig::Mode::kFlat;
    if (cloud_events_allowed && !ScanHeaders()) return false;
    CopyPlainHeaders();
    if (cloud_events_allowed && has_ce_specversion_header_) return DecodeBinary();

    if (cloud_events_allowed && MediaType(content_type_) == "application/cloudevents-batch+json") {
      return Fail(DeadLetterReason::kUnknownFormat, "CloudEvents batches are not supported");
    }
    const std::string_view value = StripBom(record_.value.value_or(std::string_view{}));
    if (value.empty()) {
      return Fail(DeadLetterReason::kEmptyValue,
                  record_.value ? "value is empty" : "value is null (tombstone)");
    }
    dom::element document;
    if (auto failure = ParseJson(parsers_.value, parsers_.reparse_buffer, value,
                                 config_.max_json_depth, "value", document)) {
      return Fail(std::move(*failure));
    }
    if (!document.is_object()) {
      std::string detail = std::string("value: top-level JSON is ") + JsonTypeName(document) +
                           ", expected an object";
      if (document.is_array()) detail += " (batches are not supported)";
      return Fail(DeadLetterReason::kNotObject, std::move(detail));
    }
    const dom::object object = document.get_object().value_unsafe();

    const bool marked_structured =
        cloud_events_allowed && MediaType(content_type_) == "application/cloudevents+json";
    bool has_specversion = false;
    if (config_.mode != DecoderConfig::Mode::kFlat) {
      for (const dom::key_value_pair field : object) {
        if (field.key == "specversion") {
          has_specversion = true;
          break;
        }
      }
    }
    switch (config_.mode) {
      case DecoderConfig::Mode::kFlat:
        return DecodeFlat(document);
      case DecoderConfig::Mode::kCloudEvents:
        if (!has_specversion && !marked_structured) {
          return Fail(DeadLetterReason::kUnknownFormat,
                      "not a CloudEvent: no specversion member and no ce_specversion header");
        }
        return DecodeStructured(object);
      case DecoderConfig::Mode::kAuto:
        break;
    }
    if (has_specversion || marked_structured) return DecodeStructured(object);
    return DecodeFlat(document);
  }

  bool CheckSize() {
    size_t total = record_.value ? record_.value->size() : 0;
    for (const RawHeader& h : record_.headers) {
      total += h.key.size() + (h.value ? h.value->size() : 0);
    }
    if (total > config_.max_record_bytes) {
      return Fail(DeadLetterReason::kTooLarge, "value and headers are " + std::to_string(total) +
                                                   " bytes, the limit is " +
                                                   std::to_string(config_.max_record_bytes));
    }
    return true;
  }

  // Collects ce_* attributes and the content type; rejects conflicting repeats.
  bool ScanHeaders() {
    for (const RawHeader& h : record_.headers) {
      if (IsContentTypeHeader(h.key)) {
        if (!h.value) continue;
        if (has_content_type_ && content_type_ != *h.value) {
          return Fail(DeadLetterReason::kDuplicateHeader,
                      "content-type: repeated with different values");
        }
        if (!IsValidUtf8(*h.value)) {
          return Fail(DeadLetterReason::kInvalidAttribute, "content-type: not valid UTF-8");
        }
        if (h.value->find('\0') != std::string_view::npos) return Fail(NulFailure("content-type"));
        has_content_type_ = true;
        content_type_ = *h.value;
        continue;
      }
      if (!IsCloudEventsHeader(h.key)) continue;
      std::string name(h.key.substr(3));
      for (char& c : name) c = LowerAscii(c);
      if (name == "specversion") has_ce_specversion_header_ = true;
      if (!IsValidAttributeName(name) || name == "data") {
        return Fail(DeadLetterReason::kInvalidAttribute,
                    "header " + QuoteName(h.key) +
                        ": not a valid CloudEvents attribute name (lowercase a-z, 0-9)");
      }
      if (!h.value) continue;  // a null value leaves the attribute unset
      if (!IsValidUtf8(*h.value)) {
        return Fail(DeadLetterReason::kInvalidAttribute, "ce_" + name + ": not valid UTF-8");
      }
      if (h.value->find('\0') != std::string_view::npos) return Fail(NulFailure("ce_" + name));
      auto [it, inserted] = ce_headers_.emplace(std::move(name), *h.value);
      if (!inserted && it->second != *h.value) {
        return Fail(DeadLetterReason::kDuplicateHeader,
                    "ce_" + it->first + ": repeated with different values");
      }
    }
    return true;
  }

  void CopyPlainHeaders() {
    envelope_.headers.reserve(record_.headers.size());
    for (const RawHeader& h : record_.headers) {
      if (IsCloudEventsHeader(h.key)) continue;
      envelope_.headers.emplace_back(SanitizeUtf8(h.key), SanitizeUtf8(h.value.value_or("")));
    }
  }

  // --- CloudEvents, binary mode -----------------------------------------------------------------

  std::optional<std::string_view> CeHeader(const std::string& name) {
    const auto it = ce_headers_.find(name);
    if (it == ce_headers_.end()) return std::nullopt;
    return it->second;
  }

  bool RequiredCeHeader(const std::string& name, DeadLetterReason missing, std::string& out) {
    const auto value = CeHeader(name);
    if (!value) return Fail(missing, "ce_" + name + ": missing");
    if (value->empty()) return Fail(missing, "ce_" + name + ": empty");
    out.assign(*value);
    return true;
  }

  bool DecodeBinary() {
    envelope_.format = EnvelopeFormat::kCloudEventsBinary;
    const auto specversion = CeHeader("specversion");
    if (!specversion) {
      return Fail(DeadLetterReason::kUnsupportedSpecversion, "ce_specversion: missing");
    }
    if (*specversion != "1.0") {
      return Fail(DeadLetterReason::kUnsupportedSpecversion,
                  "ce_specversion: only \"1.0\" is supported");
    }
    if (!RequiredCeHeader("id", DeadLetterReason::kMissingId, envelope_.id) ||
        !RequiredCeHeader("source", DeadLetterReason::kMissingSource, envelope_.source) ||
        !RequiredCeHeader("type", DeadLetterReason::kMissingType, envelope_.type) ||
        !RequiredCeHeader(config_.tenant_extension, DeadLetterReason::kMissingTenant,
                          envelope_.tenant) ||
        !RequiredCeHeader(config_.environment_extension, DeadLetterReason::kMissingEnvironment,
                          envelope_.environment) ||
        !ValidateCommon("ce_")) {
      return false;
    }
    if (const auto subject = CeHeader("subject")) envelope_.subject.assign(*subject);
    if (const auto time = CeHeader("time")) {
      if (!SetTime(*time, "ce_time")) return false;
    }
    if (has_content_type_) {
      envelope_.data_content_type = content_type_;
    } else if (const auto ct = CeHeader("datacontenttype")) {
      envelope_.data_content_type.assign(*ct);
    }
    for (const auto& [name, value] : ce_headers_) {
      if (IsCoreAttribute(name) || name == "datacontenttype") continue;
      envelope_.extensions.emplace(name, json(std::string(value)));
    }

    const std::string_view value = record_.value.value_or(std::string_view{});
    if (value.empty()) return true;  // an event without data
    const bool has_type = !envelope_.data_content_type.empty();
    if (!has_type || IsJsonContentType(envelope_.data_content_type)) {
      dom::element data;
      auto failure = ParseJson(parsers_.value, parsers_.reparse_buffer, StripBom(value),
                               config_.max_json_depth, "value", data);
      if (!failure) return SetJsonData(data);
      // JSON with a NUL is a dead letter whether or not it was declared JSON (kept as text, it
      // would be a different event: its data.* members gone).
      if (has_type || failure->reason == DeadLetterReason::kNulCharacter) {
        if (failure->reason == DeadLetterReason::kNotJson) {
          failure->reason = DeadLetterReason::kInvalidData;
          failure->detail += " although content-type is JSON";
        }
        return Fail(std::move(*failure));
      }
      // Not declared JSON and not JSON (or nested too deep): keep it as text.
    }
    return SetBytesAsData(value, nullptr);
  }

  // --- CloudEvents, structured mode -------------------------------------------------------------

  bool IsCoreAttribute(std::string_view name) const {
    return name == "specversion" || name == "id" || name == "source" || name == "type" ||
           name == "subject" || name == "time" || name == "datacontenttype" || name == "data" ||
           name == "data_base64" || name == config_.tenant_extension ||
           name == config_.environment_extension;
  }

  static StructuredMembers CollectMembers(dom::object event, const DecoderConfig& config) {
    StructuredMembers m;
    for (const dom::key_value_pair field : event) {
      const std::string_view name = field.key;
      bool core = true;
      if (name == "specversion") {
        m.specversion = field.value;
      } else if (name == "id") {
        m.id = field.value;
      } else if (name == "source") {
        m.source = field.value;
      } else if (name == "type") {
        m.type = field.value;
      } else if (name == "subject") {
        m.subject = field.value;
      } else if (name == "time") {
        m.time = field.value;
      } else if (name == "datacontenttype") {
        m.datacontenttype = field.value;
      } else if (name == "data") {
        m.data = field.value;
      } else if (name == "data_base64") {
        m.data_base64 = field.value;
      } else {
        core = false;
      }
      // Not exclusive: an unvalidated config may name a core attribute as the tenant.
      if (name == config.tenant_extension) {
        m.tenant = field.value;
        core = true;
      }
      if (name == config.environment_extension) {
        m.environment = field.value;
        core = true;
      }
      if (!core) m.others.insert_or_assign(name, field.value);
    }
    return m;
  }

  bool RequiredMember(const std::optional<dom::element>& value, std::string_view name,
                      DeadLetterReason missing, std::string& out) {
    const dom::element* member = NonNull(value);
    if (member == nullptr) return Fail(missing, std::string(name) + ": missing");
    if (!member->is_string()) {
      return Fail(DeadLetterReason::kWrongType,
                  std::string(name) + ": expected a string, got " + JsonTypeName(*member));
    }
    const std::string_view text = StringOf(*member);
    if (text.empty()) return Fail(missing, std::string(name) + ": empty");
    out.assign(text);
    return true;
  }

  bool OptionalStringMember(const std::optional<dom::element>& value, std::string_view name,
                            std::string& out) {
    const dom::element* member = NonNull(value);
    if (member == nullptr) return true;
    if (!member->is_string()) {
      return Fail(DeadLetterReason::kWrongType,
                  std::string(name) + ": expected a string, got " + JsonTypeName(*member));
    }
    out.assign(StringOf(*member));
    return true;
  }

  bool DecodeStructured(dom::object event) {
    envelope_.format = EnvelopeFormat::kCloudEventsStructured;
    const StructuredMembers m = CollectMembers(event, config_);
    const dom::element* specversion = NonNull(m.specversion);
    if (specversion == nullptr) {
      return Fail(DeadLetterReason::kUnsupportedSpecversion, "specversion: missing");
    }
    if (!specversion->is_string()) {
      return Fail(DeadLetterReason::kWrongType,
                  std::string("specversion: expected a string, got ") + JsonTypeName(*specversion));
    }
    if (StringOf(*specversion) != "1.0") {
      return Fail(DeadLetterReason::kUnsupportedSpecversion,
                  "specversion: only \"1.0\" is supported");
    }
    if (!RequiredMember(m.id, "id", DeadLetterReason::kMissingId, envelope_.id) ||
        !RequiredMember(m.source, "source", DeadLetterReason::kMissingSource, envelope_.source) ||
        !RequiredMember(m.type, "type", DeadLetterReason::kMissingType, envelope_.type) ||
        !RequiredMember(m.tenant, config_.tenant_extension, DeadLetterReason::kMissingTenant,
                        envelope_.tenant) ||
        !RequiredMember(m.environment, config_.environment_extension,
                        DeadLetterReason::kMissingEnvironment, envelope_.environment) ||
        !ValidateCommon("") || !OptionalStringMember(m.subject, "subject", envelope_.subject) ||
        !OptionalStringMember(m.datacontenttype, "datacontenttype", envelope_.data_content_type)) {
      return false;
    }
    if (const dom::element* time = NonNull(m.time)) {
      if (!time->is_string()) {
        return Fail(DeadLetterReason::kInvalidTime,
                    std::string("time: expected an RFC 3339 string, got ") + JsonTypeName(*time));
      }
      if (!SetTime(StringOf(*time), "time")) return false;
    }
    for (const auto& [name, value] : m.others) {
      if (value.is_null()) continue;
      if (!IsValidAttributeName(name)) {
        return Fail(
            DeadLetterReason::kInvalidAttribute,
            QuoteName(name) + ": not a valid CloudEvents attribute name (lowercase a-z, 0-9)");
      }
      if (!value.is_string() && !value.is_number() && !value.is_bool()) {
        return Fail(DeadLetterReason::kWrongType, std::string(name) +
                                                      ": extension attribute must be a string, "
                                                      "number or boolean, got " +
                                                      JsonTypeName(value));
      }
      ToJson(value, envelope_.extensions[std::string(name)]);
    }
    return SetStructuredData(m);
  }

  bool SetStructuredData(const StructuredMembers& m) {
    const dom::element* data = NonNull(m.data);
    const dom::element* data_base64 = NonNull(m.data_base64);
    if (data != nullptr && data_base64 != nullptr) {
      return Fail(DeadLetterReason::kInvalidData, "data, data_base64: only one may be present");
    }
    if (data != nullptr) return SetJsonData(*data);
    if (data_base64 == nullptr) return true;
    if (!data_base64->is_string()) {
      return Fail(
          DeadLetterReason::kInvalidData,
          std::string("data_base64: expected a base64 string, got ") + JsonTypeName(*data_base64));
    }
    const std::string_view text = StringOf(*data_base64);
    const std::optional<std::string> bytes = DecodeBase64(text);
    if (!bytes) return Fail(DeadLetterReason::kInvalidData, "data_base64: not valid base64");
    if (IsJsonContentType(envelope_.data_content_type)) {
      // The inner parser: `text` still points into the value's document.
      dom::element decoded;
      if (auto failure = ParseJson(parsers_.inner, parsers_.reparse_buffer, StripBom(*bytes),
                                   config_.max_json_depth, "data_base64", decoded)) {
        if (failure->reason == DeadLetterReason::kNotJson) {
          failure->reason = DeadLetterReason::kInvalidData;
          failure->detail += " although datacontenttype is JSON";
        }
        return Fail(std::move(*failure));
      }
      return SetJsonData(decoded);
    }
    return SetBytesAsData(*bytes, &text);
  }

  // JSON data (already validated by its parse); built only when wanted (or left pending).
  bool SetJsonData(dom::element data) {
    if (pending_ != nullptr) {
      pending_->kind = PendingData::Kind::kJson;
      pending_->json = data;
      return true;
    }
    BuildJsonData(data, WantsData(), envelope_);
    return true;
  }

  // Non-JSON data (BuildBytesData); built only when wanted (or left pending).
  bool SetBytesAsData(std::string_view bytes, const std::string_view* base64) {
    if (pending_ != nullptr) {
      pending_->kind = PendingData::Kind::kBytes;
      pending_->bytes.assign(bytes);
      pending_->has_base64 = base64 != nullptr;
      if (base64 != nullptr) pending_->base64 = *base64;
      return true;
    }
    BuildBytesData(bytes, base64, WantsData(), envelope_);
    return true;
  }

  // --- Flat envelope --------------------------------------------------------------------------

  // A required string field; a null value counts as missing.
  bool RequiredFlatString(dom::element document, const std::string& path, DeadLetterReason missing,
                          std::string& out, bool allow_integer = false) {
    const std::optional<dom::element> found = Lookup(document, path);
    const dom::element* field = NonNull(found);
    if (field == nullptr) return Fail(missing, path + ": missing");
    if (allow_integer && field->is_uint64()) {
      out = std::to_string(field->get_uint64().value_unsafe());
      return true;
    }
    if (allow_integer && field->is_int64()) {
      out = std::to_string(field->get_int64().value_unsafe());
      return true;
    }
    if (!field->is_string()) {
      return Fail(DeadLetterReason::kWrongType,
                  path +
                      (allow_integer ? ": expected a string or an integer, got "
                                     : ": expected a string, got ") +
                      JsonTypeName(*field));
    }
    const std::string_view text = StringOf(*field);
    if (text.empty()) return Fail(missing, path + ": empty");
    out.assign(text);
    return true;
  }

  bool DecodeFlat(dom::element document) {
    envelope_.format = EnvelopeFormat::kFlat;
    const FlatMapping& m = config_.flat;
    if (!RequiredFlatString(document, m.id, DeadLetterReason::kMissingId, envelope_.id,
                            /*allow_integer=*/true) ||
        !RequiredFlatString(document, m.type, DeadLetterReason::kMissingType, envelope_.type) ||
        !RequiredFlatString(document, m.tenant, DeadLetterReason::kMissingTenant,
                            envelope_.tenant) ||
        !RequiredFlatString(document, m.environment, DeadLetterReason::kMissingEnvironment,
                            envelope_.environment) ||
        !ValidateCommon("")) {
      return false;
    }
    if (!m.source.empty()) {
      const std::optional<dom::element> found = Lookup(document, m.source);
      if (const dom::element* source = NonNull(found)) {
        if (!source->is_string()) {
          return Fail(DeadLetterReason::kWrongType,
                      m.source + ": expected a string, got " + JsonTypeName(*source));
        }
        envelope_.source.assign(StringOf(*source));
        if (HasControlCharacters(envelope_.source)) {
          return Fail(DeadLetterReason::kInvalidAttribute,
                      m.source + ": contains control characters");
        }
      }
    }
    if (!m.time.empty()) {
      const std::optional<dom::element> found = Lookup(document, m.time);
      if (const dom::element* time = NonNull(found)) {
        if (!SetFlatTime(*time, m.time)) return false;
      }
    }
    // Last: the data may contain (or be) the fields read above.
    if (const std::optional<dom::element> data = Lookup(document, m.data)) {
      return SetJsonData(*data);
    }
    return true;
  }

  bool SetFlatTime(dom::element time, const std::string& path) {
    if (time.is_string()) return SetTime(StringOf(time), path);
    if (time.is_int64() || time.is_uint64()) {
      const bool in_range =
          time.is_uint64()
              ? time.get_uint64().value_unsafe() <= static_cast<uint64_t>(kMaxAbsEpochMs)
              : time.get_int64().value_unsafe() >= -kMaxAbsEpochMs &&
                    time.get_int64().value_unsafe() <= kMaxAbsEpochMs;
      if (!in_range) {
        return Fail(DeadLetterReason::kInvalidTime,
                    path + ": epoch milliseconds out of the supported range");
      }
      const int64_t ms = time.is_uint64() ? static_cast<int64_t>(time.get_uint64().value_unsafe())
                                          : time.get_int64().value_unsafe();
      envelope_.time = TimePoint{std::chrono::milliseconds{ms}};
      envelope_.time_text = FormatRfc3339(*envelope_.time);
      return true;
    }
    return Fail(
        DeadLetterReason::kInvalidTime,
        path + ": expected an RFC 3339 string or epoch milliseconds, got " + JsonTypeName(time));
  }

  // --- Shared -----------------------------------------------------------------------------------

  bool SetTime(std::string_view text, std::string_view field) {
    const std::optional<TimePoint> time = ParseEventTime(text);
    if (!time) {
      return Fail(DeadLetterReason::kInvalidTime,
                  std::string(field) + ": not an RFC 3339 timestamp between years " +
                      std::to_string(kMinYear) + " and " + std::to_string(kMaxYear));
    }
    envelope_.time = time;
    envelope_.time_text.assign(text);
    return true;
  }

  // Field formats shared by all envelope kinds. `prefix` is "ce_" in binary mode, for details.
  bool ValidateCommon(std::string_view prefix) {
    const bool flat = envelope_.format == EnvelopeFormat::kFlat;
    const auto name = [&](std::string_view ce_name, const std::string& flat_path) {
      return flat ? flat_path : std::string(prefix) + std::string(ce_name);
    };
    const FlatMapping& m = config_.flat;
    if (envelope_.id.size() > kMaxIdBytes) {
      return Fail(DeadLetterReason::kInvalidAttribute,
                  name("id", m.id) + ": longer than " + std::to_string(kMaxIdBytes) + " bytes");
    }
    if (envelope_.type.size() > kMaxTypeBytes) {
      return Fail(
          DeadLetterReason::kInvalidAttribute,
          name("type", m.type) + ": longer than " + std::to_string(kMaxTypeBytes) + " bytes");
    }
    if (HasControlCharacters(envelope_.type)) {
      return Fail(DeadLetterReason::kInvalidAttribute,
                  name("type", m.type) + ": contains control characters");
    }
    if (HasControlCharacters(envelope_.source)) {
      return Fail(DeadLetterReason::kInvalidAttribute,
                  name("source", m.source) + ": contains control characters");
    }
    if (!IsValidScopeName(envelope_.tenant)) {
      return Fail(DeadLetterReason::kInvalidAttribute,
                  name(config_.tenant_extension, m.tenant) +
                      ": must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$");
    }
    if (!IsValidScopeName(envelope_.environment)) {
      return Fail(DeadLetterReason::kInvalidAttribute,
                  name(config_.environment_extension, m.environment) +
                      ": must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$");
    }
    return true;
  }

  const RawRecord& record_;
  const DecoderConfig& config_;
  const std::function<DataNeed(const Envelope&)>* wants_data_;  // null: all, always
  Parsers& parsers_;
  PendingData* pending_;  // not null: leave the data there
  Envelope& envelope_;
  Failure failure_;

  bool has_content_type_ = false;
  std::string_view content_type_;
  bool has_ce_specversion_header_ = false;
  std::map<std::string, std::string_view> ce_headers_;  // attribute name -> value
};

void ValidatePath(std::string_view field, const std::string& path, bool required,
                  std::vector<std::string>& problems) {
  if (path.empty()) {
    if (required) problems.push_back(std::string(field) + ": must not be empty");
    return;
  }
  if (path.front() == '.' || path.back() == '.' || path.find("..") != std::string::npos) {
    problems.push_back(std::string(field) + ": empty segment in dotted path \"" + path + "\"");
  }
}

}  // namespace

std::string_view ToString(EnvelopeFormat format) {
  switch (format) {
    case EnvelopeFormat::kCloudEventsStructured:
      return "cloudevents_structured";
    case EnvelopeFormat::kCloudEventsBinary:
      return "cloudevents_binary";
    case EnvelopeFormat::kFlat:
      return "flat";
  }
  return "unknown";
}

std::string_view ToString(DeadLetterReason reason) {
  switch (reason) {
    case DeadLetterReason::kNone:
      return "none";
    case DeadLetterReason::kEmptyValue:
      return "empty_value";
    case DeadLetterReason::kTooLarge:
      return "too_large";
    case DeadLetterReason::kNotJson:
      return "not_json";
    case DeadLetterReason::kNotObject:
      return "not_object";
    case DeadLetterReason::kTooDeep:
      return "too_deep";
    case DeadLetterReason::kUnknownFormat:
      return "unknown_format";
    case DeadLetterReason::kUnsupportedSpecversion:
      return "unsupported_specversion";
    case DeadLetterReason::kMissingId:
      return "missing_id";
    case DeadLetterReason::kMissingType:
      return "missing_type";
    case DeadLetterReason::kMissingSource:
      return "missing_source";
    case DeadLetterReason::kMissingTenant:
      return "missing_tenant";
    case DeadLetterReason::kMissingEnvironment:
      return "missing_environment";
    case DeadLetterReason::kWrongType:
      return "wrong_type";
    case DeadLetterReason::kInvalidTime:
      return "invalid_time";
    case DeadLetterReason::kInvalidAttribute:
      return "invalid_attribute";
    case DeadLetterReason::kInvalidData:
      return "invalid_data";
    case DeadLetterReason::kDuplicateHeader:
      return "duplicate_header";
    case DeadLetterReason::kNulCharacter:
      return "nul_character";
    case DeadLetterReason::kDatabaseRejected:
      return "database_rejected";
    case DeadLetterReason::kInternal:
      return "internal";
  }
  return "internal";
}

std::optional<DeadLetterReason> DeadLetterReasonFromString(std::string_view name) {
  if (name == "none") return DeadLetterReason::kNone;
  for (DeadLetterReason reason : kReasons) {
    if (ToString(reason) == name) return reason;
  }
  return std::nullopt;
}

std::span<const DeadLetterReason> AllDeadLetterReasons() { return kReasons; }

std::vector<std::string> ValidateDecoderConfig(const DecoderConfig& config) {
  std::vector<std::string> problems;
  const FlatMapping& m = config.flat;
  ValidatePath("flat.id", m.id, true, problems);
  ValidatePath("flat.type", m.type, true, problems);
  ValidatePath("flat.tenant", m.tenant, true, problems);
  ValidatePath("flat.environment", m.environment, true, problems);
  ValidatePath("flat.time", m.time, false, problems);
  ValidatePath("flat.data", m.data, false, problems);
  ValidatePath("flat.source", m.source, false, problems);
  if (config.max_record_bytes == 0) problems.push_back("max_record_bytes: must be positive");
  if (config.max_json_depth < 2 || config.max_json_depth > 1000) {
    problems.push_back("max_json_depth: must be between 2 and 1000");
  }
  for (const auto& [field, name] :
       {std::pair{"tenant_extension", &config.tenant_extension},
        std::pair{"environment_extension", &config.environment_extension}}) {
    static constexpr std::array kReserved = {"specversion", "id",   "source",          "type",
                                             "subject",     "time", "datacontenttype", "dataschema",
                                             "data"};
    bool reserved = false;
    for (const char* r : kReserved) reserved = reserved || *name == r;
    if (!IsValidAttributeName(*name) || reserved) {
      problems.push_back(std::string(field) +
                         ": must be a CloudEvents extension name (lowercase a-z, 0-9) that is not "
                         "a core attribute");
    }
  }
  if (config.tenant_extension == config.environment_extension) {
    problems.push_back("environment_extension: must differ from tenant_extension");
  }
  return problems;
}

namespace {

void Fail(DecodeResult& result, DeadLetterReason reason, std::string detail) {
  result.envelope.reset();
  result.reason = reason;
  result.detail = std::move(detail);
}

void GuardedDecode(const RawRecord& record, const DecoderConfig& config,
                   const std::function<DataNeed(const Envelope&)>* wants_data, Parsers& parsers,
                   PendingData* pending, DecodeResult& result) noexcept {
  const auto fail = [&result](DeadLetterReason reason, std::string detail) {
    Fail(result, reason, std::move(detail));
  };
  try {
    if (result.envelope) {
      ResetForReuse(*result.envelope);
    } else {
      result.envelope.emplace();
    }
    result.reason = DeadLetterReason::kNone;
    result.detail.clear();
    RecordDecoder decoder(record, config, wants_data, parsers, pending, *result.envelope);
    if (!decoder.Run()) fail(decoder.failure().reason, std::move(decoder.failure().detail));
  } catch (const std::bad_alloc&) {
    fail(DeadLetterReason::kInternal, "out of memory while decoding");
  } catch (const json::exception& e) {
    // Never e.what(): nlohmann quotes input in its messages.
    fail(DeadLetterReason::kInternal,
         "unexpected JSON error " + std::to_string(e.id) + " while decoding");
  } catch (...) {
    fail(DeadLetterReason::kInternal, "unexpected exception while decoding");
  }
}

}  // namespace

DecodeResult DecodeRecord(const RawRecord& record, const DecoderConfig& config) noexcept {
  DecodeResult result;
  GuardedDecode(record, config, nullptr, ThreadParsers(), nullptr, result);
  return result;
}

namespace {

std::function<DataNeed(const Envelope&)> AllOrNothing(
    const std::function<bool(const Envelope&)>& wants_data) {
  return [&wants_data](const Envelope& e) {
    return wants_data(e) ? DataNeed{} : DataNeed{DataNeed::Kind::kNone, {}};
  };
}

}  // namespace

DecodeResult DecodeRecord(const RawRecord& record, const DecoderConfig& config,
                          const std::function<bool(const Envelope&)>& wants_data) noexcept {
  DecodeResult result;
  const auto need = AllOrNothing(wants_data);
  GuardedDecode(record, config, &need, ThreadParsers(), nullptr, result);
  return result;
}

void DecodeRecord(const RawRecord& record, const DecoderConfig& config,
                  const std::function<bool(const Envelope&)>& wants_data,
                  DecodeResult& result) noexcept {
  const auto need = AllOrNothing(wants_data);
  GuardedDecode(record, config, &need, ThreadParsers(), nullptr, result);
}

void DecodeRecord(const RawRecord& record, const DecoderConfig& config,
                  const std::function<DataNeed(const Envelope&)>& need,
                  DecodeResult& result) noexcept {
  GuardedDecode(record, config, &need, ThreadParsers(), nullptr, result);
}

struct StagedDecoder::State {
  Parsers parsers;
  PendingData pending;
};

StagedDecoder::StagedDecoder() : state_(std::make_unique<State>()) {}
StagedDecoder::~StagedDecoder() = default;

void StagedDecoder::DecodeAttributes(const RawRecord& record, const DecoderConfig& config,
                                     DecodeResult& result) noexcept {
  state_->pending.Clear();
  GuardedDecode(record, config, nullptr, state_->parsers, &state_->pending, result);
}

void StagedDecoder::BuildData(const DataNeed& need, DecodeResult& result) noexcept {
  if (!result.envelope) return;
  const PendingData& pending = state_->pending;
  try {
    Envelope& e = *result.envelope;
    e.data = nullptr;
    e.data_is_base64 = false;
    e.data_partial = false;
    switch (pending.kind) {
      case PendingData::Kind::kNone:
        return;
      case PendingData::Kind::kJson:
        BuildJsonData(pending.json, need, e);
        return;
      case PendingData::Kind::kBytes:
        BuildBytesData(pending.bytes, pending.has_base64 ? &pending.base64 : nullptr, need, e);
        return;
    }
  } catch (const std::bad_alloc&) {
    Fail(result, DeadLetterReason::kInternal, "out of memory while building the data");
  } catch (...) {
    Fail(result, DeadLetterReason::kInternal, "unexpected exception while building the data");
  }
}

std::vector<std::pair<std::string, std::string>> DeadLetterHeaders(const RawRecord& record,
                                                                   const DecodeResult& result,
                                                                   std::string_view consumer_group,
                                                                   TimePoint failed_at) {
  return {
      {"workflowd_dlq_reason", std::string(ToString(result.reason))},
      {"workflowd_dlq_detail", SanitizeUtf8(result.detail)},
      {"workflowd_source_topic", std::string(record.topic)},
      {"workflowd_source_partition", std::to_string(record.partition)},
      {"workflowd_source_offset", std::to_string(record.offset)},
      {"workflowd_consumer_group", std::string(consumer_group)},
      {"workflowd_failed_at", FormatRfc3339(failed_at)},
  };
}

matching::EventView ViewOf(const Envelope& envelope,
                           std::vector<matching::Header>& header_storage) {
  header_storage.clear();
  header_storage.reserve(envelope.headers.size());
  for (const auto& [name, value] : envelope.headers) header_storage.push_back({name, value});
  matching::EventView view;
  view.id = envelope.id;
  view.type = envelope.type;
  view.source = envelope.source;
  view.subject = envelope.subject;
  view.tenant = envelope.tenant;
  view.environment = envelope.environment;
  view.time = envelope.time_text;
  view.data = envelope.data.is_null() ? nullptr : &envelope.data;
  view.headers = header_storage;
  return view;
}

}  // namespace workflowd::consumers
