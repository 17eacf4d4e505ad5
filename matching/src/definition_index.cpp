#include "workflowd/matching/definition_index.hpp"

#include <algorithm>
#include <tuple>

namespace workflowd::matching {
namespace {

// Unit separator: cannot occur in tenant or environment ids (validated) nor in event names.
constexpr char kSep = '\x1f';

void BuildKey(std::string& key, std::string_view tenant, std::string_view environment,
              std::string_view event_name) {
  key.clear();
  key.append(tenant).push_back(kSep);
  key.append(environment).push_back(kSep);
  key.append(event_name);
}

}  // namespace

DefinitionIndex::DefinitionIndex(std::vector<IndexEntry> entries) : entries_(std::move(entries)) {
  std::sort(entries_.begin(), entries_.end(), [](const IndexEntry& a, const IndexEntry& b) {
    return std::tie(a.tenant_id, a.environment_id, a.event_name, a.definition_id) <
           std::tie(b.tenant_id, b.environment_id, b.event_name, b.definition_id);
  });
  std::string key;
  size_t i = 0;
  while (i < entries_.size()) {
    size_t j = i + 1;
    while (j < entries_.size() && entries_[j].tenant_id == entries_[i].tenant_id &&
           entries_[j].environment_id == entries_[i].environment_id &&
           entries_[j].event_name == entries_[i].event_name) {
      ++j;
    }
    BuildKey(key, entries_[i].tenant_id, entries_[i].environment_id, entries_[i].event_name);
    ranges_.emplace(key, Range{i, j});
    i = j;
  }
}

std::span<const IndexEntry> DefinitionIndex::Candidates(std::string_view tenant,
                                                        std::string_view environment,
                                                        std::string_view event_name) const {
  thread_local std::string key;
  BuildKey(key, tenant, environment, event_name);
  auto it = ranges_.find(key);
  if (it == ranges_.end()) return {};
  return std::span<const IndexEntry>(entries_.data() + it->second.begin,
                                     it->second.end - it->second.begin);
}

void DefinitionIndex::Match(const EventView& event, std::vector<const IndexEntry*>& out) const {
  for (const auto& entry : Candidates(event.tenant, event.environment, event.type)) {
    if (Matches(entry.condition.get(), event)) out.push_back(&entry);
  }
}

}  // namespace workflowd::matching
