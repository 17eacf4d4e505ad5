#include "workflowd/store/lifecycle_repository.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <exception>
#include <limits>
#include <optional>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "database_impl.hpp"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/common/utf8.hpp"

namespace workflowd::store {
namespace {

using Json = nlohmann::json;

std::string Ts(TimePoint t) { return FormatRfc3339(t); }

// timestamptz -> microseconds since the epoch, read back into a TimePoint.
std::string Us(const char* column) {
  return std::string("(extract(epoch from ") + column + ") * 1000000)::bigint";
}

std::optional<TimePoint> TimeOf(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return TimePoint(
      std::chrono::duration_cast<WallClock::duration>(std::chrono::microseconds(f.as<int64_t>())));
}

Json JsonOf(const pqxx::field& f) {
  if (f.is_null()) return nullptr;
  return Json::parse(f.c_str());
}

std::string ColumnList(const char* trigger_event, const char* start_attempts = "e.start_attempts") {
  return std::string(
             "e.id, e.tenant_id, e.environment_id, e.workflow_id, e.workflow_name, "
             "e.definition_version, e.provider, coalesce(e.provider_execution_id, ''), "
             "e.trigger_type, e.trigger_event_id, ") +
         trigger_event + ", e.status, e.attempt, coalesce(e.retry_of, ''), " + start_attempts +
         ", e.poll_count, e.output, e.error, " + Us("e.created_at") + ", " + Us("e.started_at") +
         ", " + Us("e.completed_at") + ", " + Us("e.deadline_at") + ", " + Us("e.next_attempt_at") +
         ", " + Us("e.next_poll_at") + ", e.history_count";
}

const std::string& Columns() {
  static const std::string kColumns = ColumnList("e.trigger_event");
  return kColumns;
}

// What a dispatch round hands to the provider starts: start_attempts counts the attempt being made
// (the round's outcome UPDATE stores it).
const std::string& DispatchColumns() {
  static const std::string kColumns = ColumnList("e.trigger_event", "e.start_attempts + 1");
  return kColumns;
}

// What a status poll needs: everything but the trigger event (~1 KB of JSON per row that
// PostgreSQL would render and the poller parse, only to ignore it); trigger_event reads null.
const std::string& PollColumns() {
  static const std::string kColumns = ColumnList("NULL");
  return kColumns;
}

ExecutionRecord RecordOf(const pqxx::row& r) {
  ExecutionRecord e;
  e.id = r[0].as<std::string>();
  e.tenant_id = r[1].as<std::string>();
  e.environment_id = r[2].as<std::string>();
  e.workflow_id = r[3].as<std::string>();
  e.workflow_name = r[4].as<std::string>();
  e.definition_version = r[5].as<int64_t>();
  e.provider = r[6].as<std::string>();
  e.provider_execution_id = r[7].as<std::string>();
  e.trigger_type = r[8].as<std::string>();
  e.trigger_event_id = r[9].as<std::string>();
  e.trigger_event = JsonOf(r[10]);
  e.status = r[11].as<std::string>();
  e.attempt = r[12].as<int>();
  e.retry_of = r[13].as<std::string>();
  e.start_attempts = r[14].as<int>();
  e.poll_count = r[15].as<int>();
  e.output = JsonOf(r[16]);
  e.error = JsonOf(r[17]);
  e.created_at = *TimeOf(r[18]);
  e.started_at = TimeOf(r[19]);
  e.completed_at = TimeOf(r[20]);
  e.deadline_at = TimeOf(r[21]);
  e.next_attempt_at = TimeOf(r[22]);
  e.next_poll_at = TimeOf(r[23]);
  e.history_count = r[24].as<int>();
  return e;
}

std::string OptTs(pqxx::transaction_base& w, const std::optional<TimePoint>& t) {
  return t ? w.quote(Ts(*t)) + "::timestamptz" : "NULL";
}

}  // namespace

std::string StorableJson(const Json& j) {
  // Engines' outputs, error texts and step details are whatever the engine sent: a strict dump()
  // throws on the first ill-formed byte, which failed the whole poll round (and the next, on the
  // same oldest rows) for one execution's answer.
  std::string text = j.dump(-1, ' ', false, Json::error_handler_t::replace);
  // dump() writes a NUL character as the escape \u0000 and a backslash as \\, so an escape
  // starts at every backslash that is not itself escaped.
  if (text.find("\\u0000") == std::string::npos) return text;
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\' || i + 1 >= text.size()) {
      out += text[i];
      continue;
    }
    if (text.compare(i + 1, 5, "u0000") == 0) {
      out += "\\ufffd";
      i += 5;
    } else {
      out += text[i];
      out += text[i + 1];
      ++i;
    }
  }
  return out;
}

