// Micro-benchmark of the event pipeline's CPU work per record without Kafka and PostgreSQL:
// consumers::PlanBatch (decode, match, plan rows) and consumers::DecodeRecord alone, on the
// ~460-byte structured CloudEvents bench/producer.cpp writes, against the end-to-end benchmark's
// 500-definition index (docs/benchmarks.md "Workload"); DecodeRecord also without building the
// data (as PlanBatch decodes events no definition triggers on).
//
//   decode_bench [--events 20000] [--batch 1000] [--seconds 3] [--match 0] [--only plan|decode]
//
// At 0 % match half the events have a type no definition triggers on and half a defined type whose
// condition fails, like the producer. Prints one JSON object with ns/event per case (best of 5
// rounds of seconds/5 each: the machine is shared).
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

#include "workflowd/consumers/batch_planner.hpp"
#include "workflowd/consumers/envelope.hpp"
#include "workflowd/matching/condition.hpp"
#include "workflowd/matching/definition_index.hpp"

using workflowd::TimePoint;
using workflowd::consumers::BatchPlan;
using workflowd::consumers::DecoderConfig;
using workflowd::consumers::RawRecord;
using workflowd::matching::DefinitionIndex;
using workflowd::matching::IndexEntry;
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

// 50 tenants x 2 environments x 5 event names = 500 definitions.
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
    } else {
      std::fprintf(stderr,
                   "usage: decode_bench [--events N] [--batch N] [--seconds S] [--match P] "
                   "[--only plan|decode]\n");
      return 2;
    }
  }
  if (n_events < 1 || batch < 1) return 2;

  const int tenants = 50;
  DefinitionIndex index(Entries(tenants));
  const std::vector<Event> events = Events(n_events, tenants, match, 42);
  std::vector<RawRecord> records(events.size());
  size_t bytes = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    RawRecord& r = records[i];
    r.topic = "bench-events";
    r.partition = static_cast<int32_t>(i % 4);
    r.offset = static_cast<int64_t>(i);
    r.key = events[i].key;
    r.value = events[i].value;
    r.timestamp_ms = 1769763600000;
    bytes += events[i].value.size();
  }
  std::vector<const RawRecord*> pointers;
  for (const RawRecord& r : records) pointers.push_back(&r);
  const DecoderConfig config;
  const TimePoint now{std::chrono::milliseconds(1769763600000)};

  size_t decoded = 0, matched = 0, dead = 0;
  const auto plan_pass = [&] {
    for (size_t begin = 0; begin < pointers.size(); begin += static_cast<size_t>(batch)) {
      const size_t end = std::min(pointers.size(), begin + static_cast<size_t>(batch));
      const BatchPlan plan = workflowd::consumers::PlanBatch(
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
    for (const RawRecord& r : records) ok += workflowd::consumers::DecodeRecord(r, config).ok();
  };
  const double decode_ns =
      only == "plan" ? 0 : BestNsPerEvent(records.size(), seconds, decode_pass);

  // DecodeRecord without building data (what PlanBatch does for events without candidates).
  double lazy_ns = 0;
  if (only.empty()) {
    const std::function<bool(const workflowd::consumers::Envelope&)> never =
        [](const workflowd::consumers::Envelope&) { return false; };
    const auto lazy_pass = [&] {
      for (const RawRecord& r : records) {
        ok += workflowd::consumers::DecodeRecord(r, config, never).ok();
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
