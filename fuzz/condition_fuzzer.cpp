// Fuzz target: the condition language (matching::ParseCondition / ParseConditionList, Evaluate,
// Explain), which compiles tenant-supplied JSON and then runs against every event.
//
// Input framing:
//
//   <condition JSON> [ 0xFF <event data JSON> [ 0xFF <header> ]... ]
//
// The first part is a condition object (compiled with ParseCondition, and as the one element of a
// list with ParseConditionList) or a list of them (ParseConditionList). A part that is not JSON
// ends the run (nlohmann parses without exceptions). The optional second part is the data of a
// "derived" event; without it the derived event's data is the condition JSON itself, so that the
// paths and values the condition names also occur in the event. The derived event's attributes
// are the string members id, type, source, subject, tenant, environment and time of that data
// (when it is an object), and its headers are the "name=value" parts after the data (split at the
// first '='; parts that are not valid UTF-8 are skipped, as the decoder never produces them).
//
// Checked: compiling never throws anything but ValidationError, and the throwing and the
// FieldErrors forms agree (same problems; nullptr exactly when there are problems); problems and
// explanations are valid UTF-8 (they reach the REST API and the logs as JSON); a compiled
// condition keeps its source and path and has at most kMaxConditionLeaves leaves; against a few
// fixed events and the derived one, Evaluate is deterministic, Explain gives the same result and
// a FirstFailure exactly when it did not match, {"not": c} gives the opposite result and
// {"all": [c]}, {"any": [c]} and [c] the same one.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "workflowd/matching/condition.hpp"
#include "workflowd/matching/field_errors.hpp"

namespace workflowd::fuzz {
namespace {

using matching::ConditionPtr;
using matching::EventView;
using matching::FieldErrors;
using matching::Header;
using nlohmann::json;

constexpr char kSeparator = '\xFF';

// An event and the storage its views point into.
struct FixedEvent {
  std::string id, type, source, subject, tenant, environment, time;
  json data;
  bool has_data = true;
  std::vector<std::pair<std::string, std::string>> header_storage;
  std::vector<Header> headers;

