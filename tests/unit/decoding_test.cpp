// Envelope decoding: CloudEvents structured and binary mode, flat envelopes with default and
// custom mappings, every dead-letter reason, the DLQ headers, the condition view, and a randomized
// robustness test (meant to run under ASan/UBSan).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "workflowd/common/timefmt.hpp"
#include "workflowd/decoding/decoder.hpp"
#include "workflowd/matching/condition.hpp"

namespace workflowd::decoding {
namespace {

using nlohmann::json;
using Mode = DecoderConfig::Mode;

std::string ReadTestdata(const std::string& name) {
  std::ifstream in(std::string(WORKFLOWD_ENVELOPES_TESTDATA) + "/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// A record whose views point into strings owned by the test.
struct TestRecord {
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::optional<std::string>>> headers;

  RawRecord Raw() const {
    RawRecord r;
    r.topic = "events";
    r.partition = 3;
    r.offset = 42;
    if (value) r.value.emplace(*value);
    for (const auto& [k, v] : headers) {
      RawHeader h{k, std::nullopt};
      if (v) h.value.emplace(*v);
      r.headers.push_back(h);
    }
    r.timestamp_ms = 1769763600000;
    return r;
  }
};

DecodeResult Decode(const TestRecord& record, const DecoderConfig& config = {}) {
  return DecodeRecord(record.Raw(), config);
}

DecodeResult DecodeValue(std::string value, const DecoderConfig& config = {}) {
  return Decode(TestRecord{std::move(value), {}}, config);
}

json Structured() { return json::parse(ReadTestdata("structured.json")); }
json Flat() { return json::parse(ReadTestdata("flat.json")); }

std::vector<std::pair<std::string, std::optional<std::string>>> BinaryHeaders() {
  return {
      {"ce_specversion", "1.0"},
      {"ce_id", "evt-1"},
      {"ce_source", "billing/api"},
      {"ce_type", "invoice.paid"},
      {"ce_time", "2026-01-30T10:00:00Z"},
      {"ce_subject", "invoices/77"},
      {"ce_tenantid", "acme"},
      {"ce_environmentid", "staging"},
      {"ce_traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
      {"content-type", "application/json; charset=utf-8"},
      {"x-request-id", "r-9"},
  };
}

// Replaces (or with nullopt, removes) one header of a list.
auto WithHeader(std::vector<std::pair<std::string, std::optional<std::string>>> headers,
                const std::string& key, std::optional<std::string> value) {
  std::erase_if(headers, [&](const auto& h) { return h.first == key; });
  if (value) headers.emplace_back(key, std::move(value));
  return headers;
}

TimePoint At(std::string_view rfc3339) { return *ParseRfc3339(rfc3339); }

// ---------------------------------------------------------------------------------------------
// CloudEvents, structured mode

TEST(StructuredTest, DecodesEveryAttribute) {
  const DecodeResult r = DecodeValue(Structured().dump());
  ASSERT_TRUE(r.ok()) << ToString(r.reason) << ": " << r.detail;
  EXPECT_EQ(r.reason, DeadLetterReason::kNone);
  const Envelope& e = *r.envelope;
  EXPECT_EQ(e.format, EnvelopeFormat::kCloudEventsStructured);
  EXPECT_EQ(e.id, "9f3c1a52-6f1e-4d7b-9d0e-2b8f5c1e7a10");
  EXPECT_EQ(e.source, "https://billing.example.com/api");
  EXPECT_EQ(e.type, "customer.created");
  EXPECT_EQ(e.subject, "customers/4711");
  EXPECT_EQ(e.tenant, "acme");
  EXPECT_EQ(e.environment, "prod");
  EXPECT_EQ(e.time_text, "2026-01-30T10:00:00.250+01:00");
  ASSERT_TRUE(e.time.has_value());
  EXPECT_EQ(*e.time, At("2026-01-30T09:00:00.25Z"));
  EXPECT_EQ(e.data_content_type, "application/json");
  EXPECT_EQ(e.data["customer"]["name"], "Zoë Müller");
  EXPECT_EQ(e.data["tags"][1], "新規");
  EXPECT_FALSE(e.data_is_base64);
  // Extensions (and dataschema), but never the tenant and environment attributes.
  EXPECT_EQ(e.extensions.size(), 4u);
  EXPECT_EQ(e.extensions.at("traceparent"),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_EQ(e.extensions.at("priority"), 3);
  EXPECT_EQ(e.extensions.at("replayed"), false);
  EXPECT_EQ(e.extensions.at("dataschema"), "https://schemas.example.com/customer-created/v1.json");
  EXPECT_FALSE(e.extensions.contains("tenantid"));
  EXPECT_TRUE(e.headers.empty());
}

TEST(StructuredTest, MinimalEventWithoutData) {
  const DecodeResult r = DecodeValue(
      R"({"specversion":"1.0","id":"1","source":"s","type":"t","tenantid":"a","environmentid":"b"})");
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.envelope->data.is_null());
  EXPECT_FALSE(r.envelope->time.has_value());
  EXPECT_TRUE(r.envelope->time_text.empty());
  EXPECT_TRUE(r.envelope->subject.empty());
}

TEST(StructuredTest, NullAttributesAreUnset) {
  json event = Structured();
  event["subject"] = nullptr;
  event["time"] = nullptr;
  event["data"] = nullptr;
  event["traceparent"] = nullptr;
  const DecodeResult r = DecodeValue(event.dump());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.envelope->subject.empty());
  EXPECT_FALSE(r.envelope->time.has_value());
  EXPECT_TRUE(r.envelope->data.is_null());
  EXPECT_FALSE(r.envelope->extensions.contains("traceparent"));
}

TEST(StructuredTest, ByteOrderMarkIsStripped) {
  const DecodeResult r = DecodeValue("\xEF\xBB\xBF" + Structured().dump(2));
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->type, "customer.created");
}

TEST(StructuredTest, UnicodeDataAndEscapes) {
  const DecodeResult r = DecodeValue(
      R"({"specversion":"1.0","id":"ü-1","source":"s","type":"café.ordered","tenantid":"a",
          "environmentid":"b","data":{"emoji":"😀","escaped":"\ud83d\ude00 \u00e9","cjk":"注文"}})");
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->id, "ü-1");
  EXPECT_EQ(r.envelope->type, "café.ordered");
  EXPECT_EQ(r.envelope->data["emoji"], "😀");
  EXPECT_EQ(r.envelope->data["escaped"], "😀 é");
  EXPECT_EQ(r.envelope->data["cjk"], "注文");
}

TEST(StructuredTest, ContentTypeHeaderMarksStructuredMode) {
  json event = Structured();
  event.erase("specversion");
  const DecodeResult r = Decode(
      TestRecord{event.dump(), {{"content-type", "application/cloudevents+json; charset=UTF-8"}}});
  EXPECT_EQ(r.reason, DeadLetterReason::kUnsupportedSpecversion);
  EXPECT_EQ(r.detail, "specversion: missing");

  const DecodeResult ok =
      Decode(TestRecord{Structured().dump(), {{"Content-Type", "application/cloudevents+json"}}});
  ASSERT_TRUE(ok.ok()) << ok.detail;
  ASSERT_EQ(ok.envelope->headers.size(), 1u);  // content-type is an ordinary header here
  EXPECT_EQ(ok.envelope->headers[0].first, "Content-Type");
}

TEST(StructuredTest, DataBase64WithJsonContentTypeIsParsed) {
  json event = Structured();
  event.erase("data");
  event["data_base64"] =
      "eyJhbW91bnQiOjQyLCJjdXJyZW5jeSI6IkVVUiJ9";  // {"amount":42,"currency":"EUR"}
  const DecodeResult r = DecodeValue(event.dump());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->data, json::parse(R"({"amount":42,"currency":"EUR"})"));
  EXPECT_FALSE(r.envelope->data_is_base64);
}

TEST(StructuredTest, DataBase64WithTextContentTypeIsDecodedText) {
  json event = Structured();
  event.erase("data");
  event["datacontenttype"] = "text/plain";
  event["data_base64"] = "aGVsbG8gd29ybGQ";  // "hello world", no padding
  const DecodeResult r = DecodeValue(event.dump());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->data, "hello world");
  EXPECT_FALSE(r.envelope->data_is_base64);
}

