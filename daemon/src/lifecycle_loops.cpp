#include "lifecycle_loops.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "run.hpp"

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

}  // namespace

LifecycleLoops::LifecycleLoops(const Config& config, metrics::Registry& registry)
    : enabled_(config.dispatch.enabled),
      manager_(ProviderRegistryFor(config)),
      metrics_(registry),
      catalog_(manager_),
      // The database-wide gauges, every 5 s on a connection of their own (counting terminal
      // states scans the whole table: in a dispatch loop it held up starts for as long).
      gauges_db_(config.database.url, config.database.connect_timeout),
      gauges_(gauges_db_, metrics_, SystemClock::Instance()),
      gauges_worker_(
          "gauges",
          [this] {
            gauges_.Sample();
            return false;
          },
          std::chrono::seconds(5)) {
  if (const auto names = manager_.ListProviders(); names.empty()) {
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
  // Series labelled by tenant x environment are bounded (see kMaxScopeSeries).
  for (metrics::GaugeFamily* family : {&metrics_.queued, &metrics_.in_flight}) {
    family->LimitSeries(kMaxScopeSeries, "other", [](const std::string& name) {
      spdlog::warn(
          "metric {}: more than {} tenant x environment series; the others are summed into "
          "tenant=\"other\",environment=\"other\"",
          name, kMaxScopeSeries);
    });
  }
  // dispatch.workers dispatcher loops and poll.workers poller loops, each with its own
  // connection: one loop waits on PostgreSQL most of the time, so several overlap their rounds.
  // Each round claims its rows under a lease of its own (picked with SKIP LOCKED), which keeps
  // loops apart like separate replicas.
  for (size_t i = 0; i < std::max<size_t>(1, config.dispatch.workers); ++i) {
    auto loop = std::make_unique<DispatchLoop>(config);
    lifecycle::DispatcherOptions dopts;
    dopts.lease = config.dispatch.lease;
    dopts.lease_owner = config.instance_id;
    dopts.batch_size = config.dispatch.batch_size;
    dopts.per_scope_limit = config.dispatch.per_scope_limit;
    dopts.max_in_flight = config.dispatch.max_in_flight;
    dopts.call_timeout = config.dispatch.call_timeout;
    dopts.first_poll = config.poll.min_interval;
    dopts.fair_interval = config.dispatch.idle_interval;
    auto* rng = &loop->rng;
    loop->dispatcher = std::make_unique<lifecycle::ExecutionDispatcher>(
        dopts, loop->db, manager_, catalog_, metrics_, SystemClock::Instance(),
        [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); });
    auto* dispatcher = loop->dispatcher.get();
    loop->worker = std::make_unique<BackgroundWorker>(
        i == 0 ? "dispatcher" : "dispatcher-" + std::to_string(i + 1),
        [dispatcher] {
          dispatcher->RunOnce();
          return dispatcher->MoreDue();
        },
        config.dispatch.idle_interval, kDispatchWakeGap);
    dispatch_loops_.push_back(std::move(loop));
  }
  for (size_t i = 0; i < std::max<size_t>(1, config.poll.workers); ++i) {
    auto loop = std::make_unique<PollLoop>(config);
    lifecycle::PollerOptions popts;
    popts.lease = config.dispatch.lease;
    popts.lease_owner = config.instance_id;
    popts.batch_size = config.poll.batch_size;
    popts.max_in_flight = config.poll.max_in_flight;
    popts.call_timeout = config.dispatch.call_timeout;
    popts.min_interval = config.poll.min_interval;
    popts.max_interval = config.poll.max_interval;
    loop->poller = std::make_unique<lifecycle::StatusPoller>(popts, loop->db, manager_, catalog_,
                                                             metrics_, SystemClock::Instance());
    auto* poller = loop->poller.get();
    loop->worker = std::make_unique<BackgroundWorker>(
        i == 0 ? "poller" : "poller-" + std::to_string(i + 1),
        [poller] {
          poller->RunOnce();
          return poller->MoreDue();
        },
        config.dispatch.idle_interval);
    poll_loops_.push_back(std::move(loop));
  }
}

LifecycleLoops::~LifecycleLoops() { Stop(); }

void LifecycleLoops::Start() {
  if (!enabled_) {
    spdlog::warn("dispatch.enabled is false: executions are recorded but not started or polled");
    return;
  }
  for (auto& l : dispatch_loops_) l->worker->Start();
  for (auto& l : poll_loops_) l->worker->Start();
  gauges_worker_.Start();
  running_ = true;
}

void LifecycleLoops::Stop() noexcept {
  running_ = false;
  for (auto& l : dispatch_loops_) l->worker->Stop();
  // What was offered and not started yet: due again at once, for another replica or the next
  // start, rather than after its lease.
  for (auto& l : dispatch_loops_) l->dispatcher->ReleaseOffers();
  for (auto& l : poll_loops_) l->worker->Stop();
  gauges_worker_.Stop();
}

bool LifecycleLoops::Healthy() const {
  for (const auto& l : dispatch_loops_) {
    if (!l->worker->Healthy()) return false;
  }
  for (const auto& l : poll_loops_) {
    if (!l->worker->Healthy()) return false;
  }
  return true;
}

bool LifecycleLoops::WantsOffers() const {
  if (!running_) return false;
  for (const auto& l : dispatch_loops_) {
    if (l->dispatcher->WantsOffers()) return true;
  }
  return false;
}

void LifecycleLoops::Offer(lifecycle::LeasedOffer offer) {
  // The dispatch loops sleep dispatch.idle_interval when they took every due execution; new
  // executions are offered to one of them, each in turn, and wake it (waking all made every loop
  // run a round per committed batch). The woken loop starts them from the offer: at a steady
  // stream of small batches, fair rounds (a walk over every tenant x environment with pending
  // rows) for each batch were PostgreSQL's largest cost, growing with the number of tenants, and
  // a claim transaction per batch cost as much again. A loop busy with a round runs again right
  // after it; under a backlog all loops run fair rounds continuously anyway (full rounds).
  if (dispatch_loops_.empty()) return;
  const size_t first = next_to_wake_++;
  const DispatchLoop* chosen = dispatch_loops_[first % dispatch_loops_.size()].get();
  for (size_t k = 0; k < dispatch_loops_.size(); ++k) {
    const DispatchLoop* loop = dispatch_loops_[(first + k) % dispatch_loops_.size()].get();
    if (loop->dispatcher->WantsOffers()) {
      chosen = loop;
      break;
    }
  }
  // One that wants none keeps none: it releases the rows in its next round.
  chosen->dispatcher->Offer(std::move(offer));
  chosen->worker->Wake();
}

}  // namespace workflowd::daemon
