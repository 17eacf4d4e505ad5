#include "workflowd/consumers/batch_planner.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <utility>

#include "workflowd/common/ids.hpp"
#include "workflowd/common/timefmt.hpp"

namespace workflowd::consumers {

void BatchPlan::Append(BatchPlan&& other) {
  for (auto& e : other.executions) executions.push_back(std::move(e));
  for (auto& d : other.dead_letters) dead_letters.push_back(std::move(d));
  for (auto& m : other.matches) matches.push_back(std::move(m));
  consumed += other.consumed;
  decoded += other.decoded;
  matched_events += other.matched_events;
  unmatched_events += other.unmatched_events;
  for (size_t i = 0; i < dead_by_reason.size(); ++i) dead_by_reason[i] += other.dead_by_reason[i];
}

namespace {

// The trigger_event document with `data` and `extensions` supplied by the caller (copied or moved
// out of the envelope). Built member by member: an initializer list would copy them again.
nlohmann::json BuildTriggerEvent(const Envelope& e, const RawRecord& record, nlohmann::json data,
                                 std::map<std::string, nlohmann::json> extensions) {
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
  return BuildTriggerEvent(e, record, e.data, e.extensions);
}

nlohmann::json TriggerEventJson(Envelope&& e, const RawRecord& record) {
  nlohmann::json data = std::move(e.data);
  std::map<std::string, nlohmann::json> extensions = std::move(e.extensions);
  e.data = nullptr;
  e.extensions.clear();
  return BuildTriggerEvent(e, record, std::move(data), std::move(extensions));
}

BatchPlan PlanBatch(std::span<const RawRecord* const> records, const DecoderConfig& decoder,
                    const matching::DefinitionIndex& index, std::string_view consumer_group,
                    TimePoint now) {
  BatchPlan plan;
  plan.consumed = records.size();
  std::vector<const matching::IndexEntry*> matched;
  std::vector<matching::Header> header_storage;
  // Only conditions and trigger_event read an event's data: building it (most of the cost of
  // decoding) is skipped for events of a type no definition of their tenant and environment
  // triggers on. Such a record is still validated and dead-lettered like any other.
  // For events with candidates, conditions read only some paths of the payload: those are built
  // for matching, and the whole payload only for an event that matched (decoded again below; its
  // document is needed for trigger_event).
  // The candidates are looked up once per record, when the decoder asks what data it needs (not
  // asked when the event has no data: then below).
  // Within a member, only the paths the conditions read are built (`data.customer.country`
  // builds `customer` with `country` alone).
  std::vector<std::vector<std::string>> paths;
  matching::CandidateSet candidates;
  bool looked_up = false;
  const std::function<DataNeed(const Envelope&)> need = [&](const Envelope& e) {
    candidates = index.Find(e.tenant, e.environment, e.type);
    looked_up = true;
    if (candidates.empty()) return DataNeed{DataNeed::Kind::kNone, {}};
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
  };
  const std::function<DataNeed(const Envelope&)> need_all = [](const Envelope&) {
    return DataNeed{};
  };
  DecodeResult result;  // its envelope's buffers are reused from record to record
  const auto add_dead_letter = [&](const RawRecord& r) {
    const RawRecord* record = &r;
    ++plan.dead_by_reason[static_cast<size_t>(result.reason)];
    DeadLetter letter;
    if (record->key) letter.key = std::string(*record->key);
    if (record->value) letter.value = std::string(*record->value);
    for (const auto& h : record->headers) {
      letter.headers.emplace_back(
          std::string(h.key),
          h.value ? std::optional<std::string>(std::string(*h.value)) : std::nullopt);
    }
    for (auto& [k, v] : DeadLetterHeaders(*record, result, consumer_group, now)) {
      letter.headers.emplace_back(std::move(k), std::move(v));
    }
    plan.dead_letters.push_back(std::move(letter));
  };
  for (const RawRecord* record : records) {
    looked_up = false;
    DecodeRecord(*record, decoder, need, result);
    if (!result.ok()) {
      add_dead_letter(*record);
      continue;
    }
    ++plan.decoded;
    Envelope& envelope = *result.envelope;
    if (!looked_up) candidates = index.Find(envelope.tenant, envelope.environment, envelope.type);
    matched.clear();
    if (!candidates.empty()) {
      matching::DefinitionIndex::Match(candidates, ViewOf(envelope, header_storage), matched);
    }
    if (matched.empty()) {
      ++plan.unmatched_events;
      continue;
    }
    ++plan.matched_events;
    if (envelope.data_partial) {
      // The same record decodes the same way: this time with the whole payload.
      DecodeRecord(*record, decoder, need_all, result);
      if (!result.ok()) {  // cannot happen (same bytes, same rules); never drop the event
        --plan.matched_events;
        --plan.decoded;
        result.reason = DeadLetterReason::kInternal;
        result.detail = "the second decoding of a matched event failed";
        add_dead_letter(*record);
        continue;
      }
    }
    Envelope& full = *result.envelope;
    // The data moves into the document; the rows below use only the envelope's attributes.
    nlohmann::json trigger_event = TriggerEventJson(std::move(full), *record);
    for (size_t i = 0; i < matched.size(); ++i) {
      const matching::IndexEntry* entry = matched[i];
      store::NewExecution e;
      e.id = NewId("ex_", now);
      e.tenant_id = full.tenant;
      e.environment_id = full.environment;
      e.workflow_id = entry->definition_id;
      e.workflow_name = entry->name;
      e.definition_version = entry->version;
      e.provider = entry->provider;
      e.trigger_type = "event";
      e.trigger_event_id = full.id;
      if (i + 1 == matched.size()) {
        e.trigger_event = std::move(trigger_event);
      } else {
        e.trigger_event = trigger_event;
      }
      plan.matches.push_back(
          {full.tenant, full.environment, full.id, full.type, entry->definition_id, e.id});
      plan.executions.push_back(std::move(e));
    }
  }
  return plan;
}

}  // namespace workflowd::consumers
