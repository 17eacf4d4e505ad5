// The execution lifecycle in PostgreSQL: dispatch rounds over pending executions and poll rounds
// over running ones, each in three steps with no transaction open across the provider calls.
// Claim: one short transaction picks the due rows (FOR UPDATE SKIP LOCKED, so concurrent claims
// take disjoint rows), writes a lease on them (lease_owner: a token of this round alone,
// lease_expires_at: now + the lease) and commits. Call: the provider calls run with no transaction
// open. Record: one short transaction writes each outcome only where the row still carries the
// round's token and the status the round saw; an outcome whose row lost its lease (it expired and
// another round claimed the row, or a cancel took it) is dropped and reported as stale. A row whose
// lease is live is not claimable; an expired lease (a replica that crashed or hung) is, so rows are
// never held for longer than the lease. Every time comparison uses the caller's clock (`now`), so
// backoff, due times, timeouts and lease expiry are tested by moving a manual clock.
#pragma once

#include <chrono>
#include <functional>
#include <limits>
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
  // kParked: the start failed because the provider's engine is down (its circuit breaker is
  // open): the row stays pending, the attempt is not counted, `error` says why; it is due as it
  // was, or at next_at when that is later (a failed probe goes to the back of the queue).
  enum class Kind { kStarted, kRetry, kFailed, kNotAttempted, kParked };
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

// What a dispatch round claimed and what came of it.
struct DispatchRound {
  std::string lease;  // the round's token in lease_owner
  // When not empty: each execution's own token, same order (a round over executions the event
  // pipeline inserted already leased, in several batches); `lease` is then unused.
  std::vector<std::string> leases;
  std::vector<ExecutionRecord> executions;  // the rows handed to start (as start left them)
  std::vector<DispatchOutcome> outcomes;    // start's outcome for each, same order
  // Whether due rows may have been left behind: the batch was full or a tenant x environment gave
  // its whole share. When false, the round took every due row it could see.
  bool more = false;
  // Ids whose outcome the database refused (a value it does not take): recorded as failed with an
  // internal_error (kind "unstorable") instead, so that the round's other outcomes are kept.
  std::vector<std::string> unstorable;
  // Ids whose outcome was dropped: the row no longer carried the round's lease (it expired during
  // a slow call and another round claimed the row, whose outcome stands) or was no longer pending.
  std::vector<std::string> stale;
};

// What a poll round claimed and what came of it.
struct PollRound {
  std::string lease;                        // the round's token in lease_owner
  std::vector<ExecutionRecord> executions;  // the rows handed to poll
  std::vector<PollOutcome> outcomes;        // poll's outcomes
  // The ids whose status changed, with their new status.
  std::vector<std::pair<std::string, std::string>> transitions;
  // Ids whose outcome the database refused: recorded without the engine's output, steps and
  // history, with an internal_error (kind "unstorable"), so that the round's others are kept.
  std::vector<std::string> unstorable;
  // Ids whose outcome was dropped: the row no longer carried the round's lease, or was no longer
  // running (as DispatchRound::stale).
  std::vector<std::string> stale;
};

// `j` as JSON text that jsonb takes: ill-formed UTF-8 replaced by U+FFFD rather than thrown
// (nlohmann's strict dump()), and the NUL character, which jsonb refuses (SQLSTATE 22P05), by
// U+FFFD as well. Everything an engine sent (outputs, error texts, step details, history) is
// written through it.
std::string StorableJson(const nlohmann::json& j);

// A new lease token: `owner` (empty: <hostname>-<pid>), '/', and a random part, so that a token is
// never reused: a record applies to exactly the rows leased to it, whichever replica or round
// leased them before or after.
std::string NewLeaseToken(const std::string& owner);

class LifecycleRepository {
 public:
  // `owner` names this replica in the lease tokens (default: <hostname>-<pid>); every round adds a
  // random part of its own, so two rounds never share a token, even in one process.
  explicit LifecycleRepository(Database& db, std::string owner = "");

