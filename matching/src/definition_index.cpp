#include "workflowd/matching/definition_index.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
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

uint64_t HashKey(std::string_view key) { return std::hash<std::string_view>{}(key); }

uint32_t Tag(uint64_t hash) { return static_cast<uint32_t>(hash >> 32); }

}  // namespace

DefinitionIndex::DefinitionIndex(std::vector<IndexEntry> entries) : entries_(std::move(entries)) {
  if (entries_.size() >= std::numeric_limits<uint32_t>::max()) {
    throw std::length_error("matching index: too many definitions");
  }
  std::sort(entries_.begin(), entries_.end(), [](const IndexEntry& a, const IndexEntry& b) {
    return std::tie(a.tenant_id, a.environment_id, a.event_name, a.definition_id) <
           std::tie(b.tenant_id, b.environment_id, b.event_name, b.definition_id);
  });
  conditions_.reserve(entries_.size());
  for (const IndexEntry& e : entries_) conditions_.push_back(e.condition.get());

  // Group boundaries first, to size the table.
  std::vector<std::pair<uint32_t, uint32_t>> groups;
  size_t i = 0;
  while (i < entries_.size()) {
    size_t j = i + 1;
    while (j < entries_.size() && entries_[j].tenant_id == entries_[i].tenant_id &&
           entries_[j].environment_id == entries_[i].environment_id &&
           entries_[j].event_name == entries_[i].event_name) {
      ++j;
    }
    groups.emplace_back(static_cast<uint32_t>(i), static_cast<uint32_t>(j));
    i = j;
  }
  if (groups.empty()) return;
  slots_.resize(std::bit_ceil(std::max<size_t>(8, groups.size() * 2)));
  const size_t mask = slots_.size() - 1;
  std::string key;
  for (const auto& [begin, end] : groups) {
    const IndexEntry& first = entries_[begin];
    BuildKey(key, first.tenant_id, first.environment_id, first.event_name);
    if (keys_.size() + sizeof(uint32_t) + key.size() >= std::numeric_limits<uint32_t>::max()) {
      throw std::length_error("matching index: keys too large");
    }
    const uint64_t hash = HashKey(key);
    size_t s = hash & mask;
    while (slots_[s].end != 0) s = (s + 1) & mask;
    Slot& slot = slots_[s];
    slot.hash = Tag(hash);
    slot.begin = begin;
    slot.end = end;
    slot.key_offset = static_cast<uint32_t>(keys_.size());
    const auto length = static_cast<uint32_t>(key.size());
    keys_.append(reinterpret_cast<const char*>(&length), sizeof length);
    keys_.append(key);
  }
}

std::span<const IndexEntry> DefinitionIndex::Candidates(std::string_view tenant,
                                                        std::string_view environment,
                                                        std::string_view event_name) const {
  if (slots_.empty()) return {};
  thread_local std::string key;
  BuildKey(key, tenant, environment, event_name);
  const uint64_t hash = HashKey(key);
  const uint32_t tag = Tag(hash);
  const size_t mask = slots_.size() - 1;
  for (size_t s = hash & mask;; s = (s + 1) & mask) {
    const Slot& slot = slots_[s];
    if (slot.end == 0) return {};
    if (slot.hash != tag) continue;
    uint32_t length;
    std::memcpy(&length, keys_.data() + slot.key_offset, sizeof length);
    if (length == key.size() &&
        std::memcmp(keys_.data() + slot.key_offset + sizeof length, key.data(), length) == 0) {
      return std::span<const IndexEntry>(entries_.data() + slot.begin, slot.end - slot.begin);
    }
  }
}

void DefinitionIndex::Match(const EventView& event, std::vector<const IndexEntry*>& out) const {
  const std::span<const IndexEntry> candidates =
      Candidates(event.tenant, event.environment, event.type);
  if (candidates.empty()) return;
  const size_t begin = static_cast<size_t>(candidates.data() - entries_.data());
  for (size_t i = begin; i < begin + candidates.size(); ++i) {
    if (Matches(conditions_[i], event)) out.push_back(&entries_[i]);
  }
}

}  // namespace workflowd::matching