namespace {

std::string OptJson(pqxx::transaction_base& w, const Json& j) {
  return j.is_null() ? "NULL" : w.quote(StorableJson(j)) + "::jsonb";
}

// The step and history documents are written as text directly: building them as JSON objects
// first (a tree of maps per step and event, a deep copy of every detail) took more of the
// daemon's time than the statements' own text.
void AppendJsonString(std::string& out, const std::string& s) {
  out += StorableJson(Json(s));  // quoted and escaped as JSON
}

void AppendJsonTime(std::string& out, const std::optional<TimePoint>& t) {
  if (!t) {
    out += "null";
    return;
  }
  out += '"';
  out += Ts(*t);  // RFC 3339: digits, '-', ':', '.', 'T', 'Z', nothing to escape
  out += '"';
}

// An execution's steps as stored in execution_steps.steps; a step id listed twice counts once
// (its last entry).
std::string StepsDocument(const std::vector<StepRecord>& steps) {
  std::string list = "[";
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& st = steps[i];
    bool later = std::any_of(steps.begin() + static_cast<long>(i) + 1, steps.end(),
                             [&](const StepRecord& x) { return x.step_id == st.step_id; });
    if (later) continue;
    if (list.size() > 1) list += ',';
    list += "{\"step_id\":";
    AppendJsonString(list, st.step_id);
    list += ",\"status\":";
    AppendJsonString(list, st.status);
    list += ",\"attempt\":1,\"output\":" + StorableJson(st.output) +
            ",\"error\":" + StorableJson(st.error) + ",\"started_at\":";
    AppendJsonTime(list, st.started_at);
    list += ",\"completed_at\":";
    AppendJsonTime(list, st.completed_at);
    list += '}';
  }
  return list + ']';
}

// History entries as one chunk's execution_history_chunks.events.
std::string EventsDocument(const std::vector<HistoryRecord>& history) {
  std::string events = "[";
  for (const auto& h : history) {
    if (events.size() > 1) events += ',';
    events += "{\"seq\":" + std::to_string(h.seq) + ",\"event_type\":";
    AppendJsonString(events, h.event_type);
    events += ",\"details\":" + StorableJson(h.details) + ",\"occurred_at\":";
    AppendJsonTime(events, h.occurred_at);
    events += '}';
  }
  return events + ']';
}

// The status fence of the outcome UPDATEs, written so that the planner cannot use it to pick the
// partial dispatch or poll index. With `e.status = 'pending'` it may scan the whole partial index
// (every pending row) and hash-join it with the outcomes: statistics gathered while no row was
// leased estimate `lease_owner = <owner>` at one row, so that plan looks cheap, and it cost
// O(backlog) per round (20,000 buffer hits for 200 rows with a 30,000-row backlog). Opaque, the
// condition leaves one plan: a primary-key probe per outcome.
std::string StatusIs(const char* status) {
  return std::string("CASE e.status WHEN '") + status + "' THEN true ELSE false END";
}

// Records a dispatch round's outcomes with one statement (one round trip, one plan): the outcomes
// travel as a VALUES list and each row takes the columns of its kind. Only rows still pending and
// still leased to the round change (a lease lost to a slow call, or a cancel, is never overwritten
// by this round's stale answer), and their lease is released. Returns the ids recorded.
// The lease each execution of a dispatch round is recorded under: the round's, or each one's own.
class LeaseOf {
 public:
  explicit LeaseOf(const DispatchRound& round) : round_(round) {
    if (round.leases.empty()) return;
    for (size_t i = 0; i < round.executions.size(); ++i) {
      by_id_.emplace(round.executions[i].id, &round.leases[i]);
    }
  }
  const std::string& operator()(const std::string& id) const {
    return by_id_.empty() ? round_.lease : *by_id_.at(id);
  }

 private:
  const DispatchRound& round_;
  std::unordered_map<std::string_view, const std::string*> by_id_;
};

std::vector<std::string> RecordStarts(pqxx::transaction_base& w, const LeaseOf& lease_of,
                                      const std::vector<DispatchOutcome>& outcomes) {
  std::string values;
  values.reserve(outcomes.size() * 240);
  std::string last_lease, quoted_lease;
  for (const auto& o : outcomes) {
    if (o.kind == DispatchOutcome::Kind::kNotAttempted) continue;
    const std::string& lease = lease_of(o.id);
    if (quoted_lease.empty() || lease != last_lease) {
      last_lease = lease;
      quoted_lease = w.quote(lease);
    }
    const char* kind = o.kind == DispatchOutcome::Kind::kStarted  ? "'started'"
                       : o.kind == DispatchOutcome::Kind::kRetry  ? "'retry'"
                       : o.kind == DispatchOutcome::Kind::kParked ? "'parked'"
                                                                  : "'failed'";
    if (!values.empty()) values += ',';
    values +=
        '(' + w.quote(o.id) + ',' + kind + ',' +
        (o.kind == DispatchOutcome::Kind::kStarted ? w.quote(o.provider_execution_id)
                                                   : std::string("NULL")) +
        ",'" + Ts(o.at) + "'::timestamptz,'" + Ts(o.next_at) + "'::timestamptz," +
        OptTs(w, o.kind == DispatchOutcome::Kind::kStarted ? o.deadline_at : std::nullopt) +
        "::timestamptz," +
        (o.kind == DispatchOutcome::Kind::kStarted ? std::string("NULL") : OptJson(w, o.error)) +
        "::jsonb," + quoted_lease + ')';
  }
  std::vector<std::string> recorded;
  if (values.empty()) return recorded;
  const auto r = w.exec(
      "UPDATE workflow_executions e SET "
      "status = CASE v.kind WHEN 'started' THEN 'running' WHEN 'failed' THEN 'failed' "
      "ELSE e.status END, "
      "provider_execution_id = CASE WHEN v.kind = 'started' THEN v.pid "
      "ELSE e.provider_execution_id END, "
      "started_at = CASE WHEN v.kind = 'started' THEN v.at ELSE e.started_at END, "
      "next_poll_at = CASE WHEN v.kind = 'started' THEN v.next_at ELSE e.next_poll_at END, "
      "deadline_at = CASE WHEN v.kind = 'started' THEN v.deadline ELSE e.deadline_at END, "
      "completed_at = CASE WHEN v.kind = 'failed' THEN v.at ELSE e.completed_at END, "
      "next_attempt_at = CASE v.kind WHEN 'retry' THEN v.next_at WHEN 'parked' THEN "
      "greatest(e.next_attempt_at, v.next_at) END, "
      "start_attempts = e.start_attempts + CASE v.kind WHEN 'parked' THEN 0 ELSE 1 END, "
      "error = v.error, lease_owner = NULL, "
      "lease_expires_at = NULL, updated_at = v.at "
      "FROM (VALUES " +
      values +
      ") AS v(id, kind, pid, at, next_at, deadline, error, lease) "
      "WHERE e.id = v.id AND " +
      StatusIs("pending") + " AND e.lease_owner = v.lease RETURNING e.id");
  recorded.reserve(r.size());
  for (const auto& row : r) recorded.push_back(row[0].as<std::string>());
  return recorded;
}

