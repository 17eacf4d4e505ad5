#include "lifecycle_loops.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>

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

// A provider's limits: providers.<name>.*, max_in_flight and call_timeout following
// dispatch.* when unset.
lifecycle::ProviderLimits LimitsFor(const Config& config, const std::string& provider) {
  const auto it = config.provider_limits.find(provider);
  const ProviderLimitsConfig c =
      it == config.provider_limits.end() ? ProviderLimitsConfig{} : it->second;
  lifecycle::ProviderLimits l;
  // Each dispatch loop had its own pool of dispatch.max_in_flight threads: together, the
  // replica's starts in flight.
  l.max_in_flight = c.max_in_flight.value_or(config.dispatch.max_in_flight *
                                             std::max<size_t>(1, config.dispatch.workers));
  l.call_timeout = c.call_timeout.value_or(config.dispatch.call_timeout);
  l.retry_attempts = c.retry_attempts;
  l.retry_initial_backoff = c.retry_initial_backoff;
  l.retry_max_backoff = c.retry_max_backoff;
  l.breaker_failure_threshold = c.breaker_failure_threshold;
  l.breaker_failure_window = c.breaker_failure_window;
  l.breaker_open_interval = c.breaker_open_interval;
  l.breaker_drain_rate = static_cast<double>(c.breaker_drain_rate);
  l.breaker_drain_ramp = c.breaker_drain_ramp;
  l.polls_per_second = static_cast<double>(c.polls_per_second);
  return l;
}

// The dispatch settings every dispatcher shares (dispatch.*).
lifecycle::DispatcherOptions DispatcherOptionsFor(const Config& config) {
  lifecycle::DispatcherOptions o;
  o.lease = config.dispatch.lease;
  o.lease_owner = config.instance_id;
  o.batch_size = config.dispatch.batch_size;
  o.per_scope_limit = config.dispatch.per_scope_limit;
  o.max_in_flight = config.dispatch.max_in_flight;
  o.call_timeout = config.dispatch.call_timeout;
  o.first_poll = config.poll.min_interval;
  o.fair_interval = config.dispatch.idle_interval;
  return o;
}

// How often the executions of providers that are not enabled are looked for (and failed).
constexpr std::chrono::milliseconds kNotEnabledInterval{1000};

// How far each next poll is spread around the adaptive interval (+/- 20 %).
constexpr double kPollJitter = 0.2;

}  // namespace

LifecycleLoops::LifecycleLoops(const Config& config, metrics::Registry& registry)
    : enabled_(config.dispatch.enabled),
      manager_(ProviderRegistryFor(config)),
      metrics_(registry),
      gate_metrics_(registry),
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
  // For each provider, its gate and dispatch.workers dispatcher loops and poll.workers poller
  // loops of its own, each with its own connection: one loop waits on PostgreSQL or on its calls
  // most of the time, so several overlap their rounds (sharing the provider's start slots). Each
  // round claims its provider's rows under a lease of its own (picked with SKIP LOCKED), which
  // keeps loops apart like separate replicas.
  for (const auto& provider : manager_.ListProviders()) {
    auto group = std::make_unique<ProviderLoops>();
    const lifecycle::ProviderLimits limits = LimitsFor(config, provider);
    group->gate = std::make_unique<lifecycle::ProviderGate>(provider, limits, SteadyClock::System(),
                                                            &gate_metrics_);
    spdlog::info(
        "provider {}: max_in_flight={} call_timeout={}ms retry.attempts={} "
        "breaker.failure_threshold={} polls_per_second={} poll_min_interval={}ms "
        "poll_yield={}ms",
        provider, limits.max_in_flight, limits.call_timeout.count(), limits.retry_attempts,
        limits.breaker_failure_threshold, limits.polls_per_second,
        PollMinInterval(config, provider).count(), PollYield(config, provider).count());
    for (size_t i = 0; i < std::max<size_t>(1, config.dispatch.workers); ++i) {
      lifecycle::DispatcherOptions dopts = DispatcherOptionsFor(config);
      dopts.max_in_flight = limits.max_in_flight;
      dopts.call_timeout = limits.call_timeout;
      dopts.provider = provider;
      dopts.gate = group->gate.get();
      dopts.first_poll = PollMinInterval(config, provider);
      group->dispatch.push_back(
          AddDispatchLoop(config, dopts, "dispatcher-" + provider + "-" + std::to_string(i + 1),
                          config.dispatch.idle_interval));
    }
    for (size_t i = 0; i < std::max<size_t>(1, config.poll.workers); ++i) {
      auto loop = std::make_unique<PollLoop>(config);
      lifecycle::PollerOptions popts;
      popts.lease = config.dispatch.lease;
      popts.lease_owner = config.instance_id;
      popts.batch_size = config.poll.batch_size;
      popts.max_in_flight = config.poll.max_in_flight;
      popts.call_timeout = limits.call_timeout;
      popts.min_interval = PollMinInterval(config, provider);
      popts.back_off_while_unchanged = provider == "temporal";
      popts.yield_to_starts = PollYield(config, provider);
      popts.max_interval = config.poll.max_interval;
      popts.jitter = kPollJitter;
      auto* rng = &loop->rng;
      popts.random = [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); };
      popts.provider = provider;
      popts.gate = group->gate.get();
      loop->poller = std::make_unique<lifecycle::StatusPoller>(popts, loop->db, manager_, catalog_,
                                                               metrics_, SystemClock::Instance());
      auto* poller = loop->poller.get();
      loop->worker = std::make_unique<BackgroundWorker>(
          "poller-" + provider + "-" + std::to_string(i + 1),
          [poller] {
            poller->RunOnce();
            return poller->MoreDue();
          },
          config.dispatch.idle_interval);
      poll_loops_.push_back(std::move(loop));
    }
    providers_.push_back(std::move(group));
  }
  // The executions of a provider that is not enabled here: failed with provider_not_found by a
  // dispatcher of their own (no engine is called), which leaves every enabled provider's alone.
  lifecycle::DispatcherOptions dopts = DispatcherOptionsFor(config);
  dopts.max_in_flight = 1;
  dopts.other_than = manager_.ListProviders();
  not_enabled_.dispatch.push_back(AddDispatchLoop(
      config, dopts, "dispatcher-not-enabled",
      std::max<std::chrono::milliseconds>(config.dispatch.idle_interval, kNotEnabledInterval)));
}

