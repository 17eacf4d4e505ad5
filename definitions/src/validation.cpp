// The semantic rules of a workflow definition, the cron syntax check, and the step dependency
// graph (circular step dependencies are refused with the cycle named; the execution order).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "workflowd/common/ids.hpp"
#include "workflowd/definitions/definition.hpp"

namespace workflowd::definitions {
namespace {

using nlohmann::json;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsAlnum(char c) { return IsDigit(c) || IsLower(c) || (c >= 'A' && c <= 'Z'); }

// ^[first][rest]{0,max_rest}$ with character classes given as predicates.
template <typename First, typename Rest>
bool Matches(std::string_view s, First first, Rest rest, size_t max_rest) {
  if (s.empty() || s.size() > max_rest + 1 || !first(s.front())) return false;
  return std::all_of(s.begin() + 1, s.end(), rest);
}

// ^[a-z0-9][a-z0-9_-]{0,63}$
bool IsValidDefinitionId(std::string_view s) {
  const auto lower_alnum = [](char c) { return IsLower(c) || IsDigit(c); };
  return Matches(
      s, lower_alnum, [&](char c) { return lower_alnum(c) || c == '_' || c == '-'; }, 63);
}

// ^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,254}$
bool IsValidEventName(std::string_view s) {
  return Matches(
      s, IsAlnum,
      [](char c) { return IsAlnum(c) || c == '_' || c == '.' || c == ':' || c == '/' || c == '-'; },
      254);
}

// ^[A-Za-z0-9_-]{1,64}$
bool IsValidStepId(std::string_view s) {
  const auto step_char = [](char c) { return IsAlnum(c) || c == '_' || c == '-'; };
  return Matches(s, step_char, step_char, 63);
}

// ^[a-z0-9]+(-[a-z0-9]+)*$, at most 64 bytes (the provider framework's naming rule).
bool IsValidProviderName(std::string_view s) {
  if (s.empty() || s.size() > 64 || s.front() == '-' || s.back() == '-') return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '-') {
      if (s[i - 1] == '-') return false;
    } else if (!IsLower(s[i]) && !IsDigit(s[i])) {
      return false;
    }
  }
  return true;
}

// An IANA zone name such as UTC, Europe/Berlin, America/Argentina/Buenos_Aires, Etc/GMT+5. Only
// the shape is checked: the tz database is the scheduler's business.
bool IsValidTimezone(std::string_view s) {
  if (s.empty() || s.size() > 64 || s.front() == '/' || s.back() == '/') return false;
  if (s.find("//") != std::string_view::npos) return false;
  if (!IsAlnum(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return IsAlnum(c) || c == '_' || c == '-' || c == '+' || c == '/';
  });
}

std::string Quote(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  out.append(s.substr(0, kMax));
  if (s.size() > kMax) out += "...";
  out += '"';
  return out;
}

std::string Index(std::string_view base, size_t i) {
  return std::string(base) + "[" + std::to_string(i) + "]";
}

size_t JsonBytes(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace).size();
}

void CheckRetryPolicy(const RetryPolicy& p, const std::string& path, FieldErrors& e) {
  const auto field = [&](std::string_view name) { return matching::JoinFieldPath(path, name); };
  if (p.max_attempts < 1 || p.max_attempts > 20) {
    e.Add(field("max_attempts"), "must be between 1 and 20, got " + std::to_string(p.max_attempts));
  }
  if (p.initial_interval_seconds < 1 || p.initial_interval_seconds > 3600) {
    e.Add(field("initial_interval_seconds"),
          "must be between 1 and 3600, got " + std::to_string(p.initial_interval_seconds));
  }
  if (!(p.backoff_coefficient >= 1.0 && p.backoff_coefficient <= 10.0)) {
    e.Add(field("backoff_coefficient"),
          "must be between 1.0 and 10.0, got " + json(p.backoff_coefficient).dump());
  }
  if (p.max_interval_seconds > 86400) {
    e.Add(field("max_interval_seconds"),
          "must be at most 86400, got " + std::to_string(p.max_interval_seconds));
  } else if (p.max_interval_seconds < p.initial_interval_seconds) {
    e.Add(field("max_interval_seconds"), "must be at least initial_interval_seconds (" +
                                             std::to_string(p.initial_interval_seconds) +
                                             "), got " + std::to_string(p.max_interval_seconds));
  }
}

