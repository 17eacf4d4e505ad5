// Loading the matching index from PostgreSQL: the streamed load (DefinitionRepository::
// ForEachMatchable) gives the index exactly what the full documents (LoadMatchable) give, and the
// refresher loads once at startup and applies later definition changes (LISTEN/NOTIFY).
#include "index_refresher.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <pqxx/pqxx>
#include <stdexcept>
#include <thread>

#include "test_database.hpp"
#include "workflowd/definitions/definition.hpp"
#include "workflowd/metrics/registry.hpp"
#include "workflowd/pipeline/pipeline_metrics.hpp"
#include "workflowd/store/definition_repository.hpp"
#include "workflowd/store/migrations.hpp"

namespace workflowd::daemon {
namespace {

using namespace std::chrono_literals;

constexpr const char* kDefinitions = R"(
definitions:
  - id: with-conditions
    tenant_id: tenant_a
    environment_id: prod
    name: With conditions
    trigger:
      type: event
      event_name: customer.created
      conditions:
        - {field: data.country, op: eq, value: US}
        - {field: data.email, op: regex, value: "^[^@]+@example\\.com$"}
    steps: [{id: s, order: 1, type: assign_plan, config: {}}]
  - id: no-conditions
    tenant_id: tenant_a
    environment_id: prod
    name: No conditions
    provider: temporal
    trigger: {type: event, event_name: customer.created, conditions: []}
    steps: [{id: s, order: 1, type: assign_plan, config: {}}]
  - id: other-tenant
    tenant_id: tenant_b
    environment_id: staging
    name: Other tenant
    trigger:
      type: event
      event_name: invoice.paid
      conditions: [{field: data.email, op: regex, value: "^[^@]+@example\\.com$"}]
    steps: [{id: s, order: 1, type: assign_plan, config: {}}]
  - id: disabled
    tenant_id: tenant_a
    environment_id: prod
    name: Disabled
    enabled: false
    trigger: {type: event, event_name: customer.created}
    steps: [{id: s, order: 1, type: assign_plan, config: {}}]
  - id: scheduled
    tenant_id: tenant_a
    environment_id: prod
    name: Scheduled
    trigger: {type: scheduled, schedule: {cron: "0 * * * *"}}
    steps: [{id: s, order: 1, type: assign_plan, config: {}}]
)";

class IndexLoadTest : public ::testing::Test {
 protected:
  IndexLoadTest() : db_(test_db_.dsn()) {
    store::Migrate(test_db_.dsn(), store::BundledMigrations());
    store::DefinitionRepository(db_).Apply(
        definitions::DefinitionsFromYamlOrJson(kDefinitions, "test", {"mock"}), "test");
  }

  static std::vector<std::string> Ids(const matching::DefinitionIndex& index) {
    std::vector<std::string> ids;
    for (const auto& e : index.entries()) ids.push_back(e.definition_id);
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  testing::TestDatabase test_db_;
  store::Database db_;
};

TEST_F(IndexLoadTest, StreamedLoadGivesTheIndexOfTheFullDocuments) {
  store::DefinitionRepository repo(db_);
  const auto from_documents = BuildIndex(repo.LoadMatchable());
  const auto streamed = LoadIndex(repo);
  EXPECT_EQ(Ids(*streamed),
            (std::vector<std::string>{"no-conditions", "other-tenant", "with-conditions"}));
  ASSERT_EQ(streamed->size(), from_documents->size());
  for (size_t i = 0; i < streamed->size(); ++i) {
    const matching::IndexEntry& a = streamed->entries()[i];
    const matching::IndexEntry& b = from_documents->entries()[i];
    EXPECT_EQ(a.definition_id, b.definition_id);
    EXPECT_EQ(a.version, b.version);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.provider, b.provider);
    EXPECT_EQ(a.tenant_id, b.tenant_id);
    EXPECT_EQ(a.environment_id, b.environment_id);
    EXPECT_EQ(a.event_name, b.event_name);
    ASSERT_EQ(a.condition == nullptr, b.condition == nullptr) << a.definition_id;
    if (a.condition) {
      EXPECT_EQ(a.condition->source(), b.condition->source());
      EXPECT_EQ(a.condition->path(), b.condition->path());
      // Compiled from the same source at the same path: one shared compiled condition.
      EXPECT_EQ(a.condition.get(), b.condition.get());
    }
  }
  const auto& by_id = [&](const std::string& id) -> const matching::IndexEntry& {
    for (const auto& e : streamed->entries()) {
      if (e.definition_id == id) return e;
    }
    throw std::runtime_error("missing " + id);
  };
  EXPECT_EQ(by_id("no-conditions").condition, nullptr);  // an empty list: no conditions
  EXPECT_EQ(by_id("no-conditions").provider, "temporal");
  EXPECT_EQ(by_id("with-conditions").provider, "mock");

