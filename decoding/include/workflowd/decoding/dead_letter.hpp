// The outcome of decoding one record: an event, or the reason the record goes to the dead-letter
// topic, with the names of those reasons and the headers a dead-letter record carries.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/decoding/envelope.hpp"

namespace workflowd::decoding {

// Why a record goes to the dead-letter topic. Names (ToString) are stable: metric labels and the
// `workflowd_dlq_reason` header use them.
enum class DeadLetterReason {
  kNone,                    // "none": decoded fine
  kEmptyValue,              // "empty_value": tombstone or zero bytes (structured / flat)
  kTooLarge,                // "too_large": value + headers > max_record_bytes (before parsing)
  kNotJson,                 // "not_json": not parseable JSON (truncated, binary, invalid UTF-8)
  kNotObject,               // "not_object": top-level JSON array or scalar
  kTooDeep,                 // "too_deep": JSON nested deeper than max_json_depth
  kUnknownFormat,           // "unknown_format": neither CloudEvents nor (in its mode) flat
  kUnsupportedSpecversion,  // "unsupported_specversion": specversion missing or not "1.0"
  kMissingId,               // "missing_id"
  kMissingType,             // "missing_type"
  kMissingSource,           // "missing_source": CloudEvents only
  kMissingTenant,           // "missing_tenant"
  kMissingEnvironment,      // "missing_environment"
  kWrongType,               // "wrong_type": an attribute has the wrong JSON type
  kInvalidTime,             // "invalid_time": not RFC 3339 / epoch ms, or out of range
  kInvalidAttribute,        // "invalid_attribute": bad tenant/environment/type/id/source/name
  kInvalidData,             // "invalid_data": bad JSON data for a JSON content type, bad base64
  kDuplicateHeader,         // "duplicate_header": a ce_* header repeated with different values
  // "nul_character": a NUL character (a \u0000 escape in JSON, a zero byte in a ce_* header),
  // which PostgreSQL cannot store (jsonb and text refuse it).
  kNulCharacter,
  // "database_rejected": decoded fine, but PostgreSQL refused the event's execution row (a data
  // error, SQLSTATE class 22 or 23); set by the event pipeline, never by the decoder.
  kDatabaseRejected,
  kInternal,  // "internal": an unexpected exception while decoding (a bug)
};

std::string_view ToString(DeadLetterReason reason);
std::optional<DeadLetterReason> DeadLetterReasonFromString(std::string_view name);
// Every reason except kNone, e.g. to pre-register metric label values.
std::span<const DeadLetterReason> AllDeadLetterReasons();

struct DecodeResult {
  std::optional<Envelope> envelope;  // set exactly when reason == kNone
  DeadLetterReason reason = DeadLetterReason::kNone;
  // Human-readable, names the field ("tenantid: ..."); never contains payload bytes.
  std::string detail;

  bool ok() const { return envelope.has_value(); }
};

// The headers a dead-letter record gets in addition to the original ones: workflowd_dlq_reason,
// workflowd_dlq_detail, workflowd_source_topic, workflowd_source_partition,
// workflowd_source_offset, workflowd_consumer_group, workflowd_failed_at (RFC 3339 of failed_at).
std::vector<std::pair<std::string, std::string>> DeadLetterHeaders(const RawRecord& record,
                                                                   const DecodeResult& result,
                                                                   std::string_view consumer_group,
                                                                   TimePoint failed_at);

// A dead letter: a record that cannot be processed, as it goes to the dead-letter topic (its key,
// value and headers as they were, plus workflowd's reason headers). Planned by the pipeline,
// produced by the Kafka client.
struct DeadLetter {
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;
};

}  // namespace workflowd::decoding
