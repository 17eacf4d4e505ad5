// A workflow definition as the matching index reads it from storage, before its trigger conditions
// are compiled, and one the index had to leave out. Plain data: the store fills StoredDefinition
// without knowing the condition language, and matching compiles the conditions (BuildIndex in
// definition_index.hpp), so conditions are compiled in one place only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace workflowd::matching {

// What an index entry keeps of a definition, with its trigger conditions as stored.
struct StoredDefinition {
  std::string id;
  int64_t version = 0;
  std::string name;
  std::string provider;
  std::string tenant_id;
  std::string environment_id;
  std::string event_name;
  // The JSON text of the trigger's `conditions`; nullopt when the definition has none.
  std::optional<std::string> conditions;
};

// A stored definition the matching index cannot take: its conditions no longer compile (a stored
// document from before a change of the condition language, or one written around the API).
struct SkippedDefinition {
  std::string id;
  int64_t version = 0;
  std::string tenant_id;
  std::string environment_id;
  std::string reason;   // "condition" (its conditions do not compile), "document" (other)
  std::string message;  // why, as the compiler says it (valid UTF-8)
};

}  // namespace workflowd::matching
