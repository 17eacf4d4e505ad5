// Building the matching index from stored definitions: the one place where stored trigger
// conditions are compiled for matching.
#include <new>
#include <utility>

#include "workflowd/common/utf8.hpp"
#include "workflowd/matching/definition_index.hpp"

namespace workflowd::matching {

ConditionPtr CompileStoredConditions(const std::optional<std::string>& conditions) {
  if (!conditions) return nullptr;
  const nlohmann::json list = nlohmann::json::parse(*conditions);
  // As DefinitionFromJson compiles them: an empty list means no conditions.
  if (list.is_array() && list.empty()) return nullptr;
  return ParseConditionList(list, "trigger.conditions");
}

std::shared_ptr<const DefinitionIndex> BuildIndex(const StoredDefinitionSource& source,
                                                  std::vector<SkippedDefinition>* skipped) {
  IndexEntries entries;
  source([&](StoredDefinition&& d) {
    ConditionPtr condition;
    try {
      condition = CompileStoredConditions(d.conditions);
    } catch (const std::bad_alloc&) {
      throw;  // not the document's fault: the load fails, the previous index stays
    } catch (const std::exception& e) {
      if (skipped != nullptr) {
        const bool is_condition = dynamic_cast<const ConditionError*>(&e) != nullptr;
        skipped->push_back({std::move(d.id), d.version, std::move(d.tenant_id),
                            std::move(d.environment_id), is_condition ? "condition" : "document",
                            SanitizeUtf8(e.what())});
      }
      return;
    }
    IndexEntry e;
    e.definition_id = std::move(d.id);
    e.version = d.version;
    e.name = std::move(d.name);
    e.provider = std::move(d.provider);
    e.tenant_id = std::move(d.tenant_id);
    e.environment_id = std::move(d.environment_id);
    e.event_name = std::move(d.event_name);
    e.condition = std::move(condition);
    entries.push_back(std::move(e));
  });
  return std::make_shared<const DefinitionIndex>(DefinitionIndex::FromEntries(std::move(entries)));
}

}  // namespace workflowd::matching
