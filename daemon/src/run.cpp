#include "run.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "background_worker.hpp"
#include "event_pipeline.hpp"
#include "index_refresher.hpp"
#include "systemd_notify.hpp"
#include "workflowd/lifecycle/execution_dispatcher.hpp"
#include "workflowd/lifecycle/execution_gauges.hpp"
#include "workflowd/lifecycle/status_poller.hpp"
#include "workflowd/metrics/admin_server.hpp"
#include "workflowd/providers/mock/mock_provider.hpp"
#include "workflowd/store/migrations.hpp"

#ifndef WORKFLOWD_VERSION
#define WORKFLOWD_VERSION "0.0.0-dev"
#endif

namespace workflowd::daemon {
namespace {

// A dispatch loop woken by new executions starts its next lease no sooner than this after its
// previous one: at a steady stream the event pipeline commits a small batch every few
// milliseconds, and a lease per commit (each walking the tenant x environment scopes) was
// PostgreSQL's largest cost; gathered, one lease takes the rows of several commits.
constexpr std::chrono::milliseconds kDispatchWakeGap{10};

// Metric families labelled by tenant x environment export this many label sets each; further
// ones are summed into one series labelled "other" (the README's Metrics section says so): a
// Prometheus server's cost grows with the series, and tenants are data, not configuration.
constexpr std::size_t kMaxScopeSeries = 500;

decoding::DecoderConfig DecoderFrom(const KafkaConfig& k) {
  decoding::DecoderConfig d;
  d.mode = k.format == "cloudevents" ? decoding::DecoderConfig::Mode::kCloudEvents
           : k.format == "flat"      ? decoding::DecoderConfig::Mode::kFlat
                                     : decoding::DecoderConfig::Mode::kAuto;
  d.flat.id = k.flat.id;
  d.flat.type = k.flat.event_name;
  d.flat.tenant = k.flat.tenant;
  d.flat.environment = k.flat.environment;
  d.flat.time = k.flat.time;
  d.flat.data = k.flat.data;
  d.flat.source = k.flat.source;
  d.max_record_bytes = k.max_record_bytes;
  return d;
}

// Blocks SIGTERM/SIGINT in every thread and turns them into `stop` from a dedicated thread.
class SignalWatcher {
 public:
  explicit SignalWatcher(std::atomic<bool>& stop) : stop_(stop), set_{} {
    sigemptyset(&set_);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGUSR1);  // used to wake the watcher on shutdown
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);
    thread_ = std::thread([this] {
      int sig = 0;
      while (sigwait(&set_, &sig) == 0) {
        if (sig == SIGUSR1 && done_) return;
        if (sig == SIGTERM || sig == SIGINT) {
          spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
          stop_ = true;
          return;
        }
      }
    });
  }
  ~SignalWatcher() {
    done_ = true;
    pthread_kill(thread_.native_handle(), SIGUSR1);
    thread_.join();
  }

 private:
  std::atomic<bool>& stop_;
  std::atomic<bool> done_{false};
  sigset_t set_;
  std::thread thread_;
};

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
  void Serve(metrics::HealthProvider liveness, metrics::HealthProvider readiness) {
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
  metrics::HealthReport Liveness() {
    std::lock_guard lock(mu_);
    if (liveness_) return liveness_();
    return {true, {{"startup", true, step_}}};
  }
  metrics::HealthReport Readiness() {
    std::lock_guard lock(mu_);
    if (readiness_) return readiness_();
    return {false, {{"startup", false, step_}}};
  }

 private:
  std::mutex mu_;
  std::string step_ = "starting";
  metrics::HealthProvider liveness_, readiness_;
};