// data_base64 is strict RFC 4648 base64: the standard alphabet, padding optional but then
// complete, nothing else (no whitespace or line breaks anywhere, no '=' inside, no URL-safe
// alphabet). Some of these a lenient decoder such as OpenSSL's EVP_DecodeBlock accepts.
TEST(StructuredTest, DataBase64IsStrictBase64) {
  const std::pair<std::string, std::string> accepted[] = {
      {"QQ", "A"},   {"QQ==", "A"},      {"QUI", "AB"},          {"QUI=", "AB"}, {"QUJD", "ABC"},
      {"QR==", "A"}, {"QUJDRA", "ABCD"}, {"QUJDREVG", "ABCDEF"}, {"", ""},       {"Kys/Pw", "++??"},
  };
  for (const auto& [text, bytes] : accepted) {
    json event = Structured();
    event.erase("data");
    event["datacontenttype"] = "text/plain";
    event["data_base64"] = text;
    const DecodeResult r = DecodeValue(event.dump());
    ASSERT_TRUE(r.ok()) << "'" << text << "': " << r.detail;
    EXPECT_EQ(r.envelope->data, bytes) << text;
  }
  for (const char* text :
       {"Q",     "QQ=",        "Q===",     "QUJD====",       "QUJD=",     "QQ=A",
        "Q=JD",  "=QUJ",       " QUJD",    "QUJD ",          "QUJD\n",    "QUJD\r\n",
        "QU JD", "QUJD    ",   "    QUJD", "QUJD\n\n\n\nQQ", "QUJD\tQUJ", "QU-D",
        "QU_D",  "QUJ\xc3\xa9"}) {
    json event = Structured();
    event.erase("data");
    event["datacontenttype"] = "text/plain";
    event["data_base64"] = text;
    const DecodeResult r = DecodeValue(event.dump());
    EXPECT_EQ(r.reason, DeadLetterReason::kInvalidData) << "'" << text << "'";
    EXPECT_EQ(r.detail, "data_base64: not valid base64") << "'" << text << "'";
  }
}

TEST(StructuredTest, DataBase64OfBinaryBytesStaysBase64) {
  json event = Structured();
  event.erase("data");
  event["datacontenttype"] = "application/octet-stream";
  event["data_base64"] = "AAECA/8=";  // 00 01 02 03 ff
  const DecodeResult r = DecodeValue(event.dump());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->data, "AAECA/8=");
  EXPECT_TRUE(r.envelope->data_is_base64);
}

TEST(StructuredTest, NonJsonDataIsKeptAsSent) {
  json event = Structured();
  event["datacontenttype"] = "application/xml";
  event["data"] = "<customer id=\"4711\"/>";
  const DecodeResult r = DecodeValue(event.dump());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->data, "<customer id=\"4711\"/>");
}

// ---------------------------------------------------------------------------------------------
// CloudEvents, binary mode

TEST(BinaryTest, DecodesHeadersAndJsonValue) {
  const DecodeResult r =
      Decode(TestRecord{R"({"invoice":{"id":77,"total":"19.99"}})", BinaryHeaders()});
  ASSERT_TRUE(r.ok()) << r.detail;
  const Envelope& e = *r.envelope;
  EXPECT_EQ(e.format, EnvelopeFormat::kCloudEventsBinary);
  EXPECT_EQ(e.id, "evt-1");
  EXPECT_EQ(e.source, "billing/api");
  EXPECT_EQ(e.type, "invoice.paid");
  EXPECT_EQ(e.subject, "invoices/77");
  EXPECT_EQ(e.tenant, "acme");
  EXPECT_EQ(e.environment, "staging");
  EXPECT_EQ(*e.time, At("2026-01-30T10:00:00Z"));
  EXPECT_EQ(e.data_content_type, "application/json; charset=utf-8");
  EXPECT_EQ(e.data["invoice"]["id"], 77);
  EXPECT_EQ(e.extensions.size(), 1u);
  EXPECT_EQ(e.extensions.at("traceparent"),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  // Non-ce_ headers, in order, for `headers.x` conditions.
  ASSERT_EQ(e.headers.size(), 2u);
  EXPECT_EQ(e.headers[0], (std::pair<std::string, std::string>{"content-type",
                                                               "application/json; charset=utf-8"}));
  EXPECT_EQ(e.headers[1], (std::pair<std::string, std::string>{"x-request-id", "r-9"}));
}

TEST(BinaryTest, WithoutContentTypeJsonIsParsedAndTextIsKept) {
  const auto headers = WithHeader(BinaryHeaders(), "content-type", std::nullopt);
  const DecodeResult json_value = Decode(TestRecord{"[1,2,3]", headers});
  ASSERT_TRUE(json_value.ok()) << json_value.detail;
  EXPECT_EQ(json_value.envelope->data, json::parse("[1,2,3]"));

  const DecodeResult text = Decode(TestRecord{"plain words, not JSON", headers});
  ASSERT_TRUE(text.ok()) << text.detail;
  EXPECT_EQ(text.envelope->data, "plain words, not JSON");
  EXPECT_FALSE(text.envelope->data_is_base64);
}

TEST(BinaryTest, BinaryValueWithBinaryContentTypeIsBase64) {
  const auto headers = WithHeader(BinaryHeaders(), "content-type", "application/avro");
  const DecodeResult r =
      Decode(TestRecord{std::string("\x00\x00\x00\x00\x07\x02\xff", 7), headers});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->data, "AAAAAAcC/w==");
  EXPECT_TRUE(r.envelope->data_is_base64);
}

// Every padding case of the base64 rendering of binary bytes (standard alphabet, padded).
TEST(BinaryTest, BinaryBytesOfEveryLengthAreRenderedAsPaddedBase64) {
  const auto headers = WithHeader(BinaryHeaders(), "content-type", "application/octet-stream");
  const std::pair<std::string, std::string> cases[] = {
      {"\xff", "/w=="},
      {"\xff\xfe", "//4="},
      {"\xff\xfe\xfd", "//79"},
      {"\xff\xfe\xfd\xfc", "//79/A=="},
      {"\xfb\xef\xbe\xff\xfe\xfd", "++++//79"},
  };
  for (const auto& [bytes, text] : cases) {
    const DecodeResult r = Decode(TestRecord{bytes, headers});
    ASSERT_TRUE(r.ok()) << text << ": " << r.detail;
    EXPECT_EQ(r.envelope->data, text);
    EXPECT_TRUE(r.envelope->data_is_base64);
  }
}

TEST(BinaryTest, TextWithAZeroByteIsCarriedAsBase64) {
  // A zero byte is valid UTF-8, but a JSON string holding it could not be stored (jsonb refuses
  // \u0000): such text is binary data.
  const auto headers = WithHeader(BinaryHeaders(), "content-type", "text/plain");
  const DecodeResult r = Decode(TestRecord{std::string("ab\0cd", 5), headers});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->data, "YWIAY2Q=");
  EXPECT_TRUE(r.envelope->data_is_base64);
}

TEST(BinaryTest, NullOrEmptyValueIsAnEventWithoutData) {
  for (const std::optional<std::string>& value : {std::optional<std::string>{}, {""}}) {
    const DecodeResult r = Decode(TestRecord{value, BinaryHeaders()});
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_TRUE(r.envelope->data.is_null());
  }
}

TEST(BinaryTest, HeaderWithNullValue) {
  auto headers = BinaryHeaders();
  headers.emplace_back("x-null", std::nullopt);      // an ordinary header: kept, empty
  headers.emplace_back("ce_subject", std::nullopt);  // an attribute: unset, no conflict
  const DecodeResult r = Decode(TestRecord{"{}", headers});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->subject, "invoices/77");
  EXPECT_EQ(r.envelope->headers.back(), (std::pair<std::string, std::string>{"x-null", ""}));

  const DecodeResult no_tenant =
      Decode(TestRecord{"{}", WithHeader(BinaryHeaders(), "ce_tenantid", std::nullopt)});
  EXPECT_EQ(no_tenant.reason, DeadLetterReason::kMissingTenant);
  auto null_tenant = WithHeader(BinaryHeaders(), "ce_tenantid", std::nullopt);
  null_tenant.emplace_back("ce_tenantid", std::nullopt);
  EXPECT_EQ(Decode(TestRecord{"{}", null_tenant}).reason, DeadLetterReason::kMissingTenant);
}

TEST(BinaryTest, RepeatedHeaders) {
  auto same = BinaryHeaders();
  same.emplace_back("ce_id", "evt-1");  // identical repeat: harmless
  EXPECT_TRUE(Decode(TestRecord{"{}", same}).ok());

  auto conflicting = BinaryHeaders();
  conflicting.emplace_back("ce_tenantid", "other-tenant");
  const DecodeResult r = Decode(TestRecord{"{}", conflicting});
  EXPECT_EQ(r.reason, DeadLetterReason::kDuplicateHeader);
  EXPECT_EQ(r.detail, "ce_tenantid: repeated with different values");

  auto upper = BinaryHeaders();
  upper.emplace_back("CE_ID", "evt-2");  // the ce_ prefix is matched case-insensitively
  EXPECT_EQ(Decode(TestRecord{"{}", upper}).reason, DeadLetterReason::kDuplicateHeader);

  auto ordinary = BinaryHeaders();  // ordinary headers may repeat; conditions take the last
  ordinary.emplace_back("x-request-id", "r-10");
  EXPECT_TRUE(Decode(TestRecord{"{}", ordinary}).ok());
}

