// Metrics of the execution lifecycle (documented in the README's Metrics section).
#pragma once

#include "workflowd/metrics/registry.hpp"

namespace workflowd::lifecycle {

struct LifecycleMetrics {
  explicit LifecycleMetrics(metrics::Registry& r)
      : transitions(r.AddCounter("workflowd_execution_transitions_total",
                                 "Execution state changes recorded, by provider and new state",
                                 {"provider", "state"})),
        start_latency(
            r.AddHistogram("workflowd_execution_start_latency_seconds",
                           "Time from an execution row's creation to its start at the provider",
                           {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300})),
        duration(r.AddHistogram("workflowd_execution_duration_seconds",
                                "Time from start at the provider to a terminal state",
                                {"provider", "state"},
                                {0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400})),
        provider_errors(r.AddCounter("workflowd_provider_errors_total",
                                     "Provider calls that failed, by provider, operation and code",
                                     {"provider", "operation", "code"})),
        poll_errors(r.AddCounter("workflowd_poll_errors_total",
                                 "Status polls that failed, by provider", {"provider"})),
        dispatch_attempts(r.AddCounter("workflowd_dispatch_attempts_total",
                                       "Start attempts by result (started, retry, failed)",
                                       {"result"})),
        dispatch_rounds(r.AddCounter(
            "workflowd_dispatch_rounds_total",
            "Dispatch rounds by kind: fair (a walk over every tenant x environment with due "
            "executions) or offered (the executions this replica's pipeline just created)",
            {"kind"})),
        queued(r.AddGauge("workflowd_dispatch_queued",
                          "Pending executions due for a start, per tenant x environment",
                          {"tenant", "environment"})),
        in_flight(r.AddGauge("workflowd_dispatch_in_flight",
                             "Provider starts in progress in this replica, per tenant x "
                             "environment",
                             {"tenant", "environment"})),
        by_state(r.AddGauge("workflowd_executions",
                            "Executions in the database by state (sampled: pending and running "
                            "every 5 s, terminal states every minute)",
                            {"state"})),
        timeouts(r.AddCounter("workflowd_execution_timeouts_total",
                              "Executions stopped because their definition's timeout passed")),
        internal_errors(r.AddCounter(
            "workflowd_lifecycle_internal_errors_total",
            "Dispatch and poll tasks that failed for a reason other than the provider's answer, "
            "by operation (dispatch, poll) and kind (database, definition: a stored definition "
            "that no longer loads, unstorable: an outcome the database refused, memory, other); "
            "each is recorded on its execution",
            {"operation", "kind"})),
        stale_outcomes(r.AddCounter(
            "workflowd_lifecycle_stale_outcomes_total",
            "Start and poll outcomes dropped because their round's lease on the execution was "
            "lost (it expired during a slow call and another round took the execution, whose "
            "outcome stands) or the execution changed meanwhile, by operation (dispatch, poll)",
            {"operation"})) {
    for (const char* result : {"started", "retry", "failed"})
      dispatch_attempts.WithLabels({result});
    for (const char* kind : {"fair", "offered"}) dispatch_rounds.WithLabels({kind});
    for (const char* operation : {"dispatch", "poll"}) {
      for (const char* kind : {"database", "definition", "unstorable", "memory", "other"})
        internal_errors.WithLabels({operation, kind});
      stale_outcomes.WithLabels({operation});
    }
  }

  metrics::CounterFamily& transitions;
  metrics::Histogram& start_latency;
  metrics::HistogramFamily& duration;
  metrics::CounterFamily& provider_errors;
  metrics::CounterFamily& poll_errors;
  metrics::CounterFamily& dispatch_attempts;
  metrics::CounterFamily& dispatch_rounds;
  metrics::GaugeFamily& queued;
  metrics::GaugeFamily& in_flight;
  metrics::GaugeFamily& by_state;
  metrics::Counter& timeouts;
  metrics::CounterFamily& internal_errors;
  metrics::CounterFamily& stale_outcomes;
};

}  // namespace workflowd::lifecycle