void CheckTrigger(const Trigger& t, FieldErrors& e) {
  const char* type = ToString(t.type);
  if (t.type == TriggerType::kEvent) {
    if (t.event_name.empty()) {
      e.Add("trigger.event_name", "required for event triggers, e.g. \"customer.created\"");
    } else if (!IsValidEventName(t.event_name)) {
      e.Add("trigger.event_name",
            Quote(t.event_name) + " must match ^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,254}$");
    }
  } else if (!t.event_name.empty()) {
    e.Add("trigger.event_name", std::string("not allowed for ") + type + " triggers");
  }

  if (t.type == TriggerType::kScheduled) {
    if (!t.schedule) {
      e.Add("trigger.schedule", "required for scheduled triggers: {\"cron\": \"0 9 * * 1\"}");
    } else {
      if (t.schedule->cron.empty()) {
        e.Add("trigger.schedule.cron", "required: a 5-field cron expression such as \"0 9 * * 1\"");
      } else if (std::optional<std::string> p = CronSyntaxProblem(t.schedule->cron)) {
        e.Add("trigger.schedule.cron", std::move(*p));
      }
      if (!IsValidTimezone(t.schedule->timezone)) {
        e.Add("trigger.schedule.timezone", Quote(t.schedule->timezone) +
                                               " is not an IANA time zone name such as UTC or "
                                               "Europe/Berlin");
      }
    }
  } else if (t.schedule) {
    e.Add("trigger.schedule", "only allowed for scheduled triggers");
  }

  if (!t.conditions.is_null() && !t.conditions.is_array()) {
    e.Add("trigger.conditions", "must be a list of conditions");
  } else if (!t.conditions.is_null() && !t.conditions.empty()) {
    if (t.type == TriggerType::kScheduled) {
      e.Add("trigger.conditions", "not allowed for scheduled triggers: there is no event to test");
    } else {
      matching::ParseConditionList(t.conditions, "trigger.conditions", e);
    }
  }
}

// Step ids to the index of their first occurrence.
std::unordered_map<std::string_view, size_t> StepIndex(const std::vector<Step>& steps) {
  std::unordered_map<std::string_view, size_t> index;
  for (size_t i = 0; i < steps.size(); ++i) index.emplace(steps[i].id, i);
  return index;
}

// Dependency edges (step -> the steps it depends on), in declaration order, without unknown ids,
// duplicates and (unless asked) self references.
std::vector<std::vector<size_t>> DependencyEdges(const std::vector<Step>& steps, bool with_self) {
  const auto index = StepIndex(steps);
  std::vector<std::vector<size_t>> edges(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    if (index.at(steps[i].id) != i) continue;  // a duplicate id: its first occurrence counts
    for (const std::string& dep : steps[i].depends_on) {
      const auto it = index.find(dep);
      if (it == index.end()) continue;
      if (it->second == i && !with_self) continue;
      if (std::find(edges[i].begin(), edges[i].end(), it->second) == edges[i].end()) {
        edges[i].push_back(it->second);
      }
    }
  }
  return edges;
}

// One concrete cycle, as step ids from a step back to itself ("a", "b", "a" means a depends on b
// and b on a), or empty. Iterative DFS from the steps in declaration order, following dependencies
// in their listed order, so the same definition always reports the same cycle.
std::vector<std::string> FindCycle(const std::vector<Step>& steps, bool with_self) {
  const auto edges = DependencyEdges(steps, with_self);
  enum Color : uint8_t { kWhite, kGray, kBlack };
  std::vector<Color> color(steps.size(), kWhite);
  std::vector<size_t> next(steps.size(), 0);
  std::vector<size_t> stack;
  for (size_t start = 0; start < steps.size(); ++start) {
    if (color[start] != kWhite) continue;
    stack.push_back(start);
    color[start] = kGray;
    while (!stack.empty()) {
      const size_t u = stack.back();
      if (next[u] < edges[u].size()) {
        const size_t v = edges[u][next[u]++];
        if (color[v] == kGray) {
          std::vector<std::string> cycle;
          const auto from = std::find(stack.begin(), stack.end(), v);
          for (auto it = from; it != stack.end(); ++it) cycle.push_back(steps[*it].id);
          cycle.push_back(steps[v].id);
          return cycle;
        }
        if (color[v] == kWhite) {
          color[v] = kGray;
          stack.push_back(v);
        }
      } else {
        color[u] = kBlack;
        stack.pop_back();
      }
    }
  }
  return {};
}

std::string DescribeCycle(const std::vector<std::string>& cycle) {
  std::string out = "circular dependency: ";
  for (size_t i = 0; i < cycle.size(); ++i) {
    if (i > 0) out += " -> ";
    out += cycle[i];
  }
  return out;
}

