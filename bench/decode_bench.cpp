// Micro-benchmark of the event pipeline's CPU work per record without Kafka and PostgreSQL:
// pipeline::PlanBatch (decode, match, plan rows) and decoding::DecodeRecord alone, on the
// ~460-byte structured CloudEvents bench/producer.cpp writes, against the end-to-end benchmark's
// 500-definition index (docs/benchmarks.md "Workload"); DecodeRecord also without building the
// data (as PlanBatch decodes events no definition triggers on).
//
//   decode_bench [--events 20000] [--batch 1000] [--seconds 3] [--match 0] [--only plan|decode]
//   decode_bench --compare-index 100,100000 [--events 20000] [--match 20] [--seconds 3]
//
// At 0 % match half the events have a type no definition triggers on and half a defined type whose
// condition fails, like the producer. Prints one JSON object with ns/event per case (best of 5
// rounds of seconds/5 each: the machine is shared).
//
// --compare-index SMALL,LARGE: the matching stage (PlanBatch: decode, look up, evaluate the
// conditions, plan the rows) with an index of SMALL and one of LARGE definitions of the same shape
// (10 per tenant: 5 event names x 2 environments), each over events spread across all of its
// tenants, so the large index is read all over as a busy daemon reads it. The two cases run in
// turn (one pass over the events each, milliseconds apart) for --seconds; prints the median of the
// per-turn ratios (large / small throughput) and each case's mean ns/event. Linked with the
// daemon's allocator (jemalloc), like the daemon.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "workflowd/decoding/decoder.hpp"
#include "workflowd/matching/condition.hpp"
#include "workflowd/matching/definition_index.hpp"
#include "workflowd/pipeline/batch_planner.hpp"

using workflowd::TimePoint;
using workflowd::decoding::DecoderConfig;
using workflowd::decoding::RawRecord;
using workflowd::matching::DefinitionIndex;
using workflowd::matching::IndexEntry;
using workflowd::pipeline::BatchPlan;
using Json = nlohmann::json;

namespace {

const char* kEnvs[] = {"prod", "staging"};
const char* kTypes[] = {"customer.created", "order.placed", "payment.received",
                        "subscription.activated", "invoice.paid"};

std::string Tenant(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "bt%04d", i);
  return buf;
}

// The conditions bench.py applies (same as match_bench).
workflowd::matching::ConditionPtr ConditionFor(int type) {
  switch (type) {
    case 0:
      return workflowd::matching::ParseConditionList(
          Json::parse(R"([{"field":"data.customer.country","op":"eq","value":"US"},
                          {"field":"data.customer.tier","op":"in","value":["gold","silver"]}])"),
          "trigger.conditions");
    case 1:
      return workflowd::matching::ParseConditionList(
          Json::parse(R"([{"field":"data.amount","op":"gt","value":100}])"), "trigger.conditions");
    case 4:
      return workflowd::matching::ParseConditionList(
          Json::parse(
              R"([{"field":"data.customer.email","op":"regex","value":"^[^@]+@example\\.com$"}])"),
          "trigger.conditions");
    default:
      return nullptr;
  }
}

// `tenants` x 2 environments x 5 event names (50 tenants: 500 definitions).
std::vector<IndexEntry> Entries(int tenants) {
  std::vector<IndexEntry> out;
  for (int t = 0; t < tenants; ++t) {
    for (int e = 0; e < 2; ++e) {
      for (int k = 0; k < 5; ++k) {
        IndexEntry x;
        x.tenant_id = Tenant(t);
        x.environment_id = kEnvs[e];
        x.event_name = kTypes[k];
        x.definition_id = "wfb_" + x.tenant_id + "_" + x.environment_id + "_" + x.event_name;
        x.version = 1;
        x.name = "Bench " + x.event_name;
        x.provider = "mock";
        x.condition = ConditionFor(k);
        out.push_back(std::move(x));
      }
    }
  }
  return out;
}

struct Event {
  std::string key;
  std::string value;
};

