// Fuzz target: decoding::DecodeRecord, the first code that sees a Kafka record's bytes.
//
// Input framing (so that one byte string is a whole RawRecord and seeds stay readable):
//
//   <options byte> <value> [ 0xFF <key> [ 0xFF <header> ]... ]
//
// 0xFF never occurs in UTF-8, so valid JSON values, keys and headers never contain the separator.
// A header is "name=value" (split at the first '='); a header without '=' has a null value.
//
// The options byte (the digits '0'..'9' and ':' ';' '<' '=' '>' '?' pick the low nibble):
//   bits 0-1  the DecoderConfig variant besides the mode:
//             0 defaults; 1 tight limits (max_record_bytes 512, max_json_depth 4);
//             2 a flat mapping with dotted and array paths and the whole object as data;
//             3 custom extension names (org / stage) and a Debezium-like flat mapping
//   bit 2     an empty value section is a tombstone (null value) instead of zero bytes
//   bit 3     the key section is the key; otherwise the key is null
//   bits 4-7  unused
// Every input is decoded in all three modes (auto, CloudEvents, flat).
//
// Checked on every decode (DecodeRecord promises "never throws and never crashes, whatever the
// bytes"): ok() exactly when the reason is kNone; never the `internal` reason (only a bug reaches
// it); a failure has a detail and the seven dead-letter headers, all valid UTF-8; a decoded
// envelope has id, type, tenant and environment, matches its mode, serializes as JSON (valid
// UTF-8 everywhere), has a time that round-trips through its time_text, data no deeper than
// max_json_depth, no tenant/environment among the extensions, and ViewOf shows exactly the
// envelope to conditions, which evaluate it and explain the same result. The decoder agrees with
// nlohmann's parser (its reference) on what is JSON and on a structured event's data, and decoding
// without data (DecodeRecord's wants_data) gives the same outcome and attributes; so does decoding
// in two steps (StagedDecoder), whose data, built afterwards from the document it keeps, is the
// same as a one-step decode's (a part of it, then all of it).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/decoding/decoder.hpp"
#include "workflowd/matching/condition.hpp"