void CheckSteps(const std::vector<Step>& steps, FieldErrors& e) {
  if (steps.empty()) {
    e.Add("steps", "at least one step is required");
    return;
  }
  if (steps.size() > kMaxSteps) {
    e.Add("steps", "at most " + std::to_string(kMaxSteps) + " steps are allowed, got " +
                       std::to_string(steps.size()));
  }
  const auto index = StepIndex(steps);
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    const std::string path = Index("steps", i);
    if (s.id.empty()) {
      e.Add(path + ".id", "required");
    } else if (!IsValidStepId(s.id)) {
      e.Add(path + ".id", Quote(s.id) + " must match ^[A-Za-z0-9_-]{1,64}$");
    } else if (const size_t first = index.at(s.id); first != i) {
      e.Add(path + ".id",
            "duplicate step id " + Quote(s.id) + " (also " + Index("steps", first) + ")");
    }
    if (s.name.size() > kMaxNameBytes) {
      e.Add(path + ".name", "longer than " + std::to_string(kMaxNameBytes) + " bytes");
    }
    if (!s.config.is_object()) {
      e.Add(path + ".config", std::string("must be an object, got ") + s.config.type_name());
    } else if (const size_t bytes = JsonBytes(s.config); bytes > kMaxStepConfigBytes) {
      e.Add(path + ".config", "too large: " + std::to_string(bytes) + " bytes of JSON, at most " +
                                  std::to_string(kMaxStepConfigBytes));
    }
    if (!s.condition.is_null()) {
      matching::ParseCondition(s.condition, path + ".condition", e);
    }
    if (s.retry_policy) CheckRetryPolicy(*s.retry_policy, path + ".retry_policy", e);
    for (size_t j = 0; j < s.depends_on.size(); ++j) {
      const std::string& dep = s.depends_on[j];
      const std::string dep_path = Index(path + ".depends_on", j);
      if (dep == s.id) {
        e.Add(dep_path,
              "step " + Quote(s.id) + " depends on itself (" + DescribeCycle({s.id, s.id}) + ")");
      } else if (index.find(dep) == index.end()) {
        std::string known;
        for (size_t k = 0; k < steps.size() && k < 20; ++k) {
          if (!known.empty()) known += ", ";
          known += steps[k].id;
        }
        e.Add(dep_path, "unknown step id " + Quote(dep) + "; step ids: " + known);
      } else if (std::find(s.depends_on.begin(), s.depends_on.begin() + static_cast<long>(j),
                           dep) != s.depends_on.begin() + static_cast<long>(j)) {
        e.Add(dep_path, "duplicate dependency " + Quote(dep));
      }
    }
  }
  const std::vector<std::string> cycle = FindCycle(steps, /*with_self=*/false);
  if (!cycle.empty()) e.Add("steps", DescribeCycle(cycle));
}

