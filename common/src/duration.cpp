#include "workflowd/common/duration.hpp"

#include <cstdint>
#include <limits>

namespace workflowd {
namespace {

struct Unit {
  std::string_view name;
  int64_t nanos;
};

// Longest names first so "ms" is not read as "m".
constexpr Unit kUnits[] = {
    {"ns", 1},
    {"us", 1'000},
    {"\xC2\xB5s", 1'000},  // µs (U+00B5)
    {"\xCE\xBCs", 1'000},  // μs (U+03BC)
    {"ms", 1'000'000},
    {"s", 1'000'000'000},
    {"m", 60'000'000'000},
    {"h", 3'600'000'000'000},
};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<std::chrono::nanoseconds> ParseDuration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (text == "0") return std::chrono::nanoseconds::zero();
  if (text.front() == '+') text.remove_prefix(1);
  if (text.empty() || text.front() == '-') return std::nullopt;

  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  int64_t total = 0;
  while (!text.empty()) {
    // Integer part.
    uint64_t whole = 0;
    size_t i = 0;
    bool any_digits = false;
    while (i < text.size() && IsDigit(text[i])) {
      if (whole > (static_cast<uint64_t>(kMax) - 9) / 10) return std::nullopt;
      whole = whole * 10 + static_cast<uint64_t>(text[i] - '0');
      ++i;
      any_digits = true;
    }
    // Fraction part, accumulated exactly as Go's leadingFraction does (digits stop counting once
    // they would overflow), so results match time.ParseDuration to the nanosecond.
    uint64_t frac = 0;
    double frac_scale = 1;
    bool frac_overflow = false;
    if (i < text.size() && text[i] == '.') {
      ++i;
      while (i < text.size() && IsDigit(text[i])) {
        if (!frac_overflow) {
          if (frac > (uint64_t{1} << 63) / 10) {
            frac_overflow = true;
          } else {
            uint64_t next = frac * 10 + static_cast<uint64_t>(text[i] - '0');
            if (next > (uint64_t{1} << 63)) {
              frac_overflow = true;
            } else {
              frac = next;
              frac_scale *= 10;
            }
          }
        }
        ++i;
        any_digits = true;
      }
    }
    if (!any_digits) return std::nullopt;
    text.remove_prefix(i);

    const Unit* unit = nullptr;
    for (const auto& u : kUnits) {
      if (text.substr(0, u.name.size()) == u.name &&
          (unit == nullptr || u.name.size() > unit->name.size())) {
        unit = &u;
      }
    }
    if (unit == nullptr) return std::nullopt;  // a number without a unit
    text.remove_prefix(unit->name.size());

    if (whole > static_cast<uint64_t>(kMax / unit->nanos)) return std::nullopt;
    int64_t value = static_cast<int64_t>(whole) * unit->nanos;
    if (frac > 0) {
      // Same arithmetic as Go: float64(f) * (float64(unit) / scale), truncated.
      double extra = static_cast<double>(frac) * (static_cast<double>(unit->nanos) / frac_scale);
      if (extra > static_cast<double>(kMax - value)) return std::nullopt;
      value += static_cast<int64_t>(extra);
    }
    if (value > kMax - total) return std::nullopt;
    total += value;
  }
  return std::chrono::nanoseconds(total);
}

namespace {

// Appends `value / scale` with the fraction trimmed of trailing zeros, e.g. 1500/1000 -> "1.5".
void AppendFraction(std::string& out, int64_t value, int64_t scale) {
  out += std::to_string(value / scale);
  int64_t rest = value % scale;
  if (rest == 0) return;
  std::string digits;
  for (int64_t s = scale / 10; s >= 1; s /= 10) {
    digits.push_back(static_cast<char>('0' + (rest / s) % 10));
  }
  while (!digits.empty() && digits.back() == '0') digits.pop_back();
  out += '.';
  out += digits;
}

}  // namespace

std::string FormatDuration(std::chrono::nanoseconds d) {
  int64_t n = d.count();
  if (n == 0) return "0s";
  std::string out;
  if (n < 0) {
    out += '-';
    n = -n;  // durations we format are never INT64_MIN
  }
  constexpr int64_t kUs = 1'000, kMs = 1'000'000, kS = 1'000'000'000;
  constexpr int64_t kM = 60 * kS, kH = 60 * kM;
  if (n < kUs) return out + std::to_string(n) + "ns";
  if (n < kMs) {
    AppendFraction(out, n, kUs);
    return out + "us";
  }
  if (n < kS) {
    AppendFraction(out, n, kMs);
    return out + "ms";
  }
  if (n >= kH) {
    out += std::to_string(n / kH) + "h";
    n %= kH;
  }
  if (n >= kM) {
    out += std::to_string(n / kM) + "m";
    n %= kM;
  }
  if (n > 0) {
    AppendFraction(out, n, kS);
    out += "s";
  }
  return out;
}

}  // namespace workflowd
