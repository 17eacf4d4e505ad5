#include "workflowd/store/execution_repository.hpp"

#include <pqxx/stream_to>
#include <pqxx/subtransaction>
#include <tuple>

#include "database_impl.hpp"

namespace workflowd::store {
namespace {

// The trigger_event document of each row, serialized once per event: the executions of one event
// (one per matched definition) follow each other in a batch and share the same document.
std::vector<std::string> TriggerEventTexts(const std::vector<NewExecution>& executions) {
  std::vector<std::string> out;
  out.reserve(executions.size());
  for (size_t i = 0; i < executions.size(); ++i) {
    const auto& e = executions[i];
    if (i > 0 && e.trigger_event_id == executions[i - 1].trigger_event_id &&
        e.trigger_event == executions[i - 1].trigger_event) {
      out.push_back(out.back());
    } else {
      out.push_back(e.trigger_event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
  }
  return out;
}

// COPY of the whole batch. Returns false (with the savepoint rolled back, the transaction still
// usable) when a row already exists: COPY has no ON CONFLICT clause.
bool CopyAll(pqxx::work& w, const std::vector<NewExecution>& executions,
             const std::vector<std::string>& documents) {
  static const std::vector<std::string> kColumns = {
      "id",           "tenant_id",     "environment_id",
      "workflow_id",  "workflow_name", "definition_version",
      "provider",     "trigger_type",  "trigger_event_id",
      "trigger_event"};
  try {
    pqxx::subtransaction copy(w, "copy_executions");
    {
      pqxx::stream_to out(copy, "workflow_executions", kColumns);
      for (size_t i = 0; i < executions.size(); ++i) {
        const auto& e = executions[i];
        out << std::make_tuple(e.id, e.tenant_id, e.environment_id, e.workflow_id, e.workflow_name,
                               e.definition_version, e.provider, e.trigger_type, e.trigger_event_id,
                               documents[i]);
      }
      out.complete();
    }
    copy.commit();
    return true;
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == "23505") return false;  // unique_violation: a row exists already
    throw;
  }
}

size_t InsertSkippingExisting(pqxx::work& w, const std::vector<NewExecution>& executions,
                              const std::vector<std::string>& documents) {
  // One multi-row INSERT: a single round trip, values quoted by libpq.
  std::string sql =
      "INSERT INTO workflow_executions (id, tenant_id, environment_id, workflow_id, "
      "workflow_name, definition_version, provider, trigger_type, trigger_event_id, "
      "trigger_event) VALUES ";
  sql.reserve(sql.size() + executions.size() * 512);
  for (size_t i = 0; i < executions.size(); ++i) {
    const auto& e = executions[i];
    if (i > 0) sql += ',';
    sql += '(';
    sql += w.quote(e.id) + ',' + w.quote(e.tenant_id) + ',' + w.quote(e.environment_id) + ',' +
           w.quote(e.workflow_id) + ',' + w.quote(e.workflow_name) + ',' +
           std::to_string(e.definition_version) + ',' + w.quote(e.provider) + ',' +
           w.quote(e.trigger_type) + ',' + w.quote(e.trigger_event_id) + ',' +
           w.quote(documents[i]) + "::jsonb)";
  }
  sql += " ON CONFLICT (workflow_id, trigger_event_id, attempt) DO NOTHING";
  return static_cast<size_t>(w.exec(sql).affected_rows());
}

}  // namespace

size_t ExecutionRepository::InsertPending(const std::vector<NewExecution>& executions) {
  if (executions.empty()) return 0;
  auto documents = TriggerEventTexts(executions);
  return db_.impl().Transact("record executions", [&](pqxx::work& w) {
    // COPY first: about twice the rows per second of a multi-row INSERT ... ON CONFLICT. A batch
    // holding an execution that exists already (an event redelivered after a crash or a
    // rebalance: rare) fails the COPY as a whole; it is then inserted again row by row with
    // ON CONFLICT DO NOTHING, which keeps the existing rows and adds only the new ones.
    // status ('pending'), next_attempt_at (now: due at once), created_at and updated_at take the
    // table's defaults.
    if (CopyAll(w, executions, documents)) return executions.size();
    return InsertSkippingExisting(w, executions, documents);
  });
}

}  // namespace workflowd::store