  EventView View() {
    headers.clear();
    for (const auto& [name, value] : header_storage) headers.push_back({name, value});
    return EventView{
        id, type, source, subject, tenant, environment, time, has_data ? &data : nullptr, headers};
  }
};

std::vector<FixedEvent>& FixedEvents() {
  static std::vector<FixedEvent> events = [] {
    std::vector<FixedEvent> out(3);
    FixedEvent& customer = out[0];
    customer.id = "9f3c1a52-6f1e-4d7b-9d0e-2b8f5c1e7a10";
    customer.type = "customer.created";
    customer.source = "https://billing.example.com/api";
    customer.subject = "customers/4711";
    customer.tenant = "acme";
    customer.environment = "prod";
    customer.time = "2026-01-30T10:00:00.250+01:00";
    customer.data = json::parse(R"({
      "customer": {"id": 4711, "name": "Zoë Müller", "country": "US", "tier": "gold",
                   "email": "zoe@example.com", "lifetime_value": 1200.5, "vip": true,
                   "tags": ["vip", "新規"], "since": "2024-01-01T00:00:00Z", "note": null},
      "items": [{"sku": "a-1", "qty": 2, "price": 9.99}, {"sku": "b-2", "qty": -1}],
      "flags": [true, null, 1, "1", 1.0, -0.0, 18446744073709551615, -9223372036854775808],
      "0": "zero", "": "empty key", "a.b": "dotted key"
    })");
    customer.header_storage = {{"content-type", "application/json"},
                               {"x-test", "1"},
                               {"x-dup", "first"},
                               {"x-dup", "last"},
                               {"x-empty", ""}};

    FixedEvent& bare = out[1];
    bare.id = "evt-1";
    bare.type = "invoice.paid";
    bare.tenant = "globex";
    bare.environment = "staging";
    bare.has_data = false;

    FixedEvent& scalar = out[2];
    scalar.id = "42";
    scalar.type = "x";
    scalar.source = "s";
    scalar.subject = "2026-01-30T10:00:00Z";
    scalar.tenant = "t";
    scalar.environment = "e";
    scalar.time = "1970-01-01T00:00:00Z";
    scalar.data = "a string payload";
    scalar.header_storage = {{"X-Test", "upper"}};
    return out;
  }();
  return events;
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

bool ValidUtf8(std::string_view text) { return Serializable(json(std::string(text))); }

FixedEvent DerivedEvent(const json& data, const std::vector<std::string_view>& header_parts) {
  FixedEvent event;
  event.data = data;
  event.has_data = true;
  if (data.is_object()) {
    const auto attribute = [&](const char* name, std::string& out) {
      const auto it = data.find(name);
      if (it != data.end() && it->is_string()) out = it->get<std::string>();
    };
    attribute("id", event.id);
    attribute("type", event.type);
    attribute("source", event.source);
    attribute("subject", event.subject);
    attribute("tenant", event.tenant);
    attribute("environment", event.environment);
    attribute("time", event.time);
  }
  for (const std::string_view part : header_parts) {
    if (!ValidUtf8(part)) continue;
    const size_t eq = part.find('=');
    event.header_storage.emplace_back(
        std::string(part.substr(0, eq)),
        eq == std::string_view::npos ? std::string() : std::string(part.substr(eq + 1)));
  }
  return event;
}

// Compiles with both forms and checks that they agree; nullptr when the input has problems.
ConditionPtr Compile(const json& source, bool as_list, const std::string& path) {
  FieldErrors errors;
  ConditionPtr compiled = as_list ? matching::ParseConditionList(source, path, errors)
                                  : matching::ParseCondition(source, path, errors);
  FUZZ_CHECK((compiled == nullptr) == !errors.empty(),
             "nullptr must mean problems; problems: " + errors.ToString());
  for (const matching::FieldError& error : errors) {
    FUZZ_CHECK(!error.message.empty(), "a problem without a message at " + error.field);
  }
  std::string dump_error;
  FUZZ_CHECK(Serializable(errors.ToJson(), &dump_error),
             "problems are not valid UTF-8: " + dump_error);

  bool threw = false;
  try {
    (void)(as_list ? matching::ParseConditionList(source, path)
                   : matching::ParseCondition(source, path));
  } catch (const matching::ValidationError& e) {
    threw = true;
    FUZZ_CHECK(e.errors() == errors, "throwing form reports other problems: " +
                                         e.errors().ToString() + " vs " + errors.ToString());
  }
  FUZZ_CHECK(threw == !errors.empty(), "throwing form disagrees: " + errors.ToString());

  if (compiled != nullptr) {
    FUZZ_CHECK(compiled->source() == source, "source() changed");
    FUZZ_CHECK(compiled->path() == path, compiled->path());
    FUZZ_CHECK(compiled->leaf_count() <= matching::kMaxConditionLeaves,
               std::to_string(compiled->leaf_count()));
  }
  return compiled;
}

bool EvaluateAndExplain(const matching::Condition& condition, const EventView& event) {
  const bool matched = matching::Evaluate(condition, event);
  FUZZ_CHECK(matching::Evaluate(condition, event) == matched, "Evaluate is not deterministic");
  const matching::Explanation explanation = matching::Explain(condition, event);
  const json explained = explanation.ToJson();
  std::string dump_error;
  FUZZ_CHECK(Serializable(explained, &dump_error), "explanation: " + dump_error);
  FUZZ_CHECK(explanation.matched == matched, "Explain says " + std::to_string(explanation.matched) +
                                                 ", Evaluate " + std::to_string(matched) + ": " +
                                                 explained.dump());
  FUZZ_CHECK((explanation.FirstFailure() == nullptr) == matched,
             "FirstFailure must be set exactly when not matched: " + explained.dump());
  return matched;
}

// One libFuzzer input.
int FuzzOne(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts =
      Split(std::string_view(reinterpret_cast<const char*>(data), size));
  const json source = json::parse(parts[0], nullptr, /*allow_exceptions=*/false);
  if (source.is_discarded()) return 0;
  json event_data = source;
  if (parts.size() > 1) {
    event_data = json::parse(parts[1], nullptr, /*allow_exceptions=*/false);
    if (event_data.is_discarded()) return 0;
  }
  std::vector<std::string_view> header_parts;
  for (size_t i = 2; i < parts.size(); ++i) header_parts.push_back(parts[i]);
  FixedEvent derived = DerivedEvent(event_data, header_parts);

  std::vector<EventView> views;
  for (FixedEvent& event : FixedEvents()) views.push_back(event.View());
  views.push_back(derived.View());

  const bool is_list = source.is_array();
  const ConditionPtr condition = Compile(source, is_list, "fuzz");
  if (condition == nullptr) return 0;

  // Equivalent forms; they may fail to compile only by exceeding the depth limit.
  std::vector<std::pair<ConditionPtr, bool>> equivalents;  // (condition, negated)
  const json inner = is_list ? json{{"all", source}} : source;
  for (const auto& [wrapped, negated] :
       std::vector<std::pair<json, bool>>{{json{{"not", inner}}, true},
                                          {json{{"all", json::array({inner})}}, false},
                                          {json{{"any", json::array({inner})}}, false}}) {
    FieldErrors errors;
    if (ConditionPtr c = matching::ParseCondition(wrapped, "wrapped", errors)) {
      equivalents.emplace_back(std::move(c), negated);
    }
  }
  if (!is_list) {
    // The list's implicit "all" is one more level, so only the depth limit may refuse it.
    if (ConditionPtr c = Compile(json::array({source}), /*as_list=*/true, "list")) {
      equivalents.emplace_back(std::move(c), false);
    }
  }

  for (const EventView& view : views) {
    const bool matched = EvaluateAndExplain(*condition, view);
    // The condition reads only its data paths: on an object payload cut down to them (what the
    // event decoder builds for matching), the same result.
    const auto* paths = condition->data_paths();
    if (paths != nullptr && view.data != nullptr && view.data->is_object()) {
      const json pruned = Pruned(*view.data, *paths);
      EventView cut = view;
      cut.data = &pruned;
      FUZZ_CHECK(matching::Evaluate(*condition, cut) == matched,
                 "the condition's data paths miss something it reads: " + pruned.dump() + " of " +
                     view.data->dump());
    }
    for (const auto& [equivalent, negated] : equivalents) {
      FUZZ_CHECK(EvaluateAndExplain(*equivalent, view) == (matched != negated),
                 "equivalent form " + equivalent->source().dump() + " disagrees (original " +
                     std::to_string(matched) + ")");
    }
  }
  return 0;
}

}  // namespace
}  // namespace workflowd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return workflowd::fuzz::FuzzOne(data, size);
}
