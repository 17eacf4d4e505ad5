// CloudEvents 1.0 in Kafka's binary mode: `ce_<attribute>` headers, the `content-type` header as
// the datacontenttype, the value is the data (an event without data when it is null or empty).
#include <string>
#include <utility>

#include "record_decoder.hpp"
#include "text.hpp"
#include "workflowd/common/utf8.hpp"

namespace workflowd::decoding::detail {

using nlohmann::json;

bool RecordDecoder::ScanHeaders() {
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

std::optional<std::string_view> RecordDecoder::CeHeader(const std::string& name) {
  const auto it = ce_headers_.find(name);
  if (it == ce_headers_.end()) return std::nullopt;
  return it->second;
}

bool RecordDecoder::RequiredCeHeader(const std::string& name, DeadLetterReason missing,
                                     std::string& out) {
  const auto value = CeHeader(name);
  if (!value) return Fail(missing, "ce_" + name + ": missing");
  if (value->empty()) return Fail(missing, "ce_" + name + ": empty");
  out.assign(*value);
  return true;
}

bool RecordDecoder::DecodeBinary() {
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

}  // namespace workflowd::decoding::detail
