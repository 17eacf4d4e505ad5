// Tenant workflow definitions in PostgreSQL: apply (upsert with versioning), load for matching.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "workflowd/common/clock.hpp"
#include "workflowd/definitions/definition.hpp"
#include "workflowd/matching/stored_definition.hpp"
#include "workflowd/store/database.hpp"

namespace workflowd::store {

struct ApplyOutcome {
  enum class Action { kCreated, kUpdated, kUnchanged };
  std::string id;
  std::string tenant_id;
  std::string environment_id;
  std::string name;
  Action action = Action::kUnchanged;
  int64_t version = 0;
};

const char* ToString(ApplyOutcome::Action action);

// What the matching index needs of a definition: the fields an index entry keeps and the trigger
// conditions as stored (JSON text). The store does not compile conditions: matching does, and
// leaves out (SkippedDefinition) a definition whose conditions no longer compile.
using MatchableDefinition = matching::StoredDefinition;
using SkippedDefinition = matching::SkippedDefinition;

class DefinitionRepository {
 public:
  explicit DefinitionRepository(Database& db, const Clock& clock = SystemClock::Instance());

  // Upserts every definition in one transaction: by id when it has one, else by (tenant,
  // environment, name). A changed definition gets version + 1 and its new document is kept in
  // workflow_definition_versions; an identical one is left alone. Definitions must be valid.
  // Throws StoreError (e.g. an id that belongs to another tenant x environment).
  std::vector<ApplyOutcome> Apply(const std::vector<definitions::WorkflowDefinition>& defs,
                                  const std::string& actor);

  // Current versions of the enabled, published, event-triggered definitions: what the matching
  // index holds.
  std::vector<definitions::WorkflowDefinition> LoadMatchable();

  // The same definitions as LoadMatchable, one at a time and reduced to what matching needs: rows
  // are fetched in batches through a cursor (one snapshot) and only the needed fields of each
  // document are selected, so memory does not grow with the size of whole documents or with the
  // number of definitions beyond what `fn` keeps. The conditions are handed over uncompiled
  // (matching::BuildIndex compiles them). Throws StoreError.
  void ForEachMatchable(const std::function<void(MatchableDefinition&&)>& fn);

  // One definition's current version within its tenant x environment.
  std::optional<definitions::WorkflowDefinition> Get(const std::string& tenant_id,
                                                     const std::string& environment_id,
                                                     const std::string& id);

  // Marks a definition deleted and disabled (its versions and executions are kept). Returns false
  // when it does not exist in that tenant x environment.
  bool MarkDeleted(const std::string& tenant_id, const std::string& environment_id,
                   const std::string& id, const std::string& actor);

  // A specific version (executions are dispatched with the version they were created for).
  std::optional<definitions::WorkflowDefinition> GetVersion(const std::string& id, int64_t version);

 private:
  Database& db_;
  const Clock& clock_;
};

}  // namespace workflowd::store