// Records a poll round's outcomes: one UPDATE for the whole round (terminal is terminal: only rows
// still running and still leased to the round change), then one upsert of each execution's steps
// and one INSERT of history chunks, for exactly the rows that were updated: three round trips per
// round, one row each. Returns the ids recorded, with their new status.
std::vector<std::pair<std::string, std::string>> RecordPolls(
    pqxx::transaction_base& w, const std::string& lease, const std::vector<PollOutcome>& outcomes) {
  std::vector<std::pair<std::string, std::string>> recorded;
  if (outcomes.empty()) return recorded;
  std::string values;
  for (const auto& o : outcomes) {
    bool terminal = o.status == "succeeded" || o.status == "failed" || o.status == "timed_out" ||
                    o.status == "cancelled";
    if (!values.empty()) values += ',';
    values += "(" + w.quote(o.id) + "," + w.quote(o.status) + "," + OptJson(w, o.output) + "," +
              OptJson(w, o.error) + "," +
              (o.completed_at ? w.quote(Ts(*o.completed_at)) + "::timestamptz"
                              : std::string("NULL::timestamptz")) +
              "," +
              (terminal ? std::string("NULL::timestamptz")
                        : w.quote(Ts(o.next_poll_at)) + "::timestamptz") +
              "," + std::to_string(o.history_count) + ")";
  }
  auto r = w.exec(
      "UPDATE workflow_executions e SET status = v.status, output = v.output::jsonb, error = "
      "v.error::jsonb, completed_at = v.completed_at, next_poll_at = v.next_poll_at, "
      "poll_count = e.poll_count + 1, history_count = greatest(e.history_count, "
      "v.history_count), lease_owner = NULL, lease_expires_at = NULL, updated_at = now() "
      "FROM (VALUES " +
      values +
      ") AS v(id, status, output, error, completed_at, next_poll_at, history_count) "
      "WHERE e.id = v.id AND " +
      StatusIs("running") + " AND e.lease_owner = " + w.quote(lease) +
      " RETURNING e.id, e.tenant_id, e.environment_id");
  std::unordered_map<std::string, std::pair<std::string, std::string>> scope;
  for (const auto& row : r) {
    scope[row[0].as<std::string>()] = {row[1].as<std::string>(), row[2].as<std::string>()};
  }
  std::string steps, chunks;
  for (const auto& o : outcomes) {
    auto it = scope.find(o.id);
    if (it == scope.end()) continue;
    const auto& [tenant, env] = it->second;
    recorded.emplace_back(o.id, o.status);
    if (!o.steps.empty()) {
      if (!steps.empty()) steps += ',';
      steps += "(" + w.quote(o.id) + "," + w.quote(tenant) + "," + w.quote(env) + "," +
               w.quote(StepsDocument(o.steps)) + "::jsonb)";
    }
    if (!o.history.empty()) {
      if (!chunks.empty()) chunks += ',';
      chunks += "(" + w.quote(o.id) + "," + std::to_string(o.history.front().seq) + "," +
                w.quote(tenant) + "," + w.quote(env) + "," + w.quote(EventsDocument(o.history)) +
                "::jsonb)";
    }
  }
  if (!steps.empty()) {
    // One row per execution holding all its steps, rewritten only when they changed.
    w.exec("INSERT INTO execution_steps (execution_id, tenant_id, environment_id, steps) VALUES " +
           steps +
           " ON CONFLICT (execution_id) DO UPDATE SET steps = EXCLUDED.steps, updated_at = now() "
           "WHERE execution_steps.steps IS DISTINCT FROM EXCLUDED.steps");
  }
  if (!chunks.empty()) {
    // One chunk per execution and poll; its events are new by history_count, which this
    // transaction advanced while holding the row and its lease (the key still refuses a chunk
    // twice).
    w.exec(
        "INSERT INTO execution_history_chunks (execution_id, first_seq, tenant_id, "
        "environment_id, events) VALUES " +
        chunks + " ON CONFLICT (execution_id, first_seq) DO NOTHING");
  }
  return recorded;
}

// Why the database refused a statement for what it carried (a value it does not take: text that
// is not valid UTF-8, a constraint, a limit), or nullopt when the failure is about the database's
// state (connection, serialization, shutdown), which must propagate: then the same outcomes
// written one at a time would fail as well, for other reasons.
std::optional<std::string> RefusalOf(std::exception_ptr failure) {
  try {
    std::rethrow_exception(std::move(failure));
  } catch (const pqxx::sql_error& e) {
    if (IsRetryableSqlState(e.sqlstate())) return std::nullopt;
    return std::string(e.what()) + " (SQLSTATE " + e.sqlstate() + ")";
  } catch (const pqxx::argument_error& e) {
    return std::string(e.what());  // libpq would not even quote it (ill-formed UTF-8)
  } catch (...) {
    return std::nullopt;
  }
}

