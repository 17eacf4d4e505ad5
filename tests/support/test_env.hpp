// Finding the real services started by scripts/services.sh. A test that needs a service and cannot
// find it fails loudly: it never skips (STYLE.md 10).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>

namespace workflowd::testing {

// The value of a WORKFLOWD_TEST_* variable; fails the current test (fatally) when it is unset.
inline std::string RequireEnv(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    ADD_FAILURE() << name
                  << " is not set: start the real services with `scripts/services.sh start` and "
                     "`eval \"$(scripts/services.sh env)\"`, or run `scripts/test.sh`";
    throw std::runtime_error(std::string(name) + " is not set");
  }
  return v;
}

inline std::string RandomSuffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s;
  for (int i = 0; i < 10; ++i) s += kChars[rng() % 36];
  return s;
}

}  // namespace workflowd::testing
