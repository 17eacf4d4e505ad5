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
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "workflowd/matching/condition.hpp"
#include "workflowd/matching/stored_definition.hpp"

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

// The candidates of one tenant x environment x event name, as DefinitionIndex::Find returns them:
// the entries (ordered by definition id) and their compiled conditions side by side (conditions[i]
// is entries[i].condition.get(), stored next to the key in the index so that matching reads them
// from the cache line the lookup already brought in). Valid while the index lives.
struct CandidateSet {
  const IndexEntry* entries = nullptr;
  const Condition* const* conditions = nullptr;
  size_t size = 0;

  bool empty() const { return size == 0; }
  std::span<const IndexEntry> span() const { return {entries, size}; }
};

namespace detail {

// Memory for the index's large arrays: blocks of 2 MiB and more are 2 MiB-aligned and asked to be
// backed by transparent huge pages (with 100,000 definitions the entries are ~25 MB, read at random
// per event: on 4 KiB pages nearly every read would also miss the TLB).
void* AllocateLarge(size_t bytes, size_t align);
void DeallocateLarge(void* p, size_t bytes, size_t align) noexcept;

template <typename T>
struct LargeAllocator {
  using value_type = T;
  LargeAllocator() = default;
  template <typename U>
  LargeAllocator(const LargeAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  T* allocate(size_t n) { return static_cast<T*>(AllocateLarge(n * sizeof(T), alignof(T))); }
  void deallocate(T* p, size_t n) noexcept { DeallocateLarge(p, n * sizeof(T), alignof(T)); }
  template <typename U>
  bool operator==(const LargeAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace detail

// Entries in the index's own kind of memory (detail::LargeAllocator): an index built from them
// takes them over without a copy (DefinitionIndex::FromEntries).
using IndexEntries = std::vector<IndexEntry, detail::LargeAllocator<IndexEntry>>;

class DefinitionIndex {
 public:
  DefinitionIndex() = default;
  // Moves the entries into the index's own memory (for a large index the loader should build
  // IndexEntries and use FromEntries: no second copy of the entries while the index is built).
  explicit DefinitionIndex(std::vector<IndexEntry> entries);
  static DefinitionIndex FromEntries(IndexEntries entries);
  ~DefinitionIndex();
  DefinitionIndex(const DefinitionIndex& other);
  DefinitionIndex(DefinitionIndex&& other) noexcept;
  DefinitionIndex& operator=(DefinitionIndex other) noexcept;

  // The entries of exactly this tenant x environment x event name, ordered by definition id.
  std::span<const IndexEntry> Candidates(std::string_view tenant, std::string_view environment,
                                         std::string_view event_name) const {
    return Find(tenant, environment, event_name).span();
  }

  // The same with their conditions (for a caller that looks at the candidates before matching).
  CandidateSet Find(std::string_view tenant, std::string_view environment,
                    std::string_view event_name) const {
    return Find(Hash(tenant, environment, event_name), tenant, environment, event_name);
  }

  // Looking up in steps, for a caller that knows its next keys before it needs their candidates
  // (the event pipeline, a record ahead): with many definitions, the parts of the index a lookup
  // reads are seldom in the cache, and these let the caller load them while it works on something
  // else. Hash the key once; PrefetchTags as soon as the key is known; PrefetchBucket a while later
  // (it reads the tags: when they have arrived, it does not wait); Find when the candidates are
  // needed. The prefetches are hints only: Find gives the same answer with or without them.
  struct KeyHash {
    uint64_t value = 0;
  };
  static KeyHash Hash(std::string_view tenant, std::string_view environment,
                      std::string_view event_name);
  void PrefetchTags(KeyHash hash) const;
  void PrefetchBucket(KeyHash hash) const;
  // `hash` must be Hash(tenant, environment, event_name).
  CandidateSet Find(KeyHash hash, std::string_view tenant, std::string_view environment,
                    std::string_view event_name) const;

  // Appends the candidates whose conditions hold for `event` (its tenant, environment and type
  // select the candidates).
  void Match(const EventView& event, std::vector<const IndexEntry*>& out) const {
    Match(Find(event.tenant, event.environment, event.type), event, out);
  }

  // The same over candidates found before (Find with the event's tenant, environment and type):
  // saves the second lookup.
  static void Match(const CandidateSet& candidates, const EventView& event,
                    std::vector<const IndexEntry*>& out) {
    for (size_t i = 0; i < candidates.size; ++i) {
      if (Matches(candidates.conditions[i], event)) out.push_back(&candidates.entries[i]);
    }
  }

  size_t size() const { return entries_.size(); }
  std::span<const IndexEntry> entries() const { return entries_; }

 private:
  // Open addressing over the distinct keys (linear probing, at most 4/5 full) in one allocation:
  // 64-byte buckets (one cache line each), the overflow area, then a 2-byte tag per bucket (16
  // hash bits; 0: empty), which is what the probes walk, eight slots at a time
  // (detail/tag_group.hpp). A bucket holds a 32-bit fingerprint of
  // its key's hash, where its entries begin, and, when they fit in the line (keys up to 40 bytes
  // with one candidate, up to 32 with two), the key's text and its candidates' condition
  // pointers; larger keys and candidate lists live in the overflow area the bucket points to. A
  // lookup reads the tag array (256 KB for 100,000 keys: it stays in a core's cache) and, when a
  // tag agrees, one bucket (two cache lines for large keys), however many definitions the index
  // holds; a key the index does not hold seldom reads a bucket at all. Large tables ask for
  // transparent huge pages (fewer TLB misses).
  struct Bucket;
  void Build();  // sorts entries_ and builds the table over them
  void Swap(DefinitionIndex& other) noexcept;

  IndexEntries entries_;        // grouped by key, ordered by definition id within
  std::byte* table_ = nullptr;  // buckets, the overflow area, the tags
  size_t table_bytes_ = 0;
  size_t table_align_ = 0;
  size_t tags_offset_ = 0;  // where the tag array begins in table_
  size_t mask_ = 0;         // bucket count - 1 (a power of two); no buckets when table_ is null
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

// Compiles a stored definition's conditions as DefinitionFromJson does (an empty list means no
// conditions; nullopt too). Throws ConditionError when they do not compile, another exception when
// the text is no JSON.
ConditionPtr CompileStoredConditions(const std::optional<std::string>& conditions);

// Calls its argument once per stored definition (a repository's streamed load).
using StoredDefinitionSource =
    std::function<void(const std::function<void(StoredDefinition&&)>& add)>;

// Builds an index from the definitions `source` hands over, compiling each one's conditions as it
// arrives (no full list of definitions is held at once; the entries go straight into the index's
// own memory). A definition whose conditions do not compile is left out and, when `skipped` is
// given, listed there: one such definition must not stop every other one from loading. Running
// out of memory is not the definition's fault: std::bad_alloc propagates (the load fails), as does
// any exception of `source` itself.
std::shared_ptr<const DefinitionIndex> BuildIndex(const StoredDefinitionSource& source,
                                                  std::vector<SkippedDefinition>* skipped);

}  // namespace workflowd::matching