// The error stored in place of an outcome the database refused.
Json UnstorableError(const std::string& reason, const Json& original) {
  Json error = {{"code", "internal_error"},
                {"kind", "unstorable"},
                {"message", SanitizeUtf8("the database refused this outcome: " + reason)},
                {"retryable", false}};
  if (original.is_object() && original.contains("code")) error["original_code"] = original["code"];
  return error;
}

// Runs `record` on `outcomes` in a savepoint; when the database refuses them for their data,
// records each one in a savepoint of its own, and one still refused as `fallback` makes it
// (without what the engine sent), adding its id to `unstorable`: one row never fails a round
// (which would roll back and retry the same oldest rows forever, holding up every other
// execution). Failures about the database's state (it going away) propagate.
template <typename Outcome, typename Record, typename Fallback>
auto RecordIsolated(pqxx::work& w, const std::vector<Outcome>& outcomes, Record&& record,
                    Fallback&& fallback, std::vector<std::string>& unstorable) {
  using Result = decltype(record(w, outcomes));
  try {
    pqxx::subtransaction all(w, "outcomes");
    Result result = record(all, outcomes);
    all.commit();
    return result;
  } catch (const pqxx::pqxx_exception&) {
    if (!RefusalOf(std::current_exception())) throw;
  }
  Result result{};
  for (const auto& o : outcomes) {
    const std::vector<Outcome> one{o};
    Result part{};
    std::optional<std::string> refusal;
    try {
      pqxx::subtransaction row(w, "outcome");
      part = record(row, one);
      row.commit();
    } catch (const pqxx::pqxx_exception&) {
      refusal = RefusalOf(std::current_exception());
      if (!refusal) throw;
    }
    if (refusal) {
      pqxx::subtransaction row(w, "outcome_fallback");
      part = record(row, std::vector<Outcome>{fallback(o, *refusal)});
      row.commit();
      unstorable.push_back(o.id);
    }
    result.insert(result.end(), part.begin(), part.end());
  }
  return result;
}

// A refused dispatch outcome as it is stored instead, with an error saying why: a retry stays a
// retry; a start becomes failed (only the engine's execution id can have been refused, and
// without it no poll could follow the execution).
DispatchOutcome DispatchFallback(const DispatchOutcome& o, const std::string& reason) {
  DispatchOutcome out;
  out.id = o.id;
  out.kind = o.kind == DispatchOutcome::Kind::kStarted ? DispatchOutcome::Kind::kFailed : o.kind;
  out.at = o.at;
  out.next_at = o.next_at;
  out.error = UnstorableError(reason, o.error);
  return out;
}

// A refused poll outcome as it is stored instead: the state the engine reported, without its
// output, steps and history (the history is asked for again by the next poll while the
// execution runs), with an error saying why.
PollOutcome PollFallback(const PollOutcome& o, const std::string& reason) {
  PollOutcome out;
  out.id = o.id;
  out.status = o.status;
  out.completed_at = o.completed_at;
  out.next_poll_at = o.next_poll_at;
  out.history_count = o.history.empty() ? o.history_count : o.history.front().seq;
  out.error = UnstorableError(reason, o.error);
  return out;
}

}  // namespace

