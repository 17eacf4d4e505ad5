// What a batch of records means, decided without any I/O: which records are dead letters (and
// why), which events match which definitions, and the execution rows to insert. The event pipeline
// then makes the plan durable (dead letters acknowledged, rows committed) before committing
// offsets.
#pragma once

#include <array>
#include <span>
#include <string>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/decoding/dead_letter.hpp"
#include "workflowd/decoding/decoder.hpp"
#include "workflowd/matching/definition_index.hpp"
#include "workflowd/store/execution_repository.hpp"

namespace workflowd::pipeline {

struct MatchRecord {  // for logs: one line per match at debug level
  std::string tenant;
  std::string environment;
  std::string event_id;
  std::string event_type;
  std::string definition_id;
  std::string execution_id;
};

// Where a record came from: enough to find it again in its batch. `topic` views the record's
// topic name (for Kafka the client's, which outlives the batch's records): valid while the batch
// lives.
struct RecordRef {
  std::string_view topic;
  int32_t partition = 0;
  int64_t offset = 0;

  bool Is(const decoding::RawRecord& record) const {
    return record.offset == offset && record.partition == partition && record.topic == topic;
  }
  bool operator==(const RecordRef&) const = default;
};

struct BatchPlan {
  std::vector<store::NewExecution> executions;
  // The record each execution was planned from (same index as `executions`).
  std::vector<RecordRef> sources;
  std::vector<decoding::DeadLetter> dead_letters;
  std::vector<MatchRecord> matches;
  size_t consumed = 0;
  size_t decoded = 0;
  size_t matched_events = 0;    // events that matched at least one definition
  size_t unmatched_events = 0;  // decoded events that matched none
  size_t inserted = 0;          // rows the database took so far (the event pipeline counts)
  // Dead letters per reason, indexed by static_cast<size_t>(decoding::DeadLetterReason).
  std::array<size_t, static_cast<size_t>(decoding::DeadLetterReason::kInternal) + 1>
      dead_by_reason{};

  // Appends another plan (records polled while the first could not be made durable).
  void Append(BatchPlan&& other);

  // Takes out the executions planned from `record` and adds the record's dead letter instead
  // (`reason`, `detail`): e.g. for a record whose row PostgreSQL refused. Returns how many
  // executions were taken out.
  size_t DeadLetterRecord(const decoding::RawRecord& record, decoding::DeadLetterReason reason,
                          std::string detail, std::string_view consumer_group, TimePoint now);
};

// The dead letter of `record`: its key, value and headers as they were, plus the
// workflowd_dlq_* headers of DeadLetterHeaders.
decoding::DeadLetter MakeDeadLetter(const decoding::RawRecord& record,
                                    const decoding::DecodeResult& result,
                                    std::string_view consumer_group, TimePoint now);

// The execution's trigger_event document: the envelope's attributes, data and Kafka coordinates.
nlohmann::json TriggerEventJson(const decoding::Envelope& envelope,
                                const decoding::RawRecord& record);
// The same, moving the envelope's data and extensions into the document instead of copying them
// (they are left null / empty; the other attributes are kept).
nlohmann::json TriggerEventJson(decoding::Envelope&& envelope, const decoding::RawRecord& record);

BatchPlan PlanBatch(std::span<const decoding::RawRecord* const> records,
                    const decoding::DecoderConfig& decoder, const matching::DefinitionIndex& index,
                    std::string_view consumer_group, TimePoint now);

}  // namespace workflowd::pipeline
