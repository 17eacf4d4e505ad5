// Event builders and definitions shared by the pipeline end-to-end tests.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "kafka_test_client.hpp"

namespace workflowd::testing {

using Json = nlohmann::json;

// A structured-mode CloudEvent (the value carries every attribute).
inline TestRecord Structured(const std::string& id, const std::string& tenant,
                             const std::string& env, const std::string& type, Json data) {
  Json ce = {{"specversion", "1.0"},           {"id", id},
             {"source", "/billing/customers"}, {"type", type},
             {"time", "2026-11-21T10:00:00Z"}, {"tenantid", tenant},
             {"environmentid", env},           {"datacontenttype", "application/json"},
             {"data", std::move(data)}};
  return TestRecord{tenant + "/" + id, ce.dump(), {}};
}

// A binary-mode CloudEvent (attributes in ce_ headers, data in the value).
inline TestRecord Binary(const std::string& id, const std::string& tenant, const std::string& env,
                         const std::string& type, const Json& data) {
  return TestRecord{tenant + "/" + id,
                    data.dump(),
                    {{"ce_specversion", "1.0"},
                     {"ce_id", id},
                     {"ce_source", "/billing/customers"},
                     {"ce_type", type},
                     {"ce_tenantid", tenant},
                     {"ce_environmentid", env},
                     {"content-type", "application/json"}}};
}

// A flat envelope with the default mapping.
inline TestRecord Flat(const std::string& id, const std::string& tenant, const std::string& env,
                       const std::string& name, Json data) {
  Json v = {{"id", id},
            {"event_name", name},
            {"tenant_id", tenant},
            {"environment_id", env},
            {"timestamp", "2026-11-21T10:00:00Z"},
            {"data", std::move(data)}};
  return TestRecord{tenant + "/" + id, v.dump(), {}};
}

// One event-triggered definition in YAML (as a list item under `definitions:`).
inline std::string DefinitionYaml(const std::string& id, const std::string& tenant,
                                  const std::string& env, const std::string& event,
                                  const std::string& conditions_yaml = "") {
  std::string y = "  - id: " + id + "\n    tenant_id: " + tenant + "\n    environment_id: " + env +
                  "\n    name: " + id +
                  "\n    trigger:\n      type: event\n      event_name: " + event + "\n";
  if (!conditions_yaml.empty()) y += "      conditions:\n" + conditions_yaml;
  y +=
      "    steps:\n      - {id: assign, order: 1, type: assign_plan, config: {plan_id: starter}}\n";
  return y;
}

}  // namespace workflowd::testing