namespace {

// A text[] literal: {"a","b"}, each element quoted with '"' and '\\' escaped (libpqxx 6 has no
// array conversion).
std::string TextArray(const std::vector<std::string>& items) {
  std::string out = "{";
  for (const auto& item : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (const char c : item) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::vector<std::string> IdsOf(const std::vector<ExecutionRecord>& executions) {
  std::vector<std::string> ids;
  ids.reserve(executions.size());
  for (const auto& e : executions) ids.push_back(e.id);
  return ids;
}

// Writes the lease on the rows a claim picked, by their row addresses (`ctids`: a row the claim
// holds locked cannot move until it commits): a TID scan, no index probe per row.
void Lease(pqxx::work& w, const std::vector<std::string>& ctids, const std::string& lease,
           TimePoint expires_at) {
  if (ctids.empty()) return;
  w.exec_params(
      "UPDATE workflow_executions SET lease_owner = $2, lease_expires_at = $3::timestamptz "
      "WHERE ctid = ANY($1::tid[])",
      TextArray(ctids), lease, Ts(expires_at));
}

// Releases what is left of `lease` on `ids` (rows recorded since carry it no more).
void ReleaseIn(pqxx::work& w, const std::vector<std::string>& ids, const std::string& lease) {
  if (ids.empty()) return;
  w.exec_params(
      "UPDATE workflow_executions SET lease_owner = NULL, lease_expires_at = NULL "
      "WHERE id = ANY($1::text[]) AND lease_owner = $2",
      TextArray(ids), lease);
}

// The same with a token per row: `leases[i]` is that of `ids[i]`.
void ReleaseIn(pqxx::work& w, const std::vector<std::string>& ids,
               const std::vector<std::string>& leases) {
  if (ids.empty()) return;
  w.exec_params(
      "UPDATE workflow_executions e SET lease_owner = NULL, lease_expires_at = NULL "
      "FROM unnest($1::text[], $2::text[]) AS v(id, lease) "
      "WHERE e.id = v.id AND e.lease_owner = v.lease",
      TextArray(ids), TextArray(leases));
}

// The ids among `executions` that are not in `recorded`, in the executions' order, skipping those
// `skip` says had no outcome to record.
template <typename Skip>
std::vector<std::string> NotRecorded(const std::vector<ExecutionRecord>& executions,
                                     const std::unordered_set<std::string>& recorded, Skip&& skip) {
  std::vector<std::string> out;
  for (size_t i = 0; i < executions.size(); ++i) {
    if (!skip(i) && !recorded.contains(executions[i].id)) out.push_back(executions[i].id);
  }
  return out;
}

std::string DefaultOwner() {
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  return std::string(host.data()) + "-" + std::to_string(getpid());
}

}  // namespace

LifecycleRepository::LifecycleRepository(Database& db, std::string owner)
    : db_(db), owner_(owner.empty() ? DefaultOwner() : std::move(owner)) {}

std::string NewLeaseToken(const std::string& owner) {
  thread_local std::mt19937_64 random{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token = (owner.empty() ? DefaultOwner() : owner) + "/";
  for (uint64_t bits = random(), i = 0; i < 16; ++i, bits >>= 4) token += kHex[bits & 15];
  return token;
}

DispatchRound LifecycleRepository::ClaimDispatch(TimePoint now, std::chrono::milliseconds lease,
                                                 size_t limit, size_t per_scope_limit,
                                                 const std::string& provider,
                                                 const std::vector<std::string>& except) {
  DispatchRound round;
  round.lease = NewLeaseToken(owner_);
  if (limit == 0) return round;
  db_.impl().Transact("dispatch claim", [&](pqxx::work& w) {
    // Fair share without ranking every pending row: `scopes` walks the dispatch index (provider,
    // tenant, environment, next_attempt_at, created_at) WHERE pending, one probe per provider x
    // tenant x environment that has pending rows (only the given provider's, when one is given) (a
    // loose index scan); `cand` takes and locks each scope's oldest due rows from the same index,
    // an equal share of the batch each (ceil(limit / scopes), at most per_scope_limit), skipping
    // rows other claims hold (SKIP LOCKED: replicas and loops take disjoint rows concurrently) and
    // rows whose lease is live; `picked` orders them round-robin by rank within their scope, oldest
    // first. A round may take fewer than `limit` rows when scopes are uneven; `more` then says
    // whether a scope gave its whole share (the dispatcher runs the next round at once). Cost:
    // O(scopes + batch), whatever the backlog. Each walk probe returns the first entry it found
    // alive in its scope, and `cand` starts that scope's scan there: both would otherwise step over
    // the same entries of rows dispatched since the last vacuum (they sort first in their scope:
    // oldest), which was most of a round's cost under a backlog. The picked rows are read back by
    // their row address (ctid: a row this transaction holds locked cannot move), without a second
    // index probe. With a provider, every probe stays within its part of the index: another
    // provider's backlog (parked during its outage) costs this claim nothing. Without a provider
    // but with providers to leave out (`except`), the walk still visits their scopes (one probe
    // each) but takes no row of theirs.
    const std::string only = provider.empty() ? "" : "AND provider = $4 ";
    const bool excluding = provider.empty() && !except.empty();
    const std::string live =
        excluding ? "(SELECT * FROM scopes WHERE NOT (provider = ANY($4::text[]))) s" : "scopes s";
    const std::string sql =
        "WITH RECURSIVE scopes AS ("
        "(SELECT provider, tenant_id, environment_id, next_attempt_at, created_at FROM "
        "workflow_executions WHERE status = 'pending' " +
        only +
        "ORDER BY provider, tenant_id, environment_id, next_attempt_at, created_at LIMIT 1) "
        "UNION ALL "
        "SELECT n.provider, n.tenant_id, n.environment_id, n.next_attempt_at, n.created_at FROM "
        "scopes s CROSS JOIN LATERAL (SELECT provider, tenant_id, environment_id, "
        "next_attempt_at, created_at FROM workflow_executions WHERE status = 'pending' " +
        only +
        "AND (provider, tenant_id, environment_id) > (s.provider, s.tenant_id, s.environment_id) "
        "ORDER BY provider, tenant_id, environment_id, next_attempt_at, created_at LIMIT 1) n), "
        "share AS (SELECT least($2::bigint, ($3::bigint + count(*) - 1) / greatest(count(*), 1)) "
        "AS n FROM " +
        live +
        "), "
        "cand AS (SELECT c.row_ctid, c.next_attempt_at, c.created_at, row_number() OVER "
        "(PARTITION BY s.provider, s.tenant_id, s.environment_id ORDER BY c.next_attempt_at, "
        "c.created_at) AS rank FROM " +
        live +
        " CROSS JOIN LATERAL (SELECT ctid AS row_ctid, "
        "next_attempt_at, created_at FROM workflow_executions WHERE status = 'pending' AND "
        "provider = s.provider AND tenant_id = s.tenant_id AND environment_id = s.environment_id "
        "AND (provider, tenant_id, environment_id, next_attempt_at, created_at) >= (s.provider, "
        "s.tenant_id, s.environment_id, s.next_attempt_at, s.created_at) "
        "AND next_attempt_at <= $1::timestamptz "
        "AND (lease_expires_at IS NULL OR lease_expires_at <= $1::timestamptz) "
        "ORDER BY next_attempt_at, created_at LIMIT (SELECT n FROM share) "
        "FOR UPDATE SKIP LOCKED) c), "
        "picked AS (SELECT row_ctid, rank >= (SELECT n FROM share) AS at_share FROM cand "
        "ORDER BY rank, next_attempt_at, created_at LIMIT $3::bigint) "
        "SELECT " +
        DispatchColumns() +
        ", picked.at_share, e.ctid::text FROM picked JOIN workflow_executions e ON e.ctid = "
        "picked.row_ctid";
    bool at_share = false;
    std::vector<std::string> ctids;
    const auto per_scope = static_cast<int64_t>(per_scope_limit);
    const auto batch = static_cast<int64_t>(limit);
    const pqxx::result rows =
        !provider.empty() ? w.exec_params(sql, Ts(now), per_scope, batch, provider)
        : excluding       ? w.exec_params(sql, Ts(now), per_scope, batch, TextArray(except))
                          : w.exec_params(sql, Ts(now), per_scope, batch);
    for (const auto& row : rows) {
      round.executions.push_back(RecordOf(row));
      at_share = at_share || row[25].as<bool>();
      ctids.push_back(row[26].as<std::string>());
    }
    round.more = at_share || round.executions.size() >= limit;
    Lease(w, ctids, round.lease, now + lease);
  });
  return round;
}

void LifecycleRepository::RecordDispatch(DispatchRound& round) {
  if (round.executions.empty()) return;
  if (round.outcomes.size() != round.executions.size()) {
    throw StoreError("dispatch round: " + std::to_string(round.outcomes.size()) + " outcomes for " +
                         std::to_string(round.executions.size()) + " executions",
                     false);
  }
  if (!round.leases.empty() && round.leases.size() != round.executions.size()) {
    throw StoreError("dispatch round: " + std::to_string(round.leases.size()) + " leases for " +
                         std::to_string(round.executions.size()) + " executions",
                     false);
  }
  round.unstorable.clear();
  const LeaseOf lease_of(round);
  auto recorded = db_.impl().Transact("dispatch record", [&](pqxx::work& w) {
    std::vector<std::string> unstorable;
    auto ids = RecordIsolated(
        w, round.outcomes,
        [&](pqxx::transaction_base& t, const std::vector<DispatchOutcome>& o) {
          return RecordStarts(t, lease_of, o);
        },
        DispatchFallback, unstorable);
    // Rows not attempted are due again at once (the recorded ones carry the lease no more).
    std::vector<std::string> not_attempted, their_leases;
    for (size_t i = 0; i < round.executions.size(); ++i) {
      if (round.outcomes[i].kind == DispatchOutcome::Kind::kNotAttempted) {
        not_attempted.push_back(round.executions[i].id);
        their_leases.push_back(lease_of(round.executions[i].id));
      }
    }
    ReleaseIn(w, not_attempted, their_leases);
    round.unstorable = std::move(unstorable);
    return ids;
  });
  const std::unordered_set<std::string> done(recorded.begin(), recorded.end());
  round.stale = NotRecorded(round.executions, done, [&](size_t i) {
    return round.outcomes[i].kind == DispatchOutcome::Kind::kNotAttempted;
  });
}

PollRound LifecycleRepository::ClaimPoll(TimePoint now, std::chrono::milliseconds lease,
                                         size_t limit, const std::string& provider,
                                         std::optional<TimePoint> due_by) {
  PollRound round;
  round.lease = NewLeaseToken(owner_);
  if (limit == 0) return round;
  db_.impl().Transact("poll claim", [&](pqxx::work& w) {
    // The due rows are taken along the poll index in next_poll_at order, stopping after `limit`.
    // Estimating few due rows (statistics from a quiet moment), the planner preferred a bitmap
    // scan of every due row and a sort: O(due rows) per round, 1,000-2,600 heap pages for 200 rows
    // in the lifecycle benchmark, and worse the larger the backlog.
    w.exec("SET LOCAL enable_bitmapscan = off");
    // With a provider, along that provider's part of the poll index (provider, next_poll_at).
    std::vector<std::string> ctids;
    const std::string sql =
        "SELECT " + PollColumns() +
        ", e.ctid::text FROM workflow_executions e WHERE e.status = 'running' AND " +
        (provider.empty() ? "" : "e.provider = $4 AND ") +
        "e.next_poll_at <= $3::timestamptz AND (e.lease_expires_at IS NULL OR "
        "e.lease_expires_at <= $1::timestamptz) ORDER BY e.next_poll_at LIMIT $2 FOR UPDATE "
        "SKIP LOCKED";
    const std::string due = Ts(due_by ? std::min(*due_by, now) : now);
    const pqxx::result rows =
        provider.empty() ? w.exec_params(sql, Ts(now), static_cast<int64_t>(limit), due)
                         : w.exec_params(sql, Ts(now), static_cast<int64_t>(limit), due, provider);
    for (const auto& row : rows) {
      round.executions.push_back(RecordOf(row));
      ctids.push_back(row[25].as<std::string>());
    }
    Lease(w, ctids, round.lease, now + lease);
  });
  return round;
}

void LifecycleRepository::RecordPoll(PollRound& round) {
  if (round.executions.empty()) return;
  round.unstorable.clear();
  round.transitions.clear();
  auto recorded = db_.impl().Transact("poll record", [&](pqxx::work& w) {
    std::vector<std::string> unstorable;
    auto done = RecordIsolated(
        w, round.outcomes,
        [&](pqxx::transaction_base& t, const std::vector<PollOutcome>& o) {
          return RecordPolls(t, round.lease, o);
        },
        PollFallback, unstorable);
    // Rows without an outcome (the round ran out of time) are due again at once (the recorded
    // ones carry the lease no more).
    std::unordered_set<std::string> polled;
    for (const auto& o : round.outcomes) polled.insert(o.id);
    std::vector<std::string> not_polled;
    for (const auto& e : round.executions) {
      if (!polled.contains(e.id)) not_polled.push_back(e.id);
    }
    ReleaseIn(w, not_polled, round.lease);
    round.unstorable = std::move(unstorable);
    return done;
  });
  std::unordered_set<std::string> done;
  for (const auto& [id, status] : recorded) {
    done.insert(id);
    if (status != "running") round.transitions.emplace_back(id, status);
  }
  std::unordered_set<std::string> polled;
  for (const auto& o : round.outcomes) polled.insert(o.id);
  round.stale = NotRecorded(round.executions, done,
                            [&](size_t i) { return !polled.contains(round.executions[i].id); });
}

void LifecycleRepository::Release(const std::string& lease,
                                  const std::vector<ExecutionRecord>& executions) {
  if (executions.empty()) return;
  db_.impl().Transact("release lease",
                      [&](pqxx::work& w) { ReleaseIn(w, IdsOf(executions), lease); });
}

void LifecycleRepository::Release(const std::vector<std::string>& ids,
                                  const std::vector<std::string>& leases) {
  if (ids.empty()) return;
  db_.impl().Transact("release lease", [&](pqxx::work& w) { ReleaseIn(w, ids, leases); });
}

namespace {

// Runs a round's calls between its claim and its record: with no transaction open. When the calls
// fail (no outcome at all), the round's rows are released, due again at once, and the failure
// propagates; a failure to release is left to the lease's expiry.
template <typename Round, typename Call>
void CallReleasingOnFailure(LifecycleRepository& repo, Round& round, Call&& call) {
  try {
    call();
  } catch (...) {
    try {
      repo.Release(round.lease, round.executions);
    } catch (const StoreError&) {
      // The database is unavailable: the lease expires instead.
    }
    throw;
  }
}

}  // namespace

DispatchRound LifecycleRepository::RunDispatchRound(TimePoint now, std::chrono::milliseconds lease,
                                                    size_t limit, size_t per_scope_limit,
                                                    const StartFn& start,
                                                    const std::string& provider,
                                                    const std::vector<std::string>& except) {
  DispatchRound round = ClaimDispatch(now, lease, limit, per_scope_limit, provider, except);
  if (round.executions.empty()) return round;
  CallReleasingOnFailure(*this, round, [&] { round.outcomes = start(round.executions); });
  RecordDispatch(round);
  return round;
}

PollRound LifecycleRepository::RunPollRound(TimePoint now, std::chrono::milliseconds lease,
                                            size_t limit, const PollFn& poll,
                                            const std::string& provider,
                                            std::optional<TimePoint> due_by) {
  PollRound round = ClaimPoll(now, lease, limit, provider, due_by);
  if (round.executions.empty()) return round;
  CallReleasingOnFailure(*this, round, [&] { round.outcomes = poll(round.executions); });
  RecordPoll(round);
  return round;
}

std::optional<ExecutionRecord> LifecycleRepository::Get(const std::string& tenant_id,
                                                        const std::string& environment_id,
                                                        const std::string& id) {
  return db_.impl().Transact("get execution", [&](pqxx::work& w) {
    auto r = w.exec_params("SELECT " + Columns() +
                               " FROM workflow_executions e WHERE e.id = $1 AND e.tenant_id = $2 "
                               "AND e.environment_id = $3",
                           id, tenant_id, environment_id);
    std::optional<ExecutionRecord> out;
    if (!r.empty()) out = RecordOf(r[0]);
    return out;
  });
}

std::vector<StepRecord> LifecycleRepository::Steps(const std::string& execution_id) {
  return db_.impl().Transact("get steps", [&](pqxx::work& w) {
    std::vector<StepRecord> out;
    for (const auto& r : w.exec_params("SELECT step_id, status, output, error, " +
                                           Us("started_at") + ", " + Us("completed_at") +
                                           " FROM step_executions WHERE execution_id = $1 ORDER BY "
                                           "started_at NULLS LAST, step_id",
                                       execution_id)) {
      out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), JsonOf(r[2]), JsonOf(r[3]),
                     TimeOf(r[4]), TimeOf(r[5])});
    }
    return out;
  });
}