metrics::AdminServerOptions AdminOptions(const std::string& listen) {
  metrics::AdminServerOptions o;
  auto colon = listen.rfind(':');
  o.bind_address = listen.substr(0, colon);
  o.port = std::stoi(listen.substr(colon + 1));
  return o;
}

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
    }
    registry->Register(mock);
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
  PipelineMetrics pm(registry);
  auto& ready_gauge = registry.AddGauge("workflowd_ready", "1 while /readyz reports ready, else 0");
  ready_gauge.Set(0);

  HealthSwitch health;
  std::unique_ptr<metrics::AdminServer> admin;
  if (!config.admin.listen.empty()) {
    admin = std::make_unique<metrics::AdminServer>(
        AdminOptions(config.admin.listen), registry, [&health] { return health.Liveness(); },
        [&health] { return health.Readiness(); });
    admin->Start();
    spdlog::info("admin endpoint listening on {}:{} (/metrics, /healthz, /readyz)",
                 admin->bind_address(), admin->port());
  }

  // Wait for a database with the right schema; keep trying (it may start after us).
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
      break;
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

  matching::DefinitionIndexHolder index;
  IndexRefresher refresher(config.database.url, config.database.connect_timeout,
                           config.matching.resync_interval, index, pm);
  health.Step("loading workflow definitions");
  while (true) {
    try {
      refresher.LoadNow("startup");
      break;
    } catch (const store::StoreError& e) {
      spdlog::warn("cannot load definitions yet: {}", e.what());
      health.Step(std::string("cannot load workflow definitions yet: ") + e.what());
      if (!SleepUnless(stop, std::chrono::seconds(1))) return 0;
    }
  }
  refresher.Start();

  consumers::KafkaSourceConfig kc;
  kc.brokers = config.kafka.brokers;
  kc.group_id = config.kafka.group_id;
  kc.topics = config.kafka.topics;
  kc.properties = config.kafka.properties;
  kc.commit_interval = config.kafka.commit_interval;
  kc.client_id = "workflowd-" + config.instance_id;
  consumers::KafkaEventSource source(kc);
  consumers::DeadLetterProducer dlq(config.kafka.brokers, config.kafka.dlq_topic,
                                    config.kafka.properties, config.kafka.max_record_bytes,
                                    EventPipelineOptions{}.dead_letter_timeout);
  store::Database db(config.database.url, config.database.connect_timeout);
  store::ExecutionRepository executions(db);

  EventPipelineOptions po;
  po.decoder = DecoderFrom(config.kafka);
  po.consumer_group = config.kafka.group_id;
  po.batch_size = config.kafka.batch_size;
  po.batch_timeout = config.kafka.batch_timeout;
  // The dispatch loops (created below, before the pipeline runs) sleep dispatch.idle_interval
  // when they took every due execution; new executions are offered to one of them, each in turn,
  // and wake it (waking all made every loop run a round per committed batch). The woken loop takes
  // them by id: at a steady stream of small batches, fair rounds (a walk over every tenant x
  // environment with pending rows) for each batch were PostgreSQL's largest cost, growing with the
  // number of tenants. A loop busy with a round runs again right after it; under a backlog all
  // loops run fair rounds continuously anyway (full rounds).
  struct DispatchTarget {
    lifecycle::ExecutionDispatcher* dispatcher;
    BackgroundWorker* worker;
  };
  std::vector<DispatchTarget> dispatch_targets;
  std::atomic<size_t> next_to_wake{0};
  po.on_committed = [&dispatch_targets, &next_to_wake](std::vector<std::string> ids) {
    if (dispatch_targets.empty()) return;
    const DispatchTarget& target = dispatch_targets[next_to_wake++ % dispatch_targets.size()];
    target.dispatcher->Offer(std::move(ids));
    target.worker->Wake();
  };
  EventPipeline pipeline(po, source, dlq, executions, index, pm, SystemClock::Instance());

  // Providers and the execution lifecycle (dispatch, status polling).
  providers::Manager manager(ProviderRegistryFor(config));
  if (const auto names = manager.ListProviders(); names.empty()) {
    spdlog::warn(
        "workflow providers: none enabled; executions fail with provider_not_found until the "
        "configuration turns one on (providers.*)");
  } else {
    spdlog::info("workflow providers: {}", fmt::join(names, ", "));
  }
  if (config.mock_provider.enabled) {
    spdlog::warn(
        "the mock provider is enabled: its executions run nothing and are recorded as done (for "
        "demos and tests only)");
  }
  lifecycle::LifecycleMetrics lm(registry);
  // Series labelled by tenant x environment are bounded (see kMaxScopeSeries).
  for (metrics::GaugeFamily* family : {&lm.queued, &lm.in_flight}) {
    family->LimitSeries(kMaxScopeSeries, "other", [](const std::string& name) {
      spdlog::warn(
          "metric {}: more than {} tenant x environment series; the others are summed into "
          "tenant=\"other\",environment=\"other\"",
          name, kMaxScopeSeries);
    });
  }
  lifecycle::WorkflowCatalog catalog(manager);
  // dispatch.workers dispatcher loops and poll.workers poller loops, each with its own
  // connection: one loop waits on PostgreSQL most of the time, so several overlap their rounds.
  // Each round holds its rows locked (SKIP LOCKED), which keeps loops apart like separate
  // replicas.
  struct DispatchLoop {
    explicit DispatchLoop(const Config& c) : db(c.database.url, c.database.connect_timeout) {}
    store::Database db;
    std::mt19937_64 rng{std::random_device{}()};
    std::unique_ptr<lifecycle::ExecutionDispatcher> dispatcher;
    std::unique_ptr<BackgroundWorker> worker;
  };
  struct PollLoop {
    explicit PollLoop(const Config& c) : db(c.database.url, c.database.connect_timeout) {}
    store::Database db;
    std::unique_ptr<lifecycle::StatusPoller> poller;
    std::unique_ptr<BackgroundWorker> worker;
  };
  std::vector<std::unique_ptr<DispatchLoop>> dispatch_loops;
  std::vector<std::unique_ptr<PollLoop>> poll_loops;
  for (size_t i = 0; i < std::max<size_t>(1, config.dispatch.workers); ++i) {
    auto loop = std::make_unique<DispatchLoop>(config);
    lifecycle::DispatcherOptions dopts;
    dopts.lease = config.dispatch.lease;
    dopts.batch_size = config.dispatch.batch_size;
    dopts.per_scope_limit = config.dispatch.per_scope_limit;
    dopts.max_in_flight = config.dispatch.max_in_flight;
    dopts.call_timeout = config.dispatch.call_timeout;
    dopts.first_poll = config.poll.min_interval;
    dopts.fair_interval = config.dispatch.idle_interval;
    auto* rng = &loop->rng;
    loop->dispatcher = std::make_unique<lifecycle::ExecutionDispatcher>(
        dopts, loop->db, manager, catalog, lm, SystemClock::Instance(),
        [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); });
    auto* dispatcher = loop->dispatcher.get();
    loop->worker = std::make_unique<BackgroundWorker>(
        i == 0 ? "dispatcher" : "dispatcher-" + std::to_string(i + 1),
        [dispatcher] {
          dispatcher->RunOnce();
          return dispatcher->MoreDue();
        },
        config.dispatch.idle_interval, kDispatchWakeGap);
    dispatch_targets.push_back({dispatcher, loop->worker.get()});
    dispatch_loops.push_back(std::move(loop));
  }
  for (size_t i = 0; i < std::max<size_t>(1, config.poll.workers); ++i) {
    auto loop = std::make_unique<PollLoop>(config);
    lifecycle::PollerOptions popts;
    popts.lease = config.dispatch.lease;
    popts.batch_size = config.poll.batch_size;
    popts.max_in_flight = config.poll.max_in_flight;
    popts.call_timeout = config.dispatch.call_timeout;
    popts.min_interval = config.poll.min_interval;
    popts.max_interval = config.poll.max_interval;
    loop->poller = std::make_unique<lifecycle::StatusPoller>(popts, loop->db, manager, catalog, lm,
                                                             SystemClock::Instance());
    auto* poller = loop->poller.get();
    loop->worker = std::make_unique<BackgroundWorker>(
        i == 0 ? "poller" : "poller-" + std::to_string(i + 1),
        [poller] {
          poller->RunOnce();
          return poller->MoreDue();
        },
        config.dispatch.idle_interval);
    poll_loops.push_back(std::move(loop));
  }
  // The database-wide gauges, every 5 s on a connection of their own (counting terminal states
  // scans the whole table: in a dispatch loop it held up starts for as long).
  store::Database gauges_db(config.database.url, config.database.connect_timeout);
  lifecycle::ExecutionGauges gauges(gauges_db, lm, SystemClock::Instance());
  BackgroundWorker gauges_worker(
      "gauges",
      [&gauges] {
        gauges.Sample();
        return false;
      },
      std::chrono::seconds(5));
  auto lifecycle_healthy = [&] {
    for (const auto& l : dispatch_loops) {
      if (!l->worker->Healthy()) return false;
    }
    for (const auto& l : poll_loops) {
      if (!l->worker->Healthy()) return false;
    }
    return true;
  };
  if (config.dispatch.enabled) {
    for (auto& l : dispatch_loops) l->worker->Start();
    for (auto& l : poll_loops) l->worker->Start();
    gauges_worker.Start();
  } else {
    spdlog::warn("dispatch.enabled is false: executions are recorded but not started or polled");
  }

  // The lag gauge follows the current assignment: a revoked partition's series goes away (an
  // assigned one whose lag is unknown keeps its last value). Declared after `source`, so that on
  // every way out it is removed, waiting for a scrape that runs it, before the consumer goes.
  metrics::ScopedCollectCallback lag_collect(registry, [&source, &pm] {
    std::set<std::vector<std::string>> assigned;
    for (const auto& l : source.Lag()) {
      std::vector<std::string> labels{l.topic, std::to_string(l.partition)};
      if (l.lag >= 0) pm.lag.WithLabels(labels).Set(static_cast<double>(l.lag));
      assigned.insert(std::move(labels));
    }
    pm.lag.RemoveExcept(assigned);
  });

  std::atomic<bool> pipeline_failed{false};

  auto liveness = [&] {
    metrics::HealthReport r;
    bool alive = !pipeline_failed && std::chrono::steady_clock::now() - pipeline.LastProgress() <
                                         std::chrono::seconds(120);
    r.checks.push_back({"event_pipeline", alive, alive ? "running" : "stalled or failed"});
    r.ok = alive;
    return r;
  };
  auto readiness = [&] {
    metrics::HealthReport r;
    r.checks.push_back({"kafka", source.Healthy(), source.HealthDetail()});
    bool db_ok = pipeline.DatabaseHealthy() && refresher.Healthy() && lifecycle_healthy();
    r.checks.push_back({"database", db_ok, db_ok ? "reachable" : "unreachable"});
    r.checks.push_back({"dead_letter_topic", pipeline.DeadLetterHealthy(),
                        pipeline.DeadLetterHealthy() ? "writable" : "unavailable"});
    r.checks.push_back({"consuming", !source.paused() && !pipeline_failed,
                        source.paused() ? "paused" : "consuming"});
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

  int exit_code = 0;
  std::thread worker([&] {
    try {
      pipeline.Run(stop);
    } catch (const std::exception& e) {
      spdlog::critical("event pipeline failed: {}", e.what());
      pipeline_failed = true;
      exit_code = 1;
      stop = true;
    }
  });

  // Supervise: tell systemd once we are really ready, and keep its watchdog fed only while the
  // pipeline is alive (a stuck loop gets the service restarted).
  SystemdNotifier systemd;
  bool announced_ready = false;
  auto next_watchdog = std::chrono::steady_clock::now();
  while (!stop) {
    auto now = std::chrono::steady_clock::now();
    bool ready = readiness().ok;
    ready_gauge.Set(ready ? 1 : 0);
    if (!announced_ready && ready) {
      systemd.Ready("consuming " + fmt::format("{}", fmt::join(config.kafka.topics, ",")) + "; " +
                    std::to_string(index.Get()->size()) + " definitions");
      announced_ready = true;
    }
    if (systemd.watchdog_interval() && now >= next_watchdog && liveness().ok) {
      systemd.Watchdog();
      next_watchdog = now + *systemd.watchdog_interval();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  systemd.Stopping("shutting down");
  health.Stopping();  // /readyz: not ready, "stopping"
  // Bounded shutdown: if the batch in flight cannot finish in time, exit without committing it
  // (it will be redelivered).
  std::atomic<bool> finished{false};
  std::thread watchdog([&] {
    auto until = std::chrono::steady_clock::now() + config.shutdown_timeout;
    while (!finished && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!finished) {
      spdlog::error("shutdown took longer than {} ms; exiting without waiting",
                    config.shutdown_timeout.count());
      spdlog::default_logger()->flush();
      _exit(1);
    }
  });
  worker.join();
  for (auto& l : dispatch_loops) l->worker->Stop();
  for (auto& l : poll_loops) l->worker->Stop();
  gauges_worker.Stop();
  // Stopped loops have finished their rounds: no row is held any more. No scrape reads the
  // consumer once the lag callback is gone (a running one is waited for).
  lag_collect.Reset();
  source.Close();
  refresher.Stop();
  if (admin) admin->Stop();
  finished = true;
  watchdog.join();
  spdlog::info("workflowd stopped");
  return exit_code;
}

}  // namespace workflowd::daemon