TEST(BinaryTest, InvalidUtf8InHeaders) {
  const DecodeResult attribute =
      Decode(TestRecord{"{}", WithHeader(BinaryHeaders(), "ce_type", "bad\xff")});
  EXPECT_EQ(attribute.reason, DeadLetterReason::kInvalidAttribute);
  EXPECT_EQ(attribute.detail, "ce_type: not valid UTF-8");

  // Ordinary headers are kept with U+FFFD so they stay valid JSON strings.
  auto headers = BinaryHeaders();
  headers.emplace_back("x-bin\xc3", "a\xff");
  const DecodeResult r = Decode(TestRecord{"{}", headers});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->headers.back(),
            (std::pair<std::string, std::string>{"x-bin\xEF\xBF\xBD", "a\xEF\xBF\xBD"}));
}

// ---------------------------------------------------------------------------------------------
// Flat envelopes

TEST(FlatTest, DefaultMapping) {
  const DecodeResult r = Decode(TestRecord{Flat().dump(), {{"x-origin", "crm"}}});
  ASSERT_TRUE(r.ok()) << r.detail;
  const Envelope& e = *r.envelope;
  EXPECT_EQ(e.format, EnvelopeFormat::kFlat);
  EXPECT_EQ(e.id, "evt-000123");
  EXPECT_EQ(e.type, "customer.created");
  EXPECT_EQ(e.tenant, "acme");
  EXPECT_EQ(e.environment, "prod");
  EXPECT_EQ(e.source, "crm");
  EXPECT_EQ(*e.time, At("2026-01-30T09:00:00.25Z"));
  EXPECT_EQ(e.data, json::parse(R"({"customer":{"id":4711,"country":"DE","tier":"gold"}})"));
  EXPECT_TRUE(e.extensions.empty());
  ASSERT_EQ(e.headers.size(), 1u);
}

TEST(FlatTest, NumericIdsBecomeDecimalStrings) {
  for (const auto& [id, expected] : std::vector<std::pair<json, std::string>>{
           {json(12345), "12345"},
           {json(-7), "-7"},
           {json(18446744073709551615ull), "18446744073709551615"},
       }) {
    json event = Flat();
    event["id"] = id;
    const DecodeResult r = DecodeValue(event.dump());
    ASSERT_TRUE(r.ok()) << r.detail;
    EXPECT_EQ(r.envelope->id, expected);
  }
  json fractional = Flat();
  fractional["id"] = 1.5;
  const DecodeResult r = DecodeValue(fractional.dump());
  EXPECT_EQ(r.reason, DeadLetterReason::kWrongType);
  EXPECT_EQ(r.detail, "id: expected a string or an integer, got number");
}

TEST(FlatTest, EpochMillisecondsTime) {
  json event = Flat();
  event["timestamp"] = 1769763600123;
  const DecodeResult r = DecodeValue(event.dump());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(*r.envelope->time, At("2026-01-30T09:00:00.123Z"));
  EXPECT_EQ(r.envelope->time_text, "2026-01-30T09:00:00.123Z");
}

TEST(FlatTest, OptionalFieldsMayBeAbsent) {
  json event = Flat();
  event.erase("timestamp");
  event.erase("source");
  event.erase("data");
  const DecodeResult r = DecodeValue(event.dump());
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_FALSE(r.envelope->time.has_value());
  EXPECT_TRUE(r.envelope->source.empty());
  EXPECT_TRUE(r.envelope->data.is_null());
}

TEST(FlatTest, DebeziumLikeRecordNeedsAMapping) {
  const std::string record = ReadTestdata("debezium_like.json");
  const DecodeResult unmapped = DecodeValue(record);
  EXPECT_EQ(unmapped.reason, DeadLetterReason::kMissingId);
  EXPECT_EQ(unmapped.detail, "id: missing");

  DecoderConfig config;
  config.mode = Mode::kFlat;
  config.flat.id = "payload.source.lsn";
  config.flat.type = "payload.source.table";
  config.flat.tenant = "payload.after.tenant";
  config.flat.environment = "payload.after.env";
  config.flat.time = "payload.ts_ms";
  config.flat.data = "payload.after";
  config.flat.source = "payload.source.connector";
  EXPECT_TRUE(ValidateDecoderConfig(config).empty());
  const DecodeResult r = DecodeValue(record, config);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->id, "24023128");
  EXPECT_EQ(r.envelope->type, "customers");
  EXPECT_EQ(r.envelope->tenant, "acme");
  EXPECT_EQ(r.envelope->environment, "staging");
  EXPECT_EQ(r.envelope->source, "postgresql");
  EXPECT_EQ(r.envelope->time_text, "2026-01-30T09:00:00.123Z");
  EXPECT_EQ(r.envelope->data["country"], "FR");

  // A dotted path names the field in details.
  config.flat.tenant = "payload.before.tenant";
  const DecodeResult missing = DecodeValue(record, config);
  EXPECT_EQ(missing.reason, DeadLetterReason::kMissingTenant);
  EXPECT_EQ(missing.detail, "payload.before.tenant: missing");
}

TEST(FlatTest, EmptyDataPathTakesTheWholeObject) {
  DecoderConfig config;
  config.flat.data = "";
  config.flat.id = "meta.ids.0";  // a numeric segment indexes an array
  const DecodeResult r = DecodeValue(
      R"({"meta":{"ids":["m-1","m-2"]},"event_name":"e","tenant_id":"t","environment_id":"p","x":1})",
      config);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->id, "m-1");
  EXPECT_EQ(r.envelope->data["x"], 1);
  EXPECT_EQ(r.envelope->data["tenant_id"], "t");
}

// ---------------------------------------------------------------------------------------------
// Modes

TEST(ModeTest, CloudEventsModeRejectsFlat) {
  DecoderConfig config;
  config.mode = Mode::kCloudEvents;
  const DecodeResult r = DecodeValue(Flat().dump(), config);
  EXPECT_EQ(r.reason, DeadLetterReason::kUnknownFormat);
  EXPECT_TRUE(DecodeValue(Structured().dump(), config).ok());
  EXPECT_TRUE(Decode(TestRecord{"{}", BinaryHeaders()}, config).ok());
}

TEST(ModeTest, FlatModeIgnoresCloudEvents) {
  DecoderConfig config;
  config.mode = Mode::kFlat;
  // A structured CloudEvent read as flat lacks `event_name`.
  EXPECT_EQ(DecodeValue(Structured().dump(), config).reason, DeadLetterReason::kMissingType);
  // Binary-mode headers do not count; the value is the flat envelope.
  const DecodeResult r = Decode(TestRecord{Flat().dump(), BinaryHeaders()}, config);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->format, EnvelopeFormat::kFlat);
  EXPECT_EQ(r.envelope->id, "evt-000123");
}

TEST(ModeTest, AutoPrefersBinaryHeaders) {
  // ce_specversion decides even when the value looks like a structured event.
  const DecodeResult r = Decode(TestRecord{Structured().dump(), BinaryHeaders()});
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->format, EnvelopeFormat::kCloudEventsBinary);
  EXPECT_EQ(r.envelope->data["specversion"], "1.0");
}

// ---------------------------------------------------------------------------------------------
// Dead letters: one realistic input per reason

struct DeadLetterCase {
  std::string name;
  TestRecord record;
  DeadLetterReason reason;
  std::string detail_contains;
  DecoderConfig config = {};
};

std::string StructuredWith(const std::string& key, json value) {
  json event = Structured();
  if (value.is_discarded()) {
    event.erase(key);
  } else {
    event[key] = std::move(value);
  }
  return event.dump();
}
std::string StructuredWithout(const std::string& key) {
  return StructuredWith(key, json(json::value_t::discarded));
}
std::string FlatWith(const std::string& key, json value) {
  json event = Flat();
  event[key] = std::move(value);
  return event.dump();
}