std::vector<HistoryRecord> LifecycleRepository::History(const std::string& execution_id) {
  return db_.impl().Transact("get history", [&](pqxx::work& w) {
    std::vector<HistoryRecord> out;
    for (const auto& r : w.exec_params("SELECT seq, event_type, details, " + Us("occurred_at") +
                                           " FROM execution_history WHERE execution_id = $1 "
                                           "ORDER BY seq",
                                       execution_id)) {
      out.push_back({r[0].as<int>(), r[1].as<std::string>(), JsonOf(r[2]), *TimeOf(r[3])});
    }
    return out;
  });
}

bool LifecycleRepository::CancelPending(const std::string& tenant_id,
                                        const std::string& environment_id, const std::string& id,
                                        const std::string& reason, TimePoint now) {
  return db_.impl().Transact("cancel pending execution", [&](pqxx::work& w) {
    auto r = w.exec_params(
        "UPDATE workflow_executions SET status = 'cancelled', completed_at = $4::timestamptz, "
        "error = jsonb_build_object('code', 'Cancelled', 'message', $5::text), next_attempt_at = "
        "NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4::timestamptz "
        "WHERE id = $1 AND tenant_id = $2 AND environment_id = $3 AND status = 'pending' "
        "AND (lease_expires_at IS NULL OR lease_expires_at <= $4::timestamptz)",
        id, tenant_id, environment_id, Ts(now), reason);
    return r.affected_rows() == 1;
  });
}

