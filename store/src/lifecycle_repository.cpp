#include "workflowd/store/lifecycle_repository.hpp"

#include "database_impl.hpp"
#include "workflowd/common/timefmt.hpp"

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

const std::string& Columns() {
  static const std::string kColumns =
      "e.id, e.tenant_id, e.environment_id, e.workflow_id, e.workflow_name, "
      "e.definition_version, e.provider, coalesce(e.provider_execution_id, ''), e.trigger_type, "
      "e.trigger_event_id, e.trigger_event, e.status, e.attempt, coalesce(e.retry_of, ''), "
      "e.start_attempts, e.poll_count, e.output, e.error, " +
      Us("e.created_at") + ", " + Us("e.started_at") + ", " + Us("e.completed_at") + ", " +
      Us("e.deadline_at") + ", " + Us("e.next_attempt_at") + ", " + Us("e.next_poll_at");
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
  return e;
}

std::string IntervalMs(std::chrono::milliseconds d) {
  return "interval '" + std::to_string(d.count()) + " milliseconds'";
}

std::string OptTs(pqxx::work& w, const std::optional<TimePoint>& t) {
  return t ? w.quote(Ts(*t)) + "::timestamptz" : "NULL";
}

std::string OptJson(pqxx::work& w, const Json& j) {
  return j.is_null() ? "NULL" : w.quote(j.dump()) + "::jsonb";
}

}  // namespace

std::vector<ExecutionRecord> LifecycleRepository::LeasePending(const std::string& owner,
                                                               TimePoint now,
                                                               std::chrono::milliseconds lease,
                                                               size_t limit,
                                                               size_t per_scope_limit) {
  return db_.impl().Transact("lease pending executions", [&](pqxx::work& w) {
    // Candidates ranked within their tenant x environment, then taken round-robin by rank;
    // SKIP LOCKED lets replicas lease disjoint rows concurrently.
    std::string sql =
        "WITH due AS (SELECT id, next_attempt_at, created_at, row_number() OVER (PARTITION BY "
        "tenant_id, environment_id ORDER BY next_attempt_at, created_at) AS rank "
        "FROM workflow_executions WHERE status = 'pending' AND next_attempt_at <= $1::timestamptz "
        "AND (lease_expires_at IS NULL OR lease_expires_at <= $1::timestamptz)), "
        "picked AS (SELECT e.id FROM workflow_executions e JOIN due ON due.id = e.id "
        "WHERE due.rank <= $3 AND e.status = 'pending' "
        "AND (e.lease_expires_at IS NULL OR e.lease_expires_at <= $1::timestamptz) "
        "ORDER BY due.rank, due.next_attempt_at, due.created_at LIMIT $4 "
        "FOR UPDATE OF e SKIP LOCKED) "
        "UPDATE workflow_executions e SET lease_owner = $2, lease_expires_at = $1::timestamptz + " +
        IntervalMs(lease) +
        ", start_attempts = e.start_attempts + 1, updated_at = $1::timestamptz "
        "FROM picked WHERE e.id = picked.id RETURNING " +
        Columns();
    std::vector<ExecutionRecord> out;
    for (const auto& row : w.exec_params(sql, Ts(now), owner, static_cast<int64_t>(per_scope_limit),
                                         static_cast<int64_t>(limit))) {
      out.push_back(RecordOf(row));
    }
    return out;
  });
}

std::vector<ExecutionRecord> LifecycleRepository::LeaseDuePolls(const std::string& owner,
                                                                TimePoint now,
                                                                std::chrono::milliseconds lease,
                                                                size_t limit) {
  return db_.impl().Transact("lease due polls", [&](pqxx::work& w) {
    std::string sql =
        "WITH picked AS (SELECT id FROM workflow_executions WHERE status = 'running' AND "
        "next_poll_at <= $1::timestamptz AND (lease_expires_at IS NULL OR lease_expires_at <= "
        "$1::timestamptz) ORDER BY next_poll_at LIMIT $3 FOR UPDATE SKIP LOCKED) "
        "UPDATE workflow_executions e SET lease_owner = $2, lease_expires_at = $1::timestamptz + " +
        IntervalMs(lease) + " FROM picked WHERE e.id = picked.id RETURNING " + Columns();
    std::vector<ExecutionRecord> out;
    for (const auto& row : w.exec_params(sql, Ts(now), owner, static_cast<int64_t>(limit))) {
      out.push_back(RecordOf(row));
    }
    return out;
  });
}

size_t LifecycleRepository::RecordDispatch(const std::string& owner,
                                           const std::vector<DispatchOutcome>& outcomes) {
  if (outcomes.empty()) return 0;
  return db_.impl().Transact("record dispatch", [&](pqxx::work& w) {
    size_t changed = 0;
    for (const auto& o : outcomes) {
      pqxx::result r;
      switch (o.kind) {
        case DispatchOutcome::Kind::kStarted:
          r = w.exec_params(
              "UPDATE workflow_executions SET status = 'running', provider_execution_id = $3, "
              "started_at = $4::timestamptz, next_poll_at = $5::timestamptz, deadline_at = "
              "$6::timestamptz, error = NULL, next_attempt_at = NULL, lease_owner = NULL, "
              "lease_expires_at = NULL, updated_at = $4::timestamptz "
              "WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
              o.id, owner, o.provider_execution_id, Ts(o.at), Ts(o.next_at),
              o.deadline_at ? std::optional<std::string>(Ts(*o.deadline_at)) : std::nullopt);
          break;
        case DispatchOutcome::Kind::kRetry:
          r = w.exec_params(
              "UPDATE workflow_executions SET next_attempt_at = $3::timestamptz, error = "
              "$4::jsonb, lease_owner = NULL, lease_expires_at = NULL, updated_at = "
              "$5::timestamptz WHERE id = $1 AND lease_owner = $2 AND status = 'pending'",
              o.id, owner, Ts(o.next_at), o.error.dump(), Ts(o.at));
          break;
        case DispatchOutcome::Kind::kFailed:
          r = w.exec_params(
              "UPDATE workflow_executions SET status = 'failed', error = $3::jsonb, completed_at "
              "= $4::timestamptz, next_attempt_at = NULL, lease_owner = NULL, lease_expires_at = "
              "NULL, updated_at = $4::timestamptz WHERE id = $1 AND lease_owner = $2 AND status "
              "= 'pending'",
              o.id, owner, o.error.dump(), Ts(o.at));
          break;
      }
      changed += r.affected_rows();
    }
    return changed;
  });
}

