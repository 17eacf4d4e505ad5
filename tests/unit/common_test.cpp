#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <thread>

#include "workflowd/common/clock.hpp"
#include "workflowd/common/context.hpp"
#include "workflowd/common/duration.hpp"
#include "workflowd/common/timefmt.hpp"
#include "workflowd/common/utf8.hpp"

namespace workflowd {
namespace {

using namespace std::chrono_literals;

// Expected values are those of Go's time.ParseDuration (its own test table, time/time_test.go).
TEST(ParseDuration, AcceptsGoSyntax) {
  struct Case {
    const char* text;
    std::chrono::nanoseconds want;
  } cases[] = {
      {"0", 0ns},
      {"5s", 5s},
      {"30s", 30s},
      {"1478s", 1478s},
      {"+5s", 5s},
      {"5.0s", 5s},
      {"5.6s", 5600ms},
      {"5.s", 5s},
      {".5s", 500ms},
      {"1.0s", 1s},
      {"1.00s", 1s},
      {"1.004s", 1004ms},
      {"1.0040s", 1004ms},
      {"100.00100s", 100001ms},
      {"10ns", 10ns},
      {"11us", 11us},
      {"12µs", 12us},
      {"12μs", 12us},
      {"13ms", 13ms},
      {"14s", 14s},
      {"15m", 15min},
      {"16h", 16h},
      {"3h30m", 3h + 30min},
      {"10.5s4m", 4min + 10500ms},
      {"1h2m3s4ms5us6ns", 1h + 2min + 3s + 4ms + 5us + 6ns},
      {"39h9m14.425s", 39h + 9min + 14425ms},
      {"52763797000ns", 52763797000ns},
      {"0.3333333333333333333h", 20min},
      {"9007199254.740993ms", 9007199254740993ns},
      {"0.100000000000000000000h", 6min},
  };
  for (const auto& c : cases) {
    auto got = ParseDuration(c.text);
    ASSERT_TRUE(got.has_value()) << c.text;
    EXPECT_EQ(got->count(), c.want.count()) << c.text;
  }
}

TEST(ParseDuration, RejectsMalformedInput) {
  for (const char* text : {"", "3", "-", "s", ".", "-.", ".s", "+.s", "1d", "-5s", "3000000h",
                           "9223372036854775808ns", "1.5", "5 s", "s5", "1h-2m", "\xC2"}) {
    EXPECT_FALSE(ParseDuration(text).has_value()) << "'" << text << "'";
  }
}

TEST(FormatDuration, IsCompactAndRoundTrips) {
  EXPECT_EQ(FormatDuration(0s), "0s");
  EXPECT_EQ(FormatDuration(30min), "30m");
  EXPECT_EQ(FormatDuration(60s), "1m");
  EXPECT_EQ(FormatDuration(1s), "1s");
  EXPECT_EQ(FormatDuration(90min), "1h30m");
  EXPECT_EQ(FormatDuration(1500ms), "1.5s");
  EXPECT_EQ(FormatDuration(250ms), "250ms");
  EXPECT_EQ(FormatDuration(1500us), "1.5ms");
  EXPECT_EQ(FormatDuration(7ns), "7ns");
  EXPECT_EQ(FormatDuration(2h + 1s), "2h1s");
  EXPECT_EQ(FormatDuration(-2s), "-2s");
  for (std::chrono::nanoseconds d : std::initializer_list<std::chrono::nanoseconds>{
           1ns, 999ns, 1us, 1234567ns, 59s, 61s, 3601s, 25h + 1ms, 1h + 2min + 3s + 4ns}) {
    auto text = FormatDuration(d);
    auto back = ParseDuration(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(back->count(), std::chrono::nanoseconds(d).count()) << text;
  }
}

TEST(Rfc3339, FormatsUtc) {
  // 1769767200 is 2026-01-30T10:00:00Z (`date -u -d @1769767200`).
  TimePoint t{std::chrono::seconds(1769767200)};
  EXPECT_EQ(FormatRfc3339(t), "2026-01-30T10:00:00Z");
  EXPECT_EQ(FormatRfc3339(t + 123ms), "2026-01-30T10:00:00.123Z");
  EXPECT_EQ(FormatRfc3339(TimePoint{}), "1970-01-01T00:00:00Z");
  // 951782400 is 2000-02-29T00:00:00Z, a leap day.
  EXPECT_EQ(FormatRfc3339(TimePoint{std::chrono::seconds(951782400)}), "2000-02-29T00:00:00Z");
}

TEST(Rfc3339, ParsesOffsetsAndFractions) {
  TimePoint t{std::chrono::seconds(1769767200)};
  EXPECT_EQ(ParseRfc3339("2026-01-30T10:00:00Z"), t);
  EXPECT_EQ(ParseRfc3339("2026-01-30t10:00:00z"), t);
  EXPECT_EQ(ParseRfc3339("2026-01-30T12:00:00+02:00"), t);
  EXPECT_EQ(ParseRfc3339("2026-01-30T05:30:00-04:30"), t);
  EXPECT_EQ(ParseRfc3339("2026-01-30T10:00:00.5Z"), t + 500ms);
  EXPECT_EQ(ParseRfc3339("2026-01-30T10:00:00.000000001Z"), t + 1ns);
  for (const char* bad :
       {"", "2026-01-30", "2026-01-30T10:00:00", "2026-02-30T10:00:00Z", "2026-01-30T24:00:00Z",
        "2026-01-30T10:00:00.Z", "2026-01-30T10:00Z", "2026-01-30T10:00:00+0200",
        "2026-01-30T10:00:00Zjunk", "26-01-30T10:00:00Z"}) {
    EXPECT_FALSE(ParseRfc3339(bad).has_value()) << bad;
  }
}

// The hand-written validator against an outside reference: Python 3.11's strict UTF-8 codec
// (`bytes.decode("utf-8")`), which follows RFC 3629 / Unicode's well-formedness table. Counts of
// valid strings, computed with it over every 1-, 2- and 3-byte string and over every 4-byte
// string ending in 80 BF:
//   sum(valid(bytes([a])) ...) = 128, two bytes 18,304, three bytes 2,650,112, four 2,176.
TEST(Utf8, AgreesWithPythonsCodecOnEveryShortString) {
  auto count = [](size_t len, std::string tail) {
    size_t valid = 0;
    std::string s(len, '\0');
    const size_t free_bytes = len - tail.size();
    for (size_t n = 0; n < (size_t{1} << (8 * free_bytes)); ++n) {
      for (size_t k = 0; k < free_bytes; ++k) s[k] = static_cast<char>((n >> (8 * k)) & 0xFF);
      for (size_t k = 0; k < tail.size(); ++k) s[free_bytes + k] = tail[k];
      if (IsValidUtf8(s)) ++valid;
    }
    return valid;
  };
  EXPECT_EQ(count(1, ""), 128u);
  EXPECT_EQ(count(2, ""), 18304u);
  EXPECT_EQ(count(3, ""), 2650112u);
  EXPECT_EQ(count(4, "\x80\xBF"), 2176u);
  // Classic stress cases: overlong '/', surrogate halves, above U+10FFFF, lone continuation.
  for (const char* bad : {"\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\x80",
                          "\xFE", "\xE2\x82"}) {
    EXPECT_FALSE(IsValidUtf8(bad)) << bad;
  }
  EXPECT_TRUE(IsValidUtf8("\xF4\x8F\xBF\xBF caf\xC3\xA9 \xE2\x82\xAC"));
  EXPECT_EQ(SanitizeUtf8("a\xFF"
                         "b\xC3\xA9"),
            "a\xEF\xBF\xBD"
            "b\xC3\xA9");
}

TEST(Utf8, PrefixNeverSplitsACharacter) {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";  // a é € 😀 z
  for (size_t n = 0; n <= s.size() + 1; ++n) {
    auto p = Utf8Prefix(s, n);
    EXPECT_LE(p.size(), n);
    EXPECT_TRUE(IsValidUtf8(p)) << n;
    EXPECT_GE(p.size() + 3, std::min(n, s.size())) << n;  // drops at most a partial character
  }
}

TEST(Rfc3339, RejectsYearsOutsideTheRepresentableRangeInsteadOfWrapping) {
  // TimePoint counts int64 nanoseconds (1677-09-21 .. 2262-04-11); 9999-12-31 used to wrap
  // around to a date in 1816.
  for (const char* out_of_range :
       {"9999-12-31T23:59:59Z", "4052-01-30T08:00:00+00:30", "2262-01-01T00:00:00Z",
        "2262-04-11T23:47:16.854775807Z", "1677-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
        "1000-06-15T12:00:00-05:00"}) {
    EXPECT_FALSE(ParseRfc3339(out_of_range).has_value())
        << out_of_range << " -> " << FormatRfc3339(*ParseRfc3339(out_of_range));
  }
  // The first and last accepted years, with the largest offsets: still exact.
  const std::optional<TimePoint> first = ParseRfc3339("1678-01-01T00:00:00+23:59");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(FormatRfc3339(*first), "1677-12-31T00:01:00Z");
  const std::optional<TimePoint> last = ParseRfc3339("2261-12-31T23:59:59.999999999-23:59");
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(FormatRfc3339(*last), "2262-01-01T23:58:59.999999999Z");
  EXPECT_LT(*first, *ParseRfc3339("1970-01-01T00:00:00Z"));
  EXPECT_GT(*last, *ParseRfc3339("2026-01-01T00:00:00Z"));
}

// The hand-written parser against an outside reference: testdata/rfc3339/reference.tsv, written by
// generate.py beside it with Python's datetime.fromisoformat (random timestamps over the accepted
// years in every spelling RFC 3339 allows, the Gregorian leap-year rule, impossible dates).
TEST(Rfc3339, AgreesWithPythonsDatetimeOnAGeneratedTable) {
  std::ifstream table(WORKFLOWD_RFC3339_TESTDATA "/reference.tsv");
  ASSERT_TRUE(table.is_open()) << WORKFLOWD_RFC3339_TESTDATA "/reference.tsv";
  size_t valid = 0, invalid = 0;
  std::string line;
  while (std::getline(table, line)) {
    const size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    const std::string text = line.substr(0, tab), expected = line.substr(tab + 1);
    const std::optional<TimePoint> parsed = ParseRfc3339(text);
    if (expected == "invalid") {
      EXPECT_FALSE(parsed.has_value()) << text << " -> " << FormatRfc3339(*parsed);
      ++invalid;
    } else {
      ASSERT_TRUE(parsed.has_value()) << text;
      EXPECT_EQ(
          std::chrono::duration_cast<std::chrono::nanoseconds>(parsed->time_since_epoch()).count(),
          std::stoll(expected))
          << text;
      ++valid;
    }
  }
  // The table as generated: a truncated or emptied file fails here instead of passing.
  EXPECT_EQ(valid, 442u);
  EXPECT_EQ(invalid, 30u);
}

TEST(ManualClock, MovesOnlyWhenTold) {
  ManualClock clock;
  auto t0 = clock.Now();
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(5s);
  EXPECT_EQ(clock.Now(), t0 + 5s);
  clock.Set(t0);
  EXPECT_EQ(clock.Now(), t0);
}

TEST(Context, BackgroundIsNeverDone) {
  auto ctx = Context::Background();
  EXPECT_EQ(ctx.State(), ContextState::kActive);
  EXPECT_FALSE(ctx.Deadline().has_value());
  EXPECT_TRUE(ctx.WaitFor(1ms));
}

TEST(Context, DeadlineExpires) {
  auto ctx = Context::Background().WithTimeout(0ns);
  EXPECT_EQ(ctx.State(), ContextState::kDeadlineExceeded);
  EXPECT_FALSE(ctx.WaitFor(1h));  // returns at once: the deadline has passed
  auto later = Context::Background().WithTimeout(1h);
  EXPECT_EQ(later.State(), ContextState::kActive);
  // A child never outlives its parent's deadline.
  auto child = ctx.WithTimeout(1h);
  EXPECT_EQ(child.State(), ContextState::kDeadlineExceeded);
}

TEST(Context, CancelReachesChildrenAndWakesWaiters) {
  CancelSource parent;
  CancelSource child(parent.context());
  auto grandchild = child.context().WithTimeout(1h);
  EXPECT_FALSE(grandchild.Done());

  std::atomic<bool> woke_early{false};
  std::thread waiter([&] { woke_early = !grandchild.WaitFor(1h); });
  parent.Cancel();
  waiter.join();
  EXPECT_TRUE(woke_early);
  EXPECT_EQ(child.context().State(), ContextState::kCancelled);
  EXPECT_EQ(grandchild.State(), ContextState::kCancelled);
  // A source created under an already cancelled parent starts cancelled.
  CancelSource late(parent.context());
  EXPECT_EQ(late.context().State(), ContextState::kCancelled);
}

TEST(Context, CancellingChildLeavesParentActive) {
  CancelSource parent;
  CancelSource child(parent.context());
  child.Cancel();
  EXPECT_TRUE(child.context().Done());
  EXPECT_FALSE(parent.context().Done());
}

}  // namespace
}  // namespace workflowd

#include "workflowd/common/worker_pool.hpp"

namespace workflowd {
namespace {

TEST(WorkerPool, RunsEveryIterationExactlyOnceAcrossRounds) {
  WorkerPool pool(4);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::atomic<int>> hits(37);
    pool.ParallelFor(hits.size(), [&](size_t i) { hits[i].fetch_add(1); });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1) << "round " << round;
  }
  pool.ParallelFor(0, [](size_t) { FAIL(); });
}

TEST(WorkerPool, RunsConcurrently) {
  WorkerPool pool(4);
  std::atomic<int> running{0}, peak{0};
  pool.ParallelFor(8, [&](size_t) {
    int now = ++running;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    --running;
  });
  EXPECT_GT(peak.load(), 1);
  EXPECT_LE(peak.load(), 4);
}

}  // namespace
}  // namespace workflowd