bool LifecycleRepository::MarkCancelled(const std::string& tenant_id,
                                        const std::string& environment_id, const std::string& id,
                                        const std::string& reason, TimePoint now) {
  return db_.impl().Transact("mark execution cancelled", [&](pqxx::work& w) {
    auto r = w.exec_params(
        "UPDATE workflow_executions SET status = 'cancelled', completed_at = $4::timestamptz, "
        "error = jsonb_build_object('code', 'Cancelled', 'message', $5::text), next_poll_at = "
        "NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = $4::timestamptz "
        "WHERE id = $1 AND tenant_id = $2 AND environment_id = $3 AND status IN ('pending', "
        "'running') AND (lease_expires_at IS NULL OR lease_expires_at <= $4::timestamptz)",
        id, tenant_id, environment_id, Ts(now), reason);
    return r.affected_rows() == 1;
  });
}

bool LifecycleRepository::Leased(const std::string& tenant_id, const std::string& environment_id,
                                 const std::string& id, TimePoint now) {
  return db_.impl().Transact("execution leased", [&](pqxx::work& w) {
    return !w.exec_params(
                 "SELECT 1 FROM workflow_executions WHERE id = $1 AND tenant_id = $2 AND "
                 "environment_id = $3 AND status IN ('pending', 'running') AND "
                 "lease_expires_at > $4::timestamptz",
                 id, tenant_id, environment_id, Ts(now))
                .empty();
  });
}