// One cron field: a comma-separated list of *, N, N-M, each optionally followed by /STEP.
std::optional<std::string> CronFieldProblem(std::string_view field, const char* name, int min,
                                            int max) {
  const std::string where = std::string(name) + " field " + Quote(field) + ": ";
  const auto parse_number = [&](std::string_view s, int& out) -> bool {
    if (s.empty() || s.size() > 4 || !std::all_of(s.begin(), s.end(), IsDigit)) return false;
    std::from_chars(s.data(), s.data() + s.size(), out);
    return true;
  };
  const std::string range = std::to_string(min) + "-" + std::to_string(max);
  size_t start = 0;
  while (true) {
    const size_t comma = field.find(',', start);
    const std::string_view item = field.substr(start, comma - start);
    if (item.empty()) return where + "empty list element";
    std::string_view base = item;
    if (const size_t slash = item.find('/'); slash != std::string_view::npos) {
      base = item.substr(0, slash);
      int step = 0;
      if (!parse_number(item.substr(slash + 1), step) || step < 1 || step > max) {
        return where + "step must be a number between 1 and " + std::to_string(max);
      }
    }
    if (base != "*") {
      const size_t dash = base.find('-');
      int lo = 0;
      int hi = 0;
      if (!parse_number(base.substr(0, dash), lo)) {
        return where + "expected *, a number, a range N-M, a list or a step /N";
      }
      hi = lo;
      if (dash != std::string_view::npos && !parse_number(base.substr(dash + 1), hi)) {
        return where + "expected *, a number, a range N-M, a list or a step /N";
      }
      if (lo < min || lo > max || hi < min || hi > max) {
        return where + "values must be in " + range;
      }
      if (lo > hi) return where + "range start is after its end";
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> CronSyntaxProblem(std::string_view cron) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < cron.size()) {
    while (i < cron.size() && (cron[i] == ' ' || cron[i] == '\t')) ++i;
    const size_t start = i;
    while (i < cron.size() && cron[i] != ' ' && cron[i] != '\t') ++i;
    if (i > start) fields.push_back(cron.substr(start, i - start));
  }
  if (fields.size() != 5) {
    return "must have 5 fields (minute hour day-of-month month day-of-week), got " +
           std::to_string(fields.size());
  }
  struct FieldSpec {
    const char* name;
    int min;
    int max;
  };
  constexpr FieldSpec kSpecs[] = {
      {"minute", 0, 59}, {"hour", 0, 23},       {"day-of-month", 1, 31},
      {"month", 1, 12},  {"day-of-week", 0, 7},  // 0 and 7 are Sunday
  };
  for (size_t f = 0; f < 5; ++f) {
    if (auto p = CronFieldProblem(fields[f], kSpecs[f].name, kSpecs[f].min, kSpecs[f].max)) {
      return p;
    }
  }
  return std::nullopt;
}

FieldErrors DefinitionProblems(const WorkflowDefinition& d) {
  FieldErrors e;
  if (d.id && !IsValidDefinitionId(*d.id)) {
    e.Add("id", Quote(*d.id) + " must match ^[a-z0-9][a-z0-9_-]{0,63}$");
  }
  for (const auto& [field, value] :
       {std::pair<const char*, const std::string&>{"tenant_id", d.tenant_id},
        std::pair<const char*, const std::string&>{"environment_id", d.environment_id}}) {
    if (value.empty()) {
      e.Add(field, "required");
    } else if (!IsValidScopeId(value)) {
      e.Add(field, Quote(value) + " must match " + std::string(kScopeIdPattern));
    }
  }
  if (d.name.empty()) {
    e.Add("name", "required");
  } else if (d.name.size() > kMaxNameBytes) {
    e.Add("name", "longer than " + std::to_string(kMaxNameBytes) + " bytes");
  }
  if (d.description.size() > kMaxDescriptionBytes) {
    e.Add("description", "longer than " + std::to_string(kMaxDescriptionBytes) + " bytes");
  }
  CheckTrigger(d.trigger, e);
  CheckSteps(d.steps, e);
  CheckRetryPolicy(d.retry_policy, "retry_policy", e);
  if (d.timeout_seconds < 0 || d.timeout_seconds > kMaxTimeoutSeconds) {
    e.Add("timeout_seconds", "must be between 0 (no timeout) and " +
                                 std::to_string(kMaxTimeoutSeconds) + ", got " +
                                 std::to_string(d.timeout_seconds));
  }
  if (d.provider.empty()) {
    // No built-in default: a definition that ran on a provider nobody chose (the mock engine was
    // the default once) would be recorded as done without any engine doing the work.
    e.Add("provider", "required: definition " + Quote(d.name) +
                          " names no provider and no default provider is configured; add "
                          "\"provider\": \"<engine>\" to it, or set providers.default in "
                          "workflowd's configuration");
  } else if (!IsValidProviderName(d.provider)) {
    e.Add("provider",
          Quote(d.provider) + " must match ^[a-z0-9]+(-[a-z0-9]+)*$ (at most 64 bytes)");
  }
  if (!d.provider_config.is_null() && !d.provider_config.is_object()) {
    e.Add("provider_config",
          std::string("must be an object, got ") + d.provider_config.type_name());
  }
  if (d.version < 0) e.Add("version", "must not be negative");
  if (const size_t bytes = JsonBytes(DefinitionToJson(d)); bytes > kMaxDefinitionJsonBytes) {
    e.Add("", "definition too large: " + std::to_string(bytes) + " bytes of JSON, at most " +
                  std::to_string(kMaxDefinitionJsonBytes));
  }
  return e;
}

void ValidateDefinition(const WorkflowDefinition& definition) {
  FieldErrors errors = DefinitionProblems(definition);
  if (!errors.empty()) throw ValidationError(std::move(errors), "invalid workflow definition");
}

std::vector<std::string> TopologicalStepOrder(const WorkflowDefinition& definition) {
  const std::vector<Step>& steps = definition.steps;
  const auto edges = DependencyEdges(steps, /*with_self=*/true);
  std::vector<size_t> pending(steps.size(), 0);               // unmet dependencies
  std::vector<std::vector<size_t>> dependents(steps.size());  // reverse edges
  for (size_t i = 0; i < steps.size(); ++i) {
    pending[i] = edges[i].size();
    for (size_t dep : edges[i]) dependents[dep].push_back(i);
  }
  std::set<std::tuple<int64_t, std::string_view, size_t>> ready;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (pending[i] == 0) ready.emplace(steps[i].order, steps[i].id, i);
  }
  std::vector<std::string> order;
  order.reserve(steps.size());
  while (!ready.empty()) {
    const size_t i = std::get<2>(*ready.begin());
    ready.erase(ready.begin());
    order.push_back(steps[i].id);
    for (size_t d : dependents[i]) {
      if (--pending[d] == 0) ready.emplace(steps[d].order, steps[d].id, d);
    }
  }
  if (order.size() != steps.size()) {
    FieldErrors errors;
    errors.Add("steps", DescribeCycle(FindCycle(steps, /*with_self=*/true)));
    throw ValidationError(std::move(errors), "cannot order steps");
  }
  return order;
}

}  // namespace workflowd::definitions
