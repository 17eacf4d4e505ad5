// Fuzz target: loading tenant workflow definitions (definitions::DefinitionsFromYamlOrJson), i.e.
// yaml-cpp and nlohmann parsing, the YAML -> JSON conversion, DefinitionFromJson's structural
// checks, condition compiling and every ValidateDefinition rule.
//
// Input framing: none, the input is the file's text. It is loaded as "fuzz" (the format comes
// from the first character: '{' or '[' is JSON, anything else YAML) and, when that picked JSON, a
// second time as "fuzz.yaml" so that YAML's flow style is fuzzed with the same inputs.
//
// Errors are expected: ValidationError always; other std::exception types are tolerated too (the
// CLI catches them) unless WORKFLOWD_FUZZ_STRICT=1 is set, which makes them findings, because the
// documented contract is "throws ValidationError".
//
// Checked for every accepted definition: DefinitionProblems is empty; the canonical JSON
// (DefinitionToJson) is valid UTF-8 and parses back (DefinitionFromJson, from the JSON value and
// from its text as the store does) to an equal definition with the same canonical JSON; compiled
// conditions exist exactly when conditions were given, and evaluate and explain the same result
// on a sample event; TopologicalStepOrder succeeds and lists every step once, each after the
// steps it depends on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "workflowd/definitions/definition.hpp"
#include "workflowd/matching/condition.hpp"

namespace workflowd::fuzz {
namespace {

using definitions::WorkflowDefinition;
using nlohmann::json;

bool Strict() {
  static const bool strict = [] {
    // Read once, before libFuzzer runs anything concurrently.
    const char* value = std::getenv("WORKFLOWD_FUZZ_STRICT");  // NOLINT(concurrency-mt-unsafe)
    return value != nullptr && std::string_view(value) == "1";
  }();
  return strict;
}

matching::EventView SampleEvent() {
  static const json data = json::parse(R"({
    "customer": {"id": 4711, "country": "US", "tier": "gold", "email": "zoe@example.com"},
    "invoice": {"id": 77, "total": 42.5, "currency": "EUR"}
  })");
  static const std::vector<matching::Header> headers = {{"x-test", "1"}};
  matching::EventView view;
  view.id = "evt-1";
  view.type = "customer.created";
  view.source = "billing/api";
  view.subject = "customers/4711";
  view.tenant = "tenant_acme";
  view.environment = "env_prod";
  view.time = "2026-01-30T10:00:00Z";
  view.data = &data;
  view.headers = headers;
  return view;
}

void CheckCondition(const json& source, const matching::ConditionPtr& compiled, bool given,
                    const std::string& where) {
  FUZZ_CHECK(
      (compiled != nullptr) == given,
      where + ": compiled form " + (compiled ? "present" : "missing") + " for " + source.dump());
  if (compiled == nullptr) return;
  const matching::EventView event = SampleEvent();
  const bool matched = matching::Evaluate(*compiled, event);
  FUZZ_CHECK(matching::Explain(*compiled, event).matched == matched,
             where + ": Explain disagrees with Evaluate");
}

void CheckAccepted(const WorkflowDefinition& d) {
  const definitions::FieldErrors problems = definitions::DefinitionProblems(d);
  FUZZ_CHECK(problems.empty(), "accepted definition has problems: " + problems.ToString());

  const json canonical = definitions::DefinitionToJson(d);
  std::string text;
  try {
    text = canonical.dump();
  } catch (const json::exception& e) {
    FUZZ_CHECK(false, std::string("canonical JSON is not serializable: ") + e.what());
  }

  definitions::FieldErrors errors;
  const WorkflowDefinition again = definitions::DefinitionFromJson(canonical, errors);
  FUZZ_CHECK(errors.empty(), "canonical JSON is refused: " + errors.ToString() + "\n" + text);
  FUZZ_CHECK(again == d, "JSON round trip changed the definition: " + text + "\nbecame\n" +
                             definitions::DefinitionToJson(again).dump());
  FUZZ_CHECK(definitions::DefinitionToJson(again) == canonical, "canonical JSON is not stable");

  // The store keeps the text and parses it back.
  const json reparsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  FUZZ_CHECK(!reparsed.is_discarded(), "canonical JSON text does not parse: " + text);
  definitions::FieldErrors text_errors;
  const WorkflowDefinition from_text = definitions::DefinitionFromJson(reparsed, text_errors);
  FUZZ_CHECK(text_errors.empty() && from_text == d,
             "text round trip changed the definition: " + text_errors.ToString() + "\n" + text);

  CheckCondition(d.trigger.conditions, d.trigger.compiled_conditions,
                 d.trigger.conditions.is_array() && !d.trigger.conditions.empty(),
                 "trigger.conditions");
  std::map<std::string, size_t> index_of;
  for (size_t i = 0; i < d.steps.size(); ++i) {
    const definitions::Step& step = d.steps[i];
    CheckCondition(step.condition, step.compiled_condition, !step.condition.is_null(),
                   "steps[" + std::to_string(i) + "].condition");
    FUZZ_CHECK(index_of.emplace(step.id, i).second, "duplicate step id " + step.id);
  }

  std::vector<std::string> order;
  try {
    order = definitions::TopologicalStepOrder(d);
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, std::string("TopologicalStepOrder failed on a valid definition: ") +
                          e.what() + "\n" + text);
  }
  FUZZ_CHECK(order.size() == d.steps.size(), "order has " + std::to_string(order.size()) +
                                                 " steps, the definition " +
                                                 std::to_string(d.steps.size()));
  std::set<std::string> done;
  for (const std::string& id : order) {
    const auto it = index_of.find(id);
    FUZZ_CHECK(it != index_of.end(), "order names an unknown step " + id);
    FUZZ_CHECK(done.insert(id).second, "order lists " + id + " twice");
    for (const std::string& dependency : d.steps[it->second].depends_on) {
      FUZZ_CHECK(done.contains(dependency),
                 std::string(id).append(" runs before its dependency ").append(dependency));
    }
  }
}

void Load(std::string_view text, std::string_view source_name) {
  std::vector<WorkflowDefinition> loaded;
  try {
    loaded = definitions::DefinitionsFromYamlOrJson(text, source_name);
  } catch (const definitions::ValidationError& e) {
    FUZZ_CHECK(!e.errors().empty(), std::string("ValidationError without problems: ") + e.what());
    std::string error;
    FUZZ_CHECK(Serializable(e.errors().ToJson(), &error), "problems are not valid UTF-8: " + error);
    return;
  } catch (const std::exception& e) {
    FUZZ_CHECK(!Strict(), std::string("not a ValidationError: ") + e.what());
    return;
  }
  for (const WorkflowDefinition& d : loaded) CheckAccepted(d);
}

// One libFuzzer input.
int FuzzOne(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Load(text, "fuzz");
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && (text[first] == '{' || text[first] == '[')) {
    Load(text, "fuzz.yaml");
  }
  return 0;
}

}  // namespace
}  // namespace workflowd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return workflowd::fuzz::FuzzOne(data, size);
}