std::optional<std::string> LifecycleRepository::Retry(const std::string& tenant_id,
                                                      const std::string& environment_id,
                                                      const std::string& id,
                                                      const std::string& new_id, TimePoint now) {
  return db_.impl().Transact("retry execution", [&](pqxx::work& w) {
    auto orig = w.exec_params(
        "SELECT status, workflow_id, trigger_event_id FROM workflow_executions WHERE id = $1 AND "
        "tenant_id = $2 AND environment_id = $3 FOR UPDATE",
        id, tenant_id, environment_id);
    if (orig.empty()) throw StoreError("execution " + id + " not found", false);
    std::string status = orig[0][0].as<std::string>();
    std::optional<std::string> out;
    if (status != "failed" && status != "timed_out" && status != "cancelled") return out;
    auto r = w.exec_params(
        "INSERT INTO workflow_executions (id, tenant_id, environment_id, workflow_id, "
        "workflow_name, definition_version, provider, trigger_type, trigger_event_id, "
        "trigger_event, status, attempt, retry_of, next_attempt_at, created_at, updated_at) "
        "SELECT $1, tenant_id, environment_id, workflow_id, workflow_name, definition_version, "
        "provider, trigger_type, trigger_event_id, trigger_event, 'pending', "
        "(SELECT max(attempt) + 1 FROM workflow_executions x WHERE x.workflow_id = o.workflow_id "
        "AND x.trigger_event_id = o.trigger_event_id), $2, $3::timestamptz, $3::timestamptz, "
        "$3::timestamptz FROM workflow_executions o WHERE o.id = $2",
        new_id, id, Ts(now));
    if (r.affected_rows() == 1) out = new_id;
    return out;
  });
}

std::vector<ExecutionRecord> LifecycleRepository::ActiveOfDefinition(
    const std::string& tenant_id, const std::string& environment_id,
    const std::string& definition_id) {
  return db_.impl().Transact("active executions of definition", [&](pqxx::work& w) {
    std::vector<ExecutionRecord> out;
    for (const auto& r : w.exec_params("SELECT " + Columns() +
                                           " FROM workflow_executions e WHERE e.workflow_id = $1 "
                                           "AND e.tenant_id = $2 AND e.environment_id = $3 AND "
                                           "e.status IN ('pending', 'running')",
                                       definition_id, tenant_id, environment_id)) {
      out.push_back(RecordOf(r));
    }
    return out;
  });
}

std::vector<std::tuple<std::string, std::string, size_t>> LifecycleRepository::PendingByScope(
    TimePoint now) {
  return db_.impl().Transact("pending by scope", [&](pqxx::work& w) {
    std::vector<std::tuple<std::string, std::string, size_t>> out;
    for (const auto& r : w.exec_params(
             "SELECT tenant_id, environment_id, count(*) FROM workflow_executions WHERE status = "
             "'pending' AND next_attempt_at <= $1::timestamptz GROUP BY 1, 2",
             Ts(now))) {
      out.emplace_back(r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<size_t>());
    }
    return out;
  });
}

std::vector<std::pair<std::string, size_t>> LifecycleRepository::CountByStatus(
    bool include_terminal) {
  return db_.impl().Transact("count by status", [&](pqxx::work& w) {
    std::vector<std::pair<std::string, size_t>> out;
    // Pending and running rows are counted along their partial indexes (cost: the live rows);
    // the terminal states need the whole table, so callers ask for them less often.
    std::string sql = include_terminal
                          ? "SELECT status, count(*) FROM workflow_executions GROUP BY status"
                          : "SELECT 'pending', count(*) FROM workflow_executions WHERE status = "
                            "'pending' UNION ALL SELECT 'running', count(*) FROM "
                            "workflow_executions WHERE status = 'running'";
    for (const auto& r : w.exec(sql)) {
      out.emplace_back(r[0].as<std::string>(), r[1].as<size_t>());
    }
    return out;
  });
}

}  // namespace workflowd::store
