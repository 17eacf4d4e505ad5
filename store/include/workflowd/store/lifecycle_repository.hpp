// The execution lifecycle in PostgreSQL: dispatch rounds over pending executions and poll rounds
// over running ones, each one transaction that holds its rows with row locks (FOR UPDATE SKIP
// LOCKED) while the provider calls run, so loops and replicas never work on the same row and a
// crashed replica's rows are free again at once; outcomes are recorded in the same transaction.
// Rows leased by a daemon of an earlier version (lease_owner, lease_expires_at) are left alone
// until their lease expires. Every time comparison uses the caller's clock (`now`), so backoff,
// due times and timeouts are tested by moving a manual clock.
#pragma once

#include <chrono>
#include <functional>
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
  // kNotAttempted: no provider call was made (the round ran out of time); the row stays as it was.
  enum class Kind { kStarted, kRetry, kFailed, kNotAttempted };
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

// What a dispatch round locked and what came of it.
struct DispatchRound {
  std::vector<ExecutionRecord> executions;  // the rows handed to start (as start left them)
  std::vector<DispatchOutcome> outcomes;    // start's outcome for each, same order
  // Whether due rows may have been left behind: the batch was full or a tenant x environment gave
  // its whole share. When false, the round took every due row it could see.
  bool more = false;
  // Ids whose outcome the database refused (a value it does not take): recorded as failed with an
  // internal_error (kind "unstorable") instead, so that the round's other outcomes are kept.
  std::vector<std::string> unstorable;
};

// What a poll round locked and what came of it.
struct PollRound {
  std::vector<ExecutionRecord> executions;  // the rows handed to poll
  std::vector<PollOutcome> outcomes;        // poll's outcomes
  // The ids whose status changed, with their new status.
  std::vector<std::pair<std::string, std::string>> transitions;
  // Ids whose outcome the database refused: recorded without the engine's output, steps and
  // history, with an internal_error (kind "unstorable"), so that the round's others are kept.
  std::vector<std::string> unstorable;
};

// `j` as JSON text that jsonb takes: ill-formed UTF-8 replaced by U+FFFD rather than thrown
// (nlohmann's strict dump()), and the NUL character, which jsonb refuses (SQLSTATE 22P05), by
// U+FFFD as well. Everything an engine sent (outputs, error texts, step details, history) is
// written through it.
std::string StorableJson(const nlohmann::json& j);

class LifecycleRepository {
 public:
  explicit LifecycleRepository(Database& db) : db_(db) {}

  // One dispatch round, in one transaction: locks up to `limit` pending executions due at `now`,
  // at most `per_scope_limit` per tenant x environment (fair share: a flood from one tenant cannot
  // fill the batch), oldest first, skipping rows another round holds (FOR UPDATE SKIP LOCKED);
  // hands them to `start` (their start_attempts already count this attempt), records the outcome
  // `start` returns for each (same order; kNotAttempted leaves a row as it was) and commits.
  // Nothing is written to lease the rows: the row locks keep other loops and replicas off them
  // while the provider calls run, a replica that dies mid-round rolls back (its rows are due again
  // at once, and a repeated start is a no-op at the engine), and one that stays inside a round
  // longer than `hold` loses its session (idle_in_transaction_session_timeout), which frees them.
  // An exception from `start` rolls the round back and propagates. `start` may move members out of
  // the records (the trigger event, into a provider input); the round returns them as it left them.
  using StartFn =
      std::function<std::vector<DispatchOutcome>(std::vector<ExecutionRecord>& executions)>;
  DispatchRound RunDispatchRound(TimePoint now, std::chrono::milliseconds hold, size_t limit,
                                 size_t per_scope_limit, const StartFn& start);

  // The same round over given executions (the ones an event batch just created): locks those of
  // `ids` that are still pending and due (never started yet, or their retry is due at `now`),
  // skipping rows another round holds, in creation order, by primary key. No walk over the
  // tenants x environments with pending rows: its cost grows with their number, this one's only
  // with the batch. Ids that are unknown, taken or no longer pending are left out (they are
  // hints; the fair round above finds whatever is due in any case). `more` is always false.
  DispatchRound RunDispatchRoundFor(const std::vector<std::string>& ids, TimePoint now,
                                    std::chrono::milliseconds hold, const StartFn& start);

  // One poll round, in one transaction: locks up to `limit` running executions whose next poll is
  // due at `now` (their trigger_event is not read: null), hands them to `poll`, records the
  // outcomes it returns (any subset, by id: only rows still running change; steps are upserted
  // when different; the new history entries are appended as one chunk) and commits. Row locks and
  // `hold` as in RunDispatchRound.
  using PollFn =
      std::function<std::vector<PollOutcome>(const std::vector<ExecutionRecord>& executions)>;
  PollRound RunPollRound(TimePoint now, std::chrono::milliseconds hold, size_t limit,
                         const PollFn& poll);

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

  // Non-terminal executions of a definition (a definition with any cannot be deleted without
  // force).
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
