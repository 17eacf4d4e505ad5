#include "workflowd/store/definition_repository.hpp"

#include "database_impl.hpp"
#include "workflowd/common/ids.hpp"

namespace workflowd::store {
namespace {

using definitions::WorkflowDefinition;
using Json = nlohmann::json;

// The part of a definition its author controls: server-managed fields are dropped, so applying the
// same file twice is recognised as "unchanged".
Json Content(const WorkflowDefinition& d) {
  Json j = definitions::DefinitionToJson(d);
  for (const char* key : {"id", "version", "created_at", "updated_at", "created_by"}) j.erase(key);
  return j;
}

WorkflowDefinition FromDocument(const std::string& text) {
  return definitions::DefinitionFromJson(Json::parse(text));
}

// Whether the stored document `text` says what `def` says. A stored document that no longer
// loads (its conditions no longer compile) differs: applying a fixed definition replaces it.
bool SameContent(const std::string& text, const WorkflowDefinition& def) {
  try {
    return Content(FromDocument(text)) == Content(def);
  } catch (const definitions::ValidationError&) {
    return false;
  }
}

}  // namespace

const char* ToString(ApplyOutcome::Action action) {
  switch (action) {
    case ApplyOutcome::Action::kCreated:
      return "created";
    case ApplyOutcome::Action::kUpdated:
      return "updated";
    case ApplyOutcome::Action::kUnchanged:
      return "unchanged";
  }
  return "unknown";
}

DefinitionRepository::DefinitionRepository(Database& db, const Clock& clock)
    : db_(db), clock_(clock) {}

std::vector<ApplyOutcome> DefinitionRepository::Apply(const std::vector<WorkflowDefinition>& defs,
                                                      const std::string& actor) {
  return db_.impl().Transact("apply definitions", [&](pqxx::work& w) {
    std::vector<ApplyOutcome> outcomes;
    for (const auto& input : defs) {
      pqxx::result existing;
      if (input.id) {
        existing = w.exec_params(
            "SELECT id, version, tenant_id, environment_id FROM workflow_definitions "
            "WHERE id = $1 FOR UPDATE",
            *input.id);
        if (!existing.empty() && (existing[0][2].as<std::string>() != input.tenant_id ||
                                  existing[0][3].as<std::string>() != input.environment_id)) {
          throw StoreError("definition id \"" + *input.id +
                               "\" is already used in another tenant or environment",
                           false);
        }
      } else {
        existing = w.exec_params(
            "SELECT id, version FROM workflow_definitions WHERE tenant_id = $1 AND "
            "environment_id = $2 AND name = $3 AND status <> 'deleted' FOR UPDATE",
            input.tenant_id, input.environment_id, input.name);
      }

      WorkflowDefinition def = input;
      def.created_by = actor;
      ApplyOutcome outcome{"", def.tenant_id, def.environment_id, def.name};
      if (existing.empty()) {
        if (input.id) {
          def.id = *input.id;
        } else {
          // Definition ids are lowercase (^[a-z0-9][a-z0-9_-]{0,63}$); ULIDs are uppercase.
          std::string id = NewId("wf_", clock_.Now());
          for (auto& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          def.id = id;
        }
        def.version = 1;
        outcome.action = ApplyOutcome::Action::kCreated;
      } else {
        def.id = existing[0][0].as<std::string>();
        int64_t current = existing[0][1].as<int64_t>();
        auto doc = w.exec_params(
            "SELECT document FROM workflow_definition_versions WHERE definition_id = $1 AND "
            "version = $2",
            *def.id, current);
        if (!doc.empty() && SameContent(doc[0][0].as<std::string>(), def)) {
          outcomes.push_back({*def.id, def.tenant_id, def.environment_id, def.name,
                              ApplyOutcome::Action::kUnchanged, current});
          continue;
        }
        def.version = current + 1;
        outcome.action = ApplyOutcome::Action::kUpdated;
      }
      outcome.id = *def.id;
      outcome.version = def.version;

      Json doc = definitions::DefinitionToJson(def);
      Json content = Content(def);
      std::string trigger_type = definitions::ToString(def.trigger.type);
      std::optional<std::string> event_name;
      if (!def.trigger.event_name.empty()) event_name = def.trigger.event_name;
      std::optional<std::string> provider_config;
      if (!def.provider_config.is_null()) provider_config = def.provider_config.dump();
      if (outcome.action == ApplyOutcome::Action::kCreated) {
        w.exec_params(
            "INSERT INTO workflow_definitions (id, tenant_id, environment_id, name, description, "
            "trigger_type, event_name, trigger, steps, enabled, retry_policy, timeout_seconds, "
            "provider, provider_config, version, status, created_by, updated_by) VALUES ($1, $2, "
            "$3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10, $11::jsonb, $12, $13, $14::jsonb, "
            "$15, $16, $17, $17)",
            *def.id, def.tenant_id, def.environment_id, def.name, def.description, trigger_type,
            event_name, content["trigger"].dump(), content["steps"].dump(), def.enabled,
            content["retry_policy"].dump(), def.timeout_seconds, def.provider, provider_config,
            def.version, definitions::ToString(def.status), actor);
      } else {
        w.exec_params(
            "UPDATE workflow_definitions SET name = $2, description = $3, trigger_type = $4, "
            "event_name = $5, trigger = $6::jsonb, steps = $7::jsonb, enabled = $8, "
            "retry_policy = $9::jsonb, timeout_seconds = $10, provider = $11, "
            "provider_config = $12::jsonb, version = $13, status = $14, updated_by = $15, "
            "updated_at = now() WHERE id = $1",
            *def.id, def.name, def.description, trigger_type, event_name, content["trigger"].dump(),
            content["steps"].dump(), def.enabled, content["retry_policy"].dump(),
            def.timeout_seconds, def.provider, provider_config, def.version,
            definitions::ToString(def.status), actor);
      }
      w.exec_params(
          "INSERT INTO workflow_definition_versions (definition_id, version, tenant_id, "
          "environment_id, document, created_by) VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
          *def.id, def.version, def.tenant_id, def.environment_id, doc.dump(), actor);
      outcomes.push_back(std::move(outcome));
    }
    return outcomes;
  });
}

std::vector<WorkflowDefinition> DefinitionRepository::LoadMatchable() {
  return db_.impl().Transact("load definitions", [&](pqxx::work& w) {
    std::vector<WorkflowDefinition> out;
    auto rows = w.exec(
        "SELECT v.document FROM workflow_definitions d JOIN workflow_definition_versions v "
        "ON v.definition_id = d.id AND v.version = d.version "
        "WHERE d.enabled AND d.status = 'published' AND d.trigger_type = 'event'");
    out.reserve(rows.size());
    for (const auto& row : rows) out.push_back(FromDocument(row[0].as<std::string>()));
    return out;
  });
}

void DefinitionRepository::ForEachMatchable(const std::function<void(MatchableDefinition&&)>& fn) {
  db_.impl().Transact("load definitions", [&](pqxx::work& w) {
    // The fields of the current version's document (what LoadMatchable parses), with the
    // defaults DefinitionFromJson applies to absent ones. Rows whose document is disabled, not
    // event-triggered or without an id are skipped, as BuildIndex skips them.
    w.exec(
        "DECLARE matchable_definitions NO SCROLL CURSOR FOR "
        "SELECT v.document->>'id', coalesce((v.document->>'version')::bigint, 0), "
        "coalesce(v.document->>'name', ''), coalesce(v.document->>'provider', 'mock'), "
        "coalesce(v.document->>'tenant_id', ''), coalesce(v.document->>'environment_id', ''), "
        "coalesce(v.document->'trigger'->>'event_name', ''), "
        "(v.document->'trigger'->'conditions')::text "
        "FROM workflow_definitions d JOIN workflow_definition_versions v "
        "ON v.definition_id = d.id AND v.version = d.version "
        "WHERE d.enabled AND d.status = 'published' AND d.trigger_type = 'event' "
        "AND v.document->>'id' IS NOT NULL "
        "AND coalesce((v.document->>'enabled')::boolean, true) "
        "AND coalesce(v.document->'trigger'->>'type', 'event') = 'event'");
    while (true) {
      auto rows = w.exec("FETCH 2000 FROM matchable_definitions");
      if (rows.empty()) break;
      for (const auto& row : rows) {
        MatchableDefinition m;
        m.id = row[0].as<std::string>();
        m.version = row[1].as<int64_t>();
        m.name = row[2].as<std::string>();
        m.provider = row[3].as<std::string>();
        m.tenant_id = row[4].as<std::string>();
        m.environment_id = row[5].as<std::string>();
        m.event_name = row[6].as<std::string>();
        if (!row[7].is_null()) m.conditions = row[7].as<std::string>();
        fn(std::move(m));
      }
    }
    w.exec("CLOSE matchable_definitions");
  });
}

std::optional<WorkflowDefinition> DefinitionRepository::Get(const std::string& tenant_id,
                                                            const std::string& environment_id,
                                                            const std::string& id) {
  return db_.impl().Transact("get definition", [&](pqxx::work& w) {
    auto rows = w.exec_params(
        "SELECT v.document, d.enabled, d.status FROM workflow_definitions d JOIN "
        "workflow_definition_versions v ON v.definition_id = d.id AND v.version = d.version "
        "WHERE d.id = $1 AND d.tenant_id = $2 AND d.environment_id = $3 AND d.status <> "
        "'deleted'",
        id, tenant_id, environment_id);
    std::optional<WorkflowDefinition> out;
    if (!rows.empty()) out = FromDocument(rows[0][0].as<std::string>());
    return out;
  });
}

bool DefinitionRepository::MarkDeleted(const std::string& tenant_id,
                                       const std::string& environment_id, const std::string& id,
                                       const std::string& actor) {
  return db_.impl().Transact("delete definition", [&](pqxx::work& w) {
    auto r = w.exec_params(
        "UPDATE workflow_definitions SET status = 'deleted', enabled = false, updated_by = $4, "
        "updated_at = now() WHERE id = $1 AND tenant_id = $2 AND environment_id = $3 AND status "
        "<> 'deleted'",
        id, tenant_id, environment_id, actor);
    return r.affected_rows() == 1;
  });
}

std::optional<WorkflowDefinition> DefinitionRepository::GetVersion(const std::string& id,
                                                                   int64_t version) {
  return db_.impl().Transact("get definition version", [&](pqxx::work& w) {
    auto rows = w.exec_params(
        "SELECT document FROM workflow_definition_versions WHERE definition_id = $1 AND "
        "version = $2",
        id, version);
    std::optional<WorkflowDefinition> out;
    if (!rows.empty()) out = FromDocument(rows[0][0].as<std::string>());
    return out;
  });
}

}  // namespace workflowd::store