std::vector<DeadLetterCase> DeadLetterCases() {
  const std::string structured = Structured().dump();
  DecoderConfig small;
  small.max_record_bytes = 100;
  DecoderConfig cloud_events;
  cloud_events.mode = Mode::kCloudEvents;
  return {
      {"tombstone", {std::nullopt, {}}, DeadLetterReason::kEmptyValue, "tombstone"},
      {"zero_bytes", {"", {}}, DeadLetterReason::kEmptyValue, "empty"},
      {"only_bom", {"\xEF\xBB\xBF", {}}, DeadLetterReason::kEmptyValue, "empty"},
      {"value_too_large", {std::string(200, ' '), {}}, DeadLetterReason::kTooLarge, "200", small},
      {"headers_count_too",
       {"{}", {{"x-blob", std::string(120, 'x')}}},
       DeadLetterReason::kTooLarge,
       "limit is 100",
       small},
      {"truncated_json",
       {structured.substr(0, structured.size() / 2), {}},
       DeadLetterReason::kNotJson,
       "truncated"},
      {"binary_garbage",
       {std::string("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 16), {}},
       DeadLetterReason::kNotJson,
       "syntax error"},
      {"avro_with_schema_registry_framing",
       {std::string("\x00\x00\x00\x00\x2a\x0c\x61\x63\x6d\x65\x08prod", 14), {}},
       DeadLetterReason::kNotJson,
       "Schema Registry"},
      {"invalid_utf8_in_string",
       {R"({"id":"a)" + std::string("\xc3\x28") + R"("})", {}},
       DeadLetterReason::kNotJson,
       "UTF-8"},
      {"overlong_utf8", {"{\"id\":\"\xc0\xaf\"}", {}}, DeadLetterReason::kNotJson, "UTF-8"},
      {"lone_surrogate_escape", {R"({"id":"\ud800"})", {}}, DeadLetterReason::kNotJson, "JSON"},
      {"trailing_garbage", {Flat().dump() + "}", {}}, DeadLetterReason::kNotJson, "syntax"},
      {"number_overflow", {R"({"id":1e400})", {}}, DeadLetterReason::kNotJson, "too large"},
      {"json_with_comments", {"// hi\n{}", {}}, DeadLetterReason::kNotJson, "syntax"},
      {"top_level_array", {"[" + structured + "]", {}}, DeadLetterReason::kNotObject, "batches"},
      {"top_level_string", {R"("customer.created")", {}}, DeadLetterReason::kNotObject, "string"},
      {"deep_nesting",
       {std::string(100, '[') + std::string(100, ']'), {}},
       DeadLetterReason::kTooDeep,
       "deeper than 64"},
      {"deep_data",
       {FlatWith("data", json::parse(std::string(70, '[') + std::string(70, ']'))), {}},
       DeadLetterReason::kTooDeep,
       "deeper"},
      {"flat_in_cloudevents_mode",
       {Flat().dump(), {}},
       DeadLetterReason::kUnknownFormat,
       "specversion",
       cloud_events},
      {"cloudevents_batch",
       {"[" + structured + "]", {{"content-type", "application/cloudevents-batch+json"}}},
       DeadLetterReason::kUnknownFormat,
       "batches"},
      {"specversion_0_3",
       {StructuredWith("specversion", "0.3"), {}},
       DeadLetterReason::kUnsupportedSpecversion,
       "1.0"},
      {"binary_specversion_2",
       {"{}", WithHeader(BinaryHeaders(), "ce_specversion", "2.0")},
       DeadLetterReason::kUnsupportedSpecversion,
       "ce_specversion"},
      {"structured_missing_id",
       {StructuredWithout("id"), {}},
       DeadLetterReason::kMissingId,
       "id: missing"},
      {"structured_empty_id",
       {StructuredWith("id", ""), {}},
       DeadLetterReason::kMissingId,
       "empty"},
      {"binary_missing_id",
       {"{}", WithHeader(BinaryHeaders(), "ce_id", std::nullopt)},
       DeadLetterReason::kMissingId,
       "ce_id: missing"},
      {"flat_missing_id", {FlatWith("id", nullptr), {}}, DeadLetterReason::kMissingId, "id"},
      {"structured_missing_type",
       {StructuredWithout("type"), {}},
       DeadLetterReason::kMissingType,
       "type: missing"},
      {"flat_missing_event_name",
       {FlatWith("event_name", ""), {}},
       DeadLetterReason::kMissingType,
       "event_name: empty"},
      {"structured_missing_source",
       {StructuredWithout("source"), {}},
       DeadLetterReason::kMissingSource,
       "source: missing"},
      {"binary_missing_source",
       {"{}", WithHeader(BinaryHeaders(), "ce_source", std::nullopt)},
       DeadLetterReason::kMissingSource,
       "ce_source"},
      {"structured_missing_tenant",
       {StructuredWithout("tenantid"), {}},
       DeadLetterReason::kMissingTenant,
       "tenantid: missing"},
      {"flat_missing_tenant",
       {FlatWith("tenant_id", nullptr), {}},
       DeadLetterReason::kMissingTenant,
       "tenant_id"},
      {"structured_missing_environment",
       {StructuredWithout("environmentid"), {}},
       DeadLetterReason::kMissingEnvironment,
       "environmentid: missing"},
      {"binary_missing_environment",
       {"{}", WithHeader(BinaryHeaders(), "ce_environmentid", "")},
       DeadLetterReason::kMissingEnvironment,
       "ce_environmentid: empty"},
      {"id_is_object",
       {StructuredWith("id", json::object()), {}},
       DeadLetterReason::kWrongType,
       "id: expected a string, got object"},
      {"structured_numeric_id",
       {StructuredWith("id", 42), {}},
       DeadLetterReason::kWrongType,
       "got integer"},
      {"specversion_number",
       {StructuredWith("specversion", 1.0), {}},
       DeadLetterReason::kWrongType,
       "specversion"},
      {"tenant_number",
       {FlatWith("tenant_id", 42), {}},
       DeadLetterReason::kWrongType,
       "tenant_id: expected a string"},
      {"extension_object",
       {StructuredWith("traceparent", json::object()), {}},
       DeadLetterReason::kWrongType,
       "traceparent"},
      {"time_not_rfc3339",
       {StructuredWith("time", "30/01/2026 10:00"), {}},
       DeadLetterReason::kInvalidTime,
       "time: not an RFC 3339"},
      {"time_year_9999",
       {StructuredWith("time", "9999-12-31T23:59:59Z"), {}},
       DeadLetterReason::kInvalidTime,
       "between years"},
      {"time_number_in_cloudevent",
       {StructuredWith("time", 1769763600000), {}},
       DeadLetterReason::kInvalidTime,
       "got integer"},
      {"flat_time_float",
       {FlatWith("timestamp", 1769763600.5), {}},
       DeadLetterReason::kInvalidTime,
       "epoch milliseconds"},
      {"flat_time_huge",
       {FlatWith("timestamp", 99999999999999999), {}},
       DeadLetterReason::kInvalidTime,
       "range"},
      {"binary_bad_time",
       {"{}", WithHeader(BinaryHeaders(), "ce_time", "yesterday")},
       DeadLetterReason::kInvalidTime,
       "ce_time"},
      {"tenant_with_space",
       {StructuredWith("tenantid", "acme corp"), {}},
       DeadLetterReason::kInvalidAttribute,
       "tenantid: must match"},
      {"tenant_too_long",
       {FlatWith("tenant_id", std::string(129, 'a')), {}},
       DeadLetterReason::kInvalidAttribute,
       "tenant_id"},
      {"environment_leading_dash",
       {StructuredWith("environmentid", "-prod"), {}},
       DeadLetterReason::kInvalidAttribute,
       "environmentid"},
      {"type_too_long",
       {StructuredWith("type", std::string(256, 't')), {}},
       DeadLetterReason::kInvalidAttribute,
       "type: longer than 255"},
      {"type_with_newline",
       {StructuredWith("type", "customer\ncreated"), {}},
       DeadLetterReason::kInvalidAttribute,
       "control"},
      {"type_with_c1_control",
       {StructuredWith("type",
                       "customer\xc2\x85"
                       "created"),
        {}},
       DeadLetterReason::kInvalidAttribute,
       "control"},
      {"id_too_long",
       {StructuredWith("id", std::string(257, 'i')), {}},
       DeadLetterReason::kInvalidAttribute,
       "id: longer than 256"},
      {"extension_name_uppercase",
       {StructuredWith("traceParent", "x"), {}},
       DeadLetterReason::kInvalidAttribute,
       "'traceParent'"},
      {"binary_header_name_with_dash",
       {"{}", WithHeader(BinaryHeaders(), "ce_trace-id", "x")},
       DeadLetterReason::kInvalidAttribute,
       "ce_trace-id"},
      {"binary_json_content_type_bad_value",
       {"{\"invoice\":", BinaryHeaders()},
       DeadLetterReason::kInvalidData,
       "content-type is JSON"},
      {"bad_base64",
       {StructuredWith("data_base64", "not base64!"), {}},
       DeadLetterReason::kInvalidData,
       "data_base64"},
      {"base64_json_not_json",
       {[] {
          json e = Structured();
          e.erase("data");
          e["data_base64"] = "bm90IGpzb24=";  // "not json"
          return e.dump();
        }(),
        {}},
       DeadLetterReason::kInvalidData,
       "data_base64"},
      {"data_and_data_base64",
       {StructuredWith("data_base64", "e30="), {}},
       DeadLetterReason::kInvalidData,
       "only one"},
      {"conflicting_ce_id",
       {"{}",
        [] {
          auto h = BinaryHeaders();
          h.emplace_back("ce_id", "evt-2");
          return h;
        }()},
       DeadLetterReason::kDuplicateHeader,
       "ce_id"},
      // PostgreSQL cannot store NUL (jsonb: 22P05, text: 22021): every place it could hide.
      {"nul_in_data",
       {StructuredWith("data", {{"name", std::string("a\0b", 3)}}), {}},
       DeadLetterReason::kNulCharacter,
       "\\u0000"},
      {"nul_in_member_name",
       {StructuredWith("data", {{std::string("k\0", 2), 1}}), {}},
       DeadLetterReason::kNulCharacter,
       "value"},
      {"nul_in_subject",
       {StructuredWith("subject", std::string("s\0", 2)), {}},
       DeadLetterReason::kNulCharacter,
       "NUL"},
      {"nul_in_extension",
       {StructuredWith("traceparent", std::string("\0", 1)), {}},
       DeadLetterReason::kNulCharacter,
       "NUL"},
      {"nul_after_escaped_backslash",  // a backslash, then NUL: \\\u0000
       {StructuredWith("data", std::string("\\\0", 2)), {}},
       DeadLetterReason::kNulCharacter,
       "NUL"},
      {"nul_in_flat_data",
       {FlatWith("data", {{"x", std::string("\0", 1)}}), {}},
       DeadLetterReason::kNulCharacter,
       "NUL"},
      {"nul_in_data_base64_json",
       {[] {
          json e = Structured();
          e.erase("data");
          e["data_base64"] = "eyJhIjoiXHUwMDAwIn0=";  // {"a":"\u0000"}
          return e.dump();
        }(),
        {}},
       DeadLetterReason::kNulCharacter,
       "data_base64"},
      {"nul_in_ce_header",
       {"{}", WithHeader(BinaryHeaders(), "ce_subject", std::string("a\0b", 3))},
       DeadLetterReason::kNulCharacter,
       "ce_subject"},
      {"nul_in_binary_json_without_content_type",
       {R"({"a":"\u0000"})", WithHeader(BinaryHeaders(), "content-type", std::nullopt)},
       DeadLetterReason::kNulCharacter,
       "value"},
      {"nul_in_ce_extension_header",
       {"{}", WithHeader(BinaryHeaders(), "ce_traceparent", std::string("\0", 1))},
       DeadLetterReason::kNulCharacter,
       "ce_traceparent"},
      {"conflicting_content_type",
       {"{}",
        [] {
          auto h = BinaryHeaders();
          h.emplace_back("content-type", "text/plain");
          return h;
        }()},
       DeadLetterReason::kDuplicateHeader,
       "content-type"},
  };
}

class DeadLetterTest : public testing::TestWithParam<DeadLetterCase> {};

TEST_P(DeadLetterTest, Reason) {
  const DeadLetterCase& c = GetParam();
  const DecodeResult r = Decode(c.record, c.config);
  EXPECT_FALSE(r.envelope.has_value());
  EXPECT_EQ(ToString(r.reason), ToString(c.reason)) << r.detail;
  EXPECT_NE(r.detail.find(c.detail_contains), std::string::npos)
      << "detail: " << r.detail << "\nexpected to contain: " << c.detail_contains;
}

INSTANTIATE_TEST_SUITE_P(Envelope, DeadLetterTest, testing::ValuesIn(DeadLetterCases()),
                         [](const auto& info) { return info.param.name; });

TEST(NulCharacterTest, EscapedBackslashFollowedByU0000IsNotNul) {
  // The string backslash, "u0000" is written \\u0000 in JSON: no NUL, storable as it is.
  const std::string text = std::string("C:\\u0000");
  const DecodeResult r = DecodeValue(StructuredWith("data", {{"path", text}}));
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->data["path"], text);
  // Two escaped backslashes, then a real \u0000: NUL.
  const DecodeResult nul = DecodeValue(StructuredWith("data", {{"p", std::string("\\\\\0", 3)}}));
  EXPECT_EQ(ToString(nul.reason), "nul_character") << nul.detail;
}

TEST(NulCharacterTest, InvalidJsonWithNulStaysNotJson) {
  const DecodeResult r = DecodeValue("{\"a\": \"\\u0000\"");
  EXPECT_EQ(ToString(r.reason), "not_json") << r.detail;
}

TEST(NulCharacterTest, StagedDecoderDeadLettersTheSame) {
  StagedDecoder staged;
  DecodeResult r;
  const TestRecord record{StructuredWith("data", {{"x", std::string("\0", 1)}}), {}};
  const RawRecord raw = record.Raw();
  staged.DecodeAttributes(raw, DecoderConfig{}, r);
  EXPECT_EQ(ToString(r.reason), "nul_character") << r.detail;
}

TEST(DeadLetterReasonTest, EveryReasonIsCoveredExceptInternal) {
  std::set<DeadLetterReason> covered;
  for (const DeadLetterCase& c : DeadLetterCases()) covered.insert(c.reason);
  for (DeadLetterReason reason : AllDeadLetterReasons()) {
    if (reason == DeadLetterReason::kInternal) continue;  // only reachable through a bug
    // Set by the event pipeline when PostgreSQL refuses a decoded event's row, never here.
    if (reason == DeadLetterReason::kDatabaseRejected) continue;
    EXPECT_TRUE(covered.contains(reason)) << ToString(reason);
  }
  EXPECT_GE(covered.size(), 16u);
}

TEST(DeadLetterReasonTest, NamesAreStableSnakeCaseAndRoundTrip) {
  std::set<std::string_view> names;
  for (DeadLetterReason reason : AllDeadLetterReasons()) {
    const std::string_view name = ToString(reason);
    EXPECT_TRUE(names.insert(name).second) << name;
    for (char c : name) EXPECT_TRUE((c >= 'a' && c <= 'z') || c == '_') << name;
    EXPECT_EQ(DeadLetterReasonFromString(name), reason);
  }
  EXPECT_EQ(names.size(), 20u);
  EXPECT_EQ(ToString(DeadLetterReason::kNone), "none");
  EXPECT_EQ(ToString(DeadLetterReason::kUnsupportedSpecversion), "unsupported_specversion");
  EXPECT_EQ(DeadLetterReasonFromString("bogus"), std::nullopt);
}

TEST(DeadLetterReasonTest, DetailNeverContainsThePayload) {
  const std::string secret = "s3cr3t-Value";
  const std::vector<std::string> values = {
      R"({"specversion":"1.0","id":")" + secret + R"(","source":"s","type":"t","tenantid":")" +
          secret + R"( x","environmentid":"e"})",
      R"({"id":")" + secret + R"(","event_name":")" + secret + "\\n" +
          R"(","tenant_id":"t","environment_id":"e"})",
      R"({"id":")" + secret + R"(","event_name":"e","tenant_id":"t","environment_id":"e",)" +
          R"("timestamp":")" + secret + R"("})",
      R"({"id":")" + secret + R"(", "x": )" + secret + "}",
      R"({"id":")" + secret + R"(", "x": 1e999})",
      R"({"id":")" + secret + "\xff" + R"("})",
      "[\"" + secret + "\"]",
  };
  for (const std::string& value : values) {
    const DecodeResult r = DecodeValue(value);
    ASSERT_FALSE(r.ok()) << value;
    EXPECT_EQ(r.detail.find(secret), std::string::npos) << r.detail;
    EXPECT_EQ(r.detail.find("s3cr3t"), std::string::npos) << r.detail;
  }
}

