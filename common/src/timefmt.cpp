#include "workflowd/common/timefmt.hpp"

#include <chrono>
#include <cstdio>

namespace workflowd {
namespace {

bool ReadDigits(std::string_view s, size_t pos, size_t count, int& out) {
  if (pos + count > s.size()) return false;
  int value = 0;
  for (size_t i = pos; i < pos + count; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    value = value * 10 + (s[i] - '0');
  }
  out = value;
  return true;
}

}  // namespace

std::string FormatRfc3339(TimePoint t) {
  using std::chrono::days, std::chrono::duration_cast, std::chrono::floor, std::chrono::hours,
      std::chrono::minutes, std::chrono::nanoseconds, std::chrono::seconds, std::chrono::sys_days,
      std::chrono::year_month_day;
  auto ns = duration_cast<nanoseconds>(t.time_since_epoch());
  auto day_point = floor<days>(ns);
  year_month_day ymd{sys_days{day_point}};
  auto since_midnight = ns - day_point;
  auto h = duration_cast<hours>(since_midnight);
  auto m = duration_cast<minutes>(since_midnight - h);
  auto s = duration_cast<seconds>(since_midnight - h - m);
  auto frac = (since_midnight - h - m - s).count();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(h.count()), static_cast<int>(m.count()),
                static_cast<int>(s.count()));
  std::string out(buf);
  if (frac > 0) {
    char fbuf[16];
    std::snprintf(fbuf, sizeof fbuf, ".%09lld", static_cast<long long>(frac));
    std::string f(fbuf);
    while (f.back() == '0') f.pop_back();
    out += f;
  }
  out += 'Z';
  return out;
}

std::optional<TimePoint> ParseRfc3339(std::string_view s) {
  using std::chrono::day, std::chrono::hours, std::chrono::minutes, std::chrono::month,
      std::chrono::nanoseconds, std::chrono::seconds, std::chrono::sys_days,
      std::chrono::time_point_cast, std::chrono::year, std::chrono::year_month_day;
  int y, mo, d, h, mi, sec;
  if (!ReadDigits(s, 0, 4, y) || s.size() < 20 || s[4] != '-' || !ReadDigits(s, 5, 2, mo) ||
      s[7] != '-' || !ReadDigits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      !ReadDigits(s, 11, 2, h) || s[13] != ':' || !ReadDigits(s, 14, 2, mi) || s[16] != ':' ||
      !ReadDigits(s, 17, 2, sec)) {
    return std::nullopt;
  }
  if (h > 23 || mi > 59 || sec > 60) return std::nullopt;  // 60: leap second, folded below
  // Outside these years the nanoseconds since the epoch overflow int64.
  if (y < kMinRfc3339Year || y > kMaxRfc3339Year) return std::nullopt;
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;

  size_t pos = 19;
  int64_t frac_ns = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t digits = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (digits < 9) frac_ns = frac_ns * 10 + (s[pos] - '0');
      ++digits;
      ++pos;
    }
    if (digits == 0) return std::nullopt;
    for (size_t i = digits; i < 9; ++i) frac_ns *= 10;
  }
  if (pos >= s.size()) return std::nullopt;
  int offset_minutes = 0;
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    int oh, om;
    if (!ReadDigits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !ReadDigits(s, pos + 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_minutes = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;

  auto tp = sys_days{ymd} + hours{h} + minutes{mi} + seconds{sec > 59 ? 59 : sec} +
            nanoseconds{frac_ns} - minutes{offset_minutes};
  return time_point_cast<WallClock::duration>(tp);
}

}  // namespace workflowd
