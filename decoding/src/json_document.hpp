// The decoder's JSON: records are parsed with simdjson's DOM parser (validates the whole document,
// UTF-8 included, about 20x faster than building an nlohmann::json), attributes are read from its
// elements, and an nlohmann::json is built only for the data of events somebody wants (conditions
// and trigger_event need it). When simdjson rejects a document, nlohmann's parser decides instead:
// it gives the reason and detail records always got, and it accepts the few documents simdjson
// does not (integers beyond 64 bits, which nlohmann keeps as floating point).
#pragma once

#include <simdjson.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "workflowd/decoding/decoder.hpp"

namespace workflowd::decoding::detail {

namespace dom = simdjson::dom;

// Why a record is a dead letter, before it is put into a DecodeResult.
struct Failure {
  DeadLetterReason reason = DeadLetterReason::kNone;
  std::string detail;
};

// One per thread and per kind of document, reused so that their buffers are allocated once, not
// per record: the record's value, and a document inside it (decoded data_base64).
struct Parsers {
  dom::parser value;
  dom::parser inner;
  std::string reparse_buffer;
};

// The calling thread's parsers (DecodeRecord; a StagedDecoder has its own).
Parsers& ThreadParsers();

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

// The nul_character failure of the JSON document or header `what`.
Failure NulFailure(std::string_view what);

// Parses `text` (BOM already stripped) into `out`, valid until the next parse with `parser`.
// `what` names the document in details ("value", "data_base64"). Fails with not_json (the detail
// gives the position, never input), too_deep beyond `max_depth` levels, or nul_character.
std::optional<Failure> ParseJson(dom::parser& parser, std::string& reparse_buffer,
                                 std::string_view text, size_t max_depth, std::string_view what,
                                 dom::element& out);

// "object", "string", "integer", ... for details.
const char* JsonTypeName(dom::element element);

inline std::string_view StringOf(dom::element element) {
  return element.get_string().value_unsafe();
}

// The same nlohmann::json that nlohmann's parser builds from the element's text: non-negative
// integers are unsigned, and of a repeated member name the last value wins.
void ToJson(dom::element element, nlohmann::json& out);

// JSON data (already validated by its parse) into `envelope`, as much as `need` asks for.
void BuildJsonData(dom::element data, const DataNeed& need, Envelope& envelope);

// Non-JSON data: a JSON string of the bytes when they are UTF-8, else their base64 (reusing
// `base64` when the caller has it). Nothing when `need` asks for none.
void BuildBytesData(std::string_view bytes, const std::string_view* base64, const DataNeed& need,
                    Envelope& envelope);

// A present, non-null value (CloudEvents: null means unset).
inline const dom::element* NonNull(const std::optional<dom::element>& value) {
  return value && !value->is_null() ? &*value : nullptr;
}

// Walks a dotted path ("meta.tenant", "items.0.sku"); nullopt when absent. An empty path is the
// root. A numeric segment indexes an array; on an object it is an ordinary key.
std::optional<dom::element> Lookup(dom::element root, std::string_view path);

}  // namespace workflowd::decoding::detail
