// The attribute rules every format applies once its fields are read: lengths, control characters,
// the tenant and environment id rule, and the event time.
#include <cstddef>
#include <optional>
#include <string>

#include "record_decoder.hpp"
#include "text.hpp"
#include "workflowd/common/ids.hpp"
#include "workflowd/common/timefmt.hpp"

namespace workflowd::decoding::detail {

namespace {

constexpr size_t kMaxIdBytes = 256;
constexpr size_t kMaxTypeBytes = 255;

}  // namespace

bool RecordDecoder::SetTime(std::string_view text, std::string_view field) {
  // ParseRfc3339 refuses the years whose instants do not fit TimePoint.
  const std::optional<TimePoint> time = ParseRfc3339(text);
  if (!time) {
    return Fail(DeadLetterReason::kInvalidTime,
                std::string(field) + ": not an RFC 3339 timestamp between years " +
                    std::to_string(kMinRfc3339Year) + " and " + std::to_string(kMaxRfc3339Year));
  }
  envelope_.time = time;
  envelope_.time_text.assign(text);
  return true;
}

bool RecordDecoder::ValidateCommon(std::string_view prefix) {
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
    return Fail(DeadLetterReason::kInvalidAttribute,
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
  if (!IsValidScopeId(envelope_.tenant)) {
    return Fail(
        DeadLetterReason::kInvalidAttribute,
        name(config_.tenant_extension, m.tenant) + ": must match " + std::string(kScopeIdPattern));
  }
  if (!IsValidScopeId(envelope_.environment)) {
    return Fail(DeadLetterReason::kInvalidAttribute,
                name(config_.environment_extension, m.environment) + ": must match " +
                    std::string(kScopeIdPattern));
  }
  return true;
}

}  // namespace workflowd::decoding::detail
