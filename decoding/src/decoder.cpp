#include "workflowd/decoding/decoder.hpp"

#include <array>
#include <exception>
#include <functional>
#include <new>
#include <string>
#include <utility>

#include "record_decoder.hpp"
#include "text.hpp"
#include "workflowd/common/utf8.hpp"

namespace workflowd::decoding {
namespace detail {

bool RecordDecoder::Decode() {
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
    std::string detail =
        std::string("value: top-level JSON is ") + JsonTypeName(document) + ", expected an object";
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

bool RecordDecoder::CheckSize() {
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

void RecordDecoder::CopyPlainHeaders() {
  envelope_.headers.reserve(record_.headers.size());
  for (const RawHeader& h : record_.headers) {
    if (IsCloudEventsHeader(h.key)) continue;
    envelope_.headers.emplace_back(SanitizeUtf8(h.key), SanitizeUtf8(h.value.value_or("")));
  }
}

bool RecordDecoder::SetJsonData(dom::element data) {
  if (pending_ != nullptr) {
    pending_->kind = PendingData::Kind::kJson;
    pending_->json = data;
    return true;
  }
  BuildJsonData(data, WantsData(), envelope_);
  return true;
}

bool RecordDecoder::SetBytesAsData(std::string_view bytes, const std::string_view* base64) {
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

}  // namespace detail

namespace {

using detail::BuildBytesData;
using detail::BuildJsonData;
using detail::IsValidAttributeName;
using detail::Parsers;
using detail::PendingData;
using detail::RecordDecoder;
using detail::ThreadParsers;
using nlohmann::json;

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

std::function<DataNeed(const Envelope&)> AllOrNothing(
    const std::function<bool(const Envelope&)>& wants_data) {
  return [&wants_data](const Envelope& e) {
    return wants_data(e) ? DataNeed{} : DataNeed{DataNeed::Kind::kNone, {}};
  };
}

}  // namespace

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

DecodeResult DecodeRecord(const RawRecord& record, const DecoderConfig& config) noexcept {
  DecodeResult result;
  GuardedDecode(record, config, nullptr, ThreadParsers(), nullptr, result);
  return result;
}

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

}  // namespace workflowd::decoding
