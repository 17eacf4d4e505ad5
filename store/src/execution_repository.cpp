#include "workflowd/store/execution_repository.hpp"

#include <algorithm>
#include <pqxx/subtransaction>
#include <pqxx/tablewriter>
#include <span>
#include <tuple>
#include <unordered_map>

#include "database_impl.hpp"
#include "workflowd/common/timefmt.hpp"

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

const std::vector<std::string>& CopyColumns(bool leased) {
  static const std::vector<std::string> kColumns = {
      "id",           "tenant_id",     "environment_id",
      "workflow_id",  "workflow_name", "definition_version",
      "provider",     "trigger_type",  "trigger_event_id",
      "trigger_event"};
  static const std::vector<std::string> kLeasedColumns = [] {
    std::vector<std::string> columns = kColumns;
    columns.emplace_back("lease_owner");
    columns.emplace_back("lease_expires_at");
    return columns;
  }();
  return leased ? kLeasedColumns : kColumns;
}

// COPY of the whole batch. Returns false (with the savepoint rolled back, the transaction still
// usable) when a row already exists: COPY has no ON CONFLICT clause.
bool CopyAll(pqxx::work& w, const std::string& copy_text, bool leased) {
  try {
    pqxx::subtransaction copy(w, "copy_executions");
    {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
      // tablewriter (deprecated in later libpqxx, the only public raw-line COPY writer in 6.4):
      // the batch goes out as one COPY data message instead of one per row.
      const auto& columns = CopyColumns(leased);
      pqxx::tablewriter out(copy, "workflow_executions", columns.begin(), columns.end());
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

// Inserts the rows `rows` (indices into `executions`) with one multi-row INSERT ... ON CONFLICT
// DO NOTHING: a single round trip, values quoted by libpq. Leased to `lease` when given. Sets the
// flags in `inserted` (when given) of the rows it inserted.
size_t InsertSkippingExisting(pqxx::transaction_base& w,
                              const std::vector<NewExecution>& executions,
                              const std::vector<std::string>& documents,
                              std::span<const size_t> rows, const PendingLease* lease,
                              std::vector<bool>* inserted) {
  std::string sql =
      "INSERT INTO workflow_executions (id, tenant_id, environment_id, workflow_id, "
      "workflow_name, definition_version, provider, trigger_type, trigger_event_id, "
      "trigger_event, lease_owner, lease_expires_at) VALUES ";
  const std::string lease_values =
      lease == nullptr ? std::string(",NULL,NULL")
                       : ',' + w.quote(lease->owner) + ',' +
                             w.quote(FormatRfc3339(lease->expires_at)) + "::timestamptz";
  sql.reserve(sql.size() + rows.size() * 512);
  for (size_t k = 0; k < rows.size(); ++k) {
    const size_t i = rows[k];
    const auto& e = executions[i];
    if (k > 0) sql += ',';
    sql += '(';
    sql += w.quote(e.id) + ',' + w.quote(e.tenant_id) + ',' + w.quote(e.environment_id) + ',' +
           w.quote(e.workflow_id) + ',' + w.quote(e.workflow_name) + ',' +
           std::to_string(e.definition_version) + ',' + w.quote(e.provider) + ',' +
           w.quote(e.trigger_type) + ',' + w.quote(e.trigger_event_id) + ',' +
           w.quote(documents[i]) + "::jsonb" + lease_values + ')';
  }
  sql += " ON CONFLICT (workflow_id, trigger_event_id, attempt) DO NOTHING RETURNING id";
  const pqxx::result r = w.exec(sql);
  if (inserted != nullptr && !r.empty()) {
    std::unordered_map<std::string_view, size_t> index;
    for (size_t i : rows) index.emplace(executions[i].id, i);
    for (const auto& row : r) {
      auto it = index.find(std::string_view(row[0].c_str(), row[0].size()));
      if (it != index.end()) (*inserted)[it->second] = true;
    }
  }
  return r.size();
}

std::vector<size_t> AllRows(size_t n) {
  std::vector<size_t> rows(n);
  for (size_t i = 0; i < n; ++i) rows[i] = i;
  return rows;
}

// The first line of a PostgreSQL error message (libpq appends detail and hint lines, which may
// quote the row).
std::string FirstLine(const char* message) {
  std::string_view text(message);
  if (text.rfind("ERROR:", 0) == 0) text.remove_prefix(6);
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  return std::string(text.substr(0, text.find('\n')));
}

// Rows written or refused together: [from, from + count).
struct RowGroup {
  size_t from = 0;
  size_t count = 0;
};

// Inserts the groups `part` with ON CONFLICT DO NOTHING, each attempt in a savepoint; when
// PostgreSQL refuses them with a data error, `part` is split in two and each half tried again,
// down to the single groups it refuses, whose rows go to `rejected`. A batch with one bad group
// among n costs about 2 log2(n) statements. Other errors propagate.
size_t InsertFindingRejected(pqxx::work& w, const std::vector<NewExecution>& executions,
                             const std::vector<std::string>& documents,
                             std::span<const RowGroup> part,
                             std::vector<RejectedExecution>& rejected, const PendingLease* lease,
                             std::vector<bool>* inserted) {
  if (part.empty()) return 0;
  std::vector<size_t> rows;
  for (const RowGroup& g : part) {
    for (size_t i = g.from; i < g.from + g.count; ++i) rows.push_back(i);
  }
  try {
    pqxx::subtransaction attempt(w, "insert_executions");
    std::vector<bool> flags;
    if (inserted != nullptr) flags.assign(executions.size(), false);
    size_t count = InsertSkippingExisting(attempt, executions, documents, rows, lease,
                                          inserted != nullptr ? &flags : nullptr);
    attempt.commit();
    if (inserted != nullptr) {
      for (size_t i : rows) (*inserted)[i] = (*inserted)[i] || flags[i];
    }
    return count;
  } catch (const pqxx::sql_error& e) {
    if (!IsDataError(e.sqlstate())) throw;
    if (part.size() == 1) {
      for (size_t i : rows) rejected.push_back({i, e.sqlstate(), FirstLine(e.what())});
      return 0;
    }
  }
  size_t half = part.size() / 2;
  return InsertFindingRejected(w, executions, documents, part.first(half), rejected, lease,
                               inserted) +
         InsertFindingRejected(w, executions, documents, part.subspan(half), rejected, lease,
                               inserted);
}

bool HoldsNul(const NewExecution& e) {
  for (const std::string* s :
       {&e.id, &e.tenant_id, &e.environment_id, &e.workflow_id, &e.workflow_name, &e.provider,
        &e.trigger_type, &e.trigger_event_id}) {
    if (s->find('\0') != std::string::npos) return true;
  }
  return false;
}

// The groups of `executions` (consecutive rows with the same number in `groups`, or one row each
// when `groups` is empty); a group with a NUL in a text value is refused at once (22021, as COPY
// does): libpq's quoting would cut the value at the NUL instead.
std::vector<RowGroup> GroupsToTry(const std::vector<NewExecution>& executions,
                                  std::span<const size_t> groups,
                                  std::vector<RejectedExecution>& rejected) {
  std::vector<RowGroup> out;
  for (size_t i = 0; i < executions.size();) {
    size_t j = i + 1;
    while (!groups.empty() && j < executions.size() && groups[j] == groups[i]) ++j;
    bool nul = false;
    for (size_t k = i; k < j; ++k) nul = nul || HoldsNul(executions[k]);
    if (nul) {
      for (size_t k = i; k < j; ++k) {
        rejected.push_back({k, "22021", "a text value holds a NUL character (0x00)"});
      }
    } else {
      out.push_back({i, j - i});
    }
    i = j;
  }
  return out;
}

}  // namespace

bool IsDataError(std::string_view sqlstate) {
  return (sqlstate.rfind("22", 0) == 0 || sqlstate.rfind("23", 0) == 0) && sqlstate != "23505";
}

std::string ExecutionRepository::CopyText(const std::vector<NewExecution>& executions,
                                          const PendingLease* lease) {
  std::string lease_fields;
  if (lease != nullptr) {
    lease_fields = '\t';
    AppendCopyField(lease_fields, lease->owner);
    lease_fields += '\t';
    lease_fields += FormatRfc3339(lease->expires_at);  // digits, '-', ':', '.', 'T', 'Z'
  }
  std::string out;
  out.reserve(executions.size() * 900);
  std::string document;
  for (size_t i = 0; i < executions.size(); ++i) {
    const auto& e = executions[i];
    if (!SameDocumentAsPrevious(executions, i)) document = Serialize(e.trigger_event);
    for (std::string_view field :
         {std::string_view{e.id}, std::string_view{e.tenant_id}, std::string_view{e.environment_id},
          std::string_view{e.workflow_id}, std::string_view{e.workflow_name}}) {
      AppendCopyField(out, field);
      out += '\t';
    }
    out += std::to_string(e.definition_version);
    out += '\t';
    for (std::string_view field : {std::string_view{e.provider}, std::string_view{e.trigger_type},
                                   std::string_view{e.trigger_event_id}}) {
      AppendCopyField(out, field);
      out += '\t';
    }
    AppendCopyField(out, document);
    out += lease_fields;
    out += '\n';
  }
  return out;
}

size_t ExecutionRepository::InsertPending(const std::vector<NewExecution>& executions,
                                          const std::string* copy_text,
                                          std::vector<RejectedExecution>* rejected,
                                          std::span<const size_t> groups, const PendingLease* lease,
                                          std::vector<bool>* inserted) {
  if (inserted != nullptr) inserted->assign(executions.size(), false);
  if (executions.empty()) return 0;
  std::string own_text;
  if (copy_text == nullptr) {
    own_text = CopyText(executions, lease);
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
    if (inserted != nullptr) inserted->assign(executions.size(), false);  // a retried transaction
    try {
      if (CopyAll(w, *copy_text, lease != nullptr)) {
        if (inserted != nullptr) inserted->assign(executions.size(), true);
        return executions.size();
      }
    } catch (const pqxx::sql_error& e) {
      if (rejected == nullptr || !IsDataError(e.sqlstate())) throw;
    }
    const std::vector<std::string> documents = TriggerEventTexts(executions);
    if (rejected == nullptr) {
      return InsertSkippingExisting(w, executions, documents, AllRows(executions.size()), lease,
                                    inserted);
    }
    const std::vector<RowGroup> to_try = GroupsToTry(executions, groups, *rejected);
    const size_t count =
        InsertFindingRejected(w, executions, documents, to_try, *rejected, lease, inserted);
    std::sort(rejected->begin(), rejected->end(),
              [](const auto& a, const auto& b) { return a.index < b.index; });
    return count;
  });
}

}  // namespace workflowd::store
