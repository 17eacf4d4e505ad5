// Invariant checks shared by the fuzz targets.
//
// A broken invariant prints what broke and aborts: libFuzzer treats the abort like any crash
// (it saves the input as crash-<sha1> and stops), so a property violation is reported exactly like
// a sanitizer finding. Plain assert() is not used because NDEBUG builds would drop it.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace workflowd::fuzz {

[[noreturn]] inline void FailCheck(const char* file, int line, const char* condition,
                                   std::string_view message) {
  std::fprintf(stderr, "\n%s:%d: fuzz invariant violated: %s\n  %.*s\n", file, line, condition,
               static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  std::abort();
}

// FUZZ_CHECK(cond, message): `message` is only evaluated when `cond` is false.
#define FUZZ_CHECK(cond, message)                                                    \
  do {                                                                               \
    if (!(cond)) ::workflowd::fuzz::FailCheck(__FILE__, __LINE__, #cond, (message)); \
  } while (false)

// True when `j` serializes (nlohmann's strict dump throws on invalid UTF-8 in a string).
inline bool Serializable(const nlohmann::json& j, std::string* error = nullptr) {
  try {
    (void)j.dump();
    return true;
  } catch (const nlohmann::json::exception& e) {
    if (error != nullptr) *error = e.what();
    return false;
  }
}

// The reference for the data paths of a condition (matching::Condition::data_paths()) and of a
// decoder's DataNeed, on a whole document: the members of the object `full` that `paths` (each
// longer than `depth`, agreeing in their first `depth` names) reach; a member a path ends at, or
// that is not an object where a path goes on, whole.
inline nlohmann::json Pruned(const nlohmann::json& full,
                             const std::vector<std::vector<std::string>>& paths, size_t depth = 0) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, value] : full.items()) {
    std::vector<std::vector<std::string>> below;
    bool whole = false;
    for (const auto& p : paths) {
      if (p[depth] != key) continue;
      if (p.size() == depth + 1) whole = true;
      below.push_back(p);
    }
    if (below.empty()) continue;
    out[key] = whole || !value.is_object() ? value : Pruned(value, below, depth + 1);
  }
  return out;
}

// Nesting depth of containers: a scalar is 0, [] and {} are 1, [[1]] is 2.
inline size_t JsonNesting(const nlohmann::json& j) {
  if (!j.is_structured()) return 0;
  size_t deepest = 0;
  for (const nlohmann::json& child : j) {
    const size_t d = JsonNesting(child);
    if (d > deepest) deepest = d;
  }
  return deepest + 1;
}

// A short, printable rendering of untrusted text for failure messages.
inline std::string Printable(std::string_view text, size_t limit = 200) {
  std::string out;
  for (size_t i = 0; i < text.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (text.size() > limit) out += "...";
  return out;
}

}  // namespace workflowd::fuzz
