// Decoding one Kafka record into an event envelope, or into the reason it goes to the dead-letter
// topic. Pure functions: no librdkafka types, no clock, no I/O; the Kafka loop fills a RawRecord
// (views into the rd_kafka_message_t) and acts on the DecodeResult. One source file per format
// (src/structured.cpp, src/binary.cpp, src/flat.cpp), the attribute rules they share in
// src/attributes.cpp.
//
// Accepted formats (docs/event-formats.md has producer examples and the reason table):
//   - CloudEvents 1.0, structured mode: the value is a JSON object with specversion, id, source,
//     type, optional subject/time/datacontenttype/dataschema, data or data_base64, and extension
//     attributes. A `content-type: application/cloudevents+json` header also marks it.
//   - CloudEvents 1.0, Kafka binary mode: `ce_<attribute>` headers, `content-type` header as the
//     datacontenttype, the value is the data.
//   - A flat JSON envelope whose fields are picked by a FlatMapping (dotted paths).
// Tenant and environment are the CloudEvents extension attributes `tenantid` / `environmentid`
// (configurable), or mapped fields of a flat envelope; both are required.
//
// Decisions (each is tested):
//   - A UTF-8 byte order mark before a JSON value is stripped (some Windows/.NET producers write
//     one); a value that is only a BOM counts as empty.
//   - Repeated `ce_*` (or `content-type`) headers with the same value are accepted; with different
//     values the record is dead-lettered as `duplicate_header`, because choosing one of two
//     conflicting ids or tenants silently would break idempotency or tenant isolation.
//   - Flat envelopes accept an integer id (JSON integer, signed or unsigned) and convert it to its
//     decimal string (12345 -> "12345"); a fractional number is `wrong_type`. CloudEvents ids must
//     be strings, as the spec says.
//   - data_base64 (structured) and a binary-mode value are decoded the same way: a JSON content
//     type (application/json, text/json, */*+json; or no content type at all in binary mode) is
//     parsed as JSON; any other content type keeps the bytes as a JSON string when they are valid
//     UTF-8, otherwise as their standard base64 text with `data_is_base64` set. data_base64 must be
//     standard RFC 4648 base64 (padding optional, no whitespace) or the record is `invalid_data`.
//   - In binary mode a null or empty value is an event without data (CloudEvents allows that); in
//     structured and flat mode the value is the event, so it is `empty_value`.
//   - JSON nesting deeper than DecoderConfig::max_json_depth is `too_deep`, so that no later
//     recursive walk (copy, dump, database encoding) can exhaust the stack.
//   - An attribute whose JSON value is null is treated as absent (CloudEvents JSON format).
//   - Kafka headers that are not `ce_*` are kept in Envelope::headers in record order (null value
//     -> empty string; invalid UTF-8 replaced by U+FFFD so they are always valid JSON strings).
//   - JSON means what nlohmann's parser accepts (RFC 8259, UTF-8 validated, no lone surrogates),
//     with its meaning of a repeated member name (the last value counts) and of numbers
//     (non-negative integers unsigned, integers beyond 64 bits floating point). The decoder parses
//     with simdjson, which agrees on everything else, and leaves rejected or disputed documents to
//     nlohmann's parser, which also words the detail.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "workflowd/decoding/dead_letter.hpp"
#include "workflowd/decoding/envelope.hpp"