// The producer's Generator::Make (bench/producer.cpp), byte for byte the same document shape.
std::vector<Event> Events(int n, int tenants, double match, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<Event> out(static_cast<size_t>(n));
  uint64_t flip = 0;
  const int64_t produced_at_ns = 1769763600123456789;
  for (int i = 0; i < n; ++i) {
    Event& ev = out[static_cast<size_t>(i)];
    const bool matched = uniform(rng) * 100.0 < match;
    const std::string tenant = Tenant(static_cast<int>(rng() % static_cast<uint64_t>(tenants)));
    const std::string env = kEnvs[rng() % 2];
    const int kind = static_cast<int>(rng() % 5);
    std::string type, country = "US", tier = "gold";
    double amount = 250.5;
    if (matched) {
      type = kTypes[kind];
      if (rng() % 2) tier = "silver";
    } else if (flip++ % 2 == 0) {
      type = kind % 2 ? "page.viewed" : "audit.logged";
    } else if (kind % 2 == 0) {
      type = "customer.created";
      country = "DE";
    } else {
      type = "order.placed";
      amount = 5;
    }
    const long long seq = 1000000 + i;
    char data[768];
    const int len = std::snprintf(
        data, sizeof data,
        "{\"produced_at_ns\":%" PRId64
        ",\"customer\":{\"id\":\"cus_%lld\",\"email\":\"user%lld@example.com\",\"country\":\"%s\","
        "\"tier\":\"%s\"},\"amount\":%.2f,\"currency\":\"USD\",\"items\":[{\"sku\":\"sku-1\","
        "\"qty\":2},{\"sku\":\"sku-7\",\"qty\":1}],\"channel\":\"web\"}",
        produced_at_ns, seq, seq, country.c_str(), tier.c_str(), amount);
    ev.key = tenant;
    ev.value = "{\"specversion\":\"1.0\",\"id\":\"bench-run-" + std::to_string(seq) +
               "\",\"source\":\"/bench/producer\",\"type\":\"" + type + "\",\"tenantid\":\"" +
               tenant + "\",\"environmentid\":\"" + env +
               "\",\"time\":\"2026-01-30T09:00:00.123456Z\",\"datacontenttype\":\"application/"
               "json\",\"data\":" +
               std::string(data, static_cast<size_t>(len)) + "}";
  }
  return out;
}

std::vector<RawRecord> Records(const std::vector<Event>& events) {
  std::vector<RawRecord> records(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    RawRecord& r = records[i];
    r.topic = "bench-events";
    r.partition = static_cast<int32_t>(i % 4);
    r.offset = static_cast<int64_t>(i);
    r.key = events[i].key;
    r.value = events[i].value;
    r.timestamp_ms = 1769763600000;
  }
  return records;
}

