#include "run.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "admin_endpoint.hpp"
#include "event_intake.hpp"
#include "index_refresher.hpp"
#include "lifecycle_loops.hpp"
#include "signal_watcher.hpp"
#include "systemd_notify.hpp"
#include "workflowd/pipeline/pipeline_metrics.hpp"
#include "workflowd/providers/mock/mock_provider.hpp"
#include "workflowd/providers/temporal/temporal_provider.hpp"
#include "workflowd/store/migrations.hpp"

#ifndef WORKFLOWD_VERSION
#define WORKFLOWD_VERSION "0.0.0-dev"
#endif

namespace workflowd::daemon {
namespace {

bool SleepUnless(const std::atomic<bool>& stop, std::chrono::milliseconds d) {
  auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) {
    if (stop) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

// What /healthz and /readyz answer. The admin endpoint opens first thing, before the daemon has
// reached PostgreSQL and loaded its definitions, which takes as long as PostgreSQL is away:
// meanwhile the daemon is alive (a restart would not bring PostgreSQL back) and not ready, and both
// reports name the step it is in. Once the daemon runs, its own checks answer.
class HealthSwitch {
 public:
  void Step(const std::string& step) {
    // One line (libpq's messages end in a newline and continue on tab-indented lines).
    std::string line;
    for (const char c : step) {
      const bool space = c == '\n' || c == '\t' || c == '\r' || c == ' ';
      if (!space) {
        line += c;
      } else if (!line.empty() && line.back() != ' ') {
        line += ' ';
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::lock_guard lock(mu_);
    step_ = std::move(line);
  }
  void Serve(HealthProvider liveness, HealthProvider readiness) {
    std::lock_guard lock(mu_);
    liveness_ = std::move(liveness);
    readiness_ = std::move(readiness);
  }
  // Back to the step answers; waits for a probe in progress, so that what the daemon's checks
  // read can then go away.
  void Stopping() {
    std::lock_guard lock(mu_);
    liveness_ = nullptr;
    readiness_ = nullptr;
    step_ = "stopping";
  }
  HealthReport Liveness() {
    std::lock_guard lock(mu_);
    if (liveness_) return liveness_();
    return {true, {{"startup", true, step_}}};
  }
  HealthReport Readiness() {
    std::lock_guard lock(mu_);
    if (readiness_) return readiness_();
    return {false, {{"startup", false, step_}}};
  }

 private:
  std::mutex mu_;
  std::string step_ = "starting";
  HealthProvider liveness_, readiness_;
};

http::ServerOptions AdminOptions(const std::string& listen) {
  http::ServerOptions o;
  auto colon = listen.rfind(':');
  o.bind_address = listen.substr(0, colon);
  o.port = std::stoi(listen.substr(colon + 1));
  return o;
}

// Waits for a database with the right schema; keeps trying (it may start after us). Returns the
// exit code when the daemon cannot go on (a schema too old, an unusable database: 1; stopped
// while waiting: 0).
std::optional<int> WaitForSchema(const Config& config, const std::atomic<bool>& stop,
                                 HealthSwitch& health, pipeline::PipelineMetrics& pm) {
  int expected_schema = store::BundledMigrations().back().version;
  health.Step("connecting to PostgreSQL");
  for (bool logged = false;;) {
    try {
      int version = store::SchemaVersion(config.database.url);
      if (version < expected_schema) {
        spdlog::error(
            "database schema is at version {}, this binary needs {}: run `workflowd "
            "migrate` first",
            version, expected_schema);
        return 1;
      }
      return std::nullopt;
    } catch (const store::StoreError& e) {
      if (!e.Retryable()) {
        spdlog::error("cannot use the database: {}", e.what());
        return 1;
      }
      if (!logged) spdlog::warn("waiting for PostgreSQL: {}", e.what());
      logged = true;
      health.Step(std::string("waiting for PostgreSQL: ") + e.what());
      pm.database_errors.WithLabels({"load_definitions"}).Inc();
      if (!SleepUnless(stop, std::chrono::seconds(1))) return 0;
    }
  }
}

// Loads the matching index, retrying while PostgreSQL refuses; false when stopped meanwhile.
bool LoadDefinitions(IndexRefresher& refresher, const std::atomic<bool>& stop,
                     HealthSwitch& health) {
  health.Step("loading workflow definitions");
  while (true) {
    try {
      refresher.LoadNow("startup");
      return true;
    } catch (const store::StoreError& e) {
      spdlog::warn("cannot load definitions yet: {}", e.what());
      health.Step(std::string("cannot load workflow definitions yet: ") + e.what());
      if (!SleepUnless(stop, std::chrono::seconds(1))) return false;
    }
  }
}

// Until `stop`: tells systemd once the daemon is really ready, keeps its watchdog fed only while
// the pipeline is alive (a stuck loop gets the service restarted), and keeps workflowd_ready
// current. Then tells systemd the daemon is stopping.
void Supervise(const std::atomic<bool>& stop, const Config& config,
               const matching::DefinitionIndexHolder& index, const std::function<bool()>& ready,
               const std::function<bool()>& alive, metrics::Gauge& ready_gauge) {
  SystemdNotifier systemd;
  bool announced_ready = false;
  auto next_watchdog = std::chrono::steady_clock::now();
  while (!stop) {
    auto now = std::chrono::steady_clock::now();
    bool is_ready = ready();
    ready_gauge.Set(is_ready ? 1 : 0);
    if (!announced_ready && is_ready) {
      systemd.Ready("consuming " + fmt::format("{}", fmt::join(config.kafka.topics, ",")) + "; " +
                    std::to_string(index.Get()->size()) + " definitions");
      announced_ready = true;
    }
    if (systemd.watchdog_interval() && now >= next_watchdog && alive()) {
      systemd.Watchdog();
      next_watchdog = now + *systemd.watchdog_interval();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  systemd.Stopping("shutting down");
}

// Bounded shutdown: if stopping takes longer than `timeout` (a batch in flight that cannot
// finish), the process exits without waiting and without committing it (it will be redelivered).
class ShutdownDeadline {
 public:
  explicit ShutdownDeadline(std::chrono::milliseconds timeout)
      : thread_([this, timeout] {
          auto until = std::chrono::steady_clock::now() + timeout;
          while (!finished_ && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
          }
          if (!finished_) {
            spdlog::error("shutdown took longer than {} ms; exiting without waiting",
                          timeout.count());
            spdlog::default_logger()->flush();
            _exit(1);
          }
        }) {}
  ~ShutdownDeadline() { Met(); }
  ShutdownDeadline(const ShutdownDeadline&) = delete;
  ShutdownDeadline& operator=(const ShutdownDeadline&) = delete;

  // Everything stopped in time.
  void Met() noexcept {
    finished_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> finished_{false};
  std::thread thread_;  // last
};

}  // namespace

std::shared_ptr<providers::Registry> ProviderRegistryFor(const Config& config, bool for_checks) {
  auto registry = std::make_shared<providers::Registry>();
  if (config.mock_provider.enabled) {
    auto mock = std::make_shared<providers::mock::MockProvider>(SystemClock::Instance());
    if (!for_checks) {
      mock->EnableReconstruction(true);  // answer for executions other replicas started
      if (!config.mock_provider.start_log.empty()) {
        mock->SetStartLog(config.mock_provider.start_log);
      }
      if (const auto& m = config.mock_provider.misbehaviour; m.Any()) {
        mock->SetMisbehaviour(m);
        // Loud, so that nobody takes what it measures for an engine's real behaviour.
        spdlog::warn("the mock provider misbehaves on purpose (tests and benchmarks only): {}",
                     providers::mock::Describe(m));
      }
    }
    registry->Register(mock);
  }
  if (!config.temporal.address.empty()) {
    providers::temporal::Options options = config.temporal;
    if (for_checks) {
      // Checks of definitions call no server: the files are read by the daemon, not by them.
      options.tls = {.enabled = options.tls.enabled || !options.tls.ca_file.empty() ||
                                !options.tls.cert_file.empty()};
    }
    registry->Register(std::make_shared<providers::temporal::TemporalProvider>(
        std::move(options), SystemClock::Instance()));
  }
  return registry;
}

int RunDaemon(const Config& config) {
  std::atomic<bool> stop{false};
  SignalWatcher signals(stop);

  metrics::Registry registry;
  registry.AddGauge("workflowd_build_info", "Build information; always 1", {"version"})
      .WithLabels({WORKFLOWD_VERSION})
      .Set(1);
  pipeline::PipelineMetrics pm(registry);
  auto& ready_gauge = registry.AddGauge("workflowd_ready", "1 while /readyz reports ready, else 0");
  ready_gauge.Set(0);

  // The admin endpoint (/metrics, /healthz, /readyz) opens first: until the daemon runs, its
  // probes answer with the startup step (HealthSwitch).
  HealthSwitch health;
  std::unique_ptr<AdminEndpoint> admin;
  if (!config.admin.listen.empty()) {
    admin = std::make_unique<AdminEndpoint>(
        AdminOptions(config.admin.listen), registry, [&health] { return health.Liveness(); },
        [&health] { return health.Readiness(); });
    admin->Start();
    spdlog::info("admin endpoint listening on {}:{} (/metrics, /healthz, /readyz)",
                 admin->bind_address(), admin->port());
  }

  // Startup: PostgreSQL with this binary's schema, then the matching index (both waited for).
  if (std::optional<int> exit_code = WaitForSchema(config, stop, health, pm)) return *exit_code;
  matching::DefinitionIndexHolder index;
  IndexRefresher refresher(config.database.url, config.database.connect_timeout,
                           config.matching.resync_interval, index, pm);
  if (!LoadDefinitions(refresher, stop, health)) return 0;

  // The subsystems, built and started in this order and stopped in reverse order below.
  refresher.Start();                      // reloads the index on changes and periodically
  EventIntake intake(config, index, pm);  // the Kafka consumer joins its group
  LifecycleLoops lifecycle(config, registry);
  intake.OfferTo(lifecycle);  // new executions: a dispatch loop starts them at once
  lifecycle.Start();          // dispatch, status polling, gauges
  // The lag gauge follows the current assignment: a revoked partition's series goes away (an
  // assigned one whose lag is unknown keeps its last value).
  metrics::ScopedCollectCallback lag_collect(registry, [&intake, &pm] {
    std::set<std::vector<std::string>> assigned;
    for (const auto& l : intake.kafka().Lag()) {
      std::vector<std::string> labels{l.topic, std::to_string(l.partition)};
      if (l.lag >= 0) pm.lag.WithLabels(labels).Set(static_cast<double>(l.lag));
      assigned.insert(std::move(labels));
    }
    pm.lag.RemoveExcept(assigned);
  });

  // What /healthz and /readyz answer from here on.
  auto liveness = [&] {
    HealthReport r;
    bool alive =
        !intake.Failed() && std::chrono::steady_clock::now() - intake.pipeline().LastProgress() <
                                std::chrono::seconds(120);
    r.checks.push_back({"event_pipeline", alive, alive ? "running" : "stalled or failed"});
    r.ok = alive;
    return r;
  };
  auto readiness = [&] {
    const consumers::KafkaEventSource& source = intake.kafka();
    const pipeline::EventPipeline& pipeline = intake.pipeline();
    HealthReport r;
    r.checks.push_back({"kafka", source.Healthy(), source.HealthDetail()});
    bool db_ok = pipeline.DatabaseHealthy() && refresher.Healthy() && lifecycle.Healthy();
    r.checks.push_back({"database", db_ok, db_ok ? "reachable" : "unreachable"});
    r.checks.push_back({"dead_letter_topic", pipeline.DeadLetterHealthy(),
                        pipeline.DeadLetterHealthy() ? "writable" : "unavailable"});
    r.checks.push_back({"consuming", !source.paused() && !intake.Failed(),
                        source.paused() ? "paused" : "consuming"});
    // An engine outage (a provider's circuit breaker open or probing): its executions are parked.
    std::string providers_detail;
    const bool answering = lifecycle.ProvidersAnswering(providers_detail);
    r.checks.push_back({"providers", answering, providers_detail});
    r.ok = true;
    for (const auto& c : r.checks) r.ok = r.ok && c.ok;
    return r;
  };
  health.Serve(liveness, readiness);
  // Destroyed before what the checks read (declared above).
  struct StopServing {
    HealthSwitch& health;
    ~StopServing() { health.Stopping(); }
  } stop_serving{health};

  spdlog::info("workflowd {} started: instance={} group={} topics={} definitions={}",
               WORKFLOWD_VERSION, config.instance_id, config.kafka.group_id,
               fmt::join(config.kafka.topics, ","), index.Get()->size());
  intake.Start(stop);  // the event pipeline, on its own thread

  // Serve until SIGTERM / SIGINT, or until the event pipeline fails.
  Supervise(
      stop, config, index, [&] { return readiness().ok; }, [&] { return liveness().ok; },
      ready_gauge);

  // Shutdown, in reverse order of the start, bounded by shutdown_timeout.
  health.Stopping();  // /readyz: not ready, "stopping"
  ShutdownDeadline deadline(config.shutdown_timeout);
  intake.Stop();        // the batch in flight finished (or abandoned uncommitted: redelivered)
  lifecycle.Stop();     // rounds finished: no row is held any more
  lag_collect.Reset();  // no scrape reads the consumer any more (a running one is waited for)
  intake.Close();       // stored offsets committed, the consumer group left
  refresher.Stop();
  if (admin) admin->Stop();
  deadline.Met();
  spdlog::info("workflowd stopped");
  return intake.Failed() ? 1 : 0;
}

}  // namespace workflowd::daemon
