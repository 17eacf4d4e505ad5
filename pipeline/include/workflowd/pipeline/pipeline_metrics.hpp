// The event pipeline's Prometheus metrics (documented in the README's Metrics section).
#pragma once

#include "workflowd/decoding/dead_letter.hpp"
#include "workflowd/metrics/registry.hpp"

namespace workflowd::pipeline {

struct PipelineMetrics {
  explicit PipelineMetrics(metrics::Registry& r)
      : consumed(r.AddCounter("workflowd_events_consumed_total",
                              "Kafka records consumed from the event topics", {"topic"})),
        matched(r.AddCounter("workflowd_events_matched_total",
                             "Events that matched at least one enabled definition")),
        unmatched(r.AddCounter("workflowd_events_unmatched_total",
                               "Decoded events that matched no enabled definition")),
        dead_lettered(r.AddCounter("workflowd_events_dead_lettered_total",
                                   "Records sent to the dead-letter topic, by reason", {"reason"})),
        executions_created(r.AddCounter("workflowd_executions_created_total",
                                        "Pending execution rows inserted by the event pipeline")),
        executions_duplicate(r.AddCounter(
            "workflowd_executions_duplicate_total",
            "Matches skipped because the execution already existed (redelivered or replayed "
            "events)")),
        batch_duration(r.AddHistogram(
            "workflowd_batch_duration_seconds",
            "Time from polling a batch to its outcome being durable (dead letters acknowledged, "
            "execution rows committed)",
            {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})),
        batch_records(r.AddHistogram("workflowd_batch_records", "Records per processed batch",
                                     {1, 10, 50, 100, 250, 500, 1000, 5000})),
        event_age(r.AddHistogram(
            "workflowd_event_age_at_poll_seconds",
            "Age of each polled batch's oldest record when the pipeline received it (now minus "
            "the Kafka record timestamp): how far behind the stream the daemon is, in time",
            {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300})),
        lag(r.AddGauge("workflowd_consumer_lag",
                       "Records behind the partition's high watermark, per assigned partition",
                       {"topic", "partition"})),
        paused(r.AddGauge("workflowd_consumer_paused",
                          "1 while consumption is paused because PostgreSQL or the dead-letter "
                          "topic is unavailable")),
        definitions_loaded(r.AddGauge("workflowd_definitions_loaded",
                                      "Enabled event-triggered definitions in the matching index")),
        definitions_skipped(r.AddGauge(
            "workflowd_definitions_skipped",
            "Stored definitions left out of the matching index by its last load, by reason "
            "(condition: their trigger conditions no longer compile; document: another part "
            "does not load)",
            {"reason"})),
        definition_refreshes(r.AddCounter("workflowd_definition_refreshes_total",
                                          "Matching index reloads, by cause", {"cause"})),
        database_errors(r.AddCounter("workflowd_database_errors_total",
                                     "PostgreSQL operations that failed, by operation",
                                     {"operation"})),
        dead_letter_errors(r.AddCounter("workflowd_dead_letter_errors_total",
                                        "Dead-letter batches the broker did not acknowledge")) {
    for (auto reason : decoding::AllDeadLetterReasons()) {
      dead_lettered.WithLabels({std::string(decoding::ToString(reason))});
    }
    for (const char* reason : {"condition", "document"}) definitions_skipped.WithLabels({reason});
    for (const char* cause : {"startup", "notify", "resync"})
      definition_refreshes.WithLabels({cause});
    for (const char* op : {"record_batch", "load_definitions", "listen"}) {
      database_errors.WithLabels({op});
    }
  }

  metrics::CounterFamily& consumed;
  metrics::Counter& matched;
  metrics::Counter& unmatched;
  metrics::CounterFamily& dead_lettered;
  metrics::Counter& executions_created;
  metrics::Counter& executions_duplicate;
  metrics::Histogram& batch_duration;
  metrics::Histogram& batch_records;
  metrics::Histogram& event_age;
  metrics::GaugeFamily& lag;
  metrics::Gauge& paused;
  metrics::Gauge& definitions_loaded;
  metrics::GaugeFamily& definitions_skipped;
  metrics::CounterFamily& definition_refreshes;
  metrics::CounterFamily& database_errors;
  metrics::Counter& dead_letter_errors;
};

}  // namespace workflowd::pipeline