LifecycleLoops::DispatchLoop* LifecycleLoops::AddDispatchLoop(
    const Config& config, const lifecycle::DispatcherOptions& options, const std::string& name,
    std::chrono::milliseconds idle_interval) {
  auto loop = std::make_unique<DispatchLoop>(config);
  auto* rng = &loop->rng;
  loop->dispatcher = std::make_unique<lifecycle::ExecutionDispatcher>(
      options, loop->db, manager_, catalog_, metrics_, SystemClock::Instance(),
      [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); });
  auto* dispatcher = loop->dispatcher.get();
  loop->worker = std::make_unique<BackgroundWorker>(
      name,
      [dispatcher] {
        dispatcher->RunOnce();
        return dispatcher->MoreDue();
      },
      idle_interval, kDispatchWakeGap);
  dispatch_loops_.push_back(std::move(loop));
  return dispatch_loops_.back().get();
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

bool LifecycleLoops::ProvidersAnswering(std::string& detail) const {
  bool ok = true;
  detail.clear();
  for (const auto& group : providers_) {
    const lifecycle::CircuitState state = group->gate->state();
    ok = ok && state == lifecycle::CircuitState::kClosed;
    if (!detail.empty()) detail += ", ";
    detail += group->gate->provider() + ": " + lifecycle::ToString(state);
  }
  if (detail.empty()) detail = "none enabled";
  return ok;
}

bool LifecycleLoops::WantsOffers() const {
  if (!running_ || providers_.empty()) return false;
  for (const auto& group : providers_) {
    const bool any =
        std::any_of(group->dispatch.begin(), group->dispatch.end(),
                    [](const DispatchLoop* l) { return l->dispatcher->WantsOffers(); });
    if (!any) return false;
  }
  return true;
}

void LifecycleLoops::Offer(lifecycle::LeasedOffer offer) {
  // The dispatch loops sleep dispatch.idle_interval when they took every due execution; the new
  // executions of each provider are offered to one of its loops, each in turn, and wake it
  // (waking all made every loop run a round per committed batch). The woken loop starts them from
  // the offer: at a steady stream of small batches, fair rounds (a walk over every tenant x
  // environment with pending rows) for each batch were PostgreSQL's largest cost, growing with
  // the number of tenants, and a claim transaction per batch cost as much again. A loop busy with
  // a round runs again right after it; under a backlog all loops run fair rounds continuously
  // anyway (full rounds).
  std::map<std::string, lifecycle::LeasedOffer> parts;
  for (auto& e : offer.executions) {
    lifecycle::LeasedOffer& part = parts[e.provider];
    part.lease = offer.lease;
    part.expires_at = offer.expires_at;
    part.executions.push_back(std::move(e));
  }
  for (auto& entry : parts) {
    const std::string& provider = entry.first;
    auto group = std::find_if(providers_.begin(), providers_.end(),
                              [&](const auto& g) { return g->gate->provider() == provider; });
    OfferTo(group != providers_.end() ? **group : not_enabled_, std::move(entry.second));
  }
}

void LifecycleLoops::OfferTo(ProviderLoops& group, lifecycle::LeasedOffer offer) {
  if (group.dispatch.empty()) return;
  const size_t first = group.next_to_wake++;
  DispatchLoop* chosen = group.dispatch[first % group.dispatch.size()];
  for (size_t k = 0; k < group.dispatch.size(); ++k) {
    DispatchLoop* loop = group.dispatch[(first + k) % group.dispatch.size()];
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
