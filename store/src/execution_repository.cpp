#include "workflowd/store/execution_repository.hpp"

#include <pqxx/subtransaction>
#include <pqxx/tablewriter>
#include <span>
#include <tuple>

#include "database_impl.hpp"

namespace workflowd::store {
namespace {

// True when row i carries the same trigger_event as row i - 1: the executions of one event (one
// per matched definition) follow each other in a batch, and their document is serialized once.
bool SameDocumentAsPrevious(const std::vector<NewExecution>& executions, size_t i) {
  return i > 0 && executions[i].trigger_event_id == executions[i - 1].trigger_event_id &&
         executions[i].trigger_event == executions[i - 1].trigger_event;
}

std::string Serialize(const nlohmann::json& document) {
  return document.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<std::string> TriggerEventTexts(const std::vector<NewExecution>& executions) {
  std::vector<std::string> out;
  out.reserve(executions.size());
  for (size_t i = 0; i < executions.size(); ++i) {
    out.push_back(SameDocumentAsPrevious(executions, i) ? out.back()
                                                        : Serialize(executions[i].trigger_event));
  }
  return out;
}

// Appends `s` escaped for COPY's text format: backslash, newline, carriage return and tab are
// the only bytes with a meaning there (column and row separators, escapes); everything else is
// taken literally. Written by hand because libpqxx 6.4 escapes field by field into new strings.
void AppendCopyField(std::string& out, std::string_view s) {
  size_t from = 0;
  while (true) {
    size_t at = s.find_first_of("\\\n\r\t", from);
    out.append(s.substr(from, at == std::string_view::npos ? std::string_view::npos : at - from));
    if (at == std::string_view::npos) return;
    switch (s[at]) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += "\\t";
    }
    from = at + 1;
  }
}

const std::vector<std::string>& CopyColumns() {
  static const std::vector<std::string> kColumns = {
      "id",           "tenant_id",     "environment_id",
      "workflow_id",  "workflow_name", "definition_version",
      "provider",     "trigger_type",  "trigger_event_id",
      "trigger_event"};
  return kColumns;
}

// COPY of the whole batch. Returns false (with the savepoint rolled back, the transaction still
// usable) when a row already exists: COPY has no ON CONFLICT clause.
bool CopyAll(pqxx::work& w, const std::string& copy_text) {
  try {
    pqxx::subtransaction copy(w, "copy_executions");
    {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
      // tablewriter (deprecated in later libpqxx, the only public raw-line COPY writer in 6.4):
      // the batch goes out as one COPY data message instead of one per row.
      pqxx::tablewriter out(copy, "workflow_executions", CopyColumns().begin(),
                            CopyColumns().end());
#pragma GCC diagnostic pop
      // write_raw_line adds the final newline itself.
      out.write_raw_line(copy_text.substr(0, copy_text.size() - 1));
      out.complete();
    }
    copy.commit();
    return true;
  } catch (const pqxx::sql_error& e) {
    if (e.sqlstate() == "23505") return false;  // unique_violation: a row exists already
    throw;
  }
}

size_t InsertSkippingExisting(pqxx::transaction_base& w, std::span<const NewExecution> executions,
                              std::span<const std::string> documents) {
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

// The first line of a PostgreSQL error message (libpq appends detail and hint lines, which may
// quote the row).
std::string FirstLine(const char* message) {
  std::string_view text(message);
  if (text.rfind("ERROR:", 0) == 0) text.remove_prefix(6);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  return std::string(text.substr(0, text.find('\n')));
}

// Inserts rows [from, from + count) with ON CONFLICT DO NOTHING, each attempt in a savepoint;
// when PostgreSQL refuses the rows with a data error, the range is split in two and each half
// tried again, down to the single rows it refuses, which go to `rejected`. A batch with one bad
// row among n costs about 2 log2(n) statements. Other errors propagate.
size_t InsertFindingRejected(pqxx::work& w, const std::vector<NewExecution>& executions,
                             const std::vector<std::string>& documents, size_t from, size_t count,
                             std::vector<RejectedExecution>& rejected) {
  if (count == 0) return 0;
  try {
    pqxx::subtransaction attempt(w, "insert_executions");
    size_t inserted = InsertSkippingExisting(attempt, std::span(executions).subspan(from, count),
                                             std::span(documents).subspan(from, count));
    attempt.commit();
    return inserted;
  } catch (const pqxx::sql_error& e) {
    if (!IsDataError(e.sqlstate())) throw;
    if (count == 1) {
      rejected.push_back({from, e.sqlstate(), FirstLine(e.what())});
      return 0;
    }
  }
  size_t half = count / 2;
  return InsertFindingRejected(w, executions, documents, from, half, rejected) +
         InsertFindingRejected(w, executions, documents, from + half, count - half, rejected);
}

}  // namespace

bool IsDataError(std::string_view sqlstate) {
  return (sqlstate.rfind("22", 0) == 0 || sqlstate.rfind("23", 0) == 0) && sqlstate != "23505";
}

std::string ExecutionRepository::CopyText(const std::vector<NewExecution>& executions) {
  std::string out;
  out.reserve(executions.size() * 900);
  std::string document;
  for (size_t i = 0; i < executions.size(); ++i) {
    const auto& e = executions[i];
    if (!SameDocumentAsPrevious(executions, i)) document = Serialize(e.trigger_event);
    for (std::string_view field :
         {std::string_view(e.id), std::string_view(e.tenant_id), std::string_view(e.environment_id),
          std::string_view(e.workflow_id), std::string_view(e.workflow_name)}) {
      AppendCopyField(out, field);
      out += '\t';
    }
    out += std::to_string(e.definition_version);
    out += '\t';
    for (std::string_view field : {std::string_view(e.provider), std::string_view(e.trigger_type),
                                   std::string_view(e.trigger_event_id)}) {
      AppendCopyField(out, field);
      out += '\t';
    }
    AppendCopyField(out, document);
    out += '\n';
  }
  return out;
}

size_t ExecutionRepository::InsertPending(const std::vector<NewExecution>& executions,
                                          const std::string* copy_text,
                                          std::vector<RejectedExecution>* rejected) {
  if (executions.empty()) return 0;
  std::string own_text;
  if (copy_text == nullptr) {
    own_text = CopyText(executions);
    copy_text = &own_text;
  }
  return db_.impl().Transact("record executions", [&](pqxx::work& w) {
    // COPY first: about twice the rows per second of a multi-row INSERT ... ON CONFLICT. A batch
    // holding an execution that exists already (an event redelivered after a crash or a
    // rebalance: rare) fails the COPY as a whole; it is then inserted again row by row with
    // ON CONFLICT DO NOTHING, which keeps the existing rows and adds only the new ones.
    // status ('pending'), next_attempt_at (now: due at once), created_at and updated_at take the
    // table's defaults.
    // A row PostgreSQL refuses (data error: a value it cannot store) fails the COPY too; with
    // `rejected`, the rows are then inserted in halves until the refused ones are found.
    if (rejected != nullptr) rejected->clear();
    try {
      if (CopyAll(w, *copy_text)) return executions.size();
    } catch (const pqxx::sql_error& e) {
      if (rejected == nullptr || !IsDataError(e.sqlstate())) throw;
    }
    const std::vector<std::string> documents = TriggerEventTexts(executions);
    if (rejected == nullptr) return InsertSkippingExisting(w, executions, documents);
    return InsertFindingRejected(w, executions, documents, 0, executions.size(), *rejected);
  });
}

}  // namespace workflowd::store
