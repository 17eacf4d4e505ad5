#include "workflowd/decoding/dead_letter.hpp"

#include <array>

#include "workflowd/common/timefmt.hpp"
#include "workflowd/common/utf8.hpp"

namespace workflowd::decoding {
namespace {

// Every reason but kNone, in the enum's order.
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

}  // namespace

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

}  // namespace workflowd::decoding
