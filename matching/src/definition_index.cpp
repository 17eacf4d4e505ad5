#include "workflowd/matching/definition_index.hpp"

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "workflowd/matching/detail/tag_group.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace workflowd::matching {
namespace {

using detail::kTagGroup;
using detail::MatchTagGroup;
using detail::TagGroupBits;

// Unit separator: cannot occur in tenant or environment ids (validated) nor in event names.
constexpr char kSep = '\x1f';

constexpr size_t kLine = 64;
constexpr size_t kHugePage = size_t{2} << 20;
// A bucket's payload stores condition pointers: the size of a pointer is the one meant.
constexpr size_t kConditionPointerBytes =
    sizeof(const Condition*);  // NOLINT(bugprone-sizeof-expression)

}  // namespace

// One cache line. `payload` holds the candidates' condition pointers followed by the key text
// (tenant, kSep, environment, kSep, event name) when they fit (Inline), else the offset (from the
// table's start, so that a copy of the table is valid as is) of the same in the overflow area.
struct alignas(kLine) DefinitionIndex::Bucket {
  uint32_t tag;    // high bits of the key's hash
  uint32_t begin;  // first entry of the key in entries_
  uint32_t count;  // 0: empty bucket (a key has at least one entry)
  uint32_t key_length;
  std::byte payload[kLine - 4 * sizeof(uint32_t)];

  static bool Inline(size_t count, size_t key_length) {
    return count * kConditionPointerBytes + key_length <= sizeof payload;
  }
  // Where the condition pointers are (followed by the key text).
  const std::byte* place(const std::byte* table) const {
    if (Inline(count, key_length)) return payload;
    uint64_t offset;
    std::memcpy(&offset, payload, sizeof offset);
    return table + offset;
  }
};

namespace {

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

size_t KeyLength(std::string_view tenant, std::string_view environment,
                 std::string_view event_name) {
  return tenant.size() + environment.size() + event_name.size() + 2;
}

// A fast 64-bit hash of the three key parts without building the key (each part's length is mixed
// in, so "A" + "Bprod" and "AB" + "prod" differ). Not for untrusted collision resistance: a
// collision only costs a key comparison.
constexpr uint64_t kMul = 0x9E3779B97F4A7C15ULL;

uint64_t MixPart(uint64_t h, std::string_view part) {
  const char* p = part.data();
  size_t n = part.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  // The last 0-7 bytes without a variable-length copy: two overlapping 4-byte reads, or three
  // single bytes (as wyhash does).
  uint64_t w = 0;
  if (n >= 4) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + n - 4, 4);
    w = (uint64_t{lo} << 32) | hi;
  } else if (n > 0) {
    w = (uint64_t{static_cast<unsigned char>(p[0])} << 16) |
        (uint64_t{static_cast<unsigned char>(p[n / 2])} << 8) |
        static_cast<unsigned char>(p[n - 1]);
  }
  h = (h ^ w ^ (static_cast<uint64_t>(part.size()) << 56)) * kMul;
  return h ^ (h >> 31);
}

uint64_t HashKey(std::string_view tenant, std::string_view environment,
                 std::string_view event_name) {
  uint64_t h = MixPart(0x243F6A8885A308D3ULL, tenant);
  h = MixPart(h, environment);
  h = MixPart(h, event_name);
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ULL;
  return h ^ (h >> 32);
}

uint32_t Tag(uint64_t hash) { return static_cast<uint32_t>(hash >> 32); }

// The slot's 16-bit tag in the tag array: the hash's top bits, which the slot number (its low bits)
// never shares however large the table; never 0 (an empty slot). The bucket's 32-bit tag holds
// these bits and 16 more.
uint16_t SlotTag(uint64_t hash) {
  const auto t = static_cast<uint16_t>(hash >> 48);
  return t == 0 ? 1 : t;
}

// Whether `key` starts with `part` (a view may be empty with a null data pointer).
bool StartsWith(const char* key, std::string_view part) {
  return part.empty() || std::memcmp(key, part.data(), part.size()) == 0;
}

bool KeyEquals(const char* key, size_t key_length, std::string_view tenant,
               std::string_view environment, std::string_view event_name) {
  if (key_length != KeyLength(tenant, environment, event_name)) return false;
  if (!StartsWith(key, tenant) || key[tenant.size()] != kSep) return false;
  key += tenant.size() + 1;
  if (!StartsWith(key, environment) || key[environment.size()] != kSep) return false;
  return StartsWith(key + environment.size() + 1, event_name);
}

std::byte* AllocateTable(size_t bytes, size_t align) {
  auto* table = static_cast<std::byte*>(::operator new (bytes, std::align_val_t{align}));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // Advice only: failure is harmless.
  if (align == kHugePage) madvise(table, bytes, MADV_HUGEPAGE);
#endif
  return table;
}

bool SameKey(const IndexEntry& a, const IndexEntry& b) {
  return a.tenant_id == b.tenant_id && a.environment_id == b.environment_id &&
         a.event_name == b.event_name;
}

}  // namespace

