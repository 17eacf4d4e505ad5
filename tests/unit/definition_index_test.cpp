#include "workflowd/matching/definition_index.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "workflowd/matching/detail/tag_group.hpp"

namespace workflowd::matching {
namespace {

using Json = nlohmann::json;

IndexEntry Entry(std::string id, std::string tenant, std::string env, std::string event,
                 ConditionPtr condition = nullptr) {
  IndexEntry e;
  e.definition_id = std::move(id);
  e.version = 1;
  e.name = e.definition_id;
  e.provider = "mock";
  e.tenant_id = std::move(tenant);
  e.environment_id = std::move(env);
  e.event_name = std::move(event);
  e.condition = std::move(condition);
  return e;
}

std::vector<std::string> MatchIds(const DefinitionIndex& index, const EventView& event) {
  std::vector<const IndexEntry*> out;
  index.Match(event, out);
  std::vector<std::string> ids;
  for (const auto* e : out) ids.push_back(e->definition_id);
  return ids;
}

TEST(DefinitionIndex, MatchesOnlyTheEventsTenantEnvironmentAndName) {
  DefinitionIndex index({Entry("wf_a_prod", "A", "prod", "customer.created"),
                         Entry("wf_a_dev", "A", "dev", "customer.created"),
                         Entry("wf_b_prod", "B", "prod", "customer.created"),
                         Entry("wf_a_prod_sub", "A", "prod", "subscription.activated"),
                         Entry("wf_a_prod_2", "A", "prod", "customer.created")});
  EventView event;
  event.id = "evt-1";
  event.type = "customer.created";
  event.tenant = "A";
  event.environment = "prod";
  EXPECT_EQ(MatchIds(index, event), (std::vector<std::string>{"wf_a_prod", "wf_a_prod_2"}));
  event.environment = "dev";
  EXPECT_EQ(MatchIds(index, event), (std::vector<std::string>{"wf_a_dev"}));
  event.tenant = "B";
  EXPECT_TRUE(MatchIds(index, event).empty());  // B has no dev definitions
  event.tenant = "C";
  event.environment = "prod";
  EXPECT_TRUE(MatchIds(index, event).empty());
  EXPECT_EQ(index.size(), 5u);
}

TEST(DefinitionIndex, KeysCannotBleedIntoEachOther) {
  // "A" + "Bprod" must not collide with "AB" + "prod".
  DefinitionIndex index({Entry("wf_1", "AB", "prod", "x")});
  EXPECT_TRUE(index.Candidates("A", "Bprod", "x").empty());
  EXPECT_EQ(index.Candidates("AB", "prod", "x").size(), 1u);
}

TEST(DefinitionIndex, ConditionsFilterCandidates) {
  auto us_only = ParseConditionList(
      Json::array({Json{{"field", "data.country"}, {"op", "eq"}, {"value", "US"}}}),
      "trigger.conditions");
  DefinitionIndex index({Entry("wf_us", "A", "prod", "customer.created", us_only),
                         Entry("wf_all", "A", "prod", "customer.created")});
  Json data = {{"country", "FR"}};
  EventView event;
  event.type = "customer.created";
  event.tenant = "A";
  event.environment = "prod";
  event.data = &data;
  EXPECT_EQ(MatchIds(index, event), (std::vector<std::string>{"wf_all"}));
  data["country"] = "US";
  EXPECT_EQ(MatchIds(index, event), (std::vector<std::string>{"wf_all", "wf_us"}));
}

TEST(DefinitionIndex, ManyKeysEachFindExactlyTheirEntriesInIdOrder) {
  // Enough keys for many probe collisions in the open-addressing table; ids are given out of
  // order and several definitions share a key.
  std::vector<IndexEntry> entries;
  const char* events[] = {"customer.created", "order.placed", "x"};
  for (int t = 2999; t >= 0; --t) {
    const std::string tenant = "t" + std::to_string(t);
    for (const char* env : {"prod", "staging"}) {
      for (const char* event : events) {
        for (int k = 2; k >= 0; --k) {
          if (k > t % 3) continue;
          entries.push_back(
              Entry("wf_" + tenant + "_" + env + "_" + event + "_" + std::to_string(k), tenant, env,
                    event));
        }
      }
    }
  }
  const size_t total = entries.size();
  const DefinitionIndex index(std::move(entries));
  EXPECT_EQ(index.size(), total);
  size_t seen = 0;
  for (int t = 0; t < 3000; ++t) {
    const std::string tenant = "t" + std::to_string(t);
    for (const char* env : {"prod", "staging"}) {
      for (const char* event : events) {
        const auto candidates = index.Candidates(tenant, env, event);
        ASSERT_EQ(candidates.size(), static_cast<size_t>(t % 3 + 1)) << tenant << env << event;
        for (size_t k = 0; k < candidates.size(); ++k) {
          EXPECT_EQ(candidates[k].definition_id,
                    "wf_" + tenant + "_" + env + "_" + event + "_" + std::to_string(k));
          EXPECT_EQ(candidates[k].tenant_id, tenant);
        }
        seen += candidates.size();
      }
    }
    EXPECT_TRUE(index.Candidates(tenant, "dev", "x").empty());
    EXPECT_TRUE(index.Candidates(tenant, "prod", "order").empty());
    EXPECT_TRUE(index.Candidates(tenant, "prod", "x.y").empty());
  }
  EXPECT_EQ(seen, total);
  EXPECT_TRUE(index.Candidates("t3000", "prod", "x").empty());
  EXPECT_TRUE(index.Candidates("", "", "").empty());
}

TEST(DefinitionIndex, TablesAtEverySizeFindEachKeyAndNoOther) {
  // The table is sized to the number of distinct keys (a power of two, at most 4/5 full): sizes on
  // both sides of each resize point, so that the fullest tables (the longest probe runs, runs that
  // wrap around the table's end) are among them. Checked against a plain set of the keys.
  for (const size_t n :
       {size_t{1}, size_t{5}, size_t{6}, size_t{7}, size_t{13}, size_t{102}, size_t{103},
        size_t{204}, size_t{205}, size_t{819}, size_t{820}, size_t{6553}, size_t{6554}}) {
    std::vector<IndexEntry> entries;
    std::set<std::string> keys;
    for (size_t i = 0; i < n; ++i) {
      const std::string tenant = "tenant" + std::to_string(i * 7919 % 100003);
      entries.push_back(Entry("wf" + std::to_string(i), tenant, "prod", "order.placed"));
      keys.insert(tenant);
    }
    const DefinitionIndex index(std::move(entries));
    for (size_t i = 0; i < 3 * n + 10; ++i) {
      const std::string tenant = "tenant" + std::to_string(i * 7919 % 100003);
      const auto candidates = index.Candidates(tenant, "prod", "order.placed");
      if (keys.count(tenant) != 0) {
        ASSERT_EQ(candidates.size(), 1u) << n << " keys, " << tenant;
        EXPECT_EQ(candidates[0].tenant_id, tenant);
        EXPECT_EQ(candidates[0].definition_id, "wf" + std::to_string(i));
      } else {
        EXPECT_TRUE(candidates.empty()) << n << " keys, " << tenant;
      }
      EXPECT_TRUE(index.Candidates(tenant, "staging", "order.placed").empty());
      EXPECT_TRUE(index.Candidates(tenant, "prod", "order.placed.").empty());
    }
  }
}

// Lookups in steps (Hash, PrefetchTags, PrefetchBucket, Find with the hash) as the event pipeline
// does them, a key ahead: the same answers as Find alone, for keys the index holds and keys it
// does not, in tables of several sizes.
TEST(DefinitionIndex, LookupsInStepsGiveTheSameCandidates) {
  for (const size_t n : {size_t{1}, size_t{7}, size_t{205}, size_t{6554}}) {
    std::vector<IndexEntry> entries;
    for (size_t i = 0; i < n; ++i) {
      entries.push_back(
          Entry("wf" + std::to_string(i), "tenant" + std::to_string(i), "prod", "order.placed"));
    }
    const DefinitionIndex index(std::move(entries));
    DefinitionIndex::KeyHash ahead{};
    std::string ahead_tenant;
    for (size_t i = 0; i <= 2 * n + 1; ++i) {
      const std::string tenant = "tenant" + std::to_string(i);
      const DefinitionIndex::KeyHash hash = DefinitionIndex::Hash(tenant, "prod", "order.placed");
      index.PrefetchTags(hash);
      if (i > 0) {
        index.PrefetchBucket(ahead);
        const CandidateSet in_steps = index.Find(ahead, ahead_tenant, "prod", "order.placed");
        const CandidateSet direct = index.Find(ahead_tenant, "prod", "order.placed");
        EXPECT_EQ(in_steps.entries, direct.entries) << n << " keys, " << ahead_tenant;
        EXPECT_EQ(in_steps.size, direct.size);
        EXPECT_EQ(in_steps.size, i - 1 < n ? 1u : 0u) << n << " keys, " << ahead_tenant;
      }
      ahead = hash;
      ahead_tenant = tenant;
    }
  }
  const DefinitionIndex empty;
  const DefinitionIndex::KeyHash hash = DefinitionIndex::Hash("A", "prod", "x");
  empty.PrefetchTags(hash);
  empty.PrefetchBucket(hash);
  EXPECT_TRUE(empty.Find(hash, "A", "prod", "x").empty());
}

// The index's entries live in its own large allocation (huge pages from 2 MiB on): an index that
// large finds, copies and moves like any other.
TEST(DefinitionIndex, LargeEntryArraysCopyAndMove) {
  std::vector<IndexEntry> entries;
  const size_t n = 3 * (size_t{2} << 20) / sizeof(IndexEntry);
  for (size_t i = 0; i < n; ++i) {
    entries.push_back(Entry("wf" + std::to_string(i), "t" + std::to_string(i % 5000), "prod",
                            "e" + std::to_string(i / 5000)));
  }
  const DefinitionIndex index(std::move(entries));
  ASSERT_EQ(index.size(), n);
  const DefinitionIndex copy = index;
  DefinitionIndex source(index);
  const DefinitionIndex moved(std::move(source));
  for (size_t i = 0; i < n; i += 997) {
    const std::string tenant = "t" + std::to_string(i % 5000),
                      event = "e" + std::to_string(i / 5000);
    for (const DefinitionIndex* x : {&index, &copy, &moved}) {
      const auto candidates = x->Candidates(tenant, "prod", event);
      ASSERT_EQ(candidates.size(), 1u);
      EXPECT_EQ(candidates[0].definition_id, "wf" + std::to_string(i));
      EXPECT_GE(candidates.data(), x->entries().data());
      EXPECT_LT(candidates.data(), x->entries().data() + x->size());
    }
  }
}

// The two ways of probing eight tags at once give the bits a plain loop gives: bit 2*i for slot i
// holding the tag (match) or 0 (empty); MatchBeforeEmpty keeps the matches before the first empty
// slot. Groups are drawn from values close to the tag (one bit off in either byte, the top bit),
// so that a lane-crossing carry or borrow would show.
TEST(TagGroup, ImplementationsAgreeWithAPlainLoop) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200000; ++round) {
    constexpr uint16_t kEdges[] = {1, 0x8000, 0xFFFF, 0x0100, 0x7FFF, 0x8001};
    const auto tag = round < 6 ? kEdges[round] : static_cast<uint16_t>((rng() & 0xFFFF) | 1);
    uint16_t group[detail::kTagGroup];
    for (uint16_t& t : group) {
      switch (rng() % 8) {
        case 0:
        case 1:
          t = 0;
          break;
        case 2:
        case 3:
          t = tag;
          break;
        case 4:
          t = static_cast<uint16_t>(tag ^ (1u << (rng() % 16)));
          break;
        case 5:
          t = static_cast<uint16_t>(tag + 1);
          break;
        case 6:
          t = static_cast<uint16_t>(tag - 1);
          break;
        default:
          t = static_cast<uint16_t>(rng());
      }
    }
    uint32_t match = 0, empty = 0, before_empty = 0;
    bool seen_empty = false;
    for (size_t i = 0; i < detail::kTagGroup; ++i) {
      if (group[i] == tag) {
        match |= 1u << (2 * i);
        if (!seen_empty) before_empty |= 1u << (2 * i);
      }
      if (group[i] == 0) {
        empty |= 1u << (2 * i);
        seen_empty = true;
      }
    }
    const detail::TagGroupBits portable = detail::MatchTagGroupPortable(group, tag);
    ASSERT_EQ(portable.match, match) << round;
    ASSERT_EQ(portable.empty, empty) << round;
    ASSERT_EQ(portable.MatchBeforeEmpty(), before_empty) << round;
#if defined(__SSE2__)
    const detail::TagGroupBits sse2 = detail::MatchTagGroupSse2(group, tag);
    ASSERT_EQ(sse2.match, match) << round;
    ASSERT_EQ(sse2.empty, empty) << round;
#endif
    const detail::TagGroupBits used = detail::MatchTagGroup(group, tag);
    ASSERT_EQ(used.match, match);
    ASSERT_EQ(used.empty, empty);
  }
}

