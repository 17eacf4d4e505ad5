// The matching index: (tenant, environment, event name) -> the enabled definitions that trigger on
// it, each with its compiled conditions. An index is an immutable snapshot; a refresh builds a new
// one and swaps it in (DefinitionIndexHolder), so matching never takes a lock.
//
// Matching an event costs one hash lookup plus the conditions of the definitions of that very
// tenant x environment x event name: it does not grow with the definitions of other tenants,
// environments or event types.
#pragma once

#include <atomic>
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
  struct Range {
    size_t begin;
    size_t end;
  };
  std::vector<IndexEntry> entries_;  // grouped by key
  std::unordered_map<std::string, Range> ranges_;
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