namespace detail {

void* AllocateLarge(size_t bytes, size_t align) {
  if (bytes < kHugePage) return ::operator new (bytes, std::align_val_t{align});
  return AllocateTable(RoundUp(bytes, kHugePage), kHugePage);
}

void DeallocateLarge(void* p, size_t bytes, size_t align) noexcept {
  if (bytes < kHugePage) {
    ::operator delete (p, std::align_val_t{align});
  } else {
    ::operator delete (p, std::align_val_t{kHugePage});
  }
}

}  // namespace detail

DefinitionIndex::DefinitionIndex(std::vector<IndexEntry> entries)
    : entries_(std::make_move_iterator(entries.begin()), std::make_move_iterator(entries.end())) {
  entries = {};
  Build();
}

DefinitionIndex DefinitionIndex::FromEntries(IndexEntries entries) {
  DefinitionIndex index;
  index.entries_ = std::move(entries);
  index.Build();
  return index;
}

void DefinitionIndex::Build() {
  static_assert(sizeof(Bucket) == kLine);
  if (entries_.size() >= std::numeric_limits<uint32_t>::max()) {
    throw std::length_error("matching index: too many definitions");
  }
  std::sort(entries_.begin(), entries_.end(), [](const IndexEntry& a, const IndexEntry& b) {
    return std::tie(a.tenant_id, a.environment_id, a.event_name, a.definition_id) <
           std::tie(b.tenant_id, b.environment_id, b.event_name, b.definition_id);
  });

  // Group boundaries and the overflow area's size first, to size the table.
  std::vector<std::pair<uint32_t, uint32_t>> groups;
  size_t overflow_bytes = 0;
  for (size_t i = 0; i < entries_.size();) {
    size_t j = i + 1;
    while (j < entries_.size() && SameKey(entries_[j], entries_[i])) ++j;
    const IndexEntry& first = entries_[i];
    const size_t key_length = KeyLength(first.tenant_id, first.environment_id, first.event_name);
    if (key_length >= std::numeric_limits<uint32_t>::max()) {
      throw std::length_error("matching index: key too large");
    }
    if (!Bucket::Inline(j - i, key_length)) {
      overflow_bytes += RoundUp((j - i) * kConditionPointerBytes + key_length, 8);
    }
    groups.emplace_back(static_cast<uint32_t>(i), static_cast<uint32_t>(j));
    i = j;
  }
  if (groups.empty()) return;
  // At most 4/5 full: the probes run over the tag array, where a long run costs a few bytes of one
  // cache line, so a fuller table (half the buckets' memory of a half-full one) costs nothing.
  const size_t bucket_count = std::bit_ceil(std::max<size_t>(8, groups.size() + groups.size() / 4));
  const size_t buckets_bytes = bucket_count * sizeof(Bucket);
  tags_offset_ = RoundUp(buckets_bytes + overflow_bytes, kLine);
  // The tag array ends with a copy of its first group, so that a group read at any slot is 8
  // consecutive tags of the probe sequence (wrapping around the table's end).
  const size_t used_bytes = tags_offset_ + (bucket_count + kTagGroup) * sizeof(uint16_t);
  table_align_ = used_bytes >= kHugePage ? kHugePage : kLine;
  table_bytes_ = RoundUp(used_bytes, table_align_);
  table_ = AllocateTable(table_bytes_, table_align_);
  std::memset(table_, 0, table_bytes_);
  mask_ = bucket_count - 1;

  auto* buckets = reinterpret_cast<Bucket*>(table_);
  auto* tags = reinterpret_cast<uint16_t*>(table_ + tags_offset_);
  std::byte* overflow = table_ + buckets_bytes;
  for (const auto& [begin, end] : groups) {
    const IndexEntry& first = entries_[begin];
    const std::string_view tenant = first.tenant_id, environment = first.environment_id,
                           event_name = first.event_name;
    const uint64_t hash = HashKey(tenant, environment, event_name);
    size_t s = hash & mask_;
    while (buckets[s].count != 0) s = (s + 1) & mask_;
    tags[s] = SlotTag(hash);
    if (s < kTagGroup) tags[bucket_count + s] = tags[s];
    Bucket& bucket = buckets[s];
    bucket.tag = Tag(hash);
    bucket.begin = begin;
    bucket.count = end - begin;
    bucket.key_length = static_cast<uint32_t>(KeyLength(tenant, environment, event_name));
    const size_t conditions_bytes = bucket.count * kConditionPointerBytes;
    std::byte* place = bucket.payload;
    if (!Bucket::Inline(bucket.count, bucket.key_length)) {
      place = overflow;
      overflow += RoundUp(conditions_bytes + bucket.key_length, 8);
      const auto offset = static_cast<uint64_t>(place - table_);
      std::memcpy(bucket.payload, &offset, sizeof offset);
    }
    auto* conditions = reinterpret_cast<const Condition**>(place);
    for (uint32_t i = begin; i < end; ++i) conditions[i - begin] = entries_[i].condition.get();
    char* key = reinterpret_cast<char*>(place + conditions_bytes);
    std::memcpy(key, tenant.data(), tenant.size());
    key[tenant.size()] = kSep;
    std::memcpy(key + tenant.size() + 1, environment.data(), environment.size());
    key[tenant.size() + 1 + environment.size()] = kSep;
    std::memcpy(key + tenant.size() + environment.size() + 2, event_name.data(), event_name.size());
  }
}

