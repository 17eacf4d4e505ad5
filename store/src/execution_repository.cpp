#include "workflowd/store/execution_repository.hpp"

#include "database_impl.hpp"

namespace workflowd::store {

size_t ExecutionRepository::InsertPending(const std::vector<NewExecution>& executions) {
  if (executions.empty()) return 0;
  return db_.impl().Transact("record executions", [&](pqxx::work& w) {
    // One multi-row INSERT per batch: a single round trip, values quoted by libpq.
    std::string sql =
        "INSERT INTO workflow_executions (id, tenant_id, environment_id, workflow_id, "
        "workflow_name, definition_version, provider, trigger_type, trigger_event_id, "
        "trigger_event, status, next_attempt_at) VALUES ";
    sql.reserve(sql.size() + executions.size() * 512);
    bool first = true;
    for (const auto& e : executions) {
      if (!first) sql += ',';
      first = false;
      sql += '(';
      sql += w.quote(e.id) + ',' + w.quote(e.tenant_id) + ',' + w.quote(e.environment_id) + ',' +
             w.quote(e.workflow_id) + ',' + w.quote(e.workflow_name) + ',' +
             std::to_string(e.definition_version) + ',' + w.quote(e.provider) + ',' +
             w.quote(e.trigger_type) + ',' + w.quote(e.trigger_event_id) + ',' +
             w.quote(e.trigger_event.dump()) + "::jsonb,'pending',now())";
    }
    sql += " ON CONFLICT (workflow_id, trigger_event_id, attempt) DO NOTHING";
    return static_cast<size_t>(w.exec(sql).affected_rows());
  });
}

}  // namespace workflowd::store
