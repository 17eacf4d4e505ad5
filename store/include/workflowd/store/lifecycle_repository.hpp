// The execution lifecycle in PostgreSQL: leasing pending executions for dispatch and running ones
// for status polls (FOR UPDATE SKIP LOCKED + lease expiry, so replicas never work on the same row
// and a crashed replica's rows are taken over), and recording outcomes fenced by the lease owner.
// Every time comparison uses the caller's clock (`now`), so leases, backoff and timeouts are
// tested by moving a manual clock.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/store/database.hpp"

namespace workflowd::store {

struct ExecutionRecord {
  std::string id;
  std::string tenant_id;
  std::string environment_id;
  std::string workflow_id;
  std::string workflow_name;
  int64_t definition_version = 0;
  std::string provider;
  std::string provider_execution_id;  // empty until started
  std::string trigger_type;
  std::string trigger_event_id;
  nlohmann::json trigger_event;
  std::string status;
  int attempt = 1;
  std::string retry_of;
  int start_attempts = 0;
  int poll_count = 0;
  nlohmann::json output;  // null when none
  nlohmann::json error;   // null when none
  TimePoint created_at;
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> completed_at;
  std::optional<TimePoint> deadline_at;
  std::optional<TimePoint> next_attempt_at;
  std::optional<TimePoint> next_poll_at;
  int history_count = 0;  // events of the provider's history stored so far
};

struct StepRecord {
  std::string step_id;
  std::string status;  // pending | running | completed | failed | skipped
  nlohmann::json output;
  nlohmann::json error;
  std::optional<TimePoint> started_at;
  std::optional<TimePoint> completed_at;
  bool operator==(const StepRecord&) const = default;
};

struct HistoryRecord {
  int seq = 0;
  std::string event_type;
  nlohmann::json details;
  TimePoint occurred_at;
};

// Outcome of one dispatch attempt.
struct DispatchOutcome {
  enum class Kind { kStarted, kRetry, kFailed };
  Kind kind = Kind::kStarted;
  std::string id;
  std::string provider_execution_id;     // kStarted
  TimePoint at;                          // when it happened
  TimePoint next_at;                     // kStarted: first poll; kRetry: next attempt
  std::optional<TimePoint> deadline_at;  // kStarted: started + definition timeout
  nlohmann::json error;                  // kRetry: last error; kFailed: the error
};

// Outcome of one status poll.
struct PollOutcome {
  std::string id;
  std::string status;  // the merged state (a terminal state is never left)
  nlohmann::json output;
  nlohmann::json error;
  std::optional<TimePoint> completed_at;
  TimePoint next_poll_at;
  std::vector<StepRecord> steps;
  // The entries of the provider's history not stored yet (seq >= the leased row's history_count),
  // and the number of entries stored once they are.
  std::vector<HistoryRecord> history;
  int history_count = 0;
};

struct TransitionCount {
  std::string provider;
  std::string status;
  size_t count = 0;
};

class LifecycleRepository {
 public:
  explicit LifecycleRepository(Database& db) : db_(db) {}

  // Leases up to `limit` pending executions due at `now`, at most `per_scope_limit` per tenant x
  // environment (fair share: a flood from one tenant cannot fill the batch), oldest first.
  // Increments start_attempts. `more` (optional) says whether due rows may have been left behind:
  // the batch is full or a tenant x environment gave its whole share. When false, the lease took
  // every due row it could see and the next one can wait for new work.
  std::vector<ExecutionRecord> LeasePending(const std::string& owner, TimePoint now,
                                            std::chrono::milliseconds lease, size_t limit,
                                            size_t per_scope_limit, bool* more = nullptr);

  // Leases up to `limit` running executions whose next poll is due at `now`. Their
  // trigger_event is not read (null): polling does not need it.
  std::vector<ExecutionRecord> LeaseDuePolls(const std::string& owner, TimePoint now,
                                             std::chrono::milliseconds lease, size_t limit);

  // Records dispatch outcomes in one transaction; only rows still leased by `owner` and still
  // pending change. Returns the rows that changed.
  size_t RecordDispatch(const std::string& owner, const std::vector<DispatchOutcome>& outcomes);

  // Records poll outcomes in one transaction; only rows still leased by `owner` and not terminal
  // change; steps are upserted when different; the new history entries are appended as one chunk.
  // Returns the ids whose status changed, with their new status.
  std::vector<std::pair<std::string, std::string>> RecordPolls(
      const std::string& owner, const std::vector<PollOutcome>& outcomes);

  // Releases leases early (e.g. on shutdown) so another replica can pick the rows up at once.
  void ReleaseLeases(const std::string& owner);

  std::optional<ExecutionRecord> Get(const std::string& tenant_id,
                                     const std::string& environment_id, const std::string& id);
  std::vector<StepRecord> Steps(const std::string& execution_id);
  std::vector<HistoryRecord> History(const std::string& execution_id);

  // Marks a pending execution cancelled without a provider call; returns true when it was pending.
  bool CancelPending(const std::string& tenant_id, const std::string& environment_id,
                     const std::string& id, const std::string& reason, TimePoint now);
  // Marks a running execution cancelled after the provider stopped it; true when it changed.
  bool MarkCancelled(const std::string& tenant_id, const std::string& environment_id,
                     const std::string& id, const std::string& reason, TimePoint now);

  // Creates a new pending attempt of a failed / timed_out / cancelled execution, linked by
  // retry_of to it. Returns the new id; nullopt when the execution is not retryable (throws
  // StoreError for not found).
  std::optional<std::string> Retry(const std::string& tenant_id, const std::string& environment_id,
                                   const std::string& id, const std::string& new_id, TimePoint now);

  // Non-terminal executions of a definition (EC-2).
  std::vector<ExecutionRecord> ActiveOfDefinition(const std::string& tenant_id,
                                                  const std::string& environment_id,
                                                  const std::string& definition_id);

  // Pending executions due now per tenant x environment (for the queued gauge).
  std::vector<std::tuple<std::string, std::string, size_t>> PendingByScope(TimePoint now);
  // Executions per status (for the by-state gauge): pending and running always (cheap: partial
  // indexes), the terminal states only with include_terminal (a scan of the whole table).
  std::vector<std::pair<std::string, size_t>> CountByStatus(bool include_terminal = true);

 private:
  Database& db_;
};

}  // namespace workflowd::store