// ---------------------------------------------------------------------------------------------
// DLQ headers

TEST(DeadLetterHeadersTest, DescribeTheFailure) {
  const TestRecord record{R"({"oops")", {}};
  const RawRecord raw = record.Raw();
  const DecodeResult r = DecodeRecord(raw, {});
  ASSERT_EQ(r.reason, DeadLetterReason::kNotJson);
  const auto headers = DeadLetterHeaders(raw, r, "workflowd-prod", At("2026-01-30T10:00:01.5Z"));
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"workflowd_dlq_reason", "not_json"},
      {"workflowd_dlq_detail", r.detail},
      {"workflowd_source_topic", "events"},
      {"workflowd_source_partition", "3"},
      {"workflowd_source_offset", "42"},
      {"workflowd_consumer_group", "workflowd-prod"},
      {"workflowd_failed_at", "2026-01-30T10:00:01.5Z"},
  };
  EXPECT_EQ(headers, expected);
}

// ---------------------------------------------------------------------------------------------
// The condition view

TEST(ViewOfTest, ConditionsSeeTheEnvelopeWithoutCopies) {
  auto headers = BinaryHeaders();
  headers.emplace_back("x-channel", "web");
  const DecodeResult r =
      Decode(TestRecord{R"({"customer":{"country":"DE","tier":"gold"}})", headers});
  ASSERT_TRUE(r.ok()) << r.detail;
  const Envelope& e = *r.envelope;

  std::vector<matching::Header> storage;
  const matching::EventView view = ViewOf(e, storage);
  EXPECT_EQ(view.id.data(), e.id.data());  // views, not copies
  EXPECT_EQ(view.data, &e.data);
  EXPECT_EQ(view.type, "invoice.paid");
  EXPECT_EQ(view.source, "billing/api");
  EXPECT_EQ(view.subject, "invoices/77");
  EXPECT_EQ(view.tenant, "acme");
  EXPECT_EQ(view.environment, "staging");
  EXPECT_EQ(view.time, "2026-01-30T10:00:00Z");
  ASSERT_EQ(view.headers.size(), 3u);
  EXPECT_EQ(view.headers[2].name, "x-channel");
  EXPECT_EQ(view.headers[2].value.data(), e.headers[2].second.data());

  const auto condition = matching::ParseConditionList(json::parse(R"([
    {"field": "data.customer.country", "op": "eq", "value": "DE"},
    {"field": "headers.x-channel", "op": "eq", "value": "web"},
    {"field": "type", "op": "starts_with", "value": "invoice."},
    {"field": "time", "op": "gte", "value": "2026-01-30T11:00:00+01:00"}
  ])"),
                                                      "trigger.conditions");
  EXPECT_TRUE(matching::Evaluate(*condition, view));
  const auto other = matching::ParseCondition(
      json::parse(R"({"field": "data.customer.tier", "op": "eq", "value": "silver"})"), "c");
  EXPECT_FALSE(matching::Evaluate(*other, view));
}

