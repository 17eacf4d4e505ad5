#include "workflowd/consumers/batch_planner.hpp"

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

nlohmann::json TriggerEventJson(const Envelope& e, const RawRecord& record) {
  nlohmann::json j = {
      {"id", e.id},
      {"type", e.type},
      {"source", e.source},
      {"tenant", e.tenant},
      {"environment", e.environment},
      {"format", ToString(e.format)},
      {"data", e.data},
      {"kafka",
       {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset}}}};
  if (!e.subject.empty()) j["subject"] = e.subject;
  if (!e.time_text.empty()) j["time"] = e.time_text;
  if (!e.data_content_type.empty()) j["datacontenttype"] = e.data_content_type;
  if (!e.extensions.empty()) j["extensions"] = e.extensions;
  return j;
}

BatchPlan PlanBatch(std::span<const RawRecord* const> records, const DecoderConfig& decoder,
                    const matching::DefinitionIndex& index, std::string_view consumer_group,
                    TimePoint now) {
  BatchPlan plan;
  plan.consumed = records.size();
  std::vector<const matching::IndexEntry*> matched;
  std::vector<matching::Header> header_storage;
  for (const RawRecord* record : records) {
    DecodeResult result = DecodeRecord(*record, decoder);
    if (!result.ok()) {
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
      continue;
    }
    ++plan.decoded;
    const Envelope& envelope = *result.envelope;
    matched.clear();
    index.Match(ViewOf(envelope, header_storage), matched);
    if (matched.empty()) {
      ++plan.unmatched_events;
      continue;
    }
    ++plan.matched_events;
    nlohmann::json trigger_event = TriggerEventJson(envelope, *record);
    for (const auto* entry : matched) {
      store::NewExecution e;
      e.id = NewId("ex_", now);
      e.tenant_id = envelope.tenant;
      e.environment_id = envelope.environment;
      e.workflow_id = entry->definition_id;
      e.workflow_name = entry->name;
      e.definition_version = entry->version;
      e.provider = entry->provider;
      e.trigger_type = "event";
      e.trigger_event_id = envelope.id;
      e.trigger_event = trigger_event;
      plan.matches.push_back({envelope.tenant, envelope.environment, envelope.id, envelope.type,
                              entry->definition_id, e.id});
      plan.executions.push_back(std::move(e));
    }
  }
  return plan;
}

}  // namespace workflowd::consumers
