// Workflow execution rows. The event pipeline records each batch's new executions in one
// transaction; the unique key (workflow_id, trigger_event_id, attempt) turns a redelivered event
// into a no-op.
#pragma once

#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/store/database.hpp"

namespace workflowd::store {

struct NewExecution {
  std::string id;
  std::string tenant_id;
  std::string environment_id;
  std::string workflow_id;
  std::string workflow_name;
  int64_t definition_version = 0;
  std::string provider;
  std::string trigger_type = "event";
  std::string trigger_event_id;
  nlohmann::json trigger_event;  // the envelope: id, type, source, time, data, ...
};

// A dispatch lease written with the rows themselves (lease_owner, lease_expires_at; see
// LifecycleRepository): the inserting replica claims its new executions in the transaction that
// creates them, and starts them from memory without a claim transaction of its own.
struct PendingLease {
  std::string owner;     // the lease token (NewLeaseToken)
  TimePoint leased_at;   // when the rows were rendered with it
  TimePoint expires_at;  // leased_at + the lease
};

// A row PostgreSQL refused with a data error (SQLSTATE class 22, e.g. 22P05 for \u0000 in jsonb,
// or class 23 other than the unique violation that means "recorded already").
struct RejectedExecution {
  size_t index = 0;      // into the executions given to InsertPending
  std::string sqlstate;  // e.g. "22P05"
  std::string message;   // PostgreSQL's message, first line
};

// True for the SQLSTATEs that mean "this row's data is bad" rather than "the database is down"
// or "the query is wrong": class 22 (data exception) and 23 (integrity constraint violation)
// except 23505 (unique_violation).
bool IsDataError(std::string_view sqlstate);

class ExecutionRepository {
 public:
  explicit ExecutionRepository(Database& db) : db_(db) {}

  // Inserts pending executions in one transaction, skipping any whose (definition, event, attempt)
  // already exists. Returns how many rows were new. Throws StoreError (retryable when the database
  // is unreachable: nothing was written).
  // `copy_text`: CopyText(executions) when the caller rendered it ahead (e.g. while the previous
  // batch was being written); computed here when null.
  // `rejected`: when given, rows PostgreSQL refuses with a data error (IsDataError) are found
  // (the batch is bisected inside the transaction, with savepoints) and left out, reported there
  // (by index), and the other rows are committed; when null, such an error throws like any other.
  // `groups`: empty, or one number per row; consecutive rows with the same number (e.g. the
  // executions of one event) are written or refused together.
  // `lease`: when given, the new rows are written leased to it, and `copy_text` (when given) must
  // be CopyText(executions, lease). `inserted`: when given, set to one flag per row: whether this
  // call inserted it (false for rows that existed already and for rejected ones).
  size_t InsertPending(const std::vector<NewExecution>& executions,
                       const std::string* copy_text = nullptr,
                       std::vector<RejectedExecution>* rejected = nullptr,
                       std::span<const size_t> groups = {}, const PendingLease* lease = nullptr,
                       std::vector<bool>* inserted = nullptr);

  // The rows in PostgreSQL COPY text format, one line each, ready for InsertPending (with the
  // lease's columns when `lease` is given).
  static std::string CopyText(const std::vector<NewExecution>& executions,
                              const PendingLease* lease = nullptr);

 private:
  Database& db_;
};

}  // namespace workflowd::store