TEST(ViewOfTest, NoDataAndReusedStorage) {
  const DecodeResult r = Decode(TestRecord{std::nullopt, BinaryHeaders()});
  ASSERT_TRUE(r.ok()) << r.detail;
  std::vector<matching::Header> storage = {{"stale", "value"}};
  const matching::EventView view = ViewOf(*r.envelope, storage);
  EXPECT_EQ(view.data, nullptr);
  EXPECT_EQ(view.headers.size(), 2u);  // storage was reset, not appended to
  const auto exists =
      matching::ParseCondition(json::parse(R"({"field": "data", "op": "not_exists"})"), "c");
  EXPECT_TRUE(matching::Evaluate(*exists, view));
}

TEST(ViewOfTest, EpochMillisecondsTimeIsComparable) {
  json event = Flat();
  event["timestamp"] = 1769763600000;
  const DecodeResult r = DecodeValue(event.dump());
  ASSERT_TRUE(r.ok()) << r.detail;
  std::vector<matching::Header> storage;
  const auto condition = matching::ParseCondition(
      json::parse(R"({"field": "time", "op": "eq", "value": "2026-01-30T10:00:00+01:00"})"), "c");
  EXPECT_TRUE(matching::Evaluate(*condition, ViewOf(*r.envelope, storage)));
}

// ---------------------------------------------------------------------------------------------
// Configuration

TEST(DecoderConfigTest, Validation) {
  EXPECT_TRUE(ValidateDecoderConfig({}).empty());
  DecoderConfig bad;
  bad.flat.id = "";
  bad.flat.tenant = "meta..tenant";
  bad.max_record_bytes = 0;
  bad.max_json_depth = 1;
  bad.tenant_extension = "TenantId";
  bad.environment_extension = "id";
  const std::vector<std::string> problems = ValidateDecoderConfig(bad);
  ASSERT_EQ(problems.size(), 6u) << testing::PrintToString(problems);
  EXPECT_EQ(problems[0], "flat.id: must not be empty");
  EXPECT_NE(problems[1].find("flat.tenant"), std::string::npos);
  EXPECT_NE(problems[4].find("tenant_extension"), std::string::npos);
  EXPECT_NE(problems[5].find("environment_extension"), std::string::npos);
}

TEST(DecoderConfigTest, CustomExtensionNames) {
  DecoderConfig config;
  config.tenant_extension = "org";
  config.environment_extension = "stage";
  json event = Structured();
  event.erase("tenantid");
  event.erase("environmentid");
  event["org"] = "globex";
  event["stage"] = "dev";
  const DecodeResult r = DecodeValue(event.dump(), config);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->tenant, "globex");
  EXPECT_EQ(r.envelope->environment, "dev");
  EXPECT_FALSE(r.envelope->extensions.contains("org"));

  auto headers = WithHeader(BinaryHeaders(), "ce_tenantid", std::nullopt);
  headers.emplace_back("ce_org", "globex");
  headers.emplace_back("ce_stage", "dev");
  const DecodeResult binary = Decode(TestRecord{"{}", headers}, config);
  ASSERT_TRUE(binary.ok()) << binary.detail;
  EXPECT_EQ(binary.envelope->tenant, "globex");
  // With custom names the default ones are ordinary extensions.
  EXPECT_EQ(binary.envelope->extensions.at("environmentid"), "staging");
}

// ---------------------------------------------------------------------------------------------
// Robustness: random and mutated inputs never throw or crash, and every envelope is usable.

void CheckInvariants(const RawRecord& raw, const DecoderConfig& config) {
  const DecodeResult r = DecodeRecord(raw, config);
  ASSERT_EQ(r.ok(), r.reason == DeadLetterReason::kNone);
  if (!r.ok()) {
    ASSERT_FALSE(r.detail.empty()) << ToString(r.reason);
    const auto headers = DeadLetterHeaders(raw, r, "g", TimePoint{});
    ASSERT_EQ(headers.size(), 7u);
    return;
  }
  const Envelope& e = *r.envelope;
  ASSERT_FALSE(e.id.empty());
  ASSERT_FALSE(e.type.empty());
  ASSERT_FALSE(e.tenant.empty());
  ASSERT_FALSE(e.environment.empty());
  // Everything must serialize as JSON (dump throws on invalid UTF-8).
  json all = {{"id", e.id},           {"type", e.type},
              {"source", e.source},   {"subject", e.subject},
              {"tenant", e.tenant},   {"environment", e.environment},
              {"time", e.time_text},  {"data", e.data},
              {"headers", e.headers}, {"ct", e.data_content_type}};
  for (const auto& [name, value] : e.extensions) all["ext"][name] = value;
  ASSERT_NO_THROW((void)all.dump());
  std::vector<matching::Header> storage;
  (void)ViewOf(e, storage);
}

TEST(RobustnessTest, RandomAndMutatedRecords) {
  // Deterministic unless --gtest_random_seed=N asks for another sequence.
  const int32_t flag_seed = GTEST_FLAG_GET(random_seed);
  const uint32_t seed = flag_seed != 0 ? static_cast<uint32_t>(flag_seed) : 20260130u;
  SCOPED_TRACE("seed " + std::to_string(seed) +
               " (rerun with --gtest_random_seed=" + std::to_string(seed) + ")");
  std::mt19937 rng(seed);
  const auto uniform = [&](size_t n) {
    return std::uniform_int_distribution<size_t>(0, n - 1)(rng);
  };

  std::vector<std::string> corpus = {
      Structured().dump(),
      Structured().dump(2),
      Flat().dump(),
      ReadTestdata("debezium_like.json"),
      R"({"invoice":{"id":77,"total":"19.99"},"lines":[1,2.5,-3e2,true,null,"ü"]})",
      "\xEF\xBB\xBF" + Flat().dump(),
      StructuredWith("data_base64", "eyJhIjoxfQ=="),
      std::string("\x00\x00\x00\x00\x2a\x0c\x61\x63\x6d\x65", 10),
  };
  DecoderConfig auto_config;
  DecoderConfig flat_config;
  flat_config.mode = Mode::kFlat;
  flat_config.flat.data = "";
  DecoderConfig ce_config;
  ce_config.mode = Mode::kCloudEvents;
  ce_config.max_json_depth = 8;
  const DecoderConfig* configs[] = {&auto_config, &flat_config, &ce_config};
  const std::string interesting = "{}[]\",:\\0123456789.eE+-tfnu \xEF\xBB\xBF\xc3\xff\x80";

  constexpr int kIterations = 20000;
  int ok_count = 0;
  for (int i = 0; i < kIterations; ++i) {
    std::string value;
    if (i % 10 == 0) {  // pure random bytes
      value.resize(uniform(64));
      for (char& c : value) c = static_cast<char>(uniform(256));
    } else {
      value = corpus[uniform(corpus.size())];
      const size_t mutations = 1 + uniform(4);
      for (size_t m = 0; m < mutations && !value.empty(); ++m) {
        switch (uniform(5)) {
          case 0:  // truncate
            value.resize(uniform(value.size()));
            break;
          case 1: {  // flip a bit
            char& c = value[uniform(value.size())];
            c = static_cast<char>(static_cast<unsigned char>(c) ^ (1u << uniform(8)));
            break;
          }
          case 2:  // insert a byte
            value.insert(value.begin() + static_cast<std::ptrdiff_t>(uniform(value.size() + 1)),
                         interesting[uniform(interesting.size())]);
            break;
          case 3:  // delete a byte
            value.erase(uniform(value.size()), 1);
            break;
          case 4:  // overwrite with a random byte
            value[uniform(value.size())] = static_cast<char>(uniform(256));
            break;
        }
      }
    }
    TestRecord record{value, {}};
    if (i % 3 == 0) {  // binary mode with mutated headers
      record.headers = BinaryHeaders();
      auto& header = record.headers[uniform(record.headers.size())];
      if (uniform(4) == 0) {
        header.second = std::nullopt;
      } else if (header.second && !header.second->empty()) {
        (*header.second)[uniform(header.second->size())] = static_cast<char>(uniform(256));
      }
      if (uniform(5) == 0) record.headers.emplace_back(record.headers[uniform(4)]);
      if (uniform(5) == 0) record.value = std::nullopt;
    }
    const RawRecord raw = record.Raw();
    for (const DecoderConfig* config : configs) {
      CheckInvariants(raw, *config);
      if (HasFatalFailure()) {
        ADD_FAILURE() << "iteration " << i << ", value bytes: " << testing::PrintToString(value);
        return;
      }
    }
    ok_count += DecodeRecord(raw, auto_config).ok() ? 1 : 0;
  }
  // The mutations must leave some records valid, or the test only exercises the first checks.
  EXPECT_GT(ok_count, 500);
}

