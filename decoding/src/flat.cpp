// Flat JSON envelopes: the fields a FlatMapping names (dotted paths), an integer id taken as its
// decimal text, the time as RFC 3339 text or epoch milliseconds.
#include <chrono>
#include <cstdint>
#include <string>

#include "record_decoder.hpp"
#include "text.hpp"
#include "workflowd/common/timefmt.hpp"

namespace workflowd::decoding::detail {
namespace {

// Epoch milliseconds whose instants fit TimePoint (int64 nanoseconds: 1677-09-21 .. 2262-04-11),
// with a margin.
constexpr int64_t kMaxAbsEpochMs = 9'000'000'000'000;

}  // namespace

bool RecordDecoder::RequiredFlatString(dom::element document, const std::string& path,
                                       DeadLetterReason missing, std::string& out,
                                       bool allow_integer) {
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

bool RecordDecoder::DecodeFlat(dom::element document) {
  envelope_.format = EnvelopeFormat::kFlat;
  const FlatMapping& m = config_.flat;
  if (!RequiredFlatString(document, m.id, DeadLetterReason::kMissingId, envelope_.id,
                          /*allow_integer=*/true) ||
      !RequiredFlatString(document, m.type, DeadLetterReason::kMissingType, envelope_.type) ||
      !RequiredFlatString(document, m.tenant, DeadLetterReason::kMissingTenant, envelope_.tenant) ||
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

bool RecordDecoder::SetFlatTime(dom::element time, const std::string& path) {
  if (time.is_string()) return SetTime(StringOf(time), path);
  if (time.is_int64() || time.is_uint64()) {
    const bool in_range =
        time.is_uint64() ? time.get_uint64().value_unsafe() <= static_cast<uint64_t>(kMaxAbsEpochMs)
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

}  // namespace workflowd::decoding::detail