std::vector<std::pair<std::string, std::string>> LifecycleRepository::RecordPolls(
    const std::string& owner, const std::vector<PollOutcome>& outcomes) {
  if (outcomes.empty()) return {};
  return db_.impl().Transact("record polls", [&](pqxx::work& w) {
    std::vector<std::pair<std::string, std::string>> transitions;
    for (const auto& o : outcomes) {
      bool terminal = o.status == "succeeded" || o.status == "failed" || o.status == "timed_out" ||
                      o.status == "cancelled";
      // Terminal is terminal: the row only changes while it is running and still ours.
      auto r =
          w.exec("UPDATE workflow_executions SET status = " + w.quote(o.status) +
                 ", output = " + OptJson(w, o.output) + ", error = " + OptJson(w, o.error) +
                 ", completed_at = " + OptTs(w, o.completed_at) + ", next_poll_at = " +
                 (terminal ? std::string("NULL") : w.quote(Ts(o.next_poll_at)) + "::timestamptz") +
                 ", poll_count = poll_count + 1, lease_owner = NULL, lease_expires_at = NULL, "
                 "updated_at = now() WHERE id = " +
                 w.quote(o.id) + " AND lease_owner = " + w.quote(owner) +
                 " AND status = 'running' RETURNING tenant_id, environment_id");
      if (r.empty()) continue;  // lost the lease or no longer running: leave it alone
      std::string tenant = r[0][0].as<std::string>();
      std::string env = r[0][1].as<std::string>();
      if (o.status != "running") transitions.emplace_back(o.id, o.status);
      for (const auto& s : o.steps) {
        w.exec(
            "INSERT INTO step_executions (execution_id, step_id, tenant_id, environment_id, "
            "status, output, error, started_at, completed_at) VALUES (" +
            w.quote(o.id) + "," + w.quote(s.step_id) + "," + w.quote(tenant) + "," + w.quote(env) +
            "," + w.quote(s.status) + "," + OptJson(w, s.output) + "," + OptJson(w, s.error) + "," +
            OptTs(w, s.started_at) + "," + OptTs(w, s.completed_at) +
            ") ON CONFLICT (execution_id, step_id) DO UPDATE SET status = EXCLUDED.status, "
            "output = EXCLUDED.output, error = EXCLUDED.error, started_at = "
            "EXCLUDED.started_at, completed_at = EXCLUDED.completed_at, updated_at = now() "
            "WHERE (step_executions.status, step_executions.output, step_executions.error, "
            "step_executions.started_at, step_executions.completed_at) IS DISTINCT FROM "
            "(EXCLUDED.status, EXCLUDED.output, EXCLUDED.error, EXCLUDED.started_at, "
            "EXCLUDED.completed_at)");
      }
      if (!o.history.empty()) {
        std::string sql =
            "INSERT INTO execution_history (execution_id, seq, tenant_id, environment_id, "
            "event_type, details, occurred_at) VALUES ";
        for (size_t i = 0; i < o.history.size(); ++i) {
          const auto& h = o.history[i];
          if (i > 0) sql += ',';
          sql += "(" + w.quote(o.id) + "," + std::to_string(h.seq) + "," + w.quote(tenant) + "," +
                 w.quote(env) + "," + w.quote(h.event_type) + "," + OptJson(w, h.details) + "," +
                 w.quote(Ts(h.occurred_at)) + "::timestamptz)";
        }
        sql += " ON CONFLICT (execution_id, seq) DO NOTHING";
        w.exec(sql);
      }
    }
    return transitions;
  });
}

void LifecycleRepository::ReleaseLeases(const std::string& owner) {
  db_.impl().Transact("release leases", [&](pqxx::work& w) {
    w.exec_params(
        "UPDATE workflow_executions SET lease_owner = NULL, lease_expires_at = NULL WHERE "
        "lease_owner = $1 AND status IN ('pending', 'running')",
        owner);
  });
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
        "WHERE id = $1 AND tenant_id = $2 AND environment_id = $3 AND status = 'pending'",
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
        "'running')",
        id, tenant_id, environment_id, Ts(now), reason);
    return r.affected_rows() == 1;
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

std::vector<std::pair<std::string, size_t>> LifecycleRepository::CountByStatus() {
  return db_.impl().Transact("count by status", [&](pqxx::work& w) {
    std::vector<std::pair<std::string, size_t>> out;
    for (const auto& r :
         w.exec("SELECT status, count(*) FROM workflow_executions GROUP BY status")) {
      out.emplace_back(r[0].as<std::string>(), r[1].as<size_t>());
    }
    return out;
  });
}

}  // namespace workflowd::store