  // Claims a dispatch round and commits: up to `limit` pending executions due at `now` whose lease
  // is free or expired, at most `per_scope_limit` per tenant x environment (fair share: a flood
  // from one tenant cannot fill the batch), oldest first, skipping rows another claim is taking
  // (FOR UPDATE SKIP LOCKED); leased to a new token until now + `lease`. Their start_attempts
  // already count the attempt being made (RecordDispatch stores it).
  // With a `provider`, only that provider's executions, and the fair share is per tenant x
  // environment within it (without, per provider x tenant x environment); without a provider,
  // none of the providers in `except`.
  DispatchRound ClaimDispatch(TimePoint now, std::chrono::milliseconds lease, size_t limit,
                              size_t per_scope_limit, const std::string& provider = "",
                              const std::vector<std::string>& except = {});
  // Records round.outcomes (one per execution, same order) in one short transaction, each only
  // where the row still carries round.lease (or its own of round.leases) and is pending (the others
  // go to round.stale); a kNotAttempted outcome leaves its row as it was, due again at once (its
  // lease is released). An outcome the database refuses is recorded without what it carried
  // (round.unstorable).
  void RecordDispatch(DispatchRound& round);

  // Claims a poll round and commits: up to `limit` running executions whose next poll is due at
  // `now` and whose lease is free or expired, in next_poll_at order (their trigger_event is not
  // read: null), leased as in ClaimDispatch.
  // With a `provider`, only that provider's executions. With `due_by` (earlier than `now`), only
  // executions whose next poll was due by then (the others wait: see
  // lifecycle::PollerOptions::yield_to_starts).
  PollRound ClaimPoll(TimePoint now, std::chrono::milliseconds lease, size_t limit,
                      const std::string& provider = "",
                      std::optional<TimePoint> due_by = std::nullopt);
  // Records round.outcomes (any subset, by id) where the row still carries round.lease and is
  // running (the others go to round.stale): steps are upserted when different, the new history
  // entries appended as one chunk. Rows without an outcome are released, due again at once.
  void RecordPoll(PollRound& round);

  // Releases what is left of a round's lease (rows it recorded carry it no more): for a round
  // whose calls failed before any outcome, so that its rows are due again at once.
  void Release(const std::string& lease, const std::vector<ExecutionRecord>& executions);
  // The same for rows of several tokens: `leases[i]` is that of `ids[i]`.
  void Release(const std::vector<std::string>& ids, const std::vector<std::string>& leases);

  // Claim, start, record: ClaimDispatch, then `start` with no transaction open, then
  // RecordDispatch. `start` returns one outcome per execution, same order. An exception from
  // `start` releases the round's rows and propagates. `start` may move members out of the records
  // (the trigger event, into a provider input); the round returns them as it left them.
  using StartFn =
      std::function<std::vector<DispatchOutcome>(std::vector<ExecutionRecord>& executions)>;
  DispatchRound RunDispatchRound(TimePoint now, std::chrono::milliseconds lease, size_t limit,
                                 size_t per_scope_limit, const StartFn& start,
                                 const std::string& provider = "",
                                 const std::vector<std::string>& except = {});
  // ClaimPoll, then `poll` with no transaction open, then RecordPoll (as RunDispatchRound).
  using PollFn =
      std::function<std::vector<PollOutcome>(const std::vector<ExecutionRecord>& executions)>;
  PollRound RunPollRound(TimePoint now, std::chrono::milliseconds lease, size_t limit,
                         const PollFn& poll, const std::string& provider = "",
                         std::optional<TimePoint> due_by = std::nullopt);

  std::optional<ExecutionRecord> Get(const std::string& tenant_id,
                                     const std::string& environment_id, const std::string& id);
  std::vector<StepRecord> Steps(const std::string& execution_id);
  std::vector<HistoryRecord> History(const std::string& execution_id);

  // Marks a pending execution cancelled without a provider call; returns true when it was pending
  // and not leased at `now` (a round is starting it: see Leased).
  bool CancelPending(const std::string& tenant_id, const std::string& environment_id,
                     const std::string& id, const std::string& reason, TimePoint now);
  // Marks a running (or pending) execution cancelled after the provider stopped it; true when it
  // changed. A row leased at `now` is left alone (a round is polling it: see Leased).
  bool MarkCancelled(const std::string& tenant_id, const std::string& environment_id,
                     const std::string& id, const std::string& reason, TimePoint now);
  // Whether the execution is pending or running and leased by a round at `now`: a cancel waits
  // for that round's outcome (or the lease's expiry) rather than have it dropped as stale.
  bool Leased(const std::string& tenant_id, const std::string& environment_id,
              const std::string& id, TimePoint now);

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
  std::string owner_;
};

}  // namespace workflowd::store
