#include "workflowd/lifecycle/workflow_catalog.hpp"

#include "workflowd/lifecycle/policy.hpp"

namespace workflowd::lifecycle {

std::shared_ptr<const CatalogEntry> WorkflowCatalog::Ensure(const Context& ctx,
                                                            store::DefinitionRepository& repo,
                                                            const std::string& definition_id,
                                                            int64_t version) {
  auto key = std::make_pair(definition_id, version);
  std::shared_ptr<const CatalogEntry> entry;
  {
    std::lock_guard lock(mu_);
    auto it = slots_.find(key);
    if (it != slots_.end()) {
      if (it->second.created) return it->second.entry;
      entry = it->second.entry;
    }
  }
  if (!entry) {
    auto def = repo.GetVersion(definition_id, version);
    if (!def) return nullptr;
    auto e = std::make_shared<CatalogEntry>();
    e->definition = std::move(*def);
    e->spec = SpecFor(e->definition);
    e->step_order = definitions::TopologicalStepOrder(e->definition);
    entry = e;
    std::lock_guard lock(mu_);
    slots_[key].entry = entry;
  }
  manager_.CreateWorkflow(ctx, entry->spec);  // idempotent at the provider
  std::lock_guard lock(mu_);
  slots_[key].created = true;
  return entry;
}

}  // namespace workflowd::lifecycle