// --compare-index: PlanBatch over an index of `small` and one of `large` definitions, in turn.
int CompareIndexSizes(int small, int large, int n_events, int batch, double match, double seconds) {
  struct Case {
    int tenants = 0;
    DefinitionIndex index;
    std::vector<Event> events;
    std::vector<RawRecord> records;
    std::vector<const RawRecord*> pointers;
    size_t decoded = 0, matched = 0;
    double seconds = 0;
  };
  Case cases[2];
  for (int k = 0; k < 2; ++k) {
    Case& c = cases[k];
    c.tenants = std::max(1, (k == 0 ? small : large) / 10);
    c.index = DefinitionIndex(Entries(c.tenants));
    c.events = Events(n_events, c.tenants, match, 42);
    c.records = Records(c.events);
    for (const RawRecord& r : c.records) c.pointers.push_back(&r);
  }
  const DecoderConfig config;
  const TimePoint now{std::chrono::milliseconds(1769763600000)};
  const auto pass = [&](Case& c) {
    const auto start = std::chrono::steady_clock::now();
    for (size_t begin = 0; begin < c.pointers.size(); begin += static_cast<size_t>(batch)) {
      const size_t end = std::min(c.pointers.size(), begin + static_cast<size_t>(batch));
      const BatchPlan plan = workflowd::pipeline::PlanBatch(
          std::span<const RawRecord* const>(c.pointers.data() + begin, end - begin), config,
          c.index, "bench", now);
      c.decoded += plan.decoded;
      c.matched += plan.matched_events;
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  pass(cases[0]);  // warm-up
  pass(cases[1]);
  std::vector<double> ratios;
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until || ratios.empty()) {
    const double t_small = pass(cases[0]);
    const double t_large = pass(cases[1]);
    cases[0].seconds += t_small;
    cases[1].seconds += t_large;
    ratios.push_back(t_small / t_large);
  }
  std::sort(ratios.begin(), ratios.end());
  const double turns = static_cast<double>(ratios.size());
  const auto ns = [&](const Case& c) { return c.seconds / turns / n_events * 1e9; };
  const auto fraction = [](const Case& c) {
    return c.decoded == 0 ? 0.0 : static_cast<double>(c.matched) / static_cast<double>(c.decoded);
  };
  std::printf(
      "{\"small_definitions\": %zu, \"large_definitions\": %zu, \"events\": %d, "
      "\"match_percent\": %g, \"turns\": %zu, \"ratio_in_turn\": %.4f, "
      "\"small_ns_per_event\": %.0f, \"large_ns_per_event\": %.0f, "
      "\"matched_fraction_small\": %.3f, \"matched_fraction_large\": %.3f}\n",
      cases[0].index.size(), cases[1].index.size(), n_events, match, ratios.size(),
      ratios[ratios.size() / 2], ns(cases[0]), ns(cases[1]), fraction(cases[0]),
      fraction(cases[1]));
  return 0;
}

template <typename F>
double BestNsPerEvent(size_t events_per_pass, double seconds, F&& pass) {
  pass();  // warm-up
  double best = 1e300;
  for (int round = 0; round < 5; ++round) {
    const auto start = std::chrono::steady_clock::now();
    const auto until = start + std::chrono::duration<double>(seconds / 5);
    size_t done = 0;
    while (std::chrono::steady_clock::now() < until) {
      pass();
      done += events_per_pass;
    }
    const double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, ns / static_cast<double>(done));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  int n_events = 20000, batch = 1000;
  double seconds = 3, match = 0;
  std::string only;  // "plan" or "decode": run that case alone (for profiles)
  int compare_small = 0, compare_large = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--events") {
      n_events = std::atoi(argv[i + 1]);
    } else if (a == "--batch") {
      batch = std::atoi(argv[i + 1]);
    } else if (a == "--seconds") {
      seconds = std::atof(argv[i + 1]);
    } else if (a == "--match") {
      match = std::atof(argv[i + 1]);
    } else if (a == "--only") {
      only = argv[i + 1];
    } else if (a == "--compare-index" &&
               std::sscanf(argv[i + 1], "%d,%d", &compare_small, &compare_large) == 2 &&
               compare_small > 0 && compare_large > 0) {
    } else {
      std::fprintf(stderr,
                   "usage: decode_bench [--events N] [--batch N] [--seconds S] [--match P] "
                   "[--only plan|decode] [--compare-index SMALL,LARGE]\n");
      return 2;
    }
  }
  if (n_events < 1 || batch < 1) return 2;
  if (compare_small > 0) {
    return CompareIndexSizes(compare_small, compare_large, n_events, batch, match, seconds);
  }

  const int tenants = 50;
  DefinitionIndex index(Entries(tenants));
  const std::vector<Event> events = Events(n_events, tenants, match, 42);
  const std::vector<RawRecord> records = Records(events);
  size_t bytes = 0;
  for (const Event& e : events) bytes += e.value.size();
  std::vector<const RawRecord*> pointers;
  for (const RawRecord& r : records) pointers.push_back(&r);
  const DecoderConfig config;
  const TimePoint now{std::chrono::milliseconds(1769763600000)};

  size_t decoded = 0, matched = 0, dead = 0;
  const auto plan_pass = [&] {
    for (size_t begin = 0; begin < pointers.size(); begin += static_cast<size_t>(batch)) {
      const size_t end = std::min(pointers.size(), begin + static_cast<size_t>(batch));
      const BatchPlan plan = workflowd::pipeline::PlanBatch(
          std::span<const RawRecord* const>(pointers.data() + begin, end - begin), config, index,
          "bench", now);
      decoded += plan.decoded;
      matched += plan.matched_events;
      dead += plan.dead_letters.size();
    }
  };
  const double plan_ns = only == "decode" ? 0 : BestNsPerEvent(pointers.size(), seconds, plan_pass);
  const double matched_fraction =
      decoded == 0 ? 0 : static_cast<double>(matched) / static_cast<double>(decoded);

  size_t ok = 0;
  const auto decode_pass = [&] {
    for (const RawRecord& r : records) ok += workflowd::decoding::DecodeRecord(r, config).ok();
  };
  const double decode_ns =
      only == "plan" ? 0 : BestNsPerEvent(records.size(), seconds, decode_pass);

  // DecodeRecord without building data (what PlanBatch does for events without candidates).
  double lazy_ns = 0;
  if (only.empty()) {
    const std::function<bool(const workflowd::decoding::Envelope&)> never =
        [](const workflowd::decoding::Envelope&) { return false; };
    const auto lazy_pass = [&] {
      for (const RawRecord& r : records) {
        ok += workflowd::decoding::DecodeRecord(r, config, never).ok();
      }
    };
    lazy_ns = BestNsPerEvent(records.size(), seconds, lazy_pass);
  }

  std::printf(
      "{\"events\": %zu, \"mean_value_bytes\": %.0f, \"definitions\": %zu, \"match_percent\": %g, "
      "\"matched_fraction\": %.3f, \"dead_letters\": %zu, \"plan_batch_ns_per_event\": %.0f, "
      "\"decode_record_ns_per_event\": %.0f, \"decode_record_without_data_ns_per_event\": %.0f}\n",
      events.size(), static_cast<double>(bytes) / static_cast<double>(events.size()), index.size(),
      match, matched_fraction, dead, plan_ns, decode_ns, lazy_ns);
  return ok == 0 && only != "plan" ? 1 : 0;
}