DefinitionIndex::~DefinitionIndex() {
  if (table_ != nullptr) ::operator delete (table_, std::align_val_t{table_align_});
}

DefinitionIndex::DefinitionIndex(const DefinitionIndex& other)
    : entries_(other.entries_),
      table_bytes_(other.table_bytes_),
      table_align_(other.table_align_),
      tags_offset_(other.tags_offset_),
      mask_(other.mask_) {
  if (other.table_ == nullptr) return;
  // The table holds no pointer into itself, and its condition pointers stay valid: the copied
  // entries share the same compiled conditions.
  table_ = AllocateTable(table_bytes_, table_align_);
  std::memcpy(table_, other.table_, table_bytes_);
}

DefinitionIndex::DefinitionIndex(DefinitionIndex&& other) noexcept { Swap(other); }

DefinitionIndex& DefinitionIndex::operator=(DefinitionIndex other) noexcept {
  Swap(other);
  return *this;
}

void DefinitionIndex::Swap(DefinitionIndex& other) noexcept {
  std::swap(entries_, other.entries_);
  std::swap(table_, other.table_);
  std::swap(table_bytes_, other.table_bytes_);
  std::swap(table_align_, other.table_align_);
  std::swap(tags_offset_, other.tags_offset_);
  std::swap(mask_, other.mask_);
}

DefinitionIndex::KeyHash DefinitionIndex::Hash(std::string_view tenant,
                                               std::string_view environment,
                                               std::string_view event_name) {
  return KeyHash{HashKey(tenant, environment, event_name)};
}

void DefinitionIndex::PrefetchTags(KeyHash hash) const {
  if (table_ == nullptr) return;
  const auto* tags = reinterpret_cast<const uint16_t*>(table_ + tags_offset_);
  // A group of 8 tags may straddle two cache lines.
  const size_t s = hash.value & mask_;
  __builtin_prefetch(tags + s);
  __builtin_prefetch(tags + s + kTagGroup - 1);
}

void DefinitionIndex::PrefetchBucket(KeyHash hash) const {
  if (table_ == nullptr) return;
  const size_t s = hash.value & mask_;
  const auto* tags = reinterpret_cast<const uint16_t*>(table_ + tags_offset_);
  // The first group's first slot with the key's tag is almost always the key's (16 bits agree);
  // a key further on, or not there, only costs what Find costs without the hint.
  const uint32_t match = MatchTagGroup(tags + s, SlotTag(hash.value)).MatchBeforeEmpty();
  if (match == 0) return;
  const size_t slot = (s + std::countr_zero(match) / 2) & mask_;
  __builtin_prefetch(reinterpret_cast<const Bucket*>(table_) + slot);
}

CandidateSet DefinitionIndex::Find(KeyHash key_hash, std::string_view tenant,
                                   std::string_view environment,
                                   std::string_view event_name) const {
  if (table_ == nullptr) return {};
  const uint64_t hash = key_hash.value;
  const uint32_t tag = Tag(hash);
  const uint16_t slot_tag = SlotTag(hash);
  const auto* buckets = reinterpret_cast<const Bucket*>(table_);
  const auto* tags = reinterpret_cast<const uint16_t*>(table_ + tags_offset_);
  // The tag array (2 bytes a slot), eight slots at a time, answers most lookups of keys the index
  // does not hold without reading a bucket, and tells which slots' buckets are worth a look. The
  // table always has an empty slot (at most 4/5 full), so the walk ends.
  for (size_t s = hash & mask_;; s = (s + kTagGroup) & mask_) {
    const TagGroupBits group = MatchTagGroup(tags + s, slot_tag);
    for (uint32_t match = group.MatchBeforeEmpty(); match != 0; match &= match - 1) {
      const Bucket& bucket = buckets[(s + std::countr_zero(match) / 2) & mask_];
      if (bucket.tag != tag) continue;
      const std::byte* place = bucket.place(table_);
      const std::byte* key = place + bucket.count * kConditionPointerBytes;
      if (KeyEquals(reinterpret_cast<const char*>(key), bucket.key_length, tenant, environment,
                    event_name)) {
        return CandidateSet{entries_.data() + bucket.begin,
                            reinterpret_cast<const Condition* const*>(place), bucket.count};
      }
    }
    if (group.empty != 0) return {};
  }
}

}  // namespace workflowd::matching