TEST(DefinitionIndex, EmptyIndexHasNoCandidates) {
  const DefinitionIndex index;
  EXPECT_TRUE(index.Candidates("A", "prod", "x").empty());
  const DefinitionIndex from_nothing(std::vector<IndexEntry>{});
  EXPECT_TRUE(from_nothing.Candidates("A", "prod", "x").empty());
  EventView event;
  event.type = "x";
  event.tenant = "A";
  event.environment = "prod";
  EXPECT_TRUE(MatchIds(from_nothing, event).empty());
}

TEST(DefinitionIndex, DefinitionsSharingOneCompiledConditionMatchIndependently) {
  // Conditions compiled per definition from the same source are one shared object.
  const Json list = Json::array(
      {Json{{"field", "data.email"}, {"op", "regex"}, {"value", "^[^@]+@index-test\\.example$"}}});
  std::vector<IndexEntry> entries;
  for (const char* tenant : {"A", "B", "C"}) {
    entries.push_back(Entry(std::string("wf_") + tenant, tenant, "prod", "invoice.paid",
                            ParseConditionList(list, "trigger.conditions")));
  }
  EXPECT_EQ(entries[0].condition.get(), entries[2].condition.get());
  const DefinitionIndex index(std::move(entries));
  Json data = {{"email", "ann@index-test.example"}};
  EventView event;
  event.type = "invoice.paid";
  event.environment = "prod";
  event.data = &data;
  event.tenant = "B";
  EXPECT_EQ(MatchIds(index, event), (std::vector<std::string>{"wf_B"}));
  event.tenant = "C";
  EXPECT_EQ(MatchIds(index, event), (std::vector<std::string>{"wf_C"}));
  data["email"] = "ann@elsewhere.example";
  EXPECT_TRUE(MatchIds(index, event).empty());
}

