// Probing eight slots of the matching index's tag array at once, the way SwissTable probes its
// control bytes: which of the eight 16-bit tags equal a given tag, and which are empty (0). A
// lookup then costs a group or two however long the run of occupied slots it starts in (at the
// index's 4/5 load, a key the index does not hold would otherwise walk ~9 slots one by one).
//
// Two implementations giving identical bits: SSE2 (part of every x86-64 CPU) and a portable one on
// two 64-bit words. Both are compiled and tested against a plain loop on every platform where
// they build (tests/unit/definition_index_test.cpp).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace workflowd::matching::detail {

inline constexpr size_t kTagGroup = 8;

// Bit 2*i stands for slot i (0-7) of the group; all other bits are clear.
struct TagGroupBits {
  uint32_t match = 0;  // slots holding the tag
  uint32_t empty = 0;  // slots holding 0

  // The matching slots before the group's first empty slot: a key is never stored beyond an
  // empty slot of its probe sequence.
  uint32_t MatchBeforeEmpty() const {
    return empty == 0 ? match : match & ((empty & (0u - empty)) - 1);
  }
};

// Bit 2*k for each 16-bit lane k (0-3) of `x` that is zero. Exact per lane: the addition works on
// 15-bit values, so no carry crosses into the next lane.
inline uint32_t ZeroLanes(uint64_t x) {
  constexpr uint64_t kLow15 = 0x7FFF7FFF7FFF7FFFULL;
  const uint64_t zero = ~(((x & kLow15) + kLow15) | x) & 0x8000800080008000ULL;
  return static_cast<uint32_t>(((zero >> 15) & 1) | ((zero >> 29) & 4) | ((zero >> 43) & 16) |
                               ((zero >> 57) & 64));
}

inline TagGroupBits MatchTagGroupPortable(const uint16_t* tags, uint16_t tag) {
  static_assert(std::endian::native == std::endian::little, "lane k of a word is tags[k]");
  const uint64_t want = uint64_t{tag} * 0x0001000100010001ULL;
  uint64_t low, high;
  std::memcpy(&low, tags, sizeof low);
  std::memcpy(&high, tags + 4, sizeof high);
  return {ZeroLanes(low ^ want) | (ZeroLanes(high ^ want) << 8),
          ZeroLanes(low) | (ZeroLanes(high) << 8)};
}

#if defined(__SSE2__)
inline TagGroupBits MatchTagGroupSse2(const uint16_t* tags, uint16_t tag) {
  const __m128i group = _mm_loadu_si128(reinterpret_cast<const __m128i*>(tags));
  const auto match = static_cast<uint32_t>(
      _mm_movemask_epi8(_mm_cmpeq_epi16(group, _mm_set1_epi16(static_cast<int16_t>(tag)))));
  const auto empty =
      static_cast<uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi16(group, _mm_setzero_si128())));
  return {match & 0x5555u, empty & 0x5555u};
}
#endif

// tags[0..7] must be readable.
inline TagGroupBits MatchTagGroup(const uint16_t* tags, uint16_t tag) {
#if defined(__SSE2__)
  return MatchTagGroupSse2(tags, tag);
#else
  return MatchTagGroupPortable(tags, tag);
#endif
}

}  // namespace workflowd::matching::detail
