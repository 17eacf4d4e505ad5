#include "workflowd/pipeline/batch_planner.hpp"

#include <algorithm>
#include <map>
#include <new>
#include <utility>

#include "workflowd/common/ids.hpp"
#include "workflowd/common/timefmt.hpp"

namespace workflowd::pipeline {

// The event decoding's types and functions (consumers/envelope.hpp).
using decoding::DataNeed;
using decoding::DeadLetter;
using decoding::DeadLetterHeaders;
using decoding::DeadLetterReason;
using decoding::DecoderConfig;
using decoding::DecodeResult;
using decoding::Envelope;
using decoding::RawRecord;
using decoding::StagedDecoder;
using decoding::ViewOf;

using decoding::DataNeed;
using decoding::DeadLetterReason;
using decoding::DecoderConfig;
using decoding::DecodeResult;
using decoding::Envelope;
using decoding::RawRecord;
using decoding::StagedDecoder;

void BatchPlan::Append(BatchPlan&& other) {
  for (auto& e : other.executions) executions.push_back(std::move(e));
  sources.insert(sources.end(), other.sources.begin(), other.sources.end());
  for (auto& d : other.dead_letters) dead_letters.push_back(std::move(d));
  for (auto& m : other.matches) matches.push_back(std::move(m));
  consumed += other.consumed;
  decoded += other.decoded;
  matched_events += other.matched_events;
  unmatched_events += other.unmatched_events;
  inserted += other.inserted;
  for (size_t i = 0; i < dead_by_reason.size(); ++i) dead_by_reason[i] += other.dead_by_reason[i];
}

size_t BatchPlan::DeadLetterRecord(const RawRecord& record, DeadLetterReason reason,
                                   std::string detail, std::string_view consumer_group,
                                   TimePoint now) {
  size_t kept = 0;
  std::vector<std::string> removed_ids;
  for (size_t i = 0; i < executions.size(); ++i) {
    if (sources[i].Is(record)) {
      removed_ids.push_back(executions[i].id);
      continue;
    }
    if (kept != i) {
      executions[kept] = std::move(executions[i]);
      sources[kept] = sources[i];
    }
    ++kept;
  }
  const size_t removed = executions.size() - kept;
  executions.resize(kept);
  sources.resize(kept);
  if (removed > 0) {
    // The event no longer counts as matched: it is a dead letter now.
    if (matched_events > 0) --matched_events;
    if (decoded > 0) --decoded;
    std::erase_if(matches, [&](const MatchRecord& m) {
      return std::find(removed_ids.begin(), removed_ids.end(), m.execution_id) != removed_ids.end();
    });
  }
  DecodeResult result;
  result.reason = reason;
  result.detail = std::move(detail);
  ++dead_by_reason[static_cast<size_t>(reason)];
  dead_letters.push_back(MakeDeadLetter(record, result, consumer_group, now));
  return removed;
}

DeadLetter MakeDeadLetter(const RawRecord& record, const DecodeResult& result,
                          std::string_view consumer_group, TimePoint now) {
  DeadLetter letter;
  if (record.key) letter.key = std::string(*record.key);
  if (record.value) letter.value = std::string(*record.value);
  letter.headers.reserve(record.headers.size() + 7);
  for (const auto& h : record.headers) {
    letter.headers.emplace_back(
        std::string(h.key),
        h.value ? std::optional<std::string>(std::string(*h.value)) : std::nullopt);
  }
  for (auto& [k, v] : DeadLetterHeaders(record, result, consumer_group, now)) {
    letter.headers.emplace_back(std::move(k), std::move(v));
  }
  return letter;
}

namespace {

// The trigger_event document with `data` and `extensions` supplied by the caller (copied or moved
// out of the envelope). Built member by member: an initializer list would copy them again.
nlohmann::json BuildTriggerEvent(const Envelope& e, const RawRecord& record, nlohmann::json data,
                                 std::map<std::string, nlohmann::json>&& extensions) {
  nlohmann::json j = nlohmann::json::object();
  j["id"] = e.id;
  j["type"] = e.type;
  j["source"] = e.source;
  j["tenant"] = e.tenant;
  j["environment"] = e.environment;
  j["format"] = ToString(e.format);
  j["data"] = std::move(data);
  nlohmann::json& kafka = j["kafka"];
  kafka["topic"] = record.topic;
  kafka["partition"] = record.partition;
  kafka["offset"] = record.offset;
  if (!e.subject.empty()) j["subject"] = e.subject;
  if (!e.time_text.empty()) j["time"] = e.time_text;
  if (!e.data_content_type.empty()) j["datacontenttype"] = e.data_content_type;
  if (!extensions.empty()) {
    nlohmann::json& out = j["extensions"];
    out = nlohmann::json::object();
    for (auto& [name, value] : extensions) out[name] = std::move(value);
  }
  return j;
}

}  // namespace

nlohmann::json TriggerEventJson(const Envelope& e, const RawRecord& record) {
  return BuildTriggerEvent(e, record, e.data, std::map<std::string, nlohmann::json>(e.extensions));
}

nlohmann::json TriggerEventJson(Envelope&& e, const RawRecord& record) {
  nlohmann::json data = std::move(e.data);
  std::map<std::string, nlohmann::json> extensions = std::move(e.extensions);
  e.data = nullptr;
  e.extensions.clear();
  return BuildTriggerEvent(e, record, std::move(data), std::move(extensions));
}

namespace {

// How much of the next record's value the planner asks to be loaded while it decodes one record:
// most events are well below this; a larger one's rest streams in as it is read.
constexpr size_t kPrefetchValueBytes = 2048;

// How much of an event's data its candidates' conditions read. `paths` holds the merged paths of
// several candidates.
DataNeed NeedOf(const matching::CandidateSet& candidates,
                std::vector<std::vector<std::string>>& paths) {
  paths.clear();
  const std::vector<std::vector<std::string>>* read = nullptr;
  for (size_t i = 0; i < candidates.size; ++i) {
    // No condition: the event matches, its whole data is needed anyway.
    const matching::Condition* condition = candidates.conditions[i];
    read = condition ? condition->data_paths() : nullptr;
    if (read == nullptr) return DataNeed{};
    if (candidates.size > 1) paths.insert(paths.end(), read->begin(), read->end());
  }
  // One candidate (the usual case): its condition's paths, sorted already, as they are.
  if (candidates.size == 1) return DataNeed{DataNeed::Kind::kMembers, *read};
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  return DataNeed{DataNeed::Kind::kMembers, paths};
}

}  // namespace

BatchPlan PlanBatch(std::span<const RawRecord* const> records, const DecoderConfig& decoder,
                    const matching::DefinitionIndex& index, std::string_view consumer_group,
                    TimePoint now) {
  BatchPlan plan;
  plan.consumed = records.size();
  std::vector<const matching::IndexEntry*> matched;
  std::vector<matching::Header> header_storage;
  std::vector<std::vector<std::string>> paths;
  // Records are decoded in two steps (StagedDecoder), two decoders in turn: record i+1's
  // attributes are decoded, and the part of the index its key leads to asked from memory, before
  // record i is matched; with many definitions that part is seldom in the cache, and decoding a
  // record takes longer than loading it.
  // Only conditions and trigger_event read an event's data: building it (most of the cost of
  // decoding) is skipped for events of a type no definition of their tenant and environment
  // triggers on. Such a record is still validated and dead-lettered like any other. For events
  // with candidates, only the paths of the payload their conditions read are built
  // (`data.customer.country` builds `customer` with `country` alone), and the whole payload once
  // an event matched (for trigger_event), from the same parse.
  thread_local StagedDecoder decoders[2];
  DecodeResult results[2];  // their envelopes' buffers are reused from record to record
  const auto add_dead_letter = [&](const RawRecord& record, const DecodeResult& result) {
    ++plan.dead_by_reason[static_cast<size_t>(result.reason)];
    plan.dead_letters.push_back(MakeDeadLetter(record, result, consumer_group, now));
  };
  matching::DefinitionIndex::KeyHash hashes[2];
  const auto decode_attributes = [&](size_t i) {
    // The record after this one: its bytes (seldom in the cache: the Kafka client wrote them,
    // maybe on the other core) are asked for while this one is decoded.
    if (i + 1 < records.size() && records[i + 1]->value) {
      const std::string_view next = *records[i + 1]->value;
      for (size_t k = 0; k < next.size() && k < kPrefetchValueBytes; k += 64) {
        __builtin_prefetch(next.data() + k);
      }
    }
    DecodeResult& result = results[i % 2];
    decoders[i % 2].DecodeAttributes(*records[i], decoder, result);
    if (result.ok()) {
      const Envelope& e = *result.envelope;
      hashes[i % 2] = matching::DefinitionIndex::Hash(e.tenant, e.environment, e.type);
      index.PrefetchTags(hashes[i % 2]);
    }
  };
  if (!records.empty()) decode_attributes(0);
  for (size_t i = 0; i < records.size(); ++i) {
    DecodeResult& result = results[i % 2];
    // Record i's tags were asked for a record ago; its bucket now, then record i+1 is decoded
    // while it arrives.
    if (result.ok()) index.PrefetchBucket(hashes[i % 2]);
    if (i + 1 < records.size()) decode_attributes(i + 1);
    const RawRecord* record = records[i];
    StagedDecoder& staged = decoders[i % 2];
    if (!result.ok()) {
      add_dead_letter(*record, result);
      continue;
    }
    const Envelope& attributes = *result.envelope;
    const matching::CandidateSet candidates =
        index.Find(hashes[i % 2], attributes.tenant, attributes.environment, attributes.type);
    if (candidates.empty()) {
      ++plan.decoded;
      ++plan.unmatched_events;
      continue;
    }
    // The entries are read once the event matched (a few hundred nanoseconds from now).
    __builtin_prefetch(candidates.entries);
    __builtin_prefetch(reinterpret_cast<const char*>(candidates.entries) + 64);
    try {
      staged.BuildData(NeedOf(candidates, paths), result);
    } catch (const std::bad_alloc&) {  // merging several candidates' paths
      result.envelope.reset();
      result.reason = DeadLetterReason::kInternal;
      result.detail = "out of memory while matching";
    }
    if (!result.ok()) {  // out of memory; never drop the event
      add_dead_letter(*record, result);
      continue;
    }
    ++plan.decoded;
    matched.clear();
    matching::DefinitionIndex::Match(candidates, ViewOf(*result.envelope, header_storage), matched);
    if (matched.empty()) {
      ++plan.unmatched_events;
      continue;
    }
    ++plan.matched_events;
    if (result.envelope->data_partial) {
      staged.BuildData(DataNeed{}, result);  // all of it, for trigger_event
      if (!result.ok()) {
        --plan.matched_events;
        --plan.decoded;
        add_dead_letter(*record, result);
        continue;
      }
    }
    // The entries' ids and names are copied below, after the event's document is built: with many
    // definitions they are seldom in the cache (their entries have arrived by now).
    for (const matching::IndexEntry* entry : matched) {
      __builtin_prefetch(entry->definition_id.data());
      __builtin_prefetch(entry->name.data());
    }
    Envelope& full = *result.envelope;
    // The data moves into the document; the rows below use only the envelope's attributes
    // (TriggerEventJson(Envelope&&) takes the data and extensions and leaves the rest).
    nlohmann::json trigger_event =
        TriggerEventJson(std::move(full), *record);  // NOLINT(bugprone-use-after-move): see above
    for (size_t k = 0; k < matched.size(); ++k) {
      const matching::IndexEntry* entry = matched[k];
      store::NewExecution e;
      e.id = NewId("ex_", now);
      e.tenant_id = full.tenant;  // NOLINT(bugprone-use-after-move): attributes are kept
      e.environment_id = full.environment;
      e.workflow_id = entry->definition_id;
      e.workflow_name = entry->name;
      e.definition_version = entry->version;
      e.provider = entry->provider;
      e.trigger_type = "event";
      e.trigger_event_id = full.id;
      // The last row takes the document, the others a copy: only the last iteration moves it.
      // NOLINTBEGIN(bugprone-use-after-move)
      if (k + 1 == matched.size()) {
        e.trigger_event = std::move(trigger_event);
      } else {
        e.trigger_event = trigger_event;
      }
      // NOLINTEND(bugprone-use-after-move)
      plan.matches.push_back(
          {full.tenant, full.environment, full.id, full.type, entry->definition_id, e.id});
      plan.executions.push_back(std::move(e));
      plan.sources.push_back({record->topic, record->partition, record->offset});
    }
  }
  return plan;
}

}  // namespace workflowd::pipeline
