// Definition versions as provider workflows: loads a version once (versions never change), and
// makes sure its provider workflow exists (CreateWorkflow is idempotent; called once per process
// and version). Shared by the dispatcher and the poller; thread-safe.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "workflowd/definitions/definition.hpp"
#include "workflowd/providers/manager.hpp"
#include "workflowd/store/definition_repository.hpp"

namespace workflowd::lifecycle {

struct CatalogEntry {
  definitions::WorkflowDefinition definition;
  providers::WorkflowSpec spec;
  std::vector<std::string> step_order;
};

class WorkflowCatalog {
 public:
  explicit WorkflowCatalog(const providers::Manager& manager) : manager_(manager) {}

  // Returns nullptr when the definition version does not exist. Throws ProviderError when the
  // provider refuses or cannot be reached, StoreError when the database cannot.
  std::shared_ptr<const CatalogEntry> Ensure(const Context& ctx,
                                             store::DefinitionRepository& definitions,
                                             const std::string& definition_id, int64_t version);

 private:
  struct Slot {
    std::shared_ptr<const CatalogEntry> entry;
    bool created = false;
  };
  const providers::Manager& manager_;
  std::mutex mu_;
  std::map<std::pair<std::string, int64_t>, Slot> slots_;
};

}  // namespace workflowd::lifecycle