namespace workflowd::decoding {

// Where a flat envelope's fields are. Dotted paths walk nested objects ("meta.tenant"); a numeric
// segment indexes an array. `data` may be empty: then the whole object is the data.
struct FlatMapping {
  std::string id = "id";
  std::string type = "event_name";
  std::string tenant = "tenant_id";
  std::string environment = "environment_id";
  std::string time = "timestamp";
  std::string data = "data";
  std::string source = "source";
};

struct DecoderConfig {
  enum class Mode { kAuto, kCloudEvents, kFlat };
  // kAuto: binary if a ce_specversion header exists; else structured if the object has
  // `specversion` (or the content-type header says application/cloudevents+json); else flat.
  // kCloudEvents: flat-looking input is unknown_format. kFlat: only flat (ce_* headers ignored).
  Mode mode = Mode::kAuto;
  FlatMapping flat;
  size_t max_record_bytes = 1 << 20;
  size_t max_json_depth = 64;
  std::string tenant_extension = "tenantid";
  std::string environment_extension = "environmentid";
};

// Problems with a DecoderConfig, one message per problem naming the field; empty when valid.
std::vector<std::string> ValidateDecoderConfig(const DecoderConfig& config);

// Decodes one record. Never throws and never crashes, whatever the bytes.
DecodeResult DecodeRecord(const RawRecord& record, const DecoderConfig& config) noexcept;

// The same, but Envelope::data is built only when `wants_data`, called with the envelope once
// everything else is decoded and the whole record validated, returns true; otherwise data stays
// null (and data_is_base64 false). A record is dead-lettered for exactly the same reasons either
// way: only building the JSON document (most of the cost of decoding) is skipped, e.g. for events
// that no definition triggers on. `wants_data` must not call DecodeRecord (the thread's parser
// holds the record's document meanwhile).
DecodeResult DecodeRecord(const RawRecord& record, const DecoderConfig& config,
                          const std::function<bool(const Envelope&)>& wants_data) noexcept;

// The same into `result`, whose envelope from a previous call is reused (the buffers of its
// strings): for decoding loops, saving allocations per record.
void DecodeRecord(const RawRecord& record, const DecoderConfig& config,
                  const std::function<bool(const Envelope&)>& wants_data,
                  DecodeResult& result) noexcept;

// How much of an event's data a caller needs, decided when the rest of the record is decoded.
struct DataNeed {
  enum class Kind { kNone, kMembers, kAll };
  Kind kind = Kind::kAll;
  // kMembers: only the members of an object payload on these paths, each a list of member names
  // from the top (sorted, as std::sort orders them; {"customer"} is the whole member, {"customer",
  // "country"} only that member of it). The value at a path's end is built whole, and so is a
  // value that is not an object where a path goes on (an array, a scalar); any other payload is
  // built whole. Envelope::data_partial tells whether the payload was cut. Must outlive the
  // DecodeRecord call.
  std::span<const std::vector<std::string>> paths;
};

// The same with a finer choice than all or nothing: e.g. only the paths the candidate
// definitions' conditions read (matching::Condition::data_paths()). Dead letters are the same.
void DecodeRecord(const RawRecord& record, const DecoderConfig& config,
                  const std::function<DataNeed(const Envelope&)>& need,
                  DecodeResult& result) noexcept;

// Decoding in two steps: DecodeAttributes decodes and validates everything but the data (the
// same envelope and the same dead letters as DecodeRecord, data left null), BuildData then builds
// as much of the data as a DataNeed asks for, from the parsed document the decoder keeps until
// its next DecodeAttributes. So a loop can decode record i+1's attributes (and start loading what
// matching it will read) before it builds record i's data, with two decoders in turn, and can
// build an event's data twice from one parse (the paths its conditions read, then all of it once
// it matched). Each decoder owns its parsers; one thread at a time.
class StagedDecoder {
 public:
  StagedDecoder();
  ~StagedDecoder();
  StagedDecoder(const StagedDecoder&) = delete;
  StagedDecoder& operator=(const StagedDecoder&) = delete;

  // `record`'s views must stay valid until the last BuildData for it.
  void DecodeAttributes(const RawRecord& record, const DecoderConfig& config,
                        DecodeResult& result) noexcept;

  // Builds the data of the record decoded last into `result` (which must be the DecodeResult
  // DecodeAttributes filled), replacing what an earlier BuildData built; nothing for an event
  // without data or a dead letter. Fails only for want of memory: then `result` becomes a dead
  // letter (internal).
  void BuildData(const DataNeed& need, DecodeResult& result) noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace workflowd::decoding