TEST(DefinitionIndex, CopiesAndMovesKeepWorking) {
  auto us_only = ParseConditionList(
      Json::array({Json{{"field", "data.country"}, {"op", "eq"}, {"value", "US"}}}),
      "trigger.conditions");
  DefinitionIndex original(
      {Entry("wf_us", "A", "prod", "e", us_only), Entry("wf_b", "B", "prod", "e")});
  const DefinitionIndex copy = original;
  const DefinitionIndex moved = std::move(original);
  Json data = {{"country", "US"}};
  EventView event;
  event.type = "e";
  event.tenant = "A";
  event.environment = "prod";
  event.data = &data;
  EXPECT_EQ(MatchIds(copy, event), (std::vector<std::string>{"wf_us"}));
  EXPECT_EQ(MatchIds(moved, event), (std::vector<std::string>{"wf_us"}));
  ASSERT_EQ(copy.Candidates("A", "prod", "e").size(), 1u);
  EXPECT_EQ(copy.Candidates("A", "prod", "e").data(), copy.entries().data());  // its own entries
}

TEST(DefinitionIndex, LongKeysAndManyCandidatesAreFoundWithTheirConditions) {
  // Keys and candidate lists of every size around what fits in one bucket (the rest goes to the
  // overflow area), among short ones, in a table large enough for huge-page allocation; a copy
  // and a moved-to index answer the same.
  auto us_only = ParseConditionList(
      Json::array({Json{{"field", "data.country"}, {"op", "eq"}, {"value", "US"}}}),
      "trigger.conditions");
  std::vector<IndexEntry> entries;
  for (int t = 0; t < 20000; ++t) {
    entries.push_back(Entry("wf_s" + std::to_string(t), "s" + std::to_string(t), "prod", "e"));
  }
  for (size_t length = 1; length <= 80; ++length) {
    const std::string tenant(length, static_cast<char>('a' + length % 26));
    for (size_t k = 0; k < length % 7 + 1; ++k) {
      entries.push_back(Entry("wf_" + std::to_string(length) + "_" + std::to_string(k), tenant,
                              "staging", "customer.created", k % 2 ? us_only : nullptr));
    }
  }
  const DefinitionIndex built(std::move(entries));
  const DefinitionIndex copy = built;
  DefinitionIndex moved_from = built;
  const DefinitionIndex moved = std::move(moved_from);
  for (const DefinitionIndex* index : {&built, &copy, &moved}) {
    for (size_t length = 1; length <= 80; ++length) {
      const std::string tenant(length, static_cast<char>('a' + length % 26));
      const CandidateSet found = index->Find(tenant, "staging", "customer.created");
      ASSERT_EQ(found.size, length % 7 + 1) << length;
      for (size_t k = 0; k < found.size; ++k) {
        EXPECT_EQ(found.entries[k].definition_id,
                  "wf_" + std::to_string(length) + "_" + std::to_string(k));
        EXPECT_EQ(found.conditions[k], found.entries[k].condition.get());
      }
      EXPECT_TRUE(index->Find(tenant, "staging", "customer.create").empty());
      EXPECT_TRUE(index->Find(tenant + "a", "staging", "customer.created").empty());
      EXPECT_TRUE(index->Find(tenant, "prod", "customer.created").empty());
    }
    for (int t = 0; t < 20000; t += 7) {
      ASSERT_EQ(index->Find("s" + std::to_string(t), "prod", "e").size, 1u);
      EXPECT_EQ(index->Find("s" + std::to_string(t), "prod", "e").entries->definition_id,
                "wf_s" + std::to_string(t));
    }
  }
  // The moved-to index answers with its own entries.
  const IndexEntry* s1 = moved.Find("s1", "prod", "e").entries;
  EXPECT_TRUE(s1 >= moved.entries().data() && s1 < moved.entries().data() + moved.size());

  // Match over given candidates is Match with its own lookup.
  Json data = {{"country", "US"}};
  EventView event;
  const std::string tenant(13, 'a' + 13);  // outlives the event's view of it
  event.type = "customer.created";
  event.tenant = tenant;
  event.environment = "staging";
  event.data = &data;
  std::vector<const IndexEntry*> out;
  DefinitionIndex::Match(copy.Find(event.tenant, event.environment, event.type), event, out);
  EXPECT_EQ(out.size(), 13u % 7 + 1);
  EXPECT_EQ(MatchIds(copy, event).size(), out.size());
  data["country"] = "FR";
  out.clear();
  DefinitionIndex::Match(copy.Find(event.tenant, event.environment, event.type), event, out);
  EXPECT_EQ(out.size(), 4u);  // 13 % 7 + 1 = 7 candidates, the 3 with the condition fail
}

TEST(DefinitionIndexHolder, SwapsSnapshots) {
  DefinitionIndexHolder holder;
  EXPECT_EQ(holder.Get()->size(), 0u);
  auto old_snapshot = holder.Get();
  holder.Set(std::make_shared<const DefinitionIndex>(
      std::vector<IndexEntry>{Entry("wf_1", "A", "prod", "x")}));
  EXPECT_EQ(holder.Get()->size(), 1u);
  EXPECT_EQ(old_snapshot->size(), 0u);  // readers keep the snapshot they hold
}

}  // namespace
}  // namespace workflowd::matching
