// The matching index: (tenant, environment, event name) -> the enabled definitions that trigger on
// it, each with its compiled conditions. An index is an immutable snapshot; a refresh builds a new
// one and swaps it in (DefinitionIndexHolder), so matching never takes a lock.
//
// Matching an event costs one hash lookup plus the conditions of the definitions of that very
// tenant x environment x event name: it does not grow with the definitions of other tenants,
// environments or event types.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "workflowd/matching/condition.hpp"

namespace workflowd::matching {

struct IndexEntry {
  std::string definition_id;
  int64_t version = 0;
  std::string name;
  std::string provider;
  std::string tenant_id;
  std::string environment_id;
  std::string event_name;
  ConditionPtr condition;  // null: no conditions, every event of that name matches
};

class DefinitionIndex {
 public:
  DefinitionIndex() = default;
  explicit DefinitionIndex(std::vector<IndexEntry> entries);

  // The entries of exactly this tenant x environment x event name, ordered by definition id.
  std::span<const IndexEntry> Candidates(std::string_view tenant, std::string_view environment,
                                         std::string_view event_name) const;

  // Appends the candidates whose conditions hold for `event` (its tenant, environment and type
  // select the candidates).
  void Match(const EventView& event, std::vector<const IndexEntry*>& out) const;

  size_t size() const { return entries_.size(); }
  const std::vector<IndexEntry>& entries() const { return entries_; }

 private:
  // Open addressing over the distinct keys (linear probing, at most half full): the slots are
  // one contiguous array of 16-byte records, so a lookup costs about one cache miss for the slot,
  // one for the key text in keys_ and one for the candidates' conditions in conditions_, however
  // many definitions the index holds (instead of a chain of hash nodes, heap strings and entries).
  struct Slot {
    uint32_t hash = 0;  // high bits of the key's hash (skips most key comparisons)
    uint32_t begin = 0;
    uint32_t end = 0;         // 0: empty slot (a key has at least one entry)
    uint32_t key_offset = 0;  // into keys_: uint32 length, then the key's bytes
  };

  std::vector<IndexEntry> entries_;           // grouped by key, ordered by definition id within
  std::vector<const Condition*> conditions_;  // entries_[i].condition.get(), contiguous for Match
  std::vector<Slot> slots_;                   // size a power of two
  std::string keys_;
};

// Holds the current snapshot; readers and the refresher may run on different threads.
class DefinitionIndexHolder {
 public:
  DefinitionIndexHolder() : current_(std::make_shared<const DefinitionIndex>()) {}
  std::shared_ptr<const DefinitionIndex> Get() const { return current_.load(); }
  void Set(std::shared_ptr<const DefinitionIndex> index) { current_.store(std::move(index)); }

 private:
  std::atomic<std::shared_ptr<const DefinitionIndex>> current_;
};

}  // namespace workflowd::matching