namespace workflowd::fuzz {
namespace {

using decoding::DeadLetterReason;
using decoding::DecoderConfig;
using decoding::DecodeResult;
using decoding::Envelope;
using decoding::EnvelopeFormat;
using decoding::RawHeader;
using decoding::RawRecord;
using nlohmann::json;

constexpr char kSeparator = '\xFF';
constexpr std::string_view kConsumerGroup = "workflowd-fuzz";

DecoderConfig ConfigVariant(unsigned variant) {
  DecoderConfig config;
  switch (variant) {
    case 0:
      break;
    case 1:
      config.max_record_bytes = 512;
      config.max_json_depth = 4;
      break;
    case 2:
      config.flat.id = "meta.ids.0";
      config.flat.type = "meta.name";
      config.flat.time = "meta.at";
      config.flat.data = "";
      break;
    case 3:
      config.tenant_extension = "org";
      config.environment_extension = "stage";
      config.flat.id = "payload.source.lsn";
      config.flat.type = "payload.source.table";
      config.flat.tenant = "payload.after.tenant";
      config.flat.environment = "payload.after.env";
      config.flat.time = "payload.ts_ms";
      config.flat.data = "payload.after";
      config.flat.source = "payload.source.connector";
      break;
  }
  return config;
}

// Conditions evaluated against every decoded envelope, compiled once.
const std::vector<matching::ConditionPtr>& Conditions() {
  static const std::vector<matching::ConditionPtr> conditions = [] {
    const json sources = json::parse(R"([
      [{"field": "data.customer.country", "op": "eq", "value": "US"}],
      [{"any": [{"field": "data.customer.tier", "op": "in", "value": ["gold", "silver"]},
                {"not": {"field": "headers.x-test", "op": "exists"}}]}],
      [{"field": "time", "op": "gte", "value": "2026-01-01T00:00:00Z"},
       {"field": "subject", "op": "regex", "value": "^customers/[0-9]+$"}],
      [{"field": "data", "op": "contains", "value": 1},
       {"field": "source", "op": "starts_with", "value": "billing/"}],
      [{"field": "data.0", "op": "ne", "value": null},
       {"field": "headers.content-type", "op": "ends_with", "value": "json"},
       {"field": "id", "op": "lt", "value": "m"}]
    ])");
    std::vector<matching::ConditionPtr> out;
    for (size_t i = 0; i < sources.size(); ++i) {
      out.push_back(matching::ParseConditionList(sources[i], "c" + std::to_string(i)));
    }
    return out;
  }();
  return conditions;
}

std::vector<std::string_view> Split(std::string_view bytes) {
  std::vector<std::string_view> parts;
  while (true) {
    const size_t at = bytes.find(kSeparator);
    parts.push_back(bytes.substr(0, at));
    if (at == std::string_view::npos) return parts;
    bytes.remove_prefix(at + 1);
  }
}

void CheckFailure(const RawRecord& record, const DecodeResult& result) {
  FUZZ_CHECK(!result.detail.empty(), std::string(ToString(result.reason)));
  FUZZ_CHECK(decoding::DeadLetterReasonFromString(ToString(result.reason)) == result.reason,
             std::string(ToString(result.reason)));
  const auto headers = decoding::DeadLetterHeaders(
      record, result, kConsumerGroup, TimePoint{} + std::chrono::milliseconds(record.timestamp_ms));
  FUZZ_CHECK(headers.size() == 7, std::to_string(headers.size()));
  FUZZ_CHECK(
      headers[0].first == "workflowd_dlq_reason" && headers[0].second == ToString(result.reason),
      headers[0].first + "=" + headers[0].second);
  for (const auto& [name, value] : headers) {
    FUZZ_CHECK(Serializable(json(value)), name + " is not valid UTF-8: " + Printable(value));
  }
}

void CheckEnvelope(const Envelope& e, const DecoderConfig& config) {
  FUZZ_CHECK(!e.id.empty() && !e.type.empty() && !e.tenant.empty() && !e.environment.empty(),
             "id/type/tenant/environment must be set");
  if (config.mode == DecoderConfig::Mode::kFlat) {
    FUZZ_CHECK(e.format == EnvelopeFormat::kFlat, std::string(ToString(e.format)));
    FUZZ_CHECK(e.extensions.empty(), "a flat envelope has no extensions");
  }
  if (config.mode == DecoderConfig::Mode::kCloudEvents) {
    FUZZ_CHECK(e.format != EnvelopeFormat::kFlat, "flat envelope in CloudEvents mode");
  }

  json all = {{"id", e.id},           {"type", e.type},
              {"source", e.source},   {"subject", e.subject},
              {"tenant", e.tenant},   {"environment", e.environment},
              {"time", e.time_text},  {"data", e.data},
              {"headers", e.headers}, {"content_type", e.data_content_type}};
  for (const auto& [name, value] : e.extensions) {
    FUZZ_CHECK(value.is_string() || value.is_number() || value.is_boolean(),
               name + " is " + value.type_name());
    FUZZ_CHECK(name != config.tenant_extension && name != config.environment_extension,
               "tenant/environment attribute among the extensions: " + name);
    all["extensions"][name] = value;
  }
  std::string error;
  FUZZ_CHECK(Serializable(all, &error), "envelope is not serializable: " + error);

  if (e.time) {
    const std::optional<TimePoint> reparsed = ParseRfc3339(e.time_text);
    FUZZ_CHECK(reparsed && *reparsed == *e.time,
               "time_text does not round-trip: " + Printable(e.time_text));
  } else {
    FUZZ_CHECK(e.time_text.empty(), "time_text without time: " + Printable(e.time_text));
  }
  FUZZ_CHECK(!e.data_is_base64 || e.data.is_string(), "data_is_base64 but data is not a string");
  FUZZ_CHECK(JsonNesting(e.data) <= config.max_json_depth,
             "data nested " + std::to_string(JsonNesting(e.data)) + " levels");

  std::vector<matching::Header> storage;
  const matching::EventView view = decoding::ViewOf(e, storage);
  FUZZ_CHECK(view.id == e.id && view.type == e.type && view.source == e.source &&
                 view.subject == e.subject && view.tenant == e.tenant &&
                 view.environment == e.environment && view.time == e.time_text,
             "ViewOf changed an attribute");
  FUZZ_CHECK((view.data == nullptr) == e.data.is_null(), "ViewOf data");
  FUZZ_CHECK(view.headers.size() == e.headers.size(), "ViewOf headers");
  for (size_t i = 0; i < e.headers.size(); ++i) {
    FUZZ_CHECK(
        view.headers[i].name == e.headers[i].first && view.headers[i].value == e.headers[i].second,
        "ViewOf header " + std::to_string(i));
  }
  for (const matching::ConditionPtr& condition : Conditions()) {
    const bool matched = matching::Evaluate(*condition, view);
    const matching::Explanation explanation = matching::Explain(*condition, view);
    FUZZ_CHECK(explanation.matched == matched, "Explain disagrees with Evaluate at " +
                                                   condition->path() + ": " +
                                                   explanation.ToJson().dump());
    FUZZ_CHECK(Serializable(explanation.ToJson(), &error), "explanation: " + error);
  }
}

std::string_view WithoutBom(std::string_view s) {
  if (s.starts_with("\xEF\xBB\xBF")) s.remove_prefix(3);
  return s;
}

// The decoder parses with simdjson and falls back to nlohmann's parser only when simdjson rejects
// a document; nlohmann's parser (which it used alone before) is the reference for what is JSON
// and what the data is.
void CheckAgainstNlohmann(const RawRecord& record, const DecodeResult& result) {
  const std::string_view value = WithoutBom(record.value.value_or(""));
  if (result.reason == DeadLetterReason::kNotJson) {
    FUZZ_CHECK(!json::accept(value), "not_json, but nlohmann's parser accepts the value");
  }
  if (!result.ok() || result.envelope->format != EnvelopeFormat::kCloudEventsStructured) return;
  FUZZ_CHECK(json::accept(value), "decoded a value nlohmann's parser rejects");
  const json document = json::parse(value);
  const auto data = document.find("data");
  if (data == document.end() || data->is_null()) return;
  FUZZ_CHECK(result.envelope->data == *data && result.envelope->data.dump() == data->dump(),
             "data differs from nlohmann's parse: " + Printable(result.envelope->data.dump()) +
                 " vs " + Printable(data->dump()));
}

// True when a string or member name anywhere in `j` holds NUL.
bool HoldsNul(const json& j) {
  if (j.is_string()) return j.get_ref<const std::string&>().find('\0') != std::string::npos;
  if (j.is_object()) {
    for (const auto& [name, value] : j.items()) {
      if (name.find('\0') != std::string::npos || HoldsNul(value)) return true;
    }
  }
  if (j.is_array()) {
    for (const auto& value : j) {
      if (HoldsNul(value)) return true;
    }
  }
  return false;
}

// What an accepted event stores (its attributes, data and extensions in the execution's
// trigger_event) never holds NUL, which PostgreSQL refuses in jsonb and text: such records are
// nul_character dead letters instead of a batch the database refuses.
void CheckStorable(const decoding::Envelope& e) {
  for (const std::string* s : {&e.id, &e.type, &e.source, &e.subject, &e.tenant, &e.environment,
                               &e.time_text, &e.data_content_type}) {
    FUZZ_CHECK(s->find('\0') == std::string::npos, "an attribute holds NUL: " + Printable(*s));
  }
  FUZZ_CHECK(!HoldsNul(e.data), "data holds NUL");
  for (const auto& [name, value] : e.extensions) {
    FUZZ_CHECK(!HoldsNul(value) && name.find('\0') == std::string::npos,
               "extension " + Printable(name) + " holds NUL");
  }
}

void DecodeAndCheck(const RawRecord& record, const DecoderConfig& config) {
  const DecodeResult result = decoding::DecodeRecord(record, config);
  FUZZ_CHECK(result.ok() == (result.reason == DeadLetterReason::kNone),
             std::string(ToString(result.reason)));
  FUZZ_CHECK(result.reason != DeadLetterReason::kInternal,
             "DecodeRecord hit an unexpected exception: " + result.detail);
  if (result.ok()) {
    CheckEnvelope(*result.envelope, config);
    CheckStorable(*result.envelope);
  } else {
    CheckFailure(record, result);
  }
  CheckAgainstNlohmann(record, result);

  // Without data (an event no definition triggers on): the same outcome, data left null.
  const DecodeResult lazy = decoding::DecodeRecord(
      record, config, [](const Envelope& e) { return e.id.size() % 2 == 0; });
  FUZZ_CHECK(lazy.reason == result.reason && lazy.detail == result.detail,
             "without data: " + std::string(ToString(lazy.reason)) + " vs " +
                 std::string(ToString(result.reason)));
  if (lazy.ok()) {
    const Envelope& e = *lazy.envelope;
    const Envelope& full = *result.envelope;
    FUZZ_CHECK(e.id == full.id && e.type == full.type && e.tenant == full.tenant &&
                   e.environment == full.environment && e.time_text == full.time_text &&
                   e.extensions == full.extensions,
               "without data: attributes differ");
    if (e.id.size() % 2 == 0) {
      FUZZ_CHECK(e.data == full.data && e.data_is_base64 == full.data_is_base64,
                 "wanted data differs");
    } else {
      FUZZ_CHECK(e.data.is_null() && !e.data_is_base64, "unwanted data was built");
    }
  }

  // Only some paths (what matching asks for): the same outcome; an object payload holds exactly
  // what the paths reach (Pruned in fuzz_check.hpp), any other payload is whole. The paths come
  // from the document itself: every other member, and below each object member every other member
  // again (one and two levels), plus paths into members that are absent.
  std::vector<std::vector<std::string>> paths;
  if (result.ok() && result.envelope->data.is_object()) {
    size_t i = 0;
    for (const auto& [key, value] : result.envelope->data.items()) {
      if (i++ % 2 == 0) {
        paths.push_back({key});
      } else if (value.is_object()) {
        size_t j = 0;
        for (const auto& [inner, inner_value] : value.items()) {
          if (j++ % 2 == 0) paths.push_back({key, inner});
          if (inner_value.is_object() && !inner_value.empty()) {
            paths.push_back({key, inner, inner_value.begin().key()});
          }
        }
        paths.push_back({key, "absent-member"});
      } else {
        paths.push_back({key, "0"});  // into an array or a scalar: the member is whole
      }
    }
  }
  paths.push_back({"absent-member"});
  paths.push_back({"absent-member", "below"});
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  DecodeResult some;
  decoding::DecodeRecord(record, config,
                         std::function<decoding::DataNeed(const Envelope&)>([&](const Envelope&) {
                           return decoding::DataNeed{decoding::DataNeed::Kind::kMembers, paths};
                         }),
                         some);
  FUZZ_CHECK(some.reason == result.reason && some.detail == result.detail,
             "some paths: " + std::string(ToString(some.reason)) + " vs " +
                 std::string(ToString(result.reason)));
  if (some.ok()) {
    const nlohmann::json& full = result.envelope->data;
    if (some.envelope->data_partial) {
      FUZZ_CHECK(full.is_object(), "partial data of a payload that is not an object");
      const nlohmann::json expected = Pruned(full, paths);
      FUZZ_CHECK(some.envelope->data == expected, "partial data is not what the paths reach: " +
                                                      Printable(some.envelope->data.dump()) +
                                                      " vs " + Printable(expected.dump()));
    } else {
      FUZZ_CHECK(some.envelope->data == full, "data not partial but differs");
    }
  }

  // In two steps (StagedDecoder, as the planner decodes): the same outcome and attributes without
  // data; another record decoded by the other decoder meanwhile does not disturb the document
  // kept; then the paths above, then all of it, from the one parse.
  static decoding::StagedDecoder decoders[2];
  static size_t turn = 0;
  decoding::StagedDecoder& staged = decoders[turn % 2];
  decoding::StagedDecoder& other = decoders[++turn % 2];
  DecodeResult steps;
  staged.DecodeAttributes(record, config, steps);
  FUZZ_CHECK(steps.reason == result.reason && steps.detail == result.detail,
             "staged: " + std::string(ToString(steps.reason)) + " vs " +
                 std::string(ToString(result.reason)));
  if (!steps.ok()) return;
  const Envelope& full = *result.envelope;
  FUZZ_CHECK(steps.envelope->id == full.id && steps.envelope->type == full.type &&
                 steps.envelope->tenant == full.tenant &&
                 steps.envelope->environment == full.environment &&
                 steps.envelope->time_text == full.time_text &&
                 steps.envelope->extensions == full.extensions &&
                 steps.envelope->headers == full.headers,
             "staged: attributes differ");
  FUZZ_CHECK(steps.envelope->data.is_null() && !steps.envelope->data_partial,
             "staged: data built before BuildData");
  RawRecord interloper;
  interloper.topic = "events";
  static const std::string kOtherValue =
      R"({"specversion":"1.0","id":"x","source":"/s","type":"t","tenantid":"acme",)"
      R"("environmentid":"prod","data":{"other":[1,2,{"deep":"text"}]}})";
  interloper.value = kOtherValue;
  DecodeResult interloper_result;
  other.DecodeAttributes(interloper, DecoderConfig{}, interloper_result);
  other.BuildData(decoding::DataNeed{}, interloper_result);
  FUZZ_CHECK(interloper_result.ok(), "the other decoder failed on a valid record");
  staged.BuildData(decoding::DataNeed{decoding::DataNeed::Kind::kMembers, paths}, steps);
  FUZZ_CHECK(steps.ok() && some.ok(), "staged: BuildData failed");
  FUZZ_CHECK(steps.envelope->data == some.envelope->data &&
                 steps.envelope->data_partial == some.envelope->data_partial &&
                 steps.envelope->data_is_base64 == some.envelope->data_is_base64,
             "staged: the paths' data differs: " + Printable(steps.envelope->data.dump()) + " vs " +
                 Printable(some.envelope->data.dump()));
  staged.BuildData(decoding::DataNeed{}, steps);
  FUZZ_CHECK(steps.ok(), "staged: BuildData of all failed");
  FUZZ_CHECK(steps.envelope->data == full.data && !steps.envelope->data_partial &&
                 steps.envelope->data_is_base64 == full.data_is_base64 &&
                 steps.envelope->data.dump() == full.data.dump(),
             "staged: all data differs: " + Printable(steps.envelope->data.dump()) + " vs " +
                 Printable(full.data.dump()));
}

// One libFuzzer input.
int FuzzOne(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const unsigned options = data[0];
  const std::vector<std::string_view> parts =
      Split(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1));

  RawRecord record;
  record.topic = "events";
  record.partition = static_cast<int32_t>(options);
  record.offset = static_cast<int64_t>(size);
  record.timestamp_ms = 1769763600000;  // 2026-01-30T09:00:00Z
  if (!parts[0].empty() || (options & 4u) == 0) record.value = parts[0];
  if (parts.size() > 1 && (options & 8u) != 0) record.key = parts[1];
  for (size_t i = 2; i < parts.size(); ++i) {
    const std::string_view header = parts[i];
    const size_t eq = header.find('=');
    if (eq == std::string_view::npos) {
      record.headers.push_back(RawHeader{header, std::nullopt});
    } else {
      record.headers.push_back(RawHeader{header.substr(0, eq), header.substr(eq + 1)});
    }
  }

  DecoderConfig config = ConfigVariant(options & 3u);
  for (const DecoderConfig::Mode mode :
       {DecoderConfig::Mode::kAuto, DecoderConfig::Mode::kCloudEvents,
        DecoderConfig::Mode::kFlat}) {
    config.mode = mode;
    DecodeAndCheck(record, config);
  }
  return 0;
}

}  // namespace
}  // namespace workflowd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return workflowd::fuzz::FuzzOne(data, size);
}
