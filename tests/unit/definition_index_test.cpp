#include "workflowd/matching/definition_index.hpp"

#include <gtest/gtest.h>

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
