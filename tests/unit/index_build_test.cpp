// Building the matching index from stored definitions (matching::BuildIndex): the stored
// conditions are compiled here, and one definition whose conditions no longer compile is left out
// and reported without failing the load of the others.
#include <gtest/gtest.h>

#include <new>
#include <stdexcept>

#include "workflowd/matching/definition_index.hpp"

namespace workflowd::matching {
namespace {

StoredDefinition Stored(std::string id, std::optional<std::string> conditions) {
  StoredDefinition d;
  d.id = std::move(id);
  d.version = 3;
  d.name = d.id;
  d.provider = "mock";
  d.tenant_id = "tenant_a";
  d.environment_id = "prod";
  d.event_name = "customer.created";
  d.conditions = std::move(conditions);
  return d;
}

// A source handing over `defs` as a repository's streamed load would.
StoredDefinitionSource From(std::vector<StoredDefinition> defs) {
  return [defs = std::move(defs)](const std::function<void(StoredDefinition &&)>& add) {
    for (auto d : defs) add(std::move(d));
  };
}

std::vector<std::string> Ids(const DefinitionIndex& index) {
  std::vector<std::string> ids;
  for (const auto& e : index.entries()) ids.push_back(e.definition_id);
  return ids;
}

TEST(BuildIndex, CompilesStoredConditions) {
  const auto index =
      BuildIndex(From({Stored("with", R"([{"field": "data.country", "op": "eq", "value": "US"}])"),
                       Stored("empty", "[]"), Stored("none", std::nullopt)}),
                 nullptr);
  ASSERT_EQ(Ids(*index), (std::vector<std::string>{"empty", "none", "with"}));
  const auto& entries = index->entries();
  EXPECT_EQ(entries[0].condition, nullptr);  // an empty list: no conditions
  EXPECT_EQ(entries[1].condition, nullptr);
  ASSERT_NE(entries[2].condition, nullptr);
  EXPECT_EQ(entries[2].condition->path(), "trigger.conditions");
  EXPECT_EQ(entries[2].version, 3);
  EXPECT_EQ(entries[2].provider, "mock");

  nlohmann::json data = {{"country", "US"}};
  EventView event;
  event.type = "customer.created";
  event.tenant = "tenant_a";
  event.environment = "prod";
  event.data = &data;
  std::vector<const IndexEntry*> matched;
  index->Match(event, matched);
  EXPECT_EQ(matched.size(), 3u);
  data["country"] = "FR";
  matched.clear();
  index->Match(event, matched);
  EXPECT_EQ(matched.size(), 2u);
}

TEST(BuildIndex, ADefinitionWhoseConditionsDoNotCompileIsSkippedAndTheOthersLoad) {
  std::vector<SkippedDefinition> skipped;
  const auto index = BuildIndex(
      From({Stored("a", "[]"),
            Stored("bad", R"([{"field": "data.country", "op": "frobnicate", "value": "US"}])"),
            Stored("not-json", "[{"), Stored("z", std::nullopt)}),
      &skipped);
  EXPECT_EQ(Ids(*index), (std::vector<std::string>{"a", "z"}));
  ASSERT_EQ(skipped.size(), 2u);
  EXPECT_EQ(skipped[0].id, "bad");
  EXPECT_EQ(skipped[0].version, 3);
  EXPECT_EQ(skipped[0].tenant_id, "tenant_a");
  EXPECT_EQ(skipped[0].environment_id, "prod");
  EXPECT_EQ(skipped[0].reason, "condition");
  EXPECT_NE(skipped[0].message.find("frobnicate"), std::string::npos) << skipped[0].message;
  EXPECT_EQ(skipped[1].id, "not-json");
  EXPECT_EQ(skipped[1].reason, "document");

  // Without a list to report them in, they are still left out.
  EXPECT_EQ(
      Ids(*BuildIndex(From({Stored("bad", R"([{"op": "eq"}])"), Stored("b", "[]")}), nullptr)),
      (std::vector<std::string>{"b"}));
}

TEST(BuildIndex, ErrorsOfTheSourceAndRunningOutOfMemoryFailTheLoad) {
  const StoredDefinitionSource failing = [](const std::function<void(StoredDefinition &&)>& add) {
    add(Stored("a", "[]"));
    throw std::runtime_error("connection lost");
  };
  EXPECT_THROW(BuildIndex(failing, nullptr), std::runtime_error);
  const StoredDefinitionSource no_memory = [](const std::function<void(StoredDefinition &&)>&) {
    throw std::bad_alloc();
  };
  EXPECT_THROW(BuildIndex(no_memory, nullptr), std::bad_alloc);
}

}  // namespace
}  // namespace workflowd::matching
