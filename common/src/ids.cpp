#include "workflowd/common/ids.hpp"

#include <cstdint>
#include <random>

namespace workflowd {

std::string NewId(std::string_view prefix, TimePoint now) {
  static constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
  uint64_t r1 = rng();
  uint64_t r2 = rng();
  std::string out(prefix);
  out.reserve(prefix.size() + 26);
  // 10 characters of time (50 bits, the top 2 always zero), 16 of randomness (80 bits).
  for (int i = 9; i >= 0; --i) out += kAlphabet[(ms >> (i * 5)) & 31];
  for (int i = 0; i < 12; ++i) out += kAlphabet[(r1 >> (i * 5)) & 31];
  for (int i = 0; i < 4; ++i) out += kAlphabet[(r2 >> (i * 5)) & 31];
  return out;
}

bool IsValidScopeId(std::string_view id) {
  const auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (id.empty() || id.size() > 128 || !alnum(id.front())) return false;
  for (char c : id.substr(1)) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

}  // namespace workflowd