// ---------------------------------------------------------------------------------------------
// Data built only when wanted (DecodeRecord with wants_data)

const std::function<bool(const Envelope&)> kNeverData = [](const Envelope&) { return false; };
const std::function<bool(const Envelope&)> kAlwaysData = [](const Envelope&) { return true; };

std::string StructuredWith(const std::string& data_member) {
  return R"({"specversion":"1.0","id":"1","source":"s","type":"t","tenantid":"a",)"
         R"("environmentid":"b",)" +
         data_member + "}";
}

TEST(LazyDataTest, WantsDataSeesTheDecodedAttributesAndDataStaysNullWhenUnwanted) {
  int calls = 0;
  const std::function<bool(const Envelope&)> wants = [&](const Envelope& e) {
    ++calls;
    EXPECT_EQ(e.id, "9f3c1a52-6f1e-4d7b-9d0e-2b8f5c1e7a10");
    EXPECT_EQ(e.type, "customer.created");
    EXPECT_EQ(e.tenant, "acme");
    EXPECT_EQ(e.environment, "prod");
    EXPECT_EQ(e.data_content_type, "application/json");
    EXPECT_TRUE(e.data.is_null());
    return false;
  };
  const TestRecord record{Structured().dump(), {}};
  const DecodeResult lazy = DecodeRecord(record.Raw(), {}, wants);
  ASSERT_TRUE(lazy.ok()) << lazy.detail;
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(lazy.envelope->data.is_null());
  EXPECT_FALSE(lazy.envelope->data_is_base64);
  // Everything else is what the full decode gives.
  const DecodeResult full = Decode(record);
  ASSERT_TRUE(full.ok());
  EXPECT_FALSE(full.envelope->data.is_null());
  EXPECT_EQ(lazy.envelope->time_text, full.envelope->time_text);
  EXPECT_EQ(lazy.envelope->extensions, full.envelope->extensions);
  EXPECT_EQ(lazy.envelope->subject, full.envelope->subject);
}

TEST(LazyDataTest, WantedDataIsTheFullDecodesDataInEveryFormat) {
  DecoderConfig flat_config;
  flat_config.mode = Mode::kFlat;
  const std::vector<std::pair<TestRecord, DecoderConfig>> cases = {
      {TestRecord{Structured().dump(), {}}, {}},
      {TestRecord{R"({"invoice":{"total":12.5,"lines":[1,2,3]}})", BinaryHeaders()}, {}},
      {TestRecord{"plain text", WithHeader(BinaryHeaders(), "content-type", "text/plain")}, {}},
      {TestRecord{std::string("\xff\xfe", 2),
                  WithHeader(BinaryHeaders(), "content-type", "application/octet-stream")},
       {}},
      {TestRecord{StructuredWith(
                      R"("datacontenttype":"application/json","data_base64":"eyJhIjpbMSwyXX0=")"),
                  {}},
       {}},
      {TestRecord{Flat().dump(), {}}, flat_config},
  };
  for (const auto& [record, config] : cases) {
    const DecodeResult full = DecodeRecord(record.Raw(), config);
    const DecodeResult wanted = DecodeRecord(record.Raw(), config, kAlwaysData);
    const DecodeResult unwanted = DecodeRecord(record.Raw(), config, kNeverData);
    ASSERT_TRUE(full.ok() && wanted.ok() && unwanted.ok()) << full.detail;
    EXPECT_FALSE(full.envelope->data.is_null()) << *record.value;
    EXPECT_EQ(wanted.envelope->data, full.envelope->data) << *record.value;
    EXPECT_EQ(wanted.envelope->data.dump(), full.envelope->data.dump()) << *record.value;
    EXPECT_EQ(wanted.envelope->data_is_base64, full.envelope->data_is_base64);
    EXPECT_TRUE(unwanted.envelope->data.is_null()) << *record.value;
    EXPECT_EQ(unwanted.envelope->id, full.envelope->id);
  }
}

TEST(LazyDataTest, BadRecordsAreDeadLetteredTheSameWhetherOrNotDataIsWanted) {
  DecoderConfig shallow;
  shallow.max_json_depth = 3;
  const auto json_headers = BinaryHeaders();
  const std::vector<std::tuple<TestRecord, DecoderConfig, DeadLetterReason>> cases = {
      {TestRecord{StructuredWith(R"("data":{"a":})"), {}}, {}, DeadLetterReason::kNotJson},
      {TestRecord{StructuredWith("\"data\":{\"a\":\"\xC3\x28\"}"), {}},
       {},
       DeadLetterReason::kNotJson},
      {TestRecord{StructuredWith(R"("data":"\ud800")"), {}}, {}, DeadLetterReason::kNotJson},
      {TestRecord{StructuredWith(R"("data":1e400)"), {}}, {}, DeadLetterReason::kNotJson},
      {TestRecord{StructuredWith(R"("data":{"a":[{"b":1}]})"), {}}, shallow,
       DeadLetterReason::kTooDeep},
      {TestRecord{StructuredWith(R"("data":1,"data_base64":"AA==")"), {}},
       {},
       DeadLetterReason::kInvalidData},
      {TestRecord{StructuredWith(R"("data_base64":"not base64!")"), {}},
       {},
       DeadLetterReason::kInvalidData},
      {TestRecord{StructuredWith(R"("datacontenttype":"application/json","data_base64":"e30x")"),
                  {}},
       {},
       DeadLetterReason::kInvalidData},
      {TestRecord{R"({"a":)", json_headers}, {}, DeadLetterReason::kInvalidData},
      {TestRecord{R"({"a":[[[1]]]})", json_headers}, shallow, DeadLetterReason::kTooDeep},
  };
  for (const auto& [record, config, reason] : cases) {
    int calls = 0;
    const std::function<bool(const Envelope&)> never = [&](const Envelope&) {
      ++calls;
      return false;
    };
    const DecodeResult full = DecodeRecord(record.Raw(), config);
    const DecodeResult lazy = DecodeRecord(record.Raw(), config, never);
    EXPECT_EQ(full.reason, reason) << *record.value << ": " << full.detail;
    EXPECT_EQ(lazy.reason, reason) << *record.value << ": " << lazy.detail;
    EXPECT_EQ(lazy.detail, full.detail);
    EXPECT_FALSE(lazy.ok());
    EXPECT_EQ(calls, 0) << "asked about the data of a record that is dead-lettered";
  }
}

// The decoder behaves as with nlohmann's parser, which it used to build the whole document with.
TEST(LazyDataTest, JsonSemanticsAreNlohmanns) {
  // Of a repeated member name the last value counts: attributes, extensions and data.
  DecodeResult r =
      DecodeValue(R"({"specversion":"1.0","id":"first","id":"last","source":"s","type":"t",)"
                  R"("tenantid":"a","environmentid":"b","ext":"x","ext":{"bad":1},"ext":7,)"
                  R"("data":{"n":1,"n":2},"data":{"k":[1,2],"k":"v"}})");
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->id, "last");
  EXPECT_EQ(r.envelope->extensions.at("ext"), 7);
  EXPECT_EQ(r.envelope->data, json::parse(R"({"k":"v"})"));
  // A repeated attribute whose last value is null is absent.
  r = DecodeValue(
      R"({"specversion":"1.0","id":"1","source":"s","type":"t","tenantid":"a","tenantid":null,)"
      R"("environmentid":"b"})");
  EXPECT_EQ(r.reason, DeadLetterReason::kMissingTenant);
  // Integers: non-negative ones unsigned, beyond 64 bits floating point; fractions double.
  const std::string numbers =
      R"({"u":18446744073709551615,"i":-9223372036854775808,"z":0,"neg":-1,)"
      R"("big":18446744073709551616,"small":-9223372036854775809,"f":0.5,"e":1E2})";
  r = DecodeValue(StructuredWith(R"("data":)" + numbers));
  ASSERT_TRUE(r.ok()) << r.detail;
  const json& data = r.envelope->data;
  EXPECT_EQ(data, json::parse(numbers));
  EXPECT_TRUE(data["u"].is_number_unsigned());
  EXPECT_EQ(data["u"].get<uint64_t>(), 18446744073709551615ull);
  EXPECT_TRUE(data["z"].is_number_unsigned());
  EXPECT_TRUE(data["neg"].is_number_integer() && !data["neg"].is_number_unsigned());
  EXPECT_EQ(data["i"].get<int64_t>(), std::numeric_limits<int64_t>::min());
  EXPECT_TRUE(data["big"].is_number_float());
  EXPECT_DOUBLE_EQ(data["big"].get<double>(), 18446744073709551616.0);
  EXPECT_TRUE(data["small"].is_number_float());
  EXPECT_TRUE(data["f"].is_number_float());
  EXPECT_TRUE(data["e"].is_number_float());
  // A flat id beyond 64 bits is a floating-point number, so wrong_type, as before.
  DecoderConfig flat;
  flat.mode = Mode::kFlat;
  r = DecodeValue(
      R"({"id":18446744073709551616,"event_name":"t","tenant_id":"a","environment_id":"b"})", flat);
  EXPECT_EQ(r.reason, DeadLetterReason::kWrongType) << r.detail;
  // Astral characters survive (a lone surrogate is not_json, above); an escaped NUL is a dead
  // letter of its own (PostgreSQL cannot store it).
  r = DecodeValue(StructuredWith(R"("data":"ab\ud83d\ude00")"));
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.envelope->data.get<std::string>(), std::string("ab\xF0\x9F\x98\x80", 6));
  r = DecodeValue(StructuredWith(R"("data":"a\u0000b\ud83d\ude00")"));
  EXPECT_EQ(r.reason, DeadLetterReason::kNulCharacter) << r.detail;
}

