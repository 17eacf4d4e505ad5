// The execution lifecycle as the daemon runs it: the workflow providers, dispatch.workers
// dispatcher loops and poll.workers poller loops (each on its own PostgreSQL connection), and the
// database-wide execution gauges, each on a BackgroundWorker.
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
  // New executions (committed by the event pipeline, leased by their insert): offered to one
  // dispatch loop that wants them, each in turn, and that loop woken.
  void Offer(lifecycle::LeasedOffer offer) override;
  // Whether the loops run and one of them would keep an offer now.
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
    std::unique_ptr<lifecycle::StatusPoller> poller;
    std::unique_ptr<BackgroundWorker> worker;
  };

  bool enabled_;
  std::atomic<bool> running_{false};
  providers::Manager manager_;
  lifecycle::LifecycleMetrics metrics_;
  lifecycle::WorkflowCatalog catalog_;
  std::vector<std::unique_ptr<DispatchLoop>> dispatch_loops_;
  std::vector<std::unique_ptr<PollLoop>> poll_loops_;
  std::atomic<size_t> next_to_wake_{0};
  store::Database gauges_db_;
  lifecycle::ExecutionGauges gauges_;
  BackgroundWorker gauges_worker_;
};

}  // namespace workflowd::daemon
