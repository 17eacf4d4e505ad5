// The execution lifecycle as the daemon runs it: the workflow providers, and for each provider its
// gate (start slots, circuit breaker, poll rate: providers.<name>.*), dispatch.workers dispatcher
// loops and poll.workers poller loops of its own (each on its own PostgreSQL connection), so that
// one engine's slowness or outage never holds up another's; and the database-wide execution
// gauges, each on a BackgroundWorker.
#pragma once

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "background_worker.hpp"
#include "pipeline_adapters.hpp"
#include "workflowd/daemon/config.hpp"
#include "workflowd/lifecycle/execution_dispatcher.hpp"
#include "workflowd/lifecycle/execution_gauges.hpp"
#include "workflowd/lifecycle/provider_gate.hpp"
#include "workflowd/lifecycle/status_poller.hpp"
#include "workflowd/metrics/registry.hpp"
#include "workflowd/providers/manager.hpp"
#include "workflowd/store/database.hpp"

namespace workflowd::daemon {

class LifecycleLoops final : public NewExecutionsTarget {
 public:
  // Builds the providers (logging which are enabled) and the loops; nothing runs before Start.
  LifecycleLoops(const Config& config, metrics::Registry& registry);
  ~LifecycleLoops() override;

  // Starts the loops, unless dispatch.enabled is false (then executions are only recorded).
  void Start();
  // Stops them: rounds in progress finish, no row stays held.
  void Stop() noexcept;
  // False while a loop's database is unavailable.
  bool Healthy() const;
  // Whether every provider's circuit breaker is closed (its engine answers); `detail` names each
  // provider with its breaker's state ("mock: closed"; "none enabled" without providers).
  bool ProvidersAnswering(std::string& detail) const;
  // New executions (committed by the event pipeline, leased by their insert): the rows of each
  // provider offered to one of its dispatch loops that wants them, each in turn, and that loop
  // woken.
  void Offer(lifecycle::LeasedOffer offer) override;
  // Whether the loops run and every provider has a loop that would keep an offer now (none while
  // a provider's breaker is not closed or drains after an outage).
  bool WantsOffers() const override;

 private:
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
    std::mt19937_64 rng{std::random_device{}()};
    std::unique_ptr<lifecycle::StatusPoller> poller;
    std::unique_ptr<BackgroundWorker> worker;
  };

  // One provider's gate and the dispatch loops offers for it go to.
  struct ProviderLoops {
    std::unique_ptr<lifecycle::ProviderGate> gate;
    std::vector<DispatchLoop*> dispatch;
    std::atomic<size_t> next_to_wake{0};
  };

  static void OfferTo(ProviderLoops& group, lifecycle::LeasedOffer offer);
  // A dispatch loop with these options on a BackgroundWorker named `name`, kept in
  // dispatch_loops_.
  DispatchLoop* AddDispatchLoop(const Config& config, const lifecycle::DispatcherOptions& options,
                                const std::string& name, std::chrono::milliseconds idle_interval);

  bool enabled_;
  std::atomic<bool> running_{false};
  providers::Manager manager_;
  lifecycle::LifecycleMetrics metrics_;
  lifecycle::ProviderGateMetrics gate_metrics_;
  lifecycle::WorkflowCatalog catalog_;
  std::vector<std::unique_ptr<ProviderLoops>> providers_;  // before the loops that use the gates
  ProviderLoops not_enabled_;  // the dispatch loop of the providers that are not enabled
  std::vector<std::unique_ptr<DispatchLoop>> dispatch_loops_;
  std::vector<std::unique_ptr<PollLoop>> poll_loops_;
  store::Database gauges_db_;
  lifecycle::ExecutionGauges gauges_;
  BackgroundWorker gauges_worker_;
};

}  // namespace workflowd::daemon
