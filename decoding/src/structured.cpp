// CloudEvents 1.0 in structured mode: the value is a JSON object with the attributes, and data or
// data_base64.
#include <string>

#include "base64.hpp"
#include "record_decoder.hpp"
#include "text.hpp"

namespace workflowd::decoding::detail {

bool RecordDecoder::IsCoreAttribute(std::string_view name) const {
  return name == "specversion" || name == "id" || name == "source" || name == "type" ||
         name == "subject" || name == "time" || name == "datacontenttype" || name == "data" ||
         name == "data_base64" || name == config_.tenant_extension ||
         name == config_.environment_extension;
}

StructuredMembers RecordDecoder::CollectMembers(dom::object event, const DecoderConfig& config) {
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

bool RecordDecoder::RequiredMember(const std::optional<dom::element>& value, std::string_view name,
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

bool RecordDecoder::OptionalStringMember(const std::optional<dom::element>& value,
                                         std::string_view name, std::string& out) {
  const dom::element* member = NonNull(value);
  if (member == nullptr) return true;
  if (!member->is_string()) {
    return Fail(DeadLetterReason::kWrongType,
                std::string(name) + ": expected a string, got " + JsonTypeName(*member));
  }
  out.assign(StringOf(*member));
  return true;
}

bool RecordDecoder::DecodeStructured(dom::object event) {
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

bool RecordDecoder::SetStructuredData(const StructuredMembers& m) {
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

}  // namespace workflowd::decoding::detail
