// A record as the decoder takes it (plain views, no Kafka client types) and the event it decodes
// it into.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/matching/condition.hpp"

namespace workflowd::decoding {

// One Kafka header; Kafka allows a null value.
struct RawHeader {
  std::string_view key;
  std::optional<std::string_view> value;
};

// One Kafka record as the poll loop sees it. Views must outlive the DecodeRecord call only.
struct RawRecord {
  std::string_view topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::optional<std::string_view> key;
  std::optional<std::string_view> value;  // nullopt = tombstone
  std::vector<RawHeader> headers;
  int64_t timestamp_ms = 0;
};

enum class EnvelopeFormat {
  kCloudEventsStructured,
  kCloudEventsBinary,
  kFlat,
};

// "cloudevents_structured", "cloudevents_binary", "flat".
std::string_view ToString(EnvelopeFormat format);

// A decoded event. Owns its data. Strings are valid UTF-8.
struct Envelope {
  std::string id;
  std::string type;  // the event name, e.g. "customer.created"
  std::string source;
  std::string subject;  // empty when absent
  std::string tenant;
  std::string environment;
  std::optional<TimePoint> time;
  // The time as sent (RFC 3339). For a flat envelope's epoch-milliseconds time it is the RFC 3339
  // rendering (UTC, "Z"), so that conditions on `time` compare instants either way.
  std::string time_text;
  // object/array/scalar; null when absent (a JSON null payload too), or when the caller did not
  // want it (DecodeRecord's wants_data).
  nlohmann::json data;
  // True when `data` is a string holding the base64 of non-UTF-8, non-JSON bytes.
  bool data_is_base64 = false;
  // True when `data` holds only the members of the payload object a DataNeed asked for.
  bool data_partial = false;
  std::string data_content_type;  // empty when absent
  // Kafka headers other than ce_*, in record order, for conditions on `headers.<name>`.
  std::vector<std::pair<std::string, std::string>> headers;
  EnvelopeFormat format = EnvelopeFormat::kCloudEventsStructured;
  // CloudEvents attributes without a field above (extensions, dataschema); never the tenant and
  // environment attributes. Values are strings, numbers or booleans. Empty for flat envelopes.
  std::map<std::string, nlohmann::json> extensions;
};

// The event as the condition language sees it, without copying anything. Condition's EventView
// takes its headers as a span of views, so the caller supplies the vector holding them (reuse one
// per poll loop to avoid allocating); `envelope` and `header_storage` must outlive the view, and
// `header_storage` must not be modified while the view is in use.
matching::EventView ViewOf(const Envelope& envelope, std::vector<matching::Header>& header_storage);

}  // namespace workflowd::decoding