  nlohmann::json data = {{"country", "US"}, {"email", "ann@example.com"}};
  matching::EventView event;
  event.type = "customer.created";
  event.tenant = "tenant_a";
  event.environment = "prod";
  event.data = &data;
  std::vector<const matching::IndexEntry*> matched;
  streamed->Match(event, matched);
  ASSERT_EQ(matched.size(), 2u);
  EXPECT_EQ(matched[0]->definition_id, "no-conditions");  // ordered by definition id
  EXPECT_EQ(matched[1]->definition_id, "with-conditions");
}

TEST_F(IndexLoadTest, LoadsOnceAtStartupThenAppliesChanges) {
  metrics::Registry registry;
  pipeline::PipelineMetrics metrics(registry);
  matching::DefinitionIndexHolder holder;
  IndexRefresher refresher(test_db_.dsn(), 5s, 1h, holder, metrics);
  refresher.LoadNow("startup");
  const auto loaded = holder.Get();
  EXPECT_EQ(loaded->size(), 3u);
  refresher.Start();
  // The loop listens since before the startup load: it has no reason to load again (checked
  // below: once the change is seen, it was loaded exactly once more).

  // A change is announced and applied.
  auto changed = definitions::DefinitionsFromYamlOrJson(kDefinitions, "test", {"mock"});
  changed[0].trigger.event_name = "customer.updated";
  changed[3].enabled = true;
  store::DefinitionRepository(db_).Apply(changed, "test");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto notified = [&] { return metrics.definition_refreshes.WithLabels({"notify"}).Value(); };
  while ((holder.Get() == loaded || notified() < 1) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(50ms);
  }
  const auto refreshed = holder.Get();
  ASSERT_NE(refreshed, loaded) << "no refresh after a definition change";
  EXPECT_EQ(Ids(*refreshed), (std::vector<std::string>{"disabled", "no-conditions", "other-tenant",
                                                       "with-conditions"}));
  EXPECT_TRUE(refreshed->Candidates("tenant_a", "prod", "customer.created").size() == 2);
  const auto updated = refreshed->Candidates("tenant_a", "prod", "customer.updated");
  ASSERT_EQ(updated.size(), 1u);
  EXPECT_EQ(updated[0].definition_id, "with-conditions");
  EXPECT_EQ(updated[0].version, 2);
  EXPECT_NE(updated[0].condition, nullptr);
  // One load for the change (its notifications are one burst), none before it, no resync.
  EXPECT_EQ(notified(), 1);
  EXPECT_EQ(metrics.definition_refreshes.WithLabels({"startup"}).Value(), 1);
  EXPECT_EQ(metrics.definition_refreshes.WithLabels({"resync"}).Value(), 0);
  refresher.Stop();
}

// A stored definition whose conditions no longer compile (a document from before a change of
// the condition language, written here with SQL) used to fail the whole load: at start every
// replica exited, and later reloads kept a stale index forever. Now it is left out, the others
// load, the metric says how many were skipped, and applying a fixed definition brings it back.
TEST_F(IndexLoadTest, ADefinitionWhoseConditionsNoLongerCompileIsSkippedAndTheOthersLoad) {
  {
    pqxx::connection c(test_db_.dsn());
    pqxx::work w(c);
    w.exec(
        "UPDATE workflow_definition_versions SET document = jsonb_set(document, "
        "'{trigger,conditions}', '[{\"field\": \"data.country\", \"op\": \"frobnicate\", "
        "\"value\": \"US\"}]') WHERE definition_id = 'with-conditions'");
    w.commit();
  }
  store::DefinitionRepository repo(db_);
  std::vector<store::SkippedDefinition> skipped;
  const auto index = LoadIndex(repo, &skipped);
  EXPECT_EQ(Ids(*index), (std::vector<std::string>{"no-conditions", "other-tenant"}));
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].id, "with-conditions");
  EXPECT_EQ(skipped[0].version, 1);
  EXPECT_EQ(skipped[0].tenant_id, "tenant_a");
  EXPECT_EQ(skipped[0].reason, "condition");
  EXPECT_NE(skipped[0].message.find("frobnicate"), std::string::npos) << skipped[0].message;

  // The refresher at startup: loads the rest and exports the skipped count.
  metrics::Registry registry;
  pipeline::PipelineMetrics metrics(registry);
  matching::DefinitionIndexHolder holder;
  IndexRefresher refresher(test_db_.dsn(), 5s, 1h, holder, metrics);
  ASSERT_NO_THROW(refresher.LoadNow("startup"));
  EXPECT_EQ(holder.Get()->size(), 2u);
  EXPECT_TRUE(refresher.Healthy());
  EXPECT_EQ(metrics.definitions_loaded.Value(), 2);
  EXPECT_EQ(metrics.definitions_skipped.WithLabels({"condition"}).Value(), 1);
  EXPECT_EQ(metrics.definitions_skipped.WithLabels({"document"}).Value(), 0);
  const std::string exposition = registry.Serialize();
  EXPECT_NE(exposition.find("workflowd_definitions_skipped{reason=\"condition\"} 1"),
            std::string::npos)
      << exposition;

  // Applying the definition again (fixed) replaces the stored document; the next load has it.
  const auto applied =
      repo.Apply(definitions::DefinitionsFromYamlOrJson(kDefinitions, "test", {"mock"}), "test");
  EXPECT_EQ(applied[0].action, store::ApplyOutcome::Action::kUpdated);
  refresher.LoadNow("notify");
  EXPECT_EQ(holder.Get()->size(), 3u);
  EXPECT_EQ(metrics.definitions_skipped.WithLabels({"condition"}).Value(), 0);
}

}  // namespace
}  // namespace workflowd::daemon