TEST(LazyDataTest, TheThreadsParserFollowsEachRecordsDepthLimitAndSize) {
  DecoderConfig shallow;
  shallow.max_json_depth = 3;
  const std::string nested = StructuredWith(R"("data":{"a":[1]})");    // depth 3
  const std::string deeper = StructuredWith(R"("data":{"a":[[1]]})");  // depth 4
  const std::string large = StructuredWith(R"("data":")" + std::string(200000, 'x') + "\"");
  for (int round = 0; round < 2; ++round) {
    const DecodeResult within = DecodeValue(nested, shallow);
    EXPECT_TRUE(within.ok()) << ToString(within.reason) << ": " << within.detail;
    EXPECT_EQ(DecodeValue(deeper, shallow).reason, DeadLetterReason::kTooDeep);
    EXPECT_TRUE(DecodeValue(deeper).ok());
    const DecodeResult big = DecodeValue(large);
    ASSERT_TRUE(big.ok()) << big.detail;
    EXPECT_EQ(big.envelope->data.get_ref<const std::string&>().size(), 200000u);
    EXPECT_EQ(DecodeValue(deeper, shallow).reason, DeadLetterReason::kTooDeep);
    EXPECT_TRUE(DecodeValue(nested).ok());
  }
}

TEST(LazyDataTest, DecodingIntoAReusedResultLeavesNothingOfThePreviousRecord) {
  const TestRecord full{Structured().dump(), {{"x-request-id", "r-1"}}};
  const TestRecord minimal{
      R"({"specversion":"1.0","id":"2","source":"s","type":"t","tenantid":"a","environmentid":"b"})",
      {}};
  const TestRecord binary{"plain", WithHeader(BinaryHeaders(), "content-type", "text/plain")};
  const TestRecord bad{"{", {}};
  DecodeResult result;
  for (int round = 0; round < 2; ++round) {
    DecodeRecord(full.Raw(), {}, kAlwaysData, result);
    ASSERT_TRUE(result.ok()) << result.detail;
    EXPECT_EQ(result.envelope->extensions, Decode(full).envelope->extensions);
    EXPECT_EQ(result.envelope->headers.size(), 1u);

    DecodeRecord(minimal.Raw(), {}, kAlwaysData, result);
    ASSERT_TRUE(result.ok()) << result.detail;
    const Envelope& e = *result.envelope;
    EXPECT_EQ(e.id, "2");
    EXPECT_EQ(e.source, "s");
    EXPECT_TRUE(e.subject.empty());
    EXPECT_FALSE(e.time.has_value());
    EXPECT_TRUE(e.time_text.empty());
    EXPECT_TRUE(e.data.is_null());
    EXPECT_TRUE(e.data_content_type.empty());
    EXPECT_TRUE(e.extensions.empty());
    EXPECT_TRUE(e.headers.empty());
    EXPECT_EQ(e.format, EnvelopeFormat::kCloudEventsStructured);

    DecodeRecord(binary.Raw(), {}, kAlwaysData, result);
    ASSERT_TRUE(result.ok()) << result.detail;
    EXPECT_EQ(result.envelope->format, EnvelopeFormat::kCloudEventsBinary);
    EXPECT_EQ(result.envelope->data, "plain");

    DecodeRecord(bad.Raw(), {}, kAlwaysData, result);
    EXPECT_FALSE(result.ok());
    EXPECT_FALSE(result.envelope.has_value());
    EXPECT_EQ(result.reason, DeadLetterReason::kNotJson);
    EXPECT_EQ(result.detail, Decode(bad).detail);

    DecodeRecord(minimal.Raw(), {}, kNeverData, result);
    ASSERT_TRUE(result.ok());
    EXPECT_EQ(result.reason, DeadLetterReason::kNone);
    EXPECT_TRUE(result.detail.empty());
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding in two steps (StagedDecoder)

// Two decoders in turn, as the planner uses them: each keeps its record's document while the
// other decodes, builds a part of the data and then all of it from that one parse, and agrees with
// DecodeRecord on everything (the data too), whatever the format.
TEST(StagedDecoder, TwoDecodersInTurnGiveWhatDecodeRecordGives) {
  json base64_event = Structured();
  base64_event.erase("data");
  base64_event["datacontenttype"] = "application/json";
  base64_event["data_base64"] = "eyJjdXN0b21lciI6eyJjb3VudHJ5IjoiVVMiLCJ0aWVyIjoiZ29sZCJ9fQ==";
  json text_event = Structured();
  text_event.erase("data");
  text_event["datacontenttype"] = "text/plain";
  text_event["data_base64"] = "//79";  // not UTF-8: stays base64
  json no_data = Structured();
  no_data.erase("data");
  const std::vector<TestRecord> records = {
      {Structured().dump(), {}},
      {R"({"invoice":{"id":77,"lines":[1,2]},"total":9.5})", BinaryHeaders()},
      {Flat().dump(), {}},
      {"not json", {}},
      {base64_event.dump(), {}},
      {"plain text body", WithHeader(BinaryHeaders(), "content-type", "text/plain")},
      {text_event.dump(), {}},
      {no_data.dump(), {}},
      {std::nullopt, {}},
      {Structured().dump(), {}},
  };
  std::vector<RawRecord> raws;
  for (const TestRecord& r : records) raws.push_back(r.Raw());
  StagedDecoder decoders[2];
  DecodeResult results[2];
  const std::vector<std::string> path = {"customer"};
  decoders[0].DecodeAttributes(raws[0], {}, results[0]);
  for (size_t i = 0; i < raws.size(); ++i) {
    SCOPED_TRACE("record " + std::to_string(i));
    if (i + 1 < raws.size())
      decoders[(i + 1) % 2].DecodeAttributes(raws[i + 1], {}, results[(i + 1) % 2]);
    DecodeResult& staged = results[i % 2];
    const DecodeResult alone = DecodeRecord(raws[i], {});
    ASSERT_EQ(staged.reason, alone.reason);
    EXPECT_EQ(staged.detail, alone.detail);
    if (!alone.ok()) continue;
    EXPECT_EQ(staged.envelope->id, alone.envelope->id);
    EXPECT_EQ(staged.envelope->extensions, alone.envelope->extensions);
    EXPECT_EQ(staged.envelope->headers, alone.envelope->headers);
    EXPECT_TRUE(staged.envelope->data.is_null());  // not built yet

    decoders[i % 2].BuildData(DataNeed{DataNeed::Kind::kMembers, std::span(&path, 1)}, staged);
    ASSERT_TRUE(staged.ok());
    if (alone.envelope->data.is_object()) {
      EXPECT_TRUE(staged.envelope->data_partial);
      json expected = json::object();
      if (alone.envelope->data.contains("customer")) {
        expected["customer"] = alone.envelope->data["customer"];
      }
      EXPECT_EQ(staged.envelope->data, expected);
    } else {
      EXPECT_FALSE(staged.envelope->data_partial);
      EXPECT_EQ(staged.envelope->data, alone.envelope->data);
    }

    decoders[i % 2].BuildData(DataNeed{}, staged);
    ASSERT_TRUE(staged.ok());
    EXPECT_FALSE(staged.envelope->data_partial);
    EXPECT_EQ(staged.envelope->data, alone.envelope->data);
    EXPECT_EQ(staged.envelope->data.dump(), alone.envelope->data.dump());
    EXPECT_EQ(staged.envelope->data_is_base64, alone.envelope->data_is_base64);

    decoders[i % 2].BuildData(DataNeed{DataNeed::Kind::kNone, {}}, staged);
    EXPECT_TRUE(staged.envelope->data.is_null());
  }
  // The records reached every kind of data: an object, JSON from base64, text, base64, none.
  EXPECT_EQ(DecodeRecord(raws[4], {}).envelope->data["customer"]["tier"], "gold");
  EXPECT_EQ(DecodeRecord(raws[5], {}).envelope->data, "plain text body");
  EXPECT_TRUE(DecodeRecord(raws[6], {}).envelope->data_is_base64);
  EXPECT_TRUE(DecodeRecord(raws[7], {}).envelope->data.is_null());
}

}  // namespace
}  // namespace workflowd::decoding
